//! Active Directory against a real Samba AD DC of its own: provisioned once
//! per process into a temporary folder, LDAP only, on a loopback address of
//! its own, with its own CA; stopped (its process group) at exit. First the
//! LDAP client directly, then the server binary through radclient (PAP by
//! every name form, state, groups, precedence with the Graph emulator, the
//! DC unreachable, cut off, hanging or refusing the service account).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use entra_radius::config::AdConfig;
use entra_radius::directory::Identity;
use entra_radius::directory::ad::client::{AdClient, PasswordVerdict};
use entra_radius::directory::ad::wire::BindRefusal;

use crate::samba::{self, Dc};

static DC: OnceLock<Dc> = OnceLock::new();

/// The DC, provisioned on first use with the accounts the tests use.
fn dc() -> &'static Dc {
    DC.get_or_init(|| {
        let dc = samba::start(77, |tool| {
            tool(&[
                "domain",
                "passwordsettings",
                "set",
                "--max-pwd-age=0",
                "--min-pwd-age=0",
                "--account-lockout-threshold=0",
            ]);
            tool(&["ou", "add", "OU=Staff"]);
            tool(&["user", "create", "svc-radius", "Svc-Radius-Pass1"]);
            tool(&[
                "user",
                "create",
                "alice",
                "Alice-Pass1",
                "--given-name=Alice",
                "--surname=Example",
                "--userou=OU=Staff",
            ]);
            tool(&["user", "create", "bob", "Bob-Pass1"]);
            tool(&["user", "create", "alicent", "Alicent-Pass1"]);
            tool(&["user", "disable", "bob"]);
            tool(&["group", "add", "Staff"]);
            tool(&["group", "add", "VPN"]);
            tool(&["group", "addmembers", "Staff", "alice"]);
            tool(&["group", "addmembers", "VPN", "Staff"]);
            tool(&["computer", "create", "PC1"]);
            // `computer create` leaves the account disabled (4098) until it
            // has a password, as a joined machine would have.
            tool(&[
                "user",
                "setpassword",
                "--filter=(sAMAccountName=PC1$)",
                "--newpassword=Pc1-Machine-Pass1",
            ]);
            tool(&["user", "enable", "--filter=(sAMAccountName=PC1$)"]);
            tool(&["computer", "create", "PC2"]);
            // Locked out after two wrong passwords (its own password policy,
            // so that other tests' wrong guesses lock nobody).
            tool(&["user", "create", "guessy", "Guessy-Pass1"]);
            tool(&["user", "create", "locky", "Locky-Pass1"]);
            tool(&[
                "domain",
                "passwordsettings",
                "pso",
                "create",
                "lockout-2",
                "1",
                "--account-lockout-threshold=2",
                "--account-lockout-duration=30",
                "--reset-account-lockout-after=30",
            ]);
            tool(&["domain", "passwordsettings", "pso", "apply", "lockout-2", "locky"]);
        });
        // An AD account whose UPN is also an Entra ID user's (the
        // emulator's demo tenant): Entra decides it, AD is never asked.
        // And PC1's DNS name, as a joined machine has it (host/fqdn).
        let ldif = dc.dir.join("upn.ldif");
        std::fs::write(
            &ldif,
            "dn: CN=alicent,CN=Users,DC=corp,DC=example,DC=test\nchangetype: modify\n\
            replace: userPrincipalName\nuserPrincipalName: alice@contoso.example\n\n\
            dn: CN=PC1,CN=Computers,DC=corp,DC=example,DC=test\nchangetype: modify\n\
            replace: dNSHostName\ndNSHostName: pc1.corp.example.test\n",
        )
        .unwrap();
        let url = format!("ldap://{}", dc.addr);
        let args = [
            "-x",
            "-H",
            &url,
            "-D",
            samba::ADMIN,
            "-w",
            samba::ADMIN_PASSWORD,
            "-f",
            ldif.to_str().unwrap(),
        ];
        samba::run("ldapmodify", &args, &[]);
        dc
    })
}

