//! The `radius` crate (radius-rs) as a second, independent client: it builds
//! its own packets and checks our Response Authenticator.

use std::net::UdpSocket;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use radius::core::code::Code as RCode;
use radius::core::packet::Packet as RPacket;
use radius::core::{rfc2865, rfc2869};

use crate::harness::*;

/// Encodes a radius-rs Access-Request, adding Message-Authenticator (which
/// radius-rs cannot compute itself) as its last attribute.
fn encode_with_ma(mut p: RPacket) -> Vec<u8> {
    rfc2869::add_message_authenticator(&mut p, &[0u8; 16]);
    let zeroed = p.encode().unwrap();
    let mut mac = <Hmac<Md5> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&zeroed);
    let tag = mac.finalize().into_bytes();
    let mut bytes = zeroed;
    let n = bytes.len();
    bytes[n - 16..].copy_from_slice(&tag);
    bytes
}

fn send(addr: std::net::SocketAddr, req: &[u8]) -> Option<RPacket> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.send_to(req, addr).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf).ok()?;
    assert!(
        RPacket::is_authentic_response(&buf[..n], req, SECRET.as_bytes()),
        "radius-rs says the Response Authenticator is wrong"
    );
    Some(RPacket::decode(&buf[..n], SECRET.as_bytes()).unwrap())
}

#[test]
fn radius_rs_pap_with_message_authenticator() {
    let s = TestServer::start(&format!("{}{USERS}", localhost_client("")));
    let mut p = RPacket::new(RCode::AccessRequest, SECRET.as_bytes());
    rfc2865::add_user_name(&mut p, "alice");
    rfc2865::add_user_password(&mut p, b"wonderland").unwrap();
    let reply = send(s.auth, &encode_with_ma(p)).expect("a reply");
    assert_eq!(reply.get_code(), RCode::AccessAccept);

    let mut p = RPacket::new(RCode::AccessRequest, SECRET.as_bytes());
    rfc2865::add_user_name(&mut p, "alice");
    rfc2865::add_user_password(&mut p, b"wrong").unwrap();
    assert_eq!(
        send(s.auth, &encode_with_ma(p)).unwrap().get_code(),
        RCode::AccessReject
    );
}

#[test]
fn radius_rs_without_message_authenticator_needs_require_no() {
    let s = TestServer::start(&format!(
        "{}{USERS}",
        localhost_client("require_message_authenticator = \"no\"")
    ));
    let mut p = RPacket::new(RCode::AccessRequest, SECRET.as_bytes());
    rfc2865::add_user_name(&mut p, "02:00:00:00:00:01");
    rfc2865::add_user_password(&mut p, b"02:00:00:00:00:01").unwrap();
    rfc2865::add_calling_station_id(&mut p, "02-00-00-00-00-01");
    let reply = send(s.auth, &p.encode().unwrap()).expect("a reply");
    assert_eq!(reply.get_code(), RCode::AccessAccept);
    // Our reply carries Message-Authenticator anyway.
    assert!(rfc2869::lookup_message_authenticator(&reply).is_some());
}

#[test]
fn radius_rs_accounting() {
    let s = TestServer::start(&localhost_client(""));
    let mut p = RPacket::new(RCode::AccountingRequest, SECRET.as_bytes());
    radius::core::rfc2866::add_acct_status_type(&mut p, radius::core::rfc2866::ACCT_STATUS_TYPE_START);
    radius::core::rfc2866::add_acct_session_id(&mut p, "rs-1");
    rfc2865::add_nas_identifier(&mut p, "sw-rs");
    let reply = send(s.acct, &p.encode().unwrap()).expect("a reply");
    assert_eq!(reply.get_code(), RCode::AccountingResponse);
    let store = entra_radius::store::Store::open(&s.state_dir()).unwrap();
    assert!(store.session("sw-rs", "rs-1").unwrap().is_some());
}
