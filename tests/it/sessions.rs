//! Sessions from accounting and Disconnect-Requests (RFC 5176), through the
//! real binary: a NAS of the test's own (a UDP server that verifies the
//! Request Authenticator and Message-Authenticator of each request and
//! answers ACK or NAK as told, or drops requests), the project's Graph
//! emulator (a disabled user, a disabled device, a user moved out of the
//! group that gave it its VLAN), a session stopped before the change, a lost
//! first request, NAK with Error-Cause, a NAS without `coa_port`, a restart,
//! and the `sessions list` / `sessions disconnect` commands.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entra_radius::proto::{AttrType, Builder, ClientSecret, Code};
use graph_emulator::Tenant;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};

use crate::harness::*;

/// The CoA secret of the test NAS, other than the RADIUS secret: the server
/// must use `coa_secret`, not the client's secret.
const COA_SECRET: &str = "coa-secret-42";

/// What the test NAS answers.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ack,
    Nak(u32),
}

/// One Disconnect-Request as the test NAS received it.
#[derive(Clone, Debug)]
struct Received {
    id: u8,
    bytes: Vec<u8>,
    /// The Request Authenticator verifies (RFC 5176 §3).
    auth_ok: bool,
    /// Message-Authenticator is present and verifies.
    ma_ok: bool,
    attrs: Vec<(u8, Vec<u8>)>,
}

impl Received {
    fn attr(&self, t: u8) -> Option<&[u8]> {
        self.attrs.iter().find(|(k, _)| *k == t).map(|(_, v)| v.as_slice())
    }
    fn text(&self, t: u8) -> Option<String> {
        self.attr(t).map(|v| String::from_utf8_lossy(v).into_owned())
    }
    fn session_id(&self) -> String {
        self.text(44).unwrap_or_default()
    }
}

struct NasState {
    answer: Answer,
    /// Requests still to be dropped without an answer.
    drop_next: usize,
    received: Vec<Received>,
}

/// A NAS's Dynamic Authorization port on 127.0.0.1.
struct Nas {
    port: u16,
    state: Arc<Mutex<NasState>>,
    stop: Arc<AtomicBool>,
}

fn attrs_of(p: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 20;
    while i + 2 <= p.len() {
        let (t, l) = (p[i], p[i + 1] as usize);
        if l < 2 || i + l > p.len() {
            break;
        }
        out.push((t, p[i + 2..i + l].to_vec()));
        i += l;
    }
    out
}