fn config(urls: &[String], start_tls: bool) -> AdConfig {
    config_with(urls, start_tls, "Svc-Radius-Pass1")
}

fn config_with(urls: &[String], start_tls: bool, password: &str) -> AdConfig {
    entra_radius::config::from_toml(&ad_section(urls, start_tls, password))
        .unwrap()
        .ad
        .unwrap()
}

/// The `[ad]` section for this DC over LDAPS (started on first use), for
/// other test modules (EAP).
pub(crate) fn ldaps_section() -> String {
    let a = dc().addr.clone();
    ad_section(&[format!("ldaps://{a}")], false, "Svc-Radius-Pass1")
}

/// The `[ad]` section for this DC.
fn ad_section(urls: &[String], start_tls: bool, password: &str) -> String {
    let dc = dc();
    let secret = dc.dir.join(format!("ad-{}.secret", password.len()));
    std::fs::write(&secret, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let text = format!(
        "[ad]\nurls = [{}]\nstart_tls = {start_tls}\nca_file = \"{}\"\nbind_dn = \"CN=svc-radius,CN=Users,DC=corp,DC=example,DC=test\"\n\
         bind_password_file = \"{}\"\nbase_dn = \"DC=corp,DC=example,DC=test\"\ntimeout = \"2s\"\n",
        urls.join(", "),
        dc.ca().display(),
        secret.display()
    );
    text
}

fn client() -> AdClient {
    let a = &dc().addr;
    AdClient::new(&config(&[format!("ldaps://{a}")], false)).unwrap()
}

#[tokio::test]
async fn finds_users_groups_and_computers_over_ldaps() {
    let c = client();
    let info = c.domain_info().await.unwrap();
    assert_eq!(info.netbios, "CORP");
    assert_eq!(info.dns, "corp.example.test");
    for id in ["alice", "CORP\\alice", "alice@corp.example.test"] {
        let a = c
            .find(&Identity::parse(id))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id}"));
        assert_eq!(a.sam_account_name.as_deref(), Some("alice"), "{id}");
        assert!(a.enabled, "{id}");
        let names: Vec<&str> = a.groups.iter().map(|g| g.name.as_str()).collect();
        for g in ["Staff", "VPN", "Domain Users"] {
            assert!(names.contains(&g), "{id}: {names:?}");
        }
    }
    let bob = c.find(&Identity::parse("bob")).await.unwrap().unwrap();
    assert!(!bob.enabled);
    assert!(bob.attributes["ad_state"].contains("disabled"));
    for id in ["PC1$", "host/PC1"] {
        let pc = c
            .find(&Identity::parse(id))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id}"));
        assert_eq!(pc.kind, entra_radius::directory::AccountKind::Device, "{id}");
    }
    assert!(c.find(&Identity::parse("*)(sAMAccountName=*")).await.unwrap().is_none());
    assert!(c.find(&Identity::parse("nobody")).await.unwrap().is_none());
}

#[tokio::test]
async fn passwords_by_bind_over_start_tls() {
    let a = &dc().addr;
    let c = AdClient::new(&config(&[format!("ldap://{a}")], true)).unwrap();
    let alice = c.find(&Identity::parse("alice")).await.unwrap().unwrap();
    let dn = &alice.attributes["dn"];
    assert_eq!(
        c.check_password(dn, b"Alice-Pass1").await.unwrap(),
        PasswordVerdict::Accepted
    );
    assert_eq!(
        c.check_password(dn, b"wrong").await.unwrap(),
        PasswordVerdict::Refused(BindRefusal::WrongPassword)
    );
    assert_eq!(c.check_password(dn, b"").await.unwrap(), PasswordVerdict::Empty);
    let bob = c.find(&Identity::parse("bob")).await.unwrap().unwrap();
    assert_eq!(
        c.check_password(&bob.attributes["dn"], b"Bob-Pass1").await.unwrap(),
        PasswordVerdict::Refused(BindRefusal::Disabled)
    );
}

