//! The administrator's workflow through the CLI binary against a running
//! server and the project's Graph emulator: enable, register (by hand and
//! automatically), consent by following the printed URL, domains, sync now
//! with --wait, disable with --purge; every step repeated, every refusal
//! one clear line with the right exit code.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use graph_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, Tenant};

use crate::harness::*;

const MA: &str = "Message-Authenticator = 0x00";

struct Setup {
    rt: tokio::runtime::Runtime,
    emu: Emulator,
    server: TestServer,
}

fn setup() -> Setup {
    let (rt, emu) = start_emulator(Tenant::demo());
    emu.control().set_delta_quirks(0, 0);
    // A long interval: every round in these tests is one the test asked for.
    let body = format!(
        "{}{}\n[[policy]]\ngroup = \"Engineering\"\nvlan = \"20\"\n",
        localhost_client(""),
        entra_section(&emu.base_url(), "1h")
    );
    let server = TestServer::start(&body);
    Setup { rt, emu, server }
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs an admin command and checks its exit code; returns stdout+stderr.
fn run(s: &TestServer, args: &[&str], code: i32) -> String {
    let o = s.cli(args);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}:\n{text}");
    text
}

/// `entra provision` for an application registered by hand, with its secret in `file`.
fn provision_by_hand(s: &TestServer, tenant: &str, file: &std::path::Path, code: i32) -> String {
    let args = [
        "entra",
        "provision",
        "--tenant",
        tenant,
        "--client-id",
        DEMO_CLIENT_ID,
        "--client-secret-file",
        file.to_str().unwrap(),
    ];
    run(s, &args, code)
}

fn pap(s: &TestServer, user: &str, pw: &str) -> String {
    stdout(&radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"{user}\", User-Password = \"{pw}\", {MA}"),
    ))
}

/// An admin command running in the background whose stdout is read line by line.
struct Background {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Background {
    fn start(s: &TestServer, args: &[&str]) -> Background {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", s.config_path.to_str().unwrap()]);
        let mut child = Command::new(bin())
            .args(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        Background { child, lines }
    }

    /// The first line containing `needle` (panics after 30 s).
    fn line_with(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?}");
    }

    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "the command did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest: Vec<String> = self.lines.try_iter().collect();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err).unwrap();
        rest.push(err);
        (status.code().unwrap_or(-1), rest.join("\n"))
    }
}

