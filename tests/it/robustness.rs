//! Bad input, retransmissions, unknown clients, reload and shutdown.

use std::net::UdpSocket;
use std::time::Duration;

use entra_radius::proto::crypto::hide_password;
use entra_radius::proto::{AttrType, Builder, ClientSecret, Code};

use crate::harness::*;

fn pap(id: u8, ra: [u8; 16], user: &str, pw: &str) -> Vec<u8> {
    let secret = ClientSecret::new(SECRET.as_bytes());
    let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, id, ra);
    b.push(AttrType::USER_NAME, user.as_bytes()).unwrap();
    b.push(
        AttrType::USER_PASSWORD,
        &hide_password(pw.as_bytes(), &secret, &ra).unwrap(),
    )
    .unwrap();
    b.finish_request(&secret)
}

fn server() -> TestServer {
    TestServer::start(&format!("{}{USERS}", localhost_client("")))
}

#[test]
fn retransmissions_get_the_identical_reply() {
    let s = server();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4096];
    let mut recv = || {
        let (n, _) = sock.recv_from(&mut buf).expect("reply");
        buf[..n].to_vec()
    };
    let req = pap(9, [1; 16], "alice", "wonderland");
    sock.send_to(&req, s.auth).unwrap();
    let first = recv();
    sock.send_to(&req, s.auth).unwrap();
    let second = recv();
    assert_eq!(first, second);
    assert_eq!(first[0], 2);
    // Same identifier and port, new authenticator: a new request, decided afresh.
    sock.send_to(&pap(9, [2; 16], "alice", "bad"), s.auth).unwrap();
    assert_eq!(recv()[0], 3);
    let (status, logs) = s.stop();
    assert!(status.success());
    assert!(logs.contains("duplicates_resent=1"), "{logs}");
    // Only two decisions were made for three requests.
    assert_eq!(logs.matches("access decision").count(), 2, "{logs}");
}

#[test]
fn unknown_clients_get_nothing() {
    // Only 127.0.0.1 is a client; 127.0.0.2 is not.
    let s = server();
    let req = pap(1, [3; 16], "alice", "wonderland");
    assert!(exchange_from("127.0.0.2:0", s.auth, &req, Duration::from_secs(1)).is_none());
    assert!(exchange_from("127.0.0.1:0", s.auth, &req, Duration::from_secs(2)).is_some());
    s.wait_for_log("dropped packet from unknown client");
    let (_, logs) = s.stop();
    assert!(logs.contains("unknown_client=1"), "{logs}");
}

#[test]
fn prefix_clients_match_the_most_specific_entry() {
    let body = format!(
        "[[clients]]\nname = \"wide\"\naddress = \"127.0.0.0/8\"\nsecret = \"wide-secret\"\n\n[[clients]]\nname = \"narrow\"\naddress = \"127.0.0.5/32\"\nsecret = \"{SECRET}\"\n{USERS}"
    );
    let s = TestServer::start(&body);
    let req = pap(1, [4; 16], "alice", "wonderland");
    // From 127.0.0.5 our secret is right; from 127.0.0.6 the /8 applies and it is wrong.
    assert!(exchange_from("127.0.0.5:0", s.auth, &req, Duration::from_secs(2)).is_some());
    assert!(exchange_from("127.0.0.6:0", s.auth, &req, Duration::from_secs(1)).is_none());
    s.wait_for_log("client=wide");
}

#[test]
fn bytes_past_length_are_ignored() {
    let s = server();
    let mut req = pap(1, [5; 16], "alice", "wonderland");
    req.extend_from_slice(&[0xee; 100]);
    let reply = exchange(s.auth, &req).expect("a padded request is still answered");
    assert_eq!(reply[0], 2);
}