#[tokio::test]
async fn a_dead_first_url_fails_over() {
    let a = &dc().addr;
    let c = AdClient::new(&config(&["ldaps://127.0.0.1:1".into(), format!("ldaps://{a}")], false)).unwrap();
    assert!(c.find(&Identity::parse("alice")).await.unwrap().is_some());
    assert_eq!(c.last_dc().as_deref(), Some(format!("ldaps://{a}").as_str()));
}

#[tokio::test]
async fn a_wrong_service_password_is_a_service_bind_error() {
    let a = &dc().addr;
    let c = AdClient::new(&config_with(&[format!("ldaps://{a}")], false, "Not-The-Pass1")).unwrap();
    let e = c.find(&Identity::parse("alice")).await.unwrap_err();
    assert!(
        matches!(e, entra_radius::directory::ad::client::AdError::ServiceBind { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("52e"), "{e}");
}

// ---- Through RADIUS: the real binary, radclient, this DC ----

use crate::harness::*;

const MA: &str = "Message-Authenticator = 0x00";

/// A local user that only `[[local.users]]` knows, and the policy that
/// gives members of VPN (alice, through Staff) VLAN 42.
const LOCAL_AND_POLICY: &str = r#"
[[local.users]]
name = "carl"
password = "local-carl"

[[policy]]
group = "VPN"
vlan = "42"
"#;

fn pap(s: &TestServer, user: &str, pw: &str) -> String {
    stdout(&radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"{user}\", User-Password = \"{pw}\", {MA}"),
    ))
}