#[test]
fn the_whole_workflow_by_hand_with_every_step_repeated() {
    let Setup { rt, emu, server: s } = setup();
    let tenant = emu.tenant_id();
    // The demo application starts without consent, as a fresh registration.
    emu.control().revoke_consent(DEMO_CLIENT_ID);

    let t = run(&s, &["entra", "status"], 0);
    assert!(t.contains("Integration:  disabled"), "{t}");
    assert!(
        t.contains("Next step:    turn the integration on: `entra-radius entra enable`"),
        "{t}"
    );
    let t = run(&s, &["sync", "now"], 1);
    assert!(t.contains("cannot sync: the integration is disabled"), "{t}");
    assert_eq!(t.trim().lines().count(), 1, "one line: {t}");

    for _ in 0..2 {
        let t = run(&s, &["entra", "enable"], 0);
        assert!(t.contains("Next step: register the application"), "{t}");
    }
    // Both statuses say what blocks the sync now, not what blocked the
    // round at startup (the integration was disabled then).
    let sync_line = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("Sync:"))
            .unwrap_or_default()
            .to_string()
    };
    let entra = sync_line(&run(&s, &["entra", "status"], 0));
    let sync = sync_line(&run(&s, &["sync", "status"], 0));
    assert_eq!(entra, sync);
    assert!(entra.contains("no application is registered"), "{entra}");
    let t = run(&s, &["entra", "consent", "--check"], 1);
    assert!(t.contains("no application is registered yet"), "{t}");
    let t = run(&s, &["domains", "list"], 1);
    assert!(t.contains("entra provision"), "{t}");

    // Register the application by hand; a wrong secret is refused, explained, and not saved.
    let secret_file = s.dir.path().join("secret.txt");
    write_private(&secret_file, b"not-the-secret\n");
    let t = provision_by_hand(&s, &tenant, &secret_file, 1);
    assert!(t.contains("AADSTS7000215") && t.contains("secret is wrong"), "{t}");
    assert!(!s.state_dir().join("entra-client-secret").exists());
    write_private(&secret_file, format!("{DEMO_CLIENT_SECRET}\n").as_bytes());
    for _ in 0..2 {
        let t = provision_by_hand(&s, &tenant, &secret_file, 0);
        assert!(t.contains("Admin consent: not granted yet."), "{t}");
        assert!(t.contains("Next step: grant admin consent"), "{t}");
        assert!(!t.contains(DEMO_CLIENT_SECRET), "the secret is never printed: {t}");
    }
    let stored = s.state_dir().join("entra-client-secret");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);
    let t = run(&s, &["entra", "status"], 0);
    assert!(
        t.contains(&format!("client {DEMO_CLIENT_ID} in tenant {tenant} (manual, secret")),
        "{t}"
    );

    // Consent: follow the printed URL as a browser would (the redirect reaches the CLI's listener).
    for _ in 0..2 {
        let bg = Background::start(&s, &["entra", "consent", "--timeout", "30"]);
        let url = bg.line_with("/adminconsent?").trim().to_string();
        let page = rt.block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
        assert!(page.contains("Admin consent received"), "{page}");
        let (code, text) = bg.finish();
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("Admin consent: granted"), "{text}");
    }
    // A permission taken away is named by the check and by the status.
    emu.control().grant_consent(
        DEMO_CLIENT_ID,
        &[
            "User.Read.All",
            "GroupMember.Read.All",
            "Domain.Read.All",
            "DeviceManagementManagedDevices.Read.All",
        ],
    );
    let t = run(&s, &["entra", "consent", "--check"], 1);
    assert!(t.contains("MISSING Device.Read.All"), "{t}");
    let t = run(&s, &["entra", "status"], 0);
    assert!(t.contains("Consent:      MISSING Device.Read.All"), "{t}");
    assert!(t.contains("admin consent lacks Device.Read.All"), "{t}");
    emu.control().grant_consent(DEMO_CLIENT_ID, graph_emulator::ALL_ROLES);
    run(&s, &["entra", "consent", "--check"], 0);

    // Domains.
    let t = run(&s, &["domains", "list"], 0);
    assert!(
        t.contains("fabrikam.example") && t.contains("yes (PAP cannot be checked)"),
        "{t}"
    );
    let t = run(&s, &["domains", "list", "--search", "FAB"], 0);
    assert!(t.contains("fabrikam.example") && !t.contains("contoso.example"), "{t}");
    let t = run(&s, &["domains", "select", "nosuch.example"], 2);
    assert!(
        t.contains("not a domain of the tenant: nosuch.example") && t.contains("contoso.example"),
        "{t}"
    );
    let t = run(&s, &["sync", "now"], 1);
    assert!(t.contains("no domain is selected"), "{t}");
    let t = run(&s, &["domains", "select", "contoso.example"], 0);
    assert!(
        t.contains("Selected domains: contoso.example") && t.contains("Saved"),
        "{t}"
    );
    let t = run(&s, &["domains", "select", "CONTOSO.EXAMPLE"], 0);
    assert!(t.contains("Unchanged."), "{t}");

    // Sync with --wait, twice.
    for _ in 0..2 {
        let t = run(&s, &["sync", "now", "--wait"], 0);
        assert!(t.contains("finished"), "{t}");
    }
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Accept"));
    assert!(pap(&s, "dave@fabrikam.example", "dave-pw").contains("Access-Reject"));
    let t = run(&s, &["sync", "status"], 0);
    assert!(t.contains("users   last success"), "{t}");
    let t = run(&s, &["accounts", "lookup", "dave@fabrikam.example"], 0);
    assert!(!t.contains("directory: entra"), "dave is out of scope: {t}");

    // Re-scope: add fabrikam, drop contoso.
    run(&s, &["domains", "select", "fabrikam.example"], 0);
    let t = run(&s, &["domains", "unselect", "contoso.example"], 0);
    assert!(t.contains("Selected domains: fabrikam.example"), "{t}");
    assert!(t.contains("fabrikam.example is federated"), "{t}");
    run(&s, &["sync", "now", "--wait"], 0);
    let t = run(&s, &["accounts", "lookup", "--json", "dave@fabrikam.example"], 0);
    assert!(t.contains("\"entra\""), "{t}");
    assert!(
        pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Reject"),
        "alice is out of scope now"
    );
    let t = run(&s, &["entra", "status"], 0);
    assert!(t.contains("Domains:      fabrikam.example"), "{t}");

    // A failing round: sync now --wait says so and exits 1.
    emu.control().revoke_consent(DEMO_CLIENT_ID);
    let t = run(&s, &["sync", "now", "--wait"], 1);
    assert!(t.contains("failed"), "{t}");
    let t = run(&s, &["sync", "status"], 1);
    assert!(t.contains("last error"), "{t}");
    emu.control().grant_consent(DEMO_CLIENT_ID, graph_emulator::ALL_ROLES);

    // Disable, then purge, each twice.
    run(&s, &["domains", "select", "--all"], 0);
    run(&s, &["sync", "now", "--wait"], 0);
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Accept"));
    for _ in 0..2 {
        let t = run(&s, &["entra", "disable"], 0);
        assert!(t.contains("The replica is kept"), "{t}");
    }
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Reject"));
    let t = run(&s, &["entra", "status"], 0);
    assert!(t.contains("Replica:      4 users"), "{t}");
    for _ in 0..2 {
        let t = run(&s, &["entra", "disable", "--purge"], 0);
        assert!(t.contains("Purged"), "{t}");
    }
    let t = run(&s, &["entra", "status", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["replica"]["users"], 0, "{t}");
    assert_eq!(v["enabled"], false);
    // Enabling again resyncs from scratch.
    run(&s, &["entra", "enable"], 0);
    run(&s, &["sync", "now", "--wait"], 0);
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Accept"));

    // The metrics carry the sync gauges.
    let t = run(&s, &["sync", "status", "--json"], 0);
    assert!(t.contains("\"rounds_finished\""), "{t}");
}