#[test]
fn malformed_packets_are_dropped_and_the_server_keeps_answering() {
    let s = server();
    let good = pap(1, [6; 16], "alice", "wonderland");
    let mut bad_attr = good.clone();
    bad_attr[21] = 0; // first attribute's length 0
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3); // Length says more than was sent
    let mut short_length = good.clone();
    short_length[2..4].copy_from_slice(&10u16.to_be_bytes());
    let mut huge_length = good.clone();
    huge_length[2..4].copy_from_slice(&5000u16.to_be_bytes());
    let oversize = vec![1u8; 5000];
    let mut overrun = good.clone();
    let n = overrun.len();
    overrun[n - 17] = 40; // last attribute runs past Length
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        vec![1; 19],
        bad_attr,
        truncated,
        short_length,
        huge_length,
        oversize,
        overrun,
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for g in &garbage {
        sock.send_to(g, s.auth).unwrap();
        sock.send_to(g, s.acct).unwrap();
    }
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 4096];
    assert!(sock.recv_from(&mut buf).is_err(), "malformed input must get no reply");
    let reply = exchange(s.auth, &good).expect("still answering");
    assert_eq!(reply[0], 2);
    let (status, logs) = s.stop();
    assert!(status.success());
    assert!(logs.contains("drop.malformed="), "{logs}");
    assert!(logs.contains("drop.oversize=2"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
}

/// The log limiter keys on source address and port and reason: two NASes
/// behind one address are both heard, and one source is heard once a
/// minute per reason.
#[test]
fn drops_are_logged_once_per_source_port_and_reason() {
    let s = server();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        a.send_to(&[1u8; 10], s.auth).unwrap();
        b.send_to(&[1u8; 10], s.auth).unwrap();
    }
    a.send_to(&[1u8; 5000], s.auth).unwrap();
    // A good request afterwards: once it is answered, the drops before it
    // have been logged.
    exchange(s.auth, &pap(1, [8; 16], "alice", "wonderland")).expect("answered");
    let (status, logs) = s.stop();
    assert!(status.success(), "{logs}");
    let logged = |src: &UdpSocket, reason: &str| {
        let needle = format!("source={} reason=\"{reason}\"", src.local_addr().unwrap());
        logs.matches(&needle).count()
    };
    assert_eq!(logged(&a, "malformed"), 1, "{logs}");
    assert_eq!(logged(&b, "malformed"), 1, "{logs}");
    assert_eq!(logged(&a, "oversize"), 1, "{logs}");
}

#[test]
fn wrong_codes_on_a_port_are_dropped() {
    let s = server();
    // An Access-Request to the accounting port, an Accounting-Request to the auth port.
    assert!(exchange(s.acct, &pap(1, [7; 16], "alice", "wonderland")).is_none());
    let secret = ClientSecret::new(SECRET.as_bytes());
    let mut b = Builder::new(Code::ACCOUNTING_REQUEST, 2, [0; 16]);
    b.push_u32(AttrType::ACCT_STATUS_TYPE, 1).unwrap();
    b.push(AttrType::ACCT_SESSION_ID, b"x").unwrap();
    assert!(exchange(s.auth, &b.finish_hashed_request(&secret)).is_none());
    s.wait_for_log("reason=\"unexpected_code\"");
}

#[test]
fn sighup_reloads_clients_and_local_accounts() {
    let s = server();
    let req = pap(1, [8; 16], "carol", "pw-carol");
    assert_eq!(exchange(s.auth, &req).expect("reply")[0], 3);
    let mut text = std::fs::read_to_string(&s.config_path).unwrap();
    text.push_str("\n[[local.users]]\nname = \"carol\"\npassword = \"pw-carol\"\n");
    std::fs::write(&s.config_path, &text).unwrap();
    s.signal("HUP");
    s.wait_for_log("reloaded clients, local accounts, policy and directory order");
    assert_eq!(
        exchange(s.auth, &pap(2, [9; 16], "carol", "pw-carol")).expect("reply")[0],
        2
    );
    // A broken file is refused and the running configuration stays.
    std::fs::write(&s.config_path, format!("{text}\n[[clients]]\nname = 1\n")).unwrap();
    s.signal("HUP");
    s.wait_for_log("SIGHUP: keeping the running configuration");
    assert_eq!(
        exchange(s.auth, &pap(3, [10; 16], "carol", "pw-carol")).expect("reply")[0],
        2
    );
}

#[test]
fn sigterm_stops_cleanly() {
    let s = server();
    assert!(exchange(s.auth, &pap(1, [11; 16], "alice", "wonderland")).is_some());
    let (status, logs) = s.stop();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains("SIGTERM: shutting down"), "{logs}");
    assert!(logs.contains("server stopped"), "{logs}");
    assert!(logs.contains("accepts=1"), "{logs}");
}

#[test]
fn state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = server();
    let dir = std::fs::metadata(s.state_dir()).unwrap().permissions().mode() & 0o777;
    let db = std::fs::metadata(s.state_dir().join("entra-radius.db"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir, 0o700);
    assert_eq!(db, 0o600);
}