/// The sum of one metric family's samples (any labels).
fn metric(s: &TestServer, name: &str) -> f64 {
    s.metrics()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn ad_server(urls: &[String], extra: &str) -> TestServer {
    let body = format!(
        "{}{}\n[directory]\norder = [\"ad\", \"local\"]\n{}{extra}",
        localhost_client(""),
        ad_section(urls, false, "Svc-Radius-Pass1"),
        LOCAL_AND_POLICY
    );
    TestServer::start(&body)
}

#[test]
fn radius_pap_against_ad_by_every_name_form_with_state_groups_and_reasons() {
    let a = dc().addr.clone();
    let s = ad_server(&[format!("ldaps://{a}")], "");
    s.wait_for_log("AD: bound as the service account");
    assert!(
        s.logs().contains("naming_context=DC=corp,DC=example,DC=test"),
        "{}",
        s.logs()
    );

    for user in [
        "alice",
        "CORP\\\\alice",
        "alice@corp.example.test",
        "ALICE@CORP.EXAMPLE.TEST",
    ] {
        let out = pap(&s, user, "Alice-Pass1");
        assert!(out.contains("Received Access-Accept"), "{user}: {out}\n{}", s.logs());
        // Staff ⊂ VPN: the nested group's policy applies.
        assert!(out.contains("Tunnel-Private-Group-Id:1 = \"42\""), "{user}: {out}");
    }
    s.wait_for_log("password accepted by AD (bind)");

    let out = pap(&s, "alice", "Wrong-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log("AD refused the password: wrong password (AD: 52e)");

    // Empty: rejected before any bind (Windows AD would take it as an
    // anonymous bind that succeeds).
    let binds = metric(&s, "entra_radius_ad_binds_total");
    // radclient leaves an empty User-Password out: built here (16 bytes
    // of hidden padding, empty once unhidden).
    let reply = {
        use entra_radius::proto::crypto::hide_password;
        use entra_radius::proto::{AttrType, Builder, ClientSecret, Code};
        let secret = ClientSecret::new(SECRET.as_bytes());
        let ra = [7u8; 16];
        let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, 7, ra);
        b.push(AttrType::USER_NAME, b"alice").unwrap();
        b.push(AttrType::USER_PASSWORD, &hide_password(b"", &secret, &ra).unwrap())
            .unwrap();
        exchange(s.auth, &b.finish_request(&secret)).expect("a reply")
    };
    assert_eq!(reply[0], 3, "Access-Reject");
    s.wait_for_log("empty password (never sent to AD)");
    assert_eq!(metric(&s, "entra_radius_ad_binds_total"), binds);

    let out = pap(&s, "bob", "Bob-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log("reason=account disabled in ad");

    s.wait_for_log("reason=account disabled in ad: account disabled in AD (userAccountControl)");

    // Two wrong passwords lock locky out (its password policy): the right
    // one is then refused by AD's bind (775), and a new search sees
    // lockoutTime.
    assert!(pap(&s, "locky", "Locky-Pass1").contains("Received Access-Accept"));
    for _ in 0..2 {
        assert!(pap(&s, "locky", "Wrong-Pass1").contains("Received Access-Reject"));
    }
    let out = pap(&s, "locky", "Locky-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log("AD refused the password: account locked out in AD (775)");
    let fresh = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client().find(&Identity::parse("locky")))
        .unwrap()
        .unwrap();
    assert!(!fresh.enabled);
    assert!(
        fresh.attributes["ad_state"].contains("locked out"),
        "{:?}",
        fresh.attributes
    );

    let out = stdout(&radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"alice\", CHAP-Password = \"Alice-Pass1\", {MA}"),
    ));
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log("CHAP cannot be checked against ad: it exposes no passwords");

    // Filter injection matches nothing: an unknown user, not alice.
    let out = pap(&s, "*)(sAMAccountName=*", "Alice-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log("reason=unknown user");
    let out = pap(&s, "alice*", "Alice-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");

    // A burst for one identity not yet cached is one LDAP search.
    let before = metric(&s, "entra_radius_ad_lookups_total");
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let auth = s.auth;
            std::thread::spawn(move || {
                stdout(&radclient(
                    auth,
                    "auth",
                    SECRET,
                    &format!("User-Name = \"CORP\\\\alicent\", User-Password = \"Alicent-Pass1\", {MA}"),
                ))
            })
        })
        .collect();
    for t in burst {
        let out = t.join().unwrap();
        assert!(out.contains("Received Access-Accept"), "{out}");
    }
    assert_eq!(
        metric(&s, "entra_radius_ad_lookups_total") - before,
        1.0,
        "{}",
        s.metrics()
    );

    // AD does not know carl: the local account below it decides.
    let out = pap(&s, "carl", "local-carl");
    assert!(out.contains("Received Access-Accept"), "{out}\n{}", s.logs());

    // alice was searched once per name form, then answered from the cache.
    assert!(metric(&s, "entra_radius_ad_cache_hits_total") >= 2.0, "{}", s.metrics());
    assert!(metric(&s, "entra_radius_ad_lookups_total") >= 1.0, "{}", s.metrics());
    let m = s.metrics();
    // alice 4, alicent 8 and locky 1 accepted; alice 1 and locky 2
    // wrong; locky locked.
    for (outcome, n) in [("accepted", 13), ("wrong_password", 3), ("locked", 1), ("empty", 0)] {
        assert!(
            m.contains(&format!("entra_radius_ad_binds_total{{outcome=\"{outcome}\"}} {n}\n")),
            "{outcome}: {m}"
        );
    }

    // accounts lookup: the AD row, and the DC that answered.
    let out = stdout(&s.cli(&["accounts", "lookup", "CORP\\alice"]));
    assert!(out.contains("decided by: ad (alice"), "{out}");
    assert!(
        out.contains(&format!("ad: the DC that answered last: ldaps://{a}")),
        "{out}"
    );
    // A computer account, by the names machines use.
    for id in ["PC1$", "host/pc1", "CORP\\PC1$", "host/pc1.corp.example.test"] {
        let out = stdout(&s.cli(&["accounts", "lookup", id]));
        assert!(
            out.contains("decided by: ad (") && out.contains("device"),
            "{id}: {out}"
        );
    }
    let out = stdout(&s.cli(&["accounts", "lookup", "nobody-here"]));
    assert!(out.contains("not found: ad"), "{out}");
}

