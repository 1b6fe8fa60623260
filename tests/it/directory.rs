//! Directory precedence through the real binary: Entra accounts seeded into
//! the store (as the sync worker leaves them) shadow local ones, policy
//! turns group membership into a VLAN, and `accounts lookup` explains it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use entra_radius::directory::groups::GroupState;
use entra_radius::directory::persist;
use entra_radius::directory::{AccountData, AccountKind, DirectoryKind, GroupRef, MacAddr};
use entra_radius::store::Store;
use entra_radius::store::objects::ObjectOp;

use crate::harness::*;

const MA: &str = "Message-Authenticator = 0x00";

const BODY: &str = r#"
[[local.users]]
name = "alice"
password = "wonderland"

[[local.users]]
name = "carol"
password = "local-carol"

[[local.macs]]
mac = "02-00-00-00-00-01"

[[local.macs]]
mac = "02-00-00-00-00-05"

[[policy]]
group = "Cameras"
vlan = "40"
reply_message = "camera network"

[[policy]]
kind = "device"
vlan = "30"
"#;

fn device(id: &str, mac: &str, enabled: bool) -> AccountData {
    let mut a = AccountData::new(DirectoryKind::Entra, AccountKind::Device, id);
    a.macs = vec![MacAddr::parse(mac).unwrap()];
    a.device_id = Some(format!("{id}-reg"));
    a.display_name = Some(format!("device {id}"));
    a.enabled = enabled;
    a.last_change = Some(1_700_000_000);
    a
}

/// What a finished sync leaves in the store.
pub fn seed(state: &Path) {
    let store = Store::open(state).unwrap();
    let mut conn = store.conn().unwrap();
    let mut alice = AccountData::new(
        DirectoryKind::Entra,
        AccountKind::User,
        "11111111-1111-1111-1111-111111111111",
    );
    alice.upn = Some("alice@contoso.com".into());
    alice.sam_account_name = Some("alice".into());
    alice.netbios_domain = Some("CONTOSO".into());
    alice.enabled = true;
    let accounts = vec![
        alice,
        // The same MAC as a local entry, disabled in Entra ID.
        device("dev-1", "02-00-00-00-00-01", false),
        AccountData {
            // Transitive groups as the sync worker expanded them.
            groups: vec![GroupRef {
                id: "g-cameras".into(),
                name: "Cameras".into(),
            }],
            ..device("dev-3", "02-00-00-00-00-03", true)
        },
        device("dev-4", "02-00-00-00-00-04", true),
    ];
    persist::save(
        &mut conn,
        &accounts,
        &[],
        &[("users.delta", "https://graph.example/delta?token=1")],
        1_700_000_000,
    )
    .unwrap();
    // The worker's own record of the group and its direct members.
    let mut cameras = GroupState {
        name: "Cameras".into(),
        ..GroupState::default()
    };
    cameras.members.insert("dev-3".into(), "device".into());
    let blob = persist::encode_group(&cameras);
    let op = ObjectOp::Put {
        object_id: "g-cameras",
        kind: persist::GROUP_KIND,
        data: &blob,
    };
    conn.apply(&[op], &[], 1_700_000_000).unwrap();
    enable(&store);
}

/// The integration switch, as `entra enable` leaves it.
pub fn enable(store: &Store) {
    use entra_radius::store::integration::keys;
    store.set_setting(keys::ENABLED, Some("true"), 1).unwrap();
}

fn mab(s: &TestServer, mac: &str) -> String {
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"{mac}\", User-Password = \"{mac}\", {MA}"),
    );
    stdout(&o)
}

#[test]
fn entra_decides_before_local_even_when_its_account_is_disabled() {
    let s = TestServer::start_seeded(&format!("{}{BODY}", localhost_client("")), seed);
    s.wait_for_log("loaded the Entra ID replica from the store objects=4");
    // Local knows 02-..-01 and would accept; Entra ID knows it disabled.
    let out = mab(&s, "020000000001");
    assert!(out.contains("Received Access-Reject"), "{out}");
    s.wait_for_log("reason=device disabled in entra");
    // A local MAC that Entra ID does not know is still accepted, with the kind rule.
    let out = mab(&s, "020000000005");
    assert!(out.contains("Received Access-Accept"), "{out}");
    assert!(out.contains("Tunnel-Private-Group-Id:1 = \"30\""), "{out}");
    // An Entra device in Cameras gets VLAN 40 as the three RFC 3580 attributes.
    let out = mab(&s, "02:00:00:00:00:03");
    assert!(out.contains("Received Access-Accept"), "{out}");
    assert!(out.contains("Tunnel-Type:1 = VLAN"), "{out}");
    assert!(out.contains("Tunnel-Medium-Type:1 = IEEE-802"), "{out}");
    assert!(out.contains("Tunnel-Private-Group-Id:1 = \"40\""), "{out}");
    assert!(out.contains("Reply-Message = \"camera network\""), "{out}");
    // alice is Entra's now: the local password is not consulted.
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"alice\", User-Password = \"wonderland\", {MA}"),
    );
    assert_reply(&o, "Access-Reject");
    s.wait_for_log("identity=\"alice@contoso.com\" method=\"pap\" directory=\"entra\" result=\"reject\"");
    // carol is only local.
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"carol\", User-Password = \"local-carol\", {MA}"),
    );
    assert_reply(&o, "Access-Accept");
}

