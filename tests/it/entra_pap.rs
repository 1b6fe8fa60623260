//! PAP for Entra ID users across sync rounds: the cache of verified
//! passwords and the local failure limit live as long as the server. They
//! used to be rebuilt at every round, so a cached user was asked live again
//! (and refused while Graph was down) and wrong guesses around a round went
//! past the limit to Entra ID, towards smart lockout.

use graph_emulator::{Fault, Tenant};

use crate::harness::*;

const MA: &str = "Message-Authenticator = 0x00";

fn pap(s: &TestServer, user: &str, pw: &str) -> String {
    stdout(&radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"{user}\", User-Password = \"{pw}\", {MA}"),
    ))
}

fn sync_now(s: &TestServer) {
    let out = s.cli(&["sync", "now", "--wait"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn the_password_cache_and_failure_limit_outlive_sync_rounds() {
    let (_rt, emu) = start_emulator(Tenant::demo());
    emu.control().set_delta_quirks(0, 0);
    // Rounds only when asked, so the test knows how many ran.
    let body = format!("{}{}", localhost_client(""), entra_section(&emu.base_url(), "1h"));
    let tenant = emu.tenant_id();
    let s = TestServer::start_seeded(&body, |state| provision(state, &tenant, &["contoso.example"]));
    s.wait_for_log("intune MAC addresses synced");
    let grants = || emu.control().password_grants();

    // Seven wrong guesses, a round, seven more: Entra ID sees five.
    let before = grants();
    for _ in 0..7 {
        assert!(pap(&s, "carol@contoso.example", "guess").contains("Access-Reject"));
    }
    sync_now(&s);
    for _ in 0..7 {
        assert!(pap(&s, "carol@contoso.example", "guess").contains("Access-Reject"));
    }
    assert_eq!(grants() - before, 5, "{}", s.logs());
    s.wait_for_log("Entra ID was not asked");

    // Alice is verified once, a round passes, then the token endpoint goes
    // down: her password is still accepted, from the cache.
    let out = pap(&s, "alice@contoso.example", "alice-pw");
    assert!(out.contains("Received Access-Accept"), "{out}");
    sync_now(&s);
    let token_path = format!("/{tenant}/oauth2");
    emu.control()
        .fail_next(&token_path, Fault::Unavailable { retry_after_s: None }, 50);
    let before = grants();
    let out = pap(&s, "alice@contoso.example", "alice-pw");
    assert!(out.contains("Received Access-Accept"), "{out}\n{}", s.logs());
    assert_eq!(grants(), before);
    s.wait_for_log("password matches a recent check by Entra ID");
}