#[test]
fn ad_unreachable_rejects_ad_and_local_users_with_the_reason_and_keeps_entra_users() {
    let (_rt, emu) = start_emulator(graph_emulator::Tenant::demo());
    let tenant = emu.tenant_id();
    // Nothing listens there: every AD lookup fails.
    let body = format!(
        "{}{}{}\n{}",
        localhost_client(""),
        entra_section(&emu.base_url(), "1h"),
        ad_section(&["ldaps://127.0.0.1:1".to_string()], false, "Svc-Radius-Pass1"),
        LOCAL_AND_POLICY
    );
    let s = TestServer::start_seeded(&body, |state| provision(state, &tenant, &["contoso.example"]));
    s.wait_for_log("intune MAC addresses synced");

    let out = pap(&s, "alice@contoso.example", "alice-pw");
    assert!(out.contains("Received Access-Accept"), "{out}\n{}", s.logs());
    // carl is local, below AD: AD's failure is a reject, never a fall-through.
    let out = pap(&s, "carl", "local-carl");
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log("ad is unavailable (AD: no domain controller answered");
    let out = pap(&s, "CORP\\\\alice", "Alice-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");
    assert!(
        metric(&s, "entra_radius_ad_dc_failovers_total") >= 1.0,
        "{}",
        s.metrics()
    );
    let out = stdout(&s.cli(&["accounts", "lookup", "carl"]));
    assert!(out.contains("decided by: ad unavailable"), "{out}");
}

#[test]
fn an_identity_in_entra_never_reaches_ad_and_ad_decides_below_it() {
    let a = dc().addr.clone();
    let (_rt, emu) = start_emulator(graph_emulator::Tenant::demo());
    let tenant = emu.tenant_id();
    let body = format!(
        "{}{}{}\n{}",
        localhost_client(""),
        entra_section(&emu.base_url(), "1h"),
        ad_section(&[format!("ldaps://{a}")], false, "Svc-Radius-Pass1"),
        LOCAL_AND_POLICY
    );
    let s = TestServer::start_seeded(&body, |state| provision(state, &tenant, &["contoso.example"]));
    s.wait_for_log("intune MAC addresses synced");
    s.wait_for_log("AD: bound as the service account");

    // alice@contoso.example is in Entra ID and (as alicent's UPN) in AD:
    // Entra decides, with its password; AD's password is refused; AD is
    // not asked at all.
    let out = pap(&s, "alice@contoso.example", "alice-pw");
    assert!(out.contains("Received Access-Accept"), "{out}\n{}", s.logs());
    let out = pap(&s, "alice@contoso.example", "Alicent-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");
    assert_eq!(metric(&s, "entra_radius_ad_lookups_total"), 0.0, "{}", s.metrics());
    assert_eq!(metric(&s, "entra_radius_ad_cache_hits_total"), 0.0, "{}", s.metrics());
    assert_eq!(metric(&s, "entra_radius_ad_binds_total"), 0.0, "{}", s.metrics());

    // An AD account Entra ID does not know: AD decides.
    let out = pap(&s, "CORP\\\\alicent", "Alicent-Pass1");
    assert!(out.contains("Received Access-Accept"), "{out}\n{}", s.logs());
    assert_eq!(metric(&s, "entra_radius_ad_lookups_total"), 1.0, "{}", s.metrics());

    // accounts lookup shows AD's account as shadowed by Entra's.
    let out = stdout(&s.cli(&["accounts", "lookup", "alice@contoso.example"]));
    assert!(out.contains("decided by: entra (alice@contoso.example"), "{out}");
    assert!(out.contains("shadowed: ad (alice@contoso.example"), "{out}");
}

/// A TCP relay to the DC's LDAPS port that can be switched off (every
/// connection cut, new ones closed at once) and on again: the DC stopped
/// and restarted, for this server only (the DC serves other tests).
struct Relay {
    port: u16,
    on: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    fn start(to: String) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let on = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (on2, conns2, accepted2) = (on.clone(), conns.clone(), accepted.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                if !on2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                accepted2.fetch_add(1, Ordering::SeqCst);
                let Ok(up) = std::net::TcpStream::connect(&to) else {
                    continue;
                };
                let mut g = conns2.lock().unwrap();
                g.push(c.try_clone().unwrap());
                g.push(up.try_clone().unwrap());
                for (mut a, mut b) in [(c.try_clone().unwrap(), up.try_clone().unwrap()), (up, c)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut a, &mut b);
                        let _ = b.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay {
            port,
            on,
            conns,
            accepted,
        }
    }