/// Offset of Message-Authenticator's value, if present.
fn ma_offset(p: &[u8]) -> Option<usize> {
    let mut i = 20;
    while i + 2 <= p.len() {
        let (t, l) = (p[i], p[i + 1] as usize);
        if l < 2 {
            return None;
        }
        if t == 80 && l == 18 {
            return Some(i + 2);
        }
        i += l;
    }
    None
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut m = Hmac::<Md5>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Verifies a Disconnect-Request as RFC 5176 §3 and RFC 3579 §3.2 say:
/// Message-Authenticator over the packet with a zero authenticator (and
/// itself zeroed), Request Authenticator MD5 over the packet with a zero
/// authenticator followed by the secret.
fn verify_request(p: &[u8], secret: &[u8]) -> (bool, bool) {
    let mut zeroed = p.to_vec();
    zeroed[4..20].fill(0);
    let auth_ok = md5(&[&zeroed, secret]) == p[4..20];
    let ma_ok = match ma_offset(p) {
        Some(off) => {
            let mut z = zeroed.clone();
            z[off..off + 16].fill(0);
            hmac_md5(secret, &z) == p[off..off + 16]
        }
        None => false,
    };
    (auth_ok, ma_ok)
}

/// A Disconnect-ACK or -NAK to `req`: Message-Authenticator computed with
/// the Request Authenticator in place, then the Response Authenticator.
fn answer_to(req: &[u8], answer: Answer, secret: &[u8]) -> Vec<u8> {
    let (code, cause) = match answer {
        Answer::Ack => (41u8, None),
        Answer::Nak(c) => (42u8, Some(c)),
    };
    let mut p = vec![code, req[1], 0, 0];
    p.extend_from_slice(&req[4..20]);
    if let Some(c) = cause {
        p.extend_from_slice(&[101, 6]);
        p.extend_from_slice(&c.to_be_bytes());
    }
    let ma = p.len() + 2;
    p.extend_from_slice(&[80, 18]);
    p.extend_from_slice(&[0; 16]);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    let mac = hmac_md5(secret, &p);
    p[ma..ma + 16].copy_from_slice(&mac);
    let auth = md5(&[&p, secret]);
    p[4..20].copy_from_slice(&auth);
    p
}

impl Nas {
    fn start(answer: Answer) -> Nas {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let port = socket.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(NasState {
            answer,
            drop_next: 0,
            received: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !sp.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let p = buf[..n].to_vec();
                if n < 20 || p[0] != 40 {
                    continue;
                }
                let (auth_ok, ma_ok) = verify_request(&p, COA_SECRET.as_bytes());
                let mut s = st.lock().unwrap();
                s.received.push(Received {
                    id: p[1],
                    attrs: attrs_of(&p),
                    bytes: p.clone(),
                    auth_ok,
                    ma_ok,
                });
                if s.drop_next > 0 {
                    s.drop_next -= 1;
                    continue;
                }
                // A NAS does not act on a request it cannot verify.
                if !(auth_ok && ma_ok) {
                    continue;
                }
                let reply = answer_to(&p, s.answer, COA_SECRET.as_bytes());
                drop(s);
                let _ = socket.send_to(&reply, from);
            }
        });
        Nas { port, state, stop }
    }

    fn set(&self, answer: Answer, drop_next: usize) {
        let mut s = self.state.lock().unwrap();
        s.answer = answer;
        s.drop_next = drop_next;
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    fn for_session(&self, sid: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.session_id() == sid).collect()
    }

    /// Waits (at most `within`) for a request about `sid`; the time it took.
    fn wait_for(&self, sid: &str, within: Duration) -> Duration {
        let start = Instant::now();
        while self.for_session(sid).is_empty() {
            assert!(
                start.elapsed() < within,
                "no Disconnect-Request for {sid} within {within:?}; got {:?}",
                self.received().iter().map(Received::session_id).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }
}

impl Drop for Nas {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One Accounting-Request from `from` (its source address is the NAS's
/// address); panics if the server does not answer it.
fn acct(server: SocketAddr, from: &str, status: u32, sid: &str, user: &str, mac: &str) {
    let mut b = Builder::new(Code::ACCOUNTING_REQUEST, rand_id(), [0; 16]);
    b.push_u32(AttrType::ACCT_STATUS_TYPE, status).unwrap();
    b.push(AttrType::ACCT_SESSION_ID, sid.as_bytes()).unwrap();
    b.push(AttrType::USER_NAME, user.as_bytes()).unwrap();
    b.push(AttrType::CALLING_STATION_ID, mac.as_bytes()).unwrap();
    let ip: std::net::Ipv4Addr = from.split(':').next().unwrap().parse().unwrap();
    b.push(AttrType::NAS_IP_ADDRESS, &ip.octets()).unwrap();
    b.push_u32(AttrType::NAS_PORT, 7).unwrap();
    let bytes = b.finish_hashed_request(&ClientSecret::new(SECRET.as_bytes()));
    let reply = exchange_from(from, server, &bytes, Duration::from_secs(5));
    let reply = reply.unwrap_or_else(|| panic!("no Accounting-Response for {sid}"));
    assert_eq!(reply[0], 5, "Accounting-Response expected for {sid}");
}

fn rand_id() -> u8 {
    use std::sync::atomic::AtomicU8;
    static N: AtomicU8 = AtomicU8::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

const START: u32 = 1;
const STOP: u32 = 2;

fn sessions_json(s: &TestServer, user: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["sessions", "list", "--json"];
    if let Some(u) = user {
        args.extend_from_slice(&["--user", u]);
    }
    let o = s.cli(&args);
    assert!(o.status.success(), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    v.as_array().unwrap().clone()
}

fn listed(s: &TestServer) -> Vec<String> {
    let mut ids: Vec<String> = sessions_json(s, None)
        .iter()
        .map(|r| r["session_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// `/metrics` of a server whose state directory is `state`.
fn metrics_of(s: &TestServer, state: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let token = std::fs::read_to_string(state.join("admin.token")).expect("admin token");
    let mut c = std::net::TcpStream::connect(s.admin).expect("admin API");
    write!(
        c,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        s.admin,
        token.trim()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(s: &TestServer, line_prefix: &str) -> u64 {
    metric_in(&s.metrics(), line_prefix)
}

fn metric_in(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The client entries: 127.0.0.1 with `coa_port` (the test NAS) and
/// 127.0.0.2 without.
fn clients(nas: &Nas) -> String {
    format!(
        "{}\n[[clients]]\nname = \"no-coa\"\naddress = \"127.0.0.2\"\nsecret = \"{SECRET}\"\n",
        localhost_client(&format!("coa_port = {}\ncoa_secret = \"{COA_SECRET}\"", nas.port))
    )
}

#[test]
fn a_sync_round_disconnects_disabled_deleted_and_moved_accounts() {
    let (_rt, emu) = start_emulator(Tenant::demo());
    emu.control().set_delta_quirks(0, 0);
    let nas = Nas::start(Answer::Ack);
    let body = format!(
        "{}{}\n[[policy]]\ngroup = \"Engineering\"\nvlan = \"20\"\n",
        clients(&nas),
        entra_section(&emu.base_url(), "1s")
    );
    let tenant = emu.tenant_id();
    let s = TestServer::start_seeded(&body, |state| provision(state, &tenant, &["contoso.example"]));
    s.wait_for_log("intune MAC addresses synced");

    let demo = Tenant::demo();
    let alice = demo.users[0].id.clone();
    let carol = demo.users[2].id.clone();
    let platform = demo.groups[1].id.clone();
    let laptop_mac = demo.managed_devices[0].wi_fi_mac_address.clone().unwrap();
    let lo = "127.0.0.1:0";
    acct(
        s.acct,
        lo,
        START,
        "s-alice",
        "alice@contoso.example",
        "02-aa-00-00-00-01",
    );
    acct(
        s.acct,
        lo,
        START,
        "s-alice-gone",
        "alice@contoso.example",
        "02-aa-00-00-00-02",
    );
    acct(
        s.acct,
        lo,
        STOP,
        "s-alice-gone",
        "alice@contoso.example",
        "02-aa-00-00-00-02",
    );
    acct(s.acct, lo, START, "s-laptop", &laptop_mac, &laptop_mac);
    acct(
        s.acct,
        lo,
        START,
        "s-carol",
        "carol@contoso.example",
        "02-cc-00-00-00-01",
    );
    acct(
        s.acct,
        "127.0.0.2:0",
        START,
        "s-alice-nocoa",
        "alice@contoso.example",
        "02-aa-00-00-00-03",
    );
    assert_eq!(listed(&s), ["s-alice", "s-alice-nocoa", "s-carol", "s-laptop"]);
    let rows = sessions_json(&s, Some("alice@contoso.example"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().all(|r| r["vlan"] == "20" && r["account"]["kind"] == "user"),
        "{rows:?}"
    );
    let laptop = sessions_json(&s, Some(&laptop_mac));
    assert_eq!(laptop.len(), 1, "{laptop:?}");
    assert_eq!(laptop[0]["account"]["kind"], "device");

    // Alice disabled in Entra ID: her session on the NAS with coa_port is
    // disconnected, her stopped session is not, the one on the NAS without
    // coa_port gets nothing and the log says why, once.
    emu.control().update_user(&alice, |u| u.account_enabled = false);
    let took = nas.wait_for("s-alice", Duration::from_secs(20));
    eprintln!("disable → Disconnect-Request: {took:?} (sync interval 1 s)");
    let r = &nas.for_session("s-alice")[0];
    assert!(r.auth_ok, "Request Authenticator does not verify: {:02x?}", r.bytes);
    assert!(r.ma_ok, "Message-Authenticator missing or wrong: {:02x?}", r.bytes);
    assert_eq!(r.text(1).as_deref(), Some("alice@contoso.example"));
    assert_eq!(r.text(31).as_deref(), Some("02-aa-00-00-00-01"));
    assert_eq!(r.attr(4), Some(&[127, 0, 0, 1][..]), "NAS-IP-Address");
    let ts = u32::from_be_bytes(r.attr(55).expect("Event-Timestamp").try_into().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(ts.abs_diff(now) < 60, "Event-Timestamp {ts} is not now ({now})");
    wait_until("s-alice to be ended by the ACK", Duration::from_secs(5), || {
        !listed(&s).contains(&"s-alice".to_string())
    });
    s.wait_for_log("has no coa_port");
    let nocoa = sessions_json(&s, Some("alice@contoso.example"));
    assert_eq!(nocoa.len(), 1, "{nocoa:?}");
    assert!(
        nocoa[0]["disconnect"]["outcome"]
            .as_str()
            .unwrap()
            .contains("no coa_port"),
        "{nocoa:?}"
    );

    // The laptop disabled: its MAB session goes.
    emu.control()
        .update_device(&demo.devices[0].id, |d| d.account_enabled = false);
    nas.wait_for("s-laptop", Duration::from_secs(20));
    // Carol out of Platform (which is in Engineering): no rule gives her
    // VLAN 20 any more.
    emu.control().remove_group_member(&platform, &carol);
    nas.wait_for("s-carol", Duration::from_secs(20));
    wait_until("the ACKed sessions to be gone", Duration::from_secs(5), || {
        listed(&s) == ["s-alice-nocoa"]
    });

    // Nothing for the stopped session, and one request each (the NAS
    // answered every first try): no further rounds act on them again.
    std::thread::sleep(Duration::from_secs(3));
    assert!(nas.for_session("s-alice-gone").is_empty());
    let mut got: Vec<String> = nas.received().iter().map(Received::session_id).collect();
    got.sort();
    assert_eq!(got, ["s-alice", "s-carol", "s-laptop"]);
    assert!(nas.received().iter().all(|r| r.auth_ok && r.ma_ok));
    assert_eq!(
        metric(&s, "entra_radius_disconnect_total{origin=\"sync\",outcome=\"ack\"}"),
        3
    );
    assert_eq!(
        metric(
            &s,
            "entra_radius_disconnect_total{origin=\"sync\",outcome=\"no_coa_port\"}"
        ),
        1,
        "{}",
        s.logs()
            .lines()
            .filter(|l| l.contains("disconnect") || l.contains("Disconnect"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(s.logs().matches("(logged once per NAS)").count(), 1);
    // The secrets stay out of the log.
    assert!(!s.logs().contains(COA_SECRET));
}

/// Turning the integration off (and purging the replica) disconnects
/// nobody, and neither does the full resync after it is turned on again
/// (accounts not synced back yet are not deleted ones), nor a reload that
/// renumbers the `[[policy]]` rules; a change after that is acted on.
#[test]
fn a_disabled_integration_its_resync_and_a_reload_disconnect_nobody() {
    let (_rt, emu) = start_emulator(Tenant::demo());
    emu.control().set_delta_quirks(0, 0);
    let nas = Nas::start(Answer::Ack);
    let policy = "\n[[policy]]\ngroup = \"Engineering\"\nvlan = \"20\"\n";
    let body = format!("{}{}{policy}", clients(&nas), entra_section(&emu.base_url(), "1s"));
    let tenant = emu.tenant_id();
    let s = TestServer::start_seeded(&body, |state| provision(state, &tenant, &["contoso.example"]));
    s.wait_for_log("intune MAC addresses synced");
    let demo = Tenant::demo();
    let laptop_mac = demo.managed_devices[0].wi_fi_mac_address.clone().unwrap();
    acct(
        s.acct,
        "127.0.0.1:0",
        START,
        "s1",
        "alice@contoso.example",
        "02-aa-00-00-00-01",
    );
    acct(s.acct, "127.0.0.1:0", START, "s2", &laptop_mac, &laptop_mac);
    let o = s.cli(&["entra", "disable", "--purge"]);
    assert!(o.status.success(), "{}", stdout(&o));
    std::thread::sleep(Duration::from_secs(3));
    assert!(nas.received().is_empty(), "{:?}", nas.received());
    let synced = s.logs().matches("intune MAC addresses synced").count();
    let o = s.cli(&["entra", "enable"]);
    assert!(o.status.success(), "{}", stdout(&o));
    s.wait_for_log_count("intune MAC addresses synced", synced + 1);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        nas.received().is_empty(),
        "{:?}\n{}",
        nas.received().iter().map(Received::session_id).collect::<Vec<_>>(),
        s.logs()
    );
    assert_eq!(listed(&s), ["s1", "s2"]);
    // A reload puts another rule first: Alice's rule is now the second one
    // (same VLAN). The administrator's change is no account change: the
    // sessions take the new rule as theirs, nothing is sent.
    let config = std::fs::read_to_string(&s.config_path).unwrap();
    let config = config.replace(
        policy,
        &format!("\n[[policy]]\ngroup = \"Platform\"\nvlan = \"30\"\n{policy}"),
    );
    std::fs::write(&s.config_path, config).unwrap();
    s.signal("HUP");
    s.wait_for_log("the reload changed the [[policy]] rule of active sessions");
    std::thread::sleep(Duration::from_secs(3));
    assert!(nas.received().is_empty(), "{:?}", nas.received());
    assert_eq!(sessions_json(&s, Some("alice@contoso.example"))[0]["policy_rule"], 1);
    // Still watching: Alice disabled now is disconnected.
    emu.control()
        .update_user(&demo.users[0].id, |u| u.account_enabled = false);
    nas.wait_for("s1", Duration::from_secs(20));
}

/// Local accounts (no Entra ID): the manual commands, a lost first request,
/// a NAK, a NAS without coa_port, and a restart.
#[test]
fn manual_disconnect_retransmission_nak_and_restart() {
    let nas = Nas::start(Answer::Ack);
    let keep = tempfile::tempdir().unwrap();
    let state = keep.path().join("state");
    let config = format!("{}{}{USERS}", base_config(&state), clients(&nas));
    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    let lo = "127.0.0.1:0";
    acct(s.acct, lo, START, "m1", "alice", "02-00-00-00-00-0a");
    acct(s.acct, lo, START, "m2", "alice", "02-00-00-00-00-0b");
    acct(s.acct, lo, START, "m3", "02-00-00-00-00-01", "02-00-00-00-00-01");
    acct(s.acct, "127.0.0.2:0", START, "m4", "alice", "02-00-00-00-00-0c");
    assert_eq!(listed(&s), ["m1", "m2", "m3", "m4"]);
    let text = stdout(&s.cli(&["sessions", "list"]));
    assert!(
        text.contains("m1  nas 127.0.0.1 (127.0.0.1) port 7  user alice (local user"),
        "{text}"
    );

    // The restart keeps them (the accounting writer committed each before
    // its Accounting-Response).
    let (st, _) = s.stop();
    assert!(st.success());
    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    assert_eq!(listed(&s), ["m1", "m2", "m3", "m4"]);

    // A lost first request: the retransmission (same identifier and bytes)
    // is ACKed; exit 0.
    nas.set(Answer::Ack, 1);
    let o = s.cli(&["sessions", "disconnect", "m1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("disconnected (ACK)"), "{}", stdout(&o));
    let tries = nas.for_session("m1");
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!(tries[0].id, tries[1].id);
    assert_eq!(tries[0].bytes, tries[1].bytes);
    assert!(metric_in(&metrics_of(&s, &state), "entra_radius_disconnect_retransmissions_total") >= 1);
    assert!(!listed(&s).contains(&"m1".to_string()));

    // A NAK with Error-Cause 503: exit 1, the reason shown, the session
    // stays listed with that outcome.
    nas.set(Answer::Nak(503), 0);
    let o = s.cli(&["sessions", "disconnect", "--mac", "02:00:00:00:00:0b"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("Error-Cause 503 (Session Context Not Found)"),
        "{}",
        stdout(&o)
    );
    let m2 = sessions_json(&s, None)
        .into_iter()
        .find(|r| r["session_id"] == "m2")
        .expect("m2 still listed");
    assert!(m2["disconnect"]["outcome"].as_str().unwrap().contains("503"), "{m2}");

    // --user: alice's sessions are m2 (NAKed again) and m4 (no coa_port):
    // exit 1, a reason for each.
    let o = s.cli(&["sessions", "disconnect", "--user", "alice"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("m2") && out.contains("503"), "{out}");
    assert!(out.contains("m4") && out.contains("no coa_port"), "{out}");
    assert_eq!(nas.for_session("m4").len(), 0);

    // The MAB session by its MAC in another notation; ACK, exit 0.
    nas.set(Answer::Ack, 0);
    let o = s.cli(&["sessions", "disconnect", "--user", "0200.0000.0001"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // Nothing matches: exit 1.
    let o = s.cli(&["sessions", "disconnect", "no-such-session"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("No active session matches"));
    // No selector at all: a usage error.
    let o = s.cli(&["sessions", "disconnect"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));

    let m = metric_in(
        &metrics_of(&s, &state),
        "entra_radius_disconnect_total{origin=\"admin\",outcome=\"ack\"}",
    );
    assert_eq!(m, 2);
    assert_eq!(listed(&s), ["m2", "m4"]);

    // Accounting-On from the NAS without coa_port (it rebooted): its
    // sessions are over; the other NAS's stay.
    let mut b = Builder::new(Code::ACCOUNTING_REQUEST, rand_id(), [0; 16]);
    b.push_u32(AttrType::ACCT_STATUS_TYPE, 7).unwrap();
    b.push(AttrType::NAS_IP_ADDRESS, &[127, 0, 0, 2]).unwrap();
    let on = b.finish_hashed_request(&ClientSecret::new(SECRET.as_bytes()));
    let reply = exchange_from("127.0.0.2:0", s.acct, &on, Duration::from_secs(5)).expect("answered");
    assert_eq!(reply[0], 5);
    assert_eq!(listed(&s), ["m2"]);
    assert!(!s.logs().contains(COA_SECRET));
}
