//! Dynamic Authorization (RFC 5176): building a Disconnect-Request and
//! verifying the NAS's answer. Bytes in, bytes out: the caller owns the
//! socket, the identifier and the clock (Event-Timestamp is passed in).

use std::net::IpAddr;

use super::crypto::{self, MessageAuth};
use super::{AttrType, Builder, ClientSecret, Code, EncodeError, Packet};

/// Attribute 95, NAS-IPv6-Address (RFC 3162).
const NAS_IPV6_ADDRESS: AttrType = AttrType(95);

/// What identifies the session to the NAS. Every field present is sent;
/// RFC 5176 §3 asks the NAS to match on all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectRequest {
    pub user_name: Option<String>,
    pub acct_session_id: Option<String>,
    pub calling_station_id: Option<String>,
    /// NAS-IP-Address (or NAS-IPv6-Address) when the NAS identified itself
    /// by address, else NAS-Identifier.
    pub nas: Option<NasId>,
    /// Unix seconds (RFC 5176 §3: replay protection).
    pub event_timestamp: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NasId {
    Ip(IpAddr),
    Identifier(String),
}

impl NasId {
    /// The NAS key kept with a session: an address if it parses as one.
    pub fn from_key(key: &str) -> NasId {
        match key.parse::<IpAddr>() {
            Ok(ip) => NasId::Ip(ip),
            Err(_) => NasId::Identifier(key.to_string()),
        }
    }
}

impl DisconnectRequest {
    /// The finished datagram: Message-Authenticator first (computed over the
    /// packet with a zero authenticator), then the Request Authenticator,
    /// MD5 over the packet with sixteen zero octets in its place and the
    /// secret appended (RFC 5176 §3, as for Accounting-Request).
    pub fn encode(&self, identifier: u8, secret: &ClientSecret) -> Result<Vec<u8>, EncodeError> {
        let mut b = Builder::request_with_ma(Code::DISCONNECT_REQUEST, identifier, [0; 16]);
        if let Some(u) = &self.user_name {
            b.push(AttrType::USER_NAME, u.as_bytes())?;
        }
        if let Some(s) = &self.acct_session_id {
            b.push(AttrType::ACCT_SESSION_ID, s.as_bytes())?;
        }
        if let Some(c) = &self.calling_station_id {
            b.push(AttrType::CALLING_STATION_ID, c.as_bytes())?;
        }
        match &self.nas {
            Some(NasId::Ip(IpAddr::V4(ip))) => {
                b.push(AttrType::NAS_IP_ADDRESS, &ip.octets())?;
            }
            Some(NasId::Ip(IpAddr::V6(ip))) => {
                b.push(NAS_IPV6_ADDRESS, &ip.octets())?;
            }
            Some(NasId::Identifier(id)) => {
                b.push(AttrType::NAS_IDENTIFIER, id.as_bytes())?;
            }
            None => {}
        }
        b.push_u32(AttrType::EVENT_TIMESTAMP, self.event_timestamp)?;
        Ok(b.finish_hashed_request(secret))
    }
}

/// A verified answer to a Disconnect-Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReply {
    Ack,
    /// Disconnect-NAK and its Error-Cause (RFC 5176 §3.5), if it gave one.
    Nak(Option<u32>),
}

/// Why an answer was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    #[error("malformed packet")]
    Malformed,
    #[error("not a Disconnect-ACK or Disconnect-NAK (code {0})")]
    WrongCode(u8),
    #[error("Response Authenticator does not verify")]
    BadAuthenticator,
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
}

/// Decodes and verifies an answer to the request whose authenticator was
/// `request_auth`: the Response Authenticator (MD5 over the answer with the
/// Request Authenticator in its place, and the secret), and
/// Message-Authenticator when present. The caller has already matched the
/// identifier and the source address.
pub fn verify_reply(
    datagram: &[u8],
    request_auth: &[u8; 16],
    secret: &ClientSecret,
) -> Result<DisconnectReply, ReplyError> {
    let p = Packet::decode(datagram).map_err(|_| ReplyError::Malformed)?;
    let code = p.code();
    if code != Code::DISCONNECT_ACK && code != Code::DISCONNECT_NAK {
        return Err(ReplyError::WrongCode(code.0));
    }
    if !crypto::verify_response(&p, request_auth, secret) {
        return Err(ReplyError::BadAuthenticator);
    }
    if crypto::check_message_authenticator(&p, secret, Some(request_auth)) == MessageAuth::Invalid {
        return Err(ReplyError::BadMessageAuthenticator);
    }
    if code == Code::DISCONNECT_ACK {
        Ok(DisconnectReply::Ack)
    } else {
        Ok(DisconnectReply::Nak(p.get_u32(AttrType::ERROR_CAUSE)))
    }
}

/// The name RFC 5176 §3.5 gives an Error-Cause value.
pub fn error_cause_name(code: u32) -> &'static str {
    match code {
        201 => "Residual Session Context Removed",
        202 => "Invalid EAP Packet (Ignored)",
        401 => "Unsupported Attribute",
        402 => "Missing Attribute",
        403 => "NAS Identification Mismatch",
        404 => "Invalid Request",
        405 => "Unsupported Service",
        406 => "Unsupported Extension",
        407 => "Invalid Attribute Value",
        501 => "Administratively Prohibited",
        502 => "Request Not Routable (Proxy)",
        503 => "Session Context Not Found",
        504 => "Session Context Not Removable",
        505 => "Other Proxy Processing Error",
        506 => "Resources Unavailable",
        507 => "Request Initiated",
        508 => "Multiple Session Selection Unsupported",
        _ => "unknown",
    }
}