#[test]
fn admin_commands_without_a_server_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, base_config(&state)).unwrap();
    let o = Command::new(bin())
        .args(["entra", "status", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let t = out(&o);
    assert!(
        t.contains("no admin token at") && t.contains("entra-radius serve --config"),
        "{t}"
    );
    assert_eq!(t.trim().lines().count(), 1, "{t}");

    // A token, but nobody listening.
    std::fs::create_dir_all(&state).unwrap();
    write_private(&state.join("admin.token"), b"0123456789abcdef0123456789abcdef\n");
    std::fs::write(&cfg, base_config(&state).replace("127.0.0.1:0", "127.0.0.1:9")).unwrap();
    let o = Command::new(bin())
        .args(["sync", "now", "--wait", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let t = out(&o);
    assert!(t.contains("no entra-radius server answers on 127.0.0.1:9"), "{t}");
    assert_eq!(t.trim().lines().count(), 1, "{t}");
}

#[test]
fn domains_pick_in_a_terminal_saves_the_toggled_selection() {
    let Setup { rt, emu, server: s } = setup();
    let _rt = rt;
    let tenant = emu.tenant_id();
    let secret_file = s.dir.path().join("secret.txt");
    write_private(&secret_file, DEMO_CLIENT_SECRET.as_bytes());
    provision_by_hand(&s, &tenant, &secret_file, 0);
    // In a pseudo-terminal (script(1)): type "fab", toggle it, clear the
    // filter, select all shown with Ctrl-A, unselect with Ctrl-X after
    // filtering "onmicrosoft", then Enter.
    let cmd = format!("{} domains pick --config {}", bin(), s.config_path.to_str().unwrap());
    let keys = "fab \x7f\x7f\x7f\x01onmicrosoft\x18\r";
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Everything the terminal shows, read as it comes.
    let screen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = screen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // Type only once the picker has drawn its list (it has fetched the
        // domains and is reading keys).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !screen.lock().unwrap().contains("filter:") {
            assert!(
                Instant::now() < deadline,
                "the picker never drew: {}",
                screen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for b in keys.bytes() {
            stdin.write_all(&[b]).unwrap();
            stdin.flush().unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let text = screen.lock().unwrap().clone();
    assert!(status.success(), "{text}");
    assert!(
        text.contains("Selected domains: contoso.example, fabrikam.example"),
        "{text}"
    );
    let t = run(&s, &["domains", "list", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(
        v["selected"],
        serde_json::json!(["contoso.example", "fabrikam.example"])
    );
}

/// Signs in at the emulator's device-login page as the tenant's admin would in a browser.
fn sign_in(rt: &tokio::runtime::Runtime, uri: &str, code: &str, password: &str, decline: bool) -> u16 {
    let admin = Tenant::demo().admin;
    let mut form = vec![
        ("user_code", code.to_string()),
        ("username", admin.user_principal_name.clone()),
        ("password", password.to_string()),
    ];
    if decline {
        form.push(("decline", "1".to_string()));
    }
    rt.block_on(async {
        reqwest::Client::new()
            .post(uri)
            .form(&form)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

/// `entra provision` in the background: returns it with the URL and the code it printed.
fn start_provision(s: &TestServer, args: &[&str]) -> (Background, String, String) {
    let mut all = vec!["entra", "provision"];
    all.extend_from_slice(args);
    let bg = Background::start(s, &all);
    let uri = bg.line_with("open ").trim().trim_start_matches("open ").to_string();
    let code = bg
        .line_with("enter the code")
        .trim()
        .trim_start_matches("enter the code ")
        .to_string();
    (bg, uri, code)
}

#[test]
fn automatic_registration_through_the_device_code_sign_in() {
    let Setup { rt, emu, server: s } = setup();
    let tenant = emu.tenant_id();
    emu.control().set_device_code_timing(1, 120);
    emu.control().set_replication_delay(2);
    run(&s, &["entra", "enable"], 0);

    // Declined first: a clear failure, nothing recorded.
    let (bg, uri, code) = start_provision(&s, &["--tenant", &tenant]);
    assert!(uri.ends_with("/devicelogin"), "{uri}");
    assert_eq!(sign_in(&rt, &uri, &code, "admin-pw", true), 200);
    let (exit, text) = bg.finish();
    assert_eq!(exit, 1, "{text}");
    assert!(text.contains("declined"), "{text}");
    let t = run(&s, &["entra", "status"], 0);
    assert!(t.contains("Application:  not registered"), "{t}");

    // A wrong password is refused by the page; the right one goes through.
    let (bg, uri, code) = start_provision(&s, &["--tenant", &tenant, "--name", "NAC (test)"]);
    assert_eq!(sign_in(&rt, &uri, &code, "wrong", false), 401);
    assert_eq!(sign_in(&rt, &uri, &code, "admin-pw", false), 200);
    let (exit, text) = bg.finish();
    assert_eq!(exit, 0, "{text}");
    assert!(
        text.contains("signed in as admin@contosodemo.onmicrosoft.com"),
        "{text}"
    );
    assert!(
        text.contains("for directory replication"),
        "the replication wait is shown: {text}"
    );
    assert!(text.contains("(new)"), "{text}");
    assert!(text.contains("Next step: grant admin consent"), "{text}");
    let t = run(&s, &["entra", "status", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["provisioned"]["by"], "automatic");
    assert_eq!(v["provisioned"]["credential"], "secret");
    let client_id = v["provisioned"]["client_id"].as_str().unwrap().to_string();
    let app = emu.control().app(&client_id).expect("the app exists in the tenant");
    assert_eq!(app.display_name, "NAC (test)");
    let secret = std::fs::read_to_string(s.state_dir().join("entra-client-secret")).unwrap();
    assert!(
        app.secrets.iter().any(|x| x.value == secret.trim()),
        "the stored secret is the app's"
    );
    assert!(!text.contains(secret.trim()), "the secret is never printed");

    // Consent through the redirect, domains, a sync: Entra users are accepted.
    let bg = Background::start(&s, &["entra", "consent", "--timeout", "30"]);
    let url = bg.line_with("/adminconsent?").trim().to_string();
    rt.block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() });
    let (exit, text) = bg.finish();
    assert_eq!(exit, 0, "{text}");
    run(&s, &["domains", "select", "--all"], 0);
    run(&s, &["sync", "now", "--wait"], 0);
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Accept"));

    // Running it again reuses the application and only adds a secret.
    let (bg, uri, code) = start_provision(&s, &["--tenant", &tenant, "--name", "NAC (test)"]);
    assert_eq!(sign_in(&rt, &uri, &code, "admin-pw", false), 200);
    let (exit, text) = bg.finish();
    assert_eq!(exit, 0, "{text}");
    assert!(text.contains("(existing)"), "{text}");
    let t = run(&s, &["entra", "status", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["provisioned"]["client_id"], client_id.as_str());
    assert_eq!(emu.control().app(&client_id).unwrap().secrets.len(), 2);
    // Same application: the consent stays, and the sync keeps working with the new secret.
    run(&s, &["sync", "now", "--wait"], 0);
}

/// Provisions the demo application by hand, selects every domain, enables.
fn ready_to_sync(s: &TestServer, emu: &Emulator) {
    let secret_file = s.dir.path().join("secret.txt");
    write_private(&secret_file, DEMO_CLIENT_SECRET.as_bytes());
    provision_by_hand(s, &emu.tenant_id(), &secret_file, 0);
    run(s, &["domains", "select", "--all"], 0);
    run(s, &["entra", "enable"], 0);
}

/// Waits until the emulator has answered a request with `status`; returns how many it had seen before.
fn wait_for_status(emu: &Emulator, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !emu.control().request_log().iter().any(|r| r.status == status) {
        assert!(Instant::now() < deadline, "the emulator never answered {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tokens_that_expire_or_are_revoked_in_the_middle_of_a_round_are_renewed() {
    use graph_emulator::Fault;
    let Setup {
        rt: _rt,
        emu,
        server: s,
    } = setup();
    ready_to_sync(&s, &emu);
    run(&s, &["sync", "now", "--wait"], 0);
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Accept"));
    let token_requests = |emu: &Emulator| {
        emu.control()
            .request_log()
            .iter()
            .filter(|r| r.path_and_query.ends_with("/oauth2/v2.0/token"))
            .count()
    };
    // One object per page, and a 3 s pause (429) in the middle of the devices
    // round: longer than a token's 2 s life.
    emu.control().set_page_size(1);
    emu.control().set_token_lifetime(2);
    emu.control().clear_request_log();
    emu.control()
        .fail_next("/v1.0/devices/delta", Fault::Throttle { retry_after_s: 3 }, 1);
    emu.control()
        .update_user(&Tenant::demo().users[0].id, |u| u.display_name = "Alice A.".into());
    let t = run(&s, &["sync", "now", "--wait"], 0);
    assert!(t.contains("finished"), "{t}");
    assert!(token_requests(&emu) >= 2, "a new token was fetched during the round");
    assert!(
        !emu.control().request_log().iter().any(|r| r.status == 401),
        "expiry is seen coming: the token is renewed before it is refused"
    );

    // Revoked while still valid: Graph's 401 makes the client fetch a new
    // token and retry, and the round goes on.
    emu.control().set_token_lifetime(3600);
    run(&s, &["sync", "now", "--wait"], 0);
    emu.control().clear_request_log();
    emu.control()
        .fail_next("/v1.0/devices/delta", Fault::Throttle { retry_after_s: 2 }, 1);
    emu.control()
        .update_user(&Tenant::demo().users[0].id, |u| u.account_enabled = false);
    let bg = Background::start(&s, &["sync", "now", "--wait"]);
    wait_for_status(&emu, 429);
    emu.control().revoke_issued_tokens();
    let (code, text) = bg.finish();
    assert_eq!(code, 0, "{text}");
    let log = emu.control().request_log();
    let first_401 = log
        .iter()
        .position(|r| r.status == 401)
        .expect("the revoked token was refused");
    assert!(
        log[first_401..]
            .iter()
            .any(|r| r.path_and_query.ends_with("/oauth2/v2.0/token")),
        "a new token was fetched after the 401"
    );
    assert!(
        log[first_401..]
            .iter()
            .any(|r| r.path_and_query.contains("/devices/delta") && r.status == 200)
    );
    // The change the round brought after the 401 is in force.
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Reject"));
}

#[test]
fn sync_now_wait_reports_failed_rounds_with_their_reason() {
    let Setup {
        rt: _rt,
        emu,
        server: s,
    } = setup();
    ready_to_sync(&s, &emu);
    run(&s, &["sync", "now", "--wait"], 0);
    // The credential vanished from the state directory: the round fails, and says why.
    let secret = s.state_dir().join("entra-client-secret");
    let saved = std::fs::read(&secret).unwrap();
    std::fs::remove_file(&secret).unwrap();
    let t = run(&s, &["sync", "now", "--wait"], 1);
    assert!(
        t.contains("cannot read the client secret") && t.contains("entra-client-secret"),
        "{t}"
    );
    let t = run(&s, &["entra", "status"], 0);
    assert!(t.contains("credential is missing"), "{t}");
    write_private(&secret, &saved);
    run(&s, &["sync", "now", "--wait"], 0);
    // One 504 in the middle is retried and the round still finishes.
    emu.control()
        .fail_next("/v1.0/users/delta", graph_emulator::Fault::GatewayTimeout, 1);
    emu.control()
        .update_user(&Tenant::demo().users[0].id, |u| u.display_name = "A".into());
    let t = run(&s, &["sync", "now", "--wait"], 0);
    assert!(t.contains("finished"), "one 504 is retried: {t}");
}

/// After a restart, every object type's last success comes from the store,
/// Intune's included, even when the first round after the restart fails.
#[test]
fn last_successes_survive_a_restart() {
    let (_rt, emu) = start_emulator(Tenant::demo());
    emu.control().set_delta_quirks(0, 0);
    let keep = tempfile::tempdir().unwrap();
    let state = keep.path().join("state");
    provision(&state, &emu.tenant_id(), &["contoso.example", "fabrikam.example"]);
    let config = format!(
        "{}{}{}",
        base_config(&state),
        localhost_client(""),
        entra_section(&emu.base_url(), "1h")
    );
    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    s.wait_for_log("intune MAC addresses synced");
    let (st, logs) = s.stop();
    assert!(st.success(), "{logs}");
    // The round at the next start fails: consent is gone.
    emu.control().revoke_consent(DEMO_CLIENT_ID);
    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    s.wait_for_log("sync round failed");
    let t = run(&s, &["sync", "status", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["sync"]["last_round_ok"], false, "{t}");
    assert_eq!(v["sync"]["intune"]["items"], 3, "{t}");
    for object in ["users", "devices", "groups", "intune"] {
        assert!(v["sync"][object]["last_success"].is_i64(), "{object}: {t}");
    }
}
