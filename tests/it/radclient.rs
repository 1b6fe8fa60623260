//! PAP, CHAP, MAB, Status-Server and accounting with radclient, the
//! FreeRADIUS test client, as a network administrator would run it.

use entra_radius::store::Store;

use crate::harness::*;

fn server() -> TestServer {
    TestServer::start(&format!("{}{USERS}", localhost_client("")))
}

const MA: &str = "Message-Authenticator = 0x00";

#[test]
fn pap_accept_and_reject() {
    let s = server();
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"alice\", User-Password = \"wonderland\", {MA}"),
    );
    assert_reply(&o, "Access-Accept");
    assert!(o.status.success());
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"alice\", User-Password = \"wrong\", {MA}"),
    );
    assert_reply(&o, "Access-Reject");
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"nobody\", User-Password = \"x\", {MA}"),
    );
    assert_reply(&o, "Access-Reject");
    // The decision is logged once, without the password.
    s.wait_for_log("reason=unknown user");
    let logs = s.logs();
    assert!(
        logs.contains("identity=\"alice\" method=\"pap\" directory=\"local\" result=\"accept\""),
        "{logs}"
    );
    assert!(!logs.contains("wonderland"), "password leaked into the log:\n{logs}");
    assert!(!logs.contains(SECRET), "secret leaked into the log:\n{logs}");
}

#[test]
fn chap_accept_and_reject() {
    let s = server();
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"alice\", CHAP-Password = \"wonderland\", {MA}"),
    );
    assert_reply(&o, "Access-Accept");
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"alice\", CHAP-Password = \"wonderlan\", {MA}"),
    );
    assert_reply(&o, "Access-Reject");
    s.wait_for_log("method=\"chap\"");
}

#[test]
fn mab_in_every_mac_format() {
    let s = server();
    for name in [
        "020000000001",
        "02-00-00-00-00-01",
        "02:00:00:00:00:01",
        "0200.0000.0001",
        "02-00-00-00-00-01",
    ] {
        let attrs = format!(
            "User-Name = \"{name}\", User-Password = \"{name}\", Calling-Station-Id = \"02-00-00-00-00-01\", {MA}"
        );
        assert_reply(&radclient(s.auth, "auth", SECRET, &attrs), "Access-Accept");
        let upper = name.to_uppercase();
        let attrs = format!("User-Name = \"{upper}\", CHAP-Password = \"{upper}\", {MA}");
        assert_reply(&radclient(s.auth, "auth", SECRET, &attrs), "Access-Accept");
    }
    // Cisco's Call-Check: no password at all.
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"020000000001\", Service-Type = Call-Check, {MA}"),
    );
    assert_reply(&o, "Access-Accept");
    // An unknown MAC, and a Calling-Station-Id that contradicts User-Name.
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"020000000009\", User-Password = \"020000000009\", {MA}"),
    );
    assert_reply(&o, "Access-Reject");
    let o = radclient(
        s.auth,
        "auth",
        SECRET,
        &format!(
            "User-Name = \"020000000001\", User-Password = \"020000000001\", Calling-Station-Id = \"02-00-00-00-00-07\", {MA}"
        ),
    );
    assert_reply(&o, "Access-Reject");
    s.wait_for_log("differs from the MAC in User-Name");
}

#[test]
fn status_server_on_both_ports() {
    let s = server();
    assert_reply(&radclient(s.auth, "status", SECRET, MA), "Access-Accept");
    assert_reply(&radclient(s.acct, "status", SECRET, MA), "Accounting-Response");
    // RFC 5997: Status-Server without Message-Authenticator is discarded.
    assert_no_reply(&radclient(s.auth, "status", SECRET, "NAS-Identifier = \"x\""));
}

#[test]
fn accounting_is_stored_before_it_is_answered() {
    let s = server();
    let base = "Acct-Session-Id = \"sess-42\", User-Name = \"alice\", NAS-IP-Address = 192.0.2.7, Calling-Station-Id = \"02-00-00-00-00-01\"";
    let o = radclient(s.acct, "acct", SECRET, &format!("Acct-Status-Type = Start, {base}"));
    assert_reply(&o, "Accounting-Response");
    // The response means the row is committed: read it with a fresh connection.
    let store = Store::open(&s.state_dir()).unwrap();
    let row = store.session("192.0.2.7", "sess-42").unwrap().expect("session stored");
    assert_eq!(row.user_name.as_deref(), Some("alice"));
    assert!(row.started_at.is_some());
    assert!(row.stopped_at.is_none());
    assert_eq!(row.client_name, "lo");

    let o = radclient(
        s.acct,
        "acct",
        SECRET,
        &format!(
            "Acct-Status-Type = Interim-Update, Acct-Session-Time = 60, Acct-Input-Octets = 1000, Acct-Input-Gigawords = 1, {base}"
        ),
    );
    assert_reply(&o, "Accounting-Response");
    let row = store.session("192.0.2.7", "sess-42").unwrap().unwrap();
    assert_eq!(row.input_octets, Some((1u64 << 32) + 1000));
    assert_eq!(row.interim_count, 1);

    let o = radclient(
        s.acct,
        "acct",
        SECRET,
        &format!("Acct-Status-Type = Stop, Acct-Session-Time = 120, Acct-Terminate-Cause = User-Request, {base}"),
    );
    assert_reply(&o, "Accounting-Response");
    let row = store.session("192.0.2.7", "sess-42").unwrap().unwrap();
    assert!(row.stopped_at.is_some());
    assert_eq!(row.session_time, Some(120));
    assert_eq!(row.terminate_cause, Some(1));

    // Accounting-On from that NAS closes whatever it left open.
    let o = radclient(
        s.acct,
        "acct",
        SECRET,
        "Acct-Status-Type = Start, Acct-Session-Id = \"sess-43\", NAS-IP-Address = 192.0.2.7",
    );
    assert_reply(&o, "Accounting-Response");
    assert_eq!(store.open_sessions("192.0.2.7").unwrap().len(), 1);
    let o = radclient(
        s.acct,
        "acct",
        SECRET,
        "Acct-Status-Type = Accounting-On, NAS-IP-Address = 192.0.2.7",
    );
    assert_reply(&o, "Accounting-Response");
    assert!(store.open_sessions("192.0.2.7").unwrap().is_empty());
}

#[test]
fn accounting_with_the_wrong_secret_is_dropped() {
    let s = server();
    let o = radclient(
        s.acct,
        "acct",
        "not-the-secret",
        "Acct-Status-Type = Start, Acct-Session-Id = \"x\"",
    );
    assert_no_reply(&o);
    s.wait_for_log("reason=\"bad_authenticator\"");
    let store = Store::open(&s.state_dir()).unwrap();
    assert_eq!(store.count_sessions().unwrap(), 0);
}

#[test]
fn access_request_with_the_wrong_secret_is_dropped() {
    let s = server();
    let o = radclient(
        s.auth,
        "auth",
        "not-the-secret",
        &format!("User-Name = \"alice\", User-Password = \"wonderland\", {MA}"),
    );
    assert_no_reply(&o);
    s.wait_for_log("reason=\"bad_message_authenticator\"");
}
