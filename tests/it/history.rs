//! The authentication history through the real binary: decisions from
//! radclient and from a retransmitted packet, read back with `auth log`
//! and its filters, `--follow`, `accounts lookup`, the metrics, and the
//! history switched off.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use entra_radius::proto::ClientSecret;
use entra_radius::test_auth::{self, Credentials};

use crate::harness::*;

const MA: &str = "Message-Authenticator = 0x00";

fn pap(s: &TestServer, user: &str, password: &str, extra: &str) {
    radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = {user}, User-Password = \"{password}\", {MA}{extra}"),
    );
}

fn log_json(s: &TestServer, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["auth", "log", "--json"];
    a.extend_from_slice(args);
    let o = s.cli(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

/// Polls until the history holds `n` decisions (the writer commits in the
/// background).
fn wait_for(s: &TestServer, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = log_json(s, &[]);
        if rows.len() >= n || Instant::now() > deadline {
            assert_eq!(rows.len(), n, "{rows:#?}");
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn decisions_are_kept_and_found_by_identity_mac_client_result_and_time() {
    let policy = "[[policy]]\nkind = \"device\"\nvlan = \"30\"\n";
    let s = TestServer::start(&format!("{}{USERS}{policy}", localhost_client("")));
    pap(
        &s,
        "alice",
        "wonderland",
        ", NAS-Port-Id = \"Gi1/0/12\", Calling-Station-Id = \"aa-bb-cc-dd-ee-ff\"",
    );
    pap(&s, "alice", "nope", "");
    radclient(
        s.auth,
        "auth",
        SECRET,
        &format!(
            "User-Name = 020000000001, User-Password = 020000000001, Calling-Station-Id = \"02-00-00-00-00-01\", NAS-Port = 7, {MA}"
        ),
    );
    // The same request twice: the second is answered from the response
    // cache and is not a second decision.
    let req = test_auth::Request {
        password: Some("x".into()),
        ..test_auth::Request::new(s.auth, "carol".into(), Credentials::Pap)
    };
    let bytes = test_auth::build(&req, &ClientSecret::new(SECRET.as_bytes()), 9, [5u8; 16]).unwrap();
    // From the same source port, as a NAS retransmits.
    let from = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let wait = Duration::from_secs(2);
    let first = exchange_from(&from, s.auth, &bytes, wait).expect("a reply");
    assert_eq!(
        exchange_from(&from, s.auth, &bytes, wait).expect("the cached reply"),
        first
    );

    let rows = wait_for(&s, 4);
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let carol = &rows[0];
    assert_eq!(
        (carol["identity"].as_str(), carol["accept"].as_bool()),
        (Some("carol"), Some(false))
    );
    assert_eq!(carol["reason"], "unknown user");
    let mab = &rows[1];
    assert_eq!(mab["method"], "mab-pap");
    assert_eq!(mab["vlan"], "30");
    assert_eq!(mab["nas_port"], "7");
    assert_eq!(mab["directory"], "local");
    // The first (and only) [[policy]] rule gave the VLAN, to this account.
    assert_eq!(mab["policy_rule"], 1);
    assert!(mab["account"].as_str().is_some_and(|a| !a.is_empty()), "{mab}");
    assert!(carol["account"].is_null() && carol["policy_rule"].is_null(), "{carol}");
    let alice_ok = &rows[3];
    assert_eq!(alice_ok["accept"], true);
    assert_eq!(alice_ok["nas_port"], "Gi1/0/12");
    assert_eq!(alice_ok["client"], "lo");
    assert_eq!(alice_ok["nas_addr"], "127.0.0.1");
    assert_eq!(alice_ok["calling_station_id"], "aa-bb-cc-dd-ee-ff");
    // A user: the device rule does not apply, so no rule and no VLAN.
    assert!(alice_ok["policy_rule"].is_null(), "{alice_ok}");
    assert!(alice_ok["account"].as_str().is_some(), "{alice_ok}");

    assert_eq!(log_json(&s, &["--user", "ALICE"]).len(), 2);
    assert_eq!(log_json(&s, &["--user", "alice", "--result", "reject"]).len(), 1);
    // A MAC in another notation finds the MAB decision, and alice's by her station.
    assert_eq!(log_json(&s, &["--mac", "0200.0000.0001"]).len(), 1);
    assert_eq!(log_json(&s, &["--mac", "AABBCCDDEEFF"]).len(), 1);
    assert_eq!(log_json(&s, &["--client", "lo", "--since", "1h"]).len(), 4);
    assert_eq!(log_json(&s, &["--client", "other"]).len(), 0);
    assert_eq!(log_json(&s, &["--limit", "1"]).len(), 1);

    let o = s.cli(&["auth", "log", "--result", "reject"]);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("reject  carol  pap  client lo (127.0.0.1)"), "{text}");
    assert!(
        lines[1].contains("alice") && lines[1].ends_with("wrong password"),
        "{text}"
    );

    let o = s.cli(&["auth", "log", "--mac", "02:00:00:00:00:01"]);
    assert!(stdout(&o).contains("policy #1  vlan 30"), "{}", stdout(&o));

    let o = s.cli(&["auth", "log", "--mac", "not-a-mac"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a MAC address"));
    let o = s.cli(&["auth", "log", "--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));

    let o = s.cli(&["accounts", "lookup", "alice"]);
    let text = stdout(&o);
    assert!(text.contains("Recent decisions (newest first):"), "{text}");
    assert!(text.contains("wrong password"), "{text}");

    let m = s.metrics();
    assert!(
        m.contains("entra_radius_history_records_total{outcome=\"written\"} 4"),
        "{m}"
    );
    assert!(
        m.contains("entra_radius_history_records_total{outcome=\"dropped\"} 0"),
        "{m}"
    );
}

#[test]
fn follow_prints_new_decisions_as_they_are_made() {
    let s = TestServer::start(&format!("{}{USERS}", localhost_client("")));
    pap(&s, "alice", "wonderland", "");
    wait_for(&s, 1);
    let mut child = Command::new(bin())
        .args(["auth", "log", "--follow", "--user", "alice", "--config"])
        .arg(&s.config_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("the existing decision");
    assert!(first.contains("accept  alice  pap"), "{first}");
    pap(&s, "alice", "nope", "");
    let next = rx.recv_timeout(Duration::from_secs(10)).expect("the new decision");
    assert!(
        next.contains("reject  alice  pap") && next.ends_with("wrong password"),
        "{next}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn with_the_history_off_nothing_is_kept_and_auth_log_says_so() {
    let s = TestServer::start(&format!(
        "{}{USERS}\n[history]\nenabled = false\n",
        localhost_client("")
    ));
    pap(&s, "alice", "wonderland", "");
    let o = s.cli(&["auth", "log"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the authentication history is off"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!s.metrics().contains("entra_radius_history_records_total"));
}
