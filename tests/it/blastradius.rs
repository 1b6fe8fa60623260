//! The BlastRADIUS (CVE-2024-3596) defences: require_message_authenticator,
//! limit_proxy_state, and Message-Authenticator first in every reply.

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;

use entra_radius::proto::crypto::hide_password;
use entra_radius::proto::{AttrType, Builder, ClientSecret, Code, Packet};

use crate::harness::*;

/// An Access-Request for alice, with or without Message-Authenticator and
/// Proxy-State.
fn request(id: u8, with_ma: bool, proxy_state: Option<&[u8]>) -> Vec<u8> {
    let secret = ClientSecret::new(SECRET.as_bytes());
    let ra = [id; 16];
    let mut b = if with_ma {
        Builder::request_with_ma(Code::ACCESS_REQUEST, id, ra)
    } else {
        Builder::new(Code::ACCESS_REQUEST, id, ra)
    };
    b.push(AttrType::USER_NAME, b"alice").unwrap();
    b.push(
        AttrType::USER_PASSWORD,
        &hide_password(b"wonderland", &secret, &ra).unwrap(),
    )
    .unwrap();
    if let Some(ps) = proxy_state {
        b.push(AttrType::PROXY_STATE, ps).unwrap();
    }
    b.finish_request(&secret)
}

fn code_of(reply: &Option<Vec<u8>>) -> Option<u8> {
    reply.as_ref().map(|r| r[0])
}

/// Checks Message-Authenticator with a plain HMAC-MD5, independently of the
/// server's code: first attribute, over the reply with the Request
/// Authenticator in place and the MA value zeroed.
fn assert_ma_first_and_valid(reply: &[u8], request_auth: &[u8]) {
    assert_eq!(reply[20], 80, "Message-Authenticator is not the first attribute");
    assert_eq!(reply[21], 18);
    let mut zeroed = reply.to_vec();
    zeroed[4..20].copy_from_slice(request_auth);
    zeroed[22..38].fill(0);
    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&zeroed);
    assert_eq!(
        &reply[22..38],
        &mac.finalize().into_bytes()[..],
        "Message-Authenticator does not verify"
    );
}

#[test]
fn require_yes_is_the_default_and_drops_requests_without_ma() {
    let s = TestServer::start(&format!("{}{USERS}", localhost_client("")));
    assert_eq!(code_of(&exchange(s.auth, &request(1, false, None))), None);
    let reply = exchange(s.auth, &request(2, true, None));
    assert_eq!(code_of(&reply), Some(2));
    assert_ma_first_and_valid(&reply.unwrap(), &[2; 16]);
    s.wait_for_log("reason=\"missing_message_authenticator\"");
    // radclient agrees.
    assert_no_reply(&radclient(
        s.auth,
        "auth",
        SECRET,
        "User-Name = \"alice\", User-Password = \"wonderland\"",
    ));
}

#[test]
fn rejects_carry_message_authenticator_first_too() {
    let s = TestServer::start(&format!(
        "{}{USERS}",
        localhost_client("require_message_authenticator = \"no\"")
    ));
    let secret = ClientSecret::new(SECRET.as_bytes());
    let ra = [7u8; 16];
    let mut b = Builder::new(Code::ACCESS_REQUEST, 7, ra);
    b.push(AttrType::USER_NAME, b"alice").unwrap();
    b.push(AttrType::USER_PASSWORD, &hide_password(b"nope", &secret, &ra).unwrap())
        .unwrap();
    let reply = exchange(s.auth, &b.finish_request(&secret)).expect("a reply");
    assert_eq!(reply[0], 3);
    assert_ma_first_and_valid(&reply, &ra);
    // Even to a request that carried none.
    let reply = exchange(s.auth, &request(8, false, None)).expect("a reply");
    assert_eq!(reply[0], 2);
    assert_ma_first_and_valid(&reply, &[8; 16]);
}

#[test]
fn limit_proxy_state_yes_drops_proxy_state_without_ma() {
    let s = TestServer::start(&format!(
        "{}{USERS}",
        localhost_client("require_message_authenticator = \"no\"\nlimit_proxy_state = \"yes\"")
    ));
    assert_eq!(code_of(&exchange(s.auth, &request(1, false, Some(b"ps1")))), None);
    assert_eq!(code_of(&exchange(s.auth, &request(2, false, None))), Some(2));
    // With a valid Message-Authenticator, Proxy-State is fine and comes back.
    let reply = exchange(s.auth, &request(3, true, Some(b"ps3"))).expect("reply");
    assert_eq!(
        Packet::decode(&reply).unwrap().get(AttrType::PROXY_STATE),
        Some(&b"ps3"[..])
    );
    s.wait_for_log("reason=\"proxy_state_without_message_authenticator\"");
}

#[test]
fn limit_proxy_state_no_accepts_and_echoes_proxy_state() {
    let s = TestServer::start(&format!(
        "{}{USERS}",
        localhost_client("require_message_authenticator = \"no\"\nlimit_proxy_state = \"no\"")
    ));
    let reply = exchange(s.auth, &request(1, false, Some(b"ps1"))).expect("reply");
    let p = Packet::decode(&reply).unwrap();
    assert_eq!(p.code(), Code::ACCESS_ACCEPT);
    assert_eq!(p.get(AttrType::PROXY_STATE), Some(&b"ps1"[..]));
}

#[test]
fn auto_requires_ma_once_the_client_has_sent_one() {
    let s = TestServer::start(&format!(
        "{}{USERS}",
        localhost_client("require_message_authenticator = \"auto\"")
    ));
    assert_eq!(code_of(&exchange(s.auth, &request(1, true, None))), Some(2));
    s.wait_for_log("now required from this client");
    assert_eq!(code_of(&exchange(s.auth, &request(2, false, None))), None);
}

#[test]
fn auto_tolerates_a_client_that_never_sends_ma_but_limits_proxy_state() {
    let s = TestServer::start(&format!(
        "{}{USERS}",
        localhost_client("require_message_authenticator = \"auto\"\nlimit_proxy_state = \"auto\"")
    ));
    assert_eq!(code_of(&exchange(s.auth, &request(1, false, None))), Some(2));
    s.wait_for_log("sends no Message-Authenticator");
    assert_eq!(code_of(&exchange(s.auth, &request(2, false, None))), Some(2));
    assert_eq!(code_of(&exchange(s.auth, &request(3, false, Some(b"x")))), None);
}

#[test]
fn a_wrong_message_authenticator_is_dropped() {
    let s = TestServer::start(&format!(
        "{}{USERS}",
        localhost_client("require_message_authenticator = \"no\"")
    ));
    let mut bad = request(1, true, None);
    bad[25] ^= 0xff; // inside the MA value
    assert_eq!(code_of(&exchange(s.auth, &bad)), None);
    s.wait_for_log("reason=\"bad_message_authenticator\"");
}

#[test]
fn eap_without_ma_is_dropped_even_when_ma_is_optional() {
    let s = TestServer::start(&format!(
        "{}{USERS}",
        localhost_client("require_message_authenticator = \"no\"")
    ));
    let secret = ClientSecret::new(SECRET.as_bytes());
    let mut b = Builder::new(Code::ACCESS_REQUEST, 1, [1; 16]);
    b.push(AttrType::USER_NAME, b"alice").unwrap();
    b.push(AttrType::EAP_MESSAGE, &[2, 1, 0, 10, 1, b'a', b'l', b'i', b'c', b'e'])
        .unwrap();
    assert_eq!(code_of(&exchange(s.auth, &b.finish_request(&secret))), None);
    s.wait_for_log("EAP-Message without Message-Authenticator");
}