#[test]
fn accounts_lookup_explains_the_decision_path() {
    let s = TestServer::start_seeded(&format!("{}{BODY}", localhost_client("")), seed);
    let o = s.cli(&["accounts", "lookup", "02:00:00:00:00:01"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("identity: 02-00-00-00-00-01 (mac)"), "{out}");
    assert!(
        out.contains("decided by: entra (device dev-1: disabled, device"),
        "{out}"
    );
    assert!(out.contains("shadowed: local"), "{out}");
    assert!(
        out.contains("entra replica: enabled, 1 users, 3 devices, last sync checkpoint"),
        "{out}"
    );

    // The bare name finds the synced on-prem account (sAMAccountName) and
    // the local one, which it shadows.
    let out = stdout(&s.cli(&["accounts", "lookup", "alice"]));
    assert!(
        out.contains("decided by: entra (alice@contoso.com: enabled, user"),
        "{out}"
    );
    assert!(out.contains("shadowed: local (alice: enabled, user)"), "{out}");
    let out = stdout(&s.cli(&["accounts", "lookup", "CONTOSO\\alice"]));
    assert!(out.contains("identity: contoso\\alice (sam)"), "{out}");
    assert!(
        out.contains("decided by: entra (alice@contoso.com: enabled, user"),
        "{out}"
    );

    let out = stdout(&s.cli(&["accounts", "lookup", "carol"]));
    assert!(out.contains("decided by: local"), "{out}");
    assert!(out.contains("not found: entra"), "{out}");

    let out = stdout(&s.cli(&["accounts", "lookup", "nobody@contoso.com"]));
    assert!(out.contains("decided by: none"), "{out}");

    let o = s.cli(&["accounts", "lookup", "0200.0000.0003", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["decision"]["outcome"], "found");
    assert_eq!(v["decision"]["directory"], "entra");
    assert_eq!(v["decision"]["account"]["groups"][0], "Cameras");
    assert_eq!(v["entra"]["devices"], 3);
}

#[test]
fn accounts_lookup_without_a_server_says_how_to_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        &cfg,
        format!(
            "[server]\nstate_dir = {:?}\n[admin]\nlisten = \"127.0.0.1:{port}\"\n",
            dir.path().join("state").display().to_string()
        ),
    )
    .unwrap();
    // No server ever ran here: there is no token either.
    let o = run_cli(
        &["accounts", "lookup", "alice", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("entra-radius serve"), "{err}");
    // With a token left behind by an earlier run, the error is about the server.
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    entra_radius::admin::ensure_token(&dir.path().join("state")).unwrap();
    let o = run_cli(
        &["accounts", "lookup", "alice", "--config", cfg.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("entra-radius serve"),
        "{err}"
    );
}

fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn admin_api_needs_the_token_and_serves_metrics() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestServer::start_seeded(&format!("{}{BODY}", localhost_client("")), seed);
    let token_path = s.state_dir().join("admin.token");
    assert_eq!(
        std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = std::fs::read_to_string(&token_path).unwrap();
    let token = token.trim();
    let host = format!("Host: {}\r\nConnection: close\r\n", s.admin);
    let r = http(s.admin, &format!("GET /v1/status HTTP/1.1\r\n{host}\r\n"));
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = http(
        s.admin,
        &format!("GET /v1/status HTTP/1.1\r\n{host}Authorization: Bearer wrong\r\n\r\n"),
    );
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = http(
        s.admin,
        &format!("GET /v1/status HTTP/1.1\r\n{host}Authorization: Bearer {token}\r\n\r\n"),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"devices\":3"), "{r}");
    // One accept, then the counter shows it.
    assert_reply(
        &radclient(
            s.auth,
            "auth",
            SECRET,
            &format!("User-Name = \"carol\", User-Password = \"local-carol\", {MA}"),
        ),
        "Access-Accept",
    );
    let r = http(
        s.admin,
        &format!("GET /metrics HTTP/1.1\r\n{host}Authorization: Bearer {token}\r\n\r\n"),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("entra_radius_access_accepts_total{client=\"lo\"} 1"), "{r}");
    assert!(r.contains("entra_radius_replica_objects{kind=\"device\"} 3"), "{r}");
    // The token never reaches the log.
    assert!(!s.logs().contains(token));
}

#[test]
fn a_restart_serves_the_last_synced_state() {
    let keep = tempfile::tempdir().unwrap();
    let state = keep.path().join("state");
    seed(&state);
    let config = format!("{}{}{BODY}", base_config(&state), localhost_client(""));
    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    assert!(mab(&s, "020000000004").contains("Received Access-Accept"));
    let (status, _) = s.stop();
    assert!(status.success());
    // Start again on the same state directory: no sync has run in between
    // (Graph is unreachable here), and the replica answers as before.
    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    s.wait_for_log("loaded the Entra ID replica from the store objects=4");
    assert!(mab(&s, "020000000004").contains("Received Access-Accept"));
    assert!(mab(&s, "020000000001").contains("Received Access-Reject"));
}