/// What a NAS answers a Disconnect-Request with, for tests here and in
/// `sessions`.
#[cfg(test)]
pub(crate) mod testing {
    use crate::proto::{AttrType, Builder, ClientSecret, Code, Packet};

    /// `code` (ACK or NAK) to `req`, signed, with Error-Cause `cause`.
    pub(crate) fn reply(code: Code, req: &[u8], secret: &ClientSecret, cause: Option<u32>) -> Vec<u8> {
        let p = Packet::decode(req).unwrap();
        let mut b = Builder::reply_to(code, &p, true);
        if let Some(c) = cause {
            b.push_u32(AttrType::ERROR_CAUSE, c).unwrap();
        }
        b.finish_response(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::reply;
    use super::*;
    use md5::{Digest, Md5};

    fn request() -> DisconnectRequest {
        DisconnectRequest {
            user_name: Some("alice@example.com".into()),
            acct_session_id: Some("sess-1".into()),
            calling_station_id: Some("00-10-A4-23-19-C0".into()),
            nas: Some(NasId::Ip("192.0.2.7".parse().unwrap())),
            event_timestamp: 1_700_000_000,
        }
    }

    /// Computed here from the RFC's words, independently of the builder:
    /// MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret).
    #[test]
    fn request_authenticator_is_md5_over_zeroed_packet_and_secret() {
        let secret = ClientSecret::new(b"coa-secret");
        let bytes = request().encode(9, &secret).unwrap();
        let mut h = Md5::new();
        h.update(&bytes[..4]);
        h.update([0u8; 16]);
        h.update(&bytes[20..]);
        h.update(b"coa-secret");
        assert_eq!(&bytes[4..20], h.finalize().as_slice());
        assert_eq!(bytes[0], 40);
        assert_eq!(bytes[1], 9);
        let p = Packet::decode(&bytes).unwrap();
        assert!(crypto::verify_hashed_request(&p, &secret));
        // Message-Authenticator over the packet with a zero authenticator.
        assert_eq!(
            crypto::check_message_authenticator(&p, &secret, Some(&[0; 16])),
            MessageAuth::Valid
        );
        assert_eq!(p.get(AttrType::ACCT_SESSION_ID), Some(&b"sess-1"[..]));
        assert_eq!(p.get(AttrType::NAS_IP_ADDRESS), Some(&[192, 0, 2, 7][..]));
        assert_eq!(p.get_u32(AttrType::EVENT_TIMESTAMP), Some(1_700_000_000));
    }

    /// The `radius` crate (an independent implementation) accepts our
    /// Request Authenticator, and our verifier accepts its answers' digests.
    #[test]
    fn the_radius_crate_agrees() {
        use radius::core::packet::Packet as Other;
        let secret = ClientSecret::new(b"coa-secret");
        let bytes = request().encode(200, &secret).unwrap();
        assert!(Other::is_authentic_request(&bytes, b"coa-secret"));
        assert!(!Other::is_authentic_request(&bytes, b"another-secret"));
        let p = Other::decode(&bytes, b"coa-secret").unwrap();
        assert_eq!(p.get_identifier(), 200);
        assert_eq!(
            radius::core::rfc2865::lookup_user_name(&p).unwrap().unwrap(),
            "alice@example.com"
        );
        // An ACK built by the radius crate verifies with ours.
        let ack = p
            .make_response_packet(radius::core::code::Code::DisconnectACK)
            .encode()
            .unwrap();
        assert!(Other::is_authentic_response(&ack, &bytes, b"coa-secret"));
        let auth: [u8; 16] = bytes[4..20].try_into().unwrap();
        assert_eq!(verify_reply(&ack, &auth, &secret), Ok(DisconnectReply::Ack));
    }

    #[test]
    fn ack_and_nak_verify() {
        let secret = ClientSecret::new(b"coa-secret");
        let req = request().encode(1, &secret).unwrap();
        let auth: [u8; 16] = req[4..20].try_into().unwrap();
        let ack = reply(Code::DISCONNECT_ACK, &req, &secret, None);
        assert_eq!(verify_reply(&ack, &auth, &secret), Ok(DisconnectReply::Ack));
        let nak = reply(Code::DISCONNECT_NAK, &req, &secret, Some(503));
        assert_eq!(verify_reply(&nak, &auth, &secret), Ok(DisconnectReply::Nak(Some(503))));
        // Another secret, another request, a flipped byte: refused.
        let other = ClientSecret::new(b"other");
        assert_eq!(verify_reply(&ack, &auth, &other), Err(ReplyError::BadAuthenticator));
        assert_eq!(verify_reply(&ack, &[7; 16], &secret), Err(ReplyError::BadAuthenticator));
        let mut bad = nak.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(verify_reply(&bad, &auth, &secret), Err(ReplyError::BadAuthenticator));
        assert_eq!(verify_reply(&req, &auth, &secret), Err(ReplyError::WrongCode(40)));
        assert_eq!(verify_reply(&[1, 2, 3], &auth, &secret), Err(ReplyError::Malformed));
    }

    #[test]
    fn a_nas_identifier_is_sent_as_such() {
        let secret = ClientSecret::new(b"s");
        let mut r = request();
        r.nas = Some(NasId::from_key("switch-7"));
        let bytes = r.encode(1, &secret).unwrap();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.get(AttrType::NAS_IDENTIFIER), Some(&b"switch-7"[..]));
        assert_eq!(p.get(AttrType::NAS_IP_ADDRESS), None);
    }
}