#[test]
fn ipv6_listeners_and_clients() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_raw(
        &format!(
            "[server]\nauth_listen = [\"[::1]:0\"]\nacct_listen = [\"[::1]:0\"]\nstate_dir = {:?}\n[admin]\nlisten = \"[::1]:0\"\n[[clients]]\nname = \"v6\"\naddress = \"::1/128\"\nsecret = \"{SECRET}\"\n{USERS}",
            dir.path().join("state").display().to_string()
        ),
        dir,
    );
    assert!(s.auth.is_ipv6());
    let reply = exchange_from(
        "[::1]:0",
        s.auth,
        &pap(1, [12; 16], "alice", "wonderland"),
        Duration::from_secs(2),
    )
    .expect("reply over IPv6");
    assert_eq!(reply[0], 2);
    assert_reply(
        &radclient(s.auth, "status", SECRET, "Message-Authenticator = 0x00"),
        "Access-Accept",
    );
}

#[test]
fn shutdown_answers_requests_already_in_progress() {
    use argon2::password_hash::PasswordHasher;
    // argon2 checks take tens of milliseconds each and run off the reading
    // threads, on a pool of one thread per CPU: eight of them (what one NAS
    // may have waiting on a one-CPU machine) are still in progress when
    // SIGTERM arrives.
    let hash = argon2::Argon2::default().hash_password(b"slow-pw").unwrap().to_string();
    let s = TestServer::start_logging(
        &format!(
            "{}[[local.users]]\nname = \"slow\"\npassword_hash = \"{hash}\"\n",
            localhost_client("")
        ),
        "info,entra_radius::server=debug",
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..8u8 {
        sock.send_to(&pap(i, [100 + i; 16], "slow", "slow-pw"), s.auth).unwrap();
    }
    // Every request has been read and handed to a task once it is logged.
    s.wait_for_log_count("received:", 8);
    let (status, logs) = s.stop();
    assert_eq!(status.code(), Some(0), "{logs}");
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4096];
    let mut answered = 0;
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        assert_eq!(buf[0], 2, "{:?}", &buf[..n]);
        answered += 1;
    }
    assert_eq!(answered, 8, "{logs}");
    let in_flight: usize = logs
        .split("finishing requests in progress in_flight=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("drain line in the log");
    assert!(
        in_flight > 0,
        "nothing was in progress at SIGTERM, so this proves nothing:\n{logs}"
    );
}

/// Datagrams the server cannot read in time are dropped by the kernel, and
/// the server counts them. The server is stopped (SIGSTOP) while the flood
/// arrives, so its receive queue overflows however fast the machine is.
#[test]
fn drops_of_a_full_receive_queue_are_counted() {
    let s = server();
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.signal("STOP");
    // 40,000 datagrams of 1,400 bytes: far more than the receive buffer the
    // server asks for (8 MiB, which the kernel may cap lower, never raise).
    for _ in 0..40_000 {
        let _ = flood.send_to(&[0u8; 1400], s.auth);
    }
    s.signal("CONT");
    // A datagram queued after the drops carries the kernel's count to the
    // server; a request that gets its answer was one of those.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 4096];
    let answered = (0..40u8).any(|i| {
        sock.send_to(&pap(i, [i; 16], "alice", "wonderland"), s.auth).unwrap();
        sock.recv_from(&mut buf).is_ok()
    });
    assert!(answered, "no answer after the flood");
    let (status, logs) = s.stop();
    assert!(status.success(), "{logs}");
    let dropped: u64 = logs
        .split("receive_queue_dropped=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no receive_queue_dropped in the log:\n{logs}"));
    assert!(dropped > 0, "{logs}");
}

/// A server started with two readers and then confined to one CPU (as
/// `taskset -a` or a cgroup's cpuset does) stops reading with the second,
/// so that the two never preempt each other mid-batch; it keeps answering.
/// Each reader is a thread of its own, named so in `top -H` and `perf`.
#[test]
fn readers_follow_the_cpus_the_server_may_run_on() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = base_config(&state).replacen("[server]\n", "[server]\nthreads = 2\n", 1) + &localhost_client("") + USERS;
    let s = TestServer::start_raw(&cfg, dir);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    let first = allowed.split([',', '-']).next().unwrap().to_string();
    let o = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &first, &s.pid().to_string()])
        .output()
        .expect("taskset (util-linux)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // On a one-CPU machine it said so at startup, elsewhere within a second.
    s.wait_for_log("1 of 2 readers per socket read");
    for _ in 0..3 {
        assert_reply(
            &radclient(
                s.auth,
                "auth",
                SECRET,
                "User-Name = alice, User-Password = wonderland, Message-Authenticator = 0x00",
            ),
            "Access-Accept",
        );
    }
    // The readers were started together, before the first was answered.
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", s.pid()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("radius-reader"))
        .collect();
    names.sort();
    assert_eq!(names, ["radius-reader-0", "radius-reader-1"]);
}