    fn set(&self, on: bool) {
        self.on.store(on, std::sync::atomic::Ordering::SeqCst);
        if !on {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[test]
fn ad_stopped_then_restarted_rejects_with_the_reason_then_accepts_again() {
    let relay = Relay::start(format!("{}:636", dc().addr));
    // The certificate names localhost; found accounts are kept 1 s only.
    let body = format!(
        "{}{}cache_ttl = \"1s\"\n\n[directory]\norder = [\"ad\", \"local\"]\n{}",
        localhost_client(""),
        ad_section(
            &[format!("ldaps://localhost:{}", relay.port)],
            false,
            "Svc-Radius-Pass1"
        ),
        LOCAL_AND_POLICY
    );
    let s = TestServer::start(&body);
    for _ in 0..4 {
        let out = pap(&s, "CORP\\\\alice", "Alice-Pass1");
        assert!(out.contains("Received Access-Accept"), "{out}\n{}", s.logs());
    }
    // One connection bound as the service account (startup and search)
    // and one kept for user binds: four binds reuse it. (Each new
    // connection would be a TLS handshake.)
    let accepted = relay.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(accepted <= 3, "{accepted} connections for one search and four binds");

    relay.set(false);
    // The account is still cached, but the bind has no DC.
    let out = pap(&s, "CORP\\\\alice", "Alice-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log("AD could not check the password");
    // Once the cache has let it go, the search has no DC either: AD is
    // unavailable, for alice and for the local user below AD.
    std::thread::sleep(Duration::from_millis(1500));
    let out = pap(&s, "CORP\\\\alice", "Alice-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");
    let out = pap(&s, "carl", "local-carl");
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log_count("ad is unavailable (AD: ", 2);

    relay.set(true);
    let out = pap(&s, "CORP\\\\alice", "Alice-Pass1");
    assert!(out.contains("Received Access-Accept"), "{out}\n{}", s.logs());
    let out = pap(&s, "carl", "local-carl");
    assert!(out.contains("Received Access-Accept"), "{out}\n{}", s.logs());
}

#[test]
fn a_refused_service_account_makes_ad_unavailable_with_the_reason() {
    let a = dc().addr.clone();
    let body = format!(
        "{}{}\n[directory]\norder = [\"ad\", \"local\"]\n{}",
        localhost_client(""),
        ad_section(&[format!("ldaps://{a}")], false, "Not-The-Pass1"),
        LOCAL_AND_POLICY
    );
    let s = TestServer::start(&body);
    s.wait_for_log("AD: not usable yet");
    let out = pap(&s, "alice", "Alice-Pass1");
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log("ad is unavailable (AD: the service account's bind to");
    assert!(s.logs().contains("data 52e"), "{}", s.logs());
    // Only the startup bind went to the DC: the refusal stands 30 s, so a
    // burst cannot lock the service account out.
    for _ in 0..3 {
        assert!(pap(&s, "CORP\\\\alice", "Alice-Pass1").contains("Received Access-Reject"));
    }
    assert_eq!(
        metric(&s, "entra_radius_ad_service_bind_refusals_total"),
        1.0,
        "{}",
        s.metrics()
    );
    assert!(!s.logs().contains("Not-The-Pass1"), "the bind password is never logged");
}

#[test]
fn wrong_passwords_beyond_the_limit_never_reach_ad() {
    let a = dc().addr.clone();
    let s = ad_server(&[format!("ldaps://{a}")], "");
    for _ in 0..5 {
        assert!(pap(&s, "guessy", "Wrong-Pass1").contains("Received Access-Reject"));
    }
    s.wait_for_log_count("AD refused the password: wrong password (AD: 52e)", 5);
    // The sixth guess and even the right password are refused here: AD
    // (which would lock the account out at its own threshold) is not asked.
    for pw in ["Wrong-Pass1", "Guessy-Pass1"] {
        let out = pap(&s, "guessy", pw);
        assert!(out.contains("Received Access-Reject"), "{out}");
    }
    s.wait_for_log_count("AD was not asked (protects the account from AD's lockout)", 2);
    let m = s.metrics();
    assert!(
        m.contains("entra_radius_ad_binds_total{outcome=\"wrong_password\"} 5\n"),
        "{m}"
    );
    assert!(
        m.contains("entra_radius_ad_binds_total{outcome=\"accepted\"} 0\n"),
        "{m}"
    );
}

#[test]
fn check_config_checks_ad_without_connecting_and_refuses_a_readable_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("ad.secret");
    write_private(&secret, b"Svc-Radius-Pass1\n");
    let path = dir.path().join("ad.toml");
    // Nothing listens at that address: check-config must not care.
    std::fs::write(
        &path,
        format!(
            "{}\n[ad]\nurls = [\"ldap://127.0.0.1:1\"]\nbind_dn = \"CN=svc,DC=corp,DC=example\"\n\
             bind_password_file = \"ad.secret\"\nbase_dn = \"DC=corp,DC=example\"\n",
            localhost_client("")
        ),
    )
    .unwrap();
    let o = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(!stdout(&o).contains("Svc-Radius-Pass1"), "{}", stdout(&o));

    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let o = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("ad.bind_password_file"), "{}", stdout(&o));

    std::fs::remove_file(&secret).unwrap();
    let o = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("ad.bind_password_file"), "{}", stdout(&o));
}

/// A DC that accepts connections and never answers: AD lookups hold their
/// places for `timeout`, at most the `ad` bound of them (half of it for
/// one NAS); the rest is shed and counted, and every admitted request is
/// answered (a reject with the reason) about one timeout later, not one
/// timeout per request before it.
#[test]
fn a_hanging_dc_holds_at_most_the_ad_bound_and_the_rest_is_shed() {
    use entra_radius::proto::crypto::hide_password;
    use entra_radius::proto::{AttrType, Builder, ClientSecret, Code, Packet};

    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
        }
    });
    let body = format!(
        "{}{}\n[directory]\norder = [\"ad\", \"local\"]\n{}",
        localhost_client(""),
        ad_section(&[format!("ldaps://127.0.0.1:{port}")], false, "Svc-Radius-Pass1"),
        LOCAL_AND_POLICY
    );
    let s = TestServer::start(&body);
    let secret = ClientSecret::new(SECRET.as_bytes());
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 100u32;
    for n in 0..sent {
        let mut ra = [0x22u8; 16];
        ra[..4].copy_from_slice(&n.to_be_bytes());
        let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, n as u8, ra);
        b.push(AttrType::USER_NAME, format!("user{n}").as_bytes()).unwrap();
        b.push(
            AttrType::USER_PASSWORD,
            &hide_password(b"Some-Pass1", &secret, &ra).unwrap(),
        )
        .unwrap();
        sock.send_to(&b.finish_request(&secret), s.auth).unwrap();
    }
    // Replies come about one timeout (2 s) after the requests. A NAS gives
    // up after its retransmissions (3 × 5 s by default on many): a reply
    // later than that answers nobody, so only what arrives within 12 s
    // counts. (Without the shared failure, the n-th queued lookup waited n
    // timeouts: 32 of them, a minute.)
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut buf = [0u8; 4096];
    let mut answers = 0u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        assert_eq!(Packet::decode(&buf[..n]).unwrap().code(), Code::ACCESS_REJECT);
        answers += 1;
        if answers == sent {
            break;
        }
    }
    let m = s.metrics();
    let key = "entra_radius_dropped_total{client=\"lo\",reason=\"ad_busy\"} ";
    let shed: u32 = m
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(shed > 0 && answers > 0, "{answers} answered, {shed} shed\n{m}");
    assert!(answers <= 32, "one NAS held {answers} AD places (half of 64 at most)");
    assert_eq!(answers + shed, sent, "{answers} answered, {shed} shed\n{m}");
    assert!(s.logs().contains("ad is unavailable (AD: "), "{}", s.logs());
}
