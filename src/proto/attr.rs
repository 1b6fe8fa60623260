//! Wire codes as newtypes with named constants, so that values we do not know
//! still round-trip, plus the structured views of RFC 2865 Vendor-Specific,
//! RFC 6929 extended and RFC 2868 tagged attributes.

use std::borrow::Cow;
use std::fmt;

/// A packet code (RFC 2865 §3, RFC 2866, RFC 5176, RFC 5997).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

impl Code {
    pub const ACCESS_REQUEST: Code = Code(1);
    pub const ACCESS_ACCEPT: Code = Code(2);
    pub const ACCESS_REJECT: Code = Code(3);
    pub const ACCOUNTING_REQUEST: Code = Code(4);
    pub const ACCOUNTING_RESPONSE: Code = Code(5);
    pub const ACCESS_CHALLENGE: Code = Code(11);
    pub const STATUS_SERVER: Code = Code(12);
    pub const STATUS_CLIENT: Code = Code(13);
    pub const DISCONNECT_REQUEST: Code = Code(40);
    pub const DISCONNECT_ACK: Code = Code(41);
    pub const DISCONNECT_NAK: Code = Code(42);
    pub const COA_REQUEST: Code = Code(43);
    pub const COA_ACK: Code = Code(44);
    pub const COA_NAK: Code = Code(45);

    /// The name FreeRADIUS and the RFCs use, for logs.
    pub fn name(self) -> Cow<'static, str> {
        let s = match self {
            Code::ACCESS_REQUEST => "Access-Request",
            Code::ACCESS_ACCEPT => "Access-Accept",
            Code::ACCESS_REJECT => "Access-Reject",
            Code::ACCOUNTING_REQUEST => "Accounting-Request",
            Code::ACCOUNTING_RESPONSE => "Accounting-Response",
            Code::ACCESS_CHALLENGE => "Access-Challenge",
            Code::STATUS_SERVER => "Status-Server",
            Code::STATUS_CLIENT => "Status-Client",
            Code::DISCONNECT_REQUEST => "Disconnect-Request",
            Code::DISCONNECT_ACK => "Disconnect-ACK",
            Code::DISCONNECT_NAK => "Disconnect-NAK",
            Code::COA_REQUEST => "CoA-Request",
            Code::COA_ACK => "CoA-ACK",
            Code::COA_NAK => "CoA-NAK",
            Code(n) => return Cow::Owned(format!("Code-{n}")),
        };
        Cow::Borrowed(s)
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A top-level attribute type (one octet on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct AttrType(pub u8);

impl AttrType {
    pub const USER_NAME: AttrType = AttrType(1);
    pub const USER_PASSWORD: AttrType = AttrType(2);
    pub const CHAP_PASSWORD: AttrType = AttrType(3);
    pub const NAS_IP_ADDRESS: AttrType = AttrType(4);
    pub const NAS_PORT: AttrType = AttrType(5);
    pub const SERVICE_TYPE: AttrType = AttrType(6);
    pub const FRAMED_IP_ADDRESS: AttrType = AttrType(8);
    pub const FILTER_ID: AttrType = AttrType(11);
    pub const REPLY_MESSAGE: AttrType = AttrType(18);
    pub const FRAMED_MTU: AttrType = AttrType(12);
    pub const STATE: AttrType = AttrType(24);
    pub const CLASS: AttrType = AttrType(25);
    pub const VENDOR_SPECIFIC: AttrType = AttrType(26);
    pub const SESSION_TIMEOUT: AttrType = AttrType(27);
    pub const CALLED_STATION_ID: AttrType = AttrType(30);
    pub const CALLING_STATION_ID: AttrType = AttrType(31);
    pub const NAS_IDENTIFIER: AttrType = AttrType(32);
    pub const PROXY_STATE: AttrType = AttrType(33);
    pub const ACCT_STATUS_TYPE: AttrType = AttrType(40);
    pub const ACCT_DELAY_TIME: AttrType = AttrType(41);
    pub const ACCT_INPUT_OCTETS: AttrType = AttrType(42);
    pub const ACCT_OUTPUT_OCTETS: AttrType = AttrType(43);
    pub const ACCT_SESSION_ID: AttrType = AttrType(44);
    pub const ACCT_SESSION_TIME: AttrType = AttrType(46);
    pub const ACCT_INPUT_PACKETS: AttrType = AttrType(47);
    pub const ACCT_OUTPUT_PACKETS: AttrType = AttrType(48);
    pub const ACCT_TERMINATE_CAUSE: AttrType = AttrType(49);
    pub const ACCT_INPUT_GIGAWORDS: AttrType = AttrType(52);
    pub const ACCT_OUTPUT_GIGAWORDS: AttrType = AttrType(53);
    pub const EVENT_TIMESTAMP: AttrType = AttrType(55);
    pub const CHAP_CHALLENGE: AttrType = AttrType(60);
    pub const NAS_PORT_TYPE: AttrType = AttrType(61);
    pub const TUNNEL_TYPE: AttrType = AttrType(64);
    pub const TUNNEL_MEDIUM_TYPE: AttrType = AttrType(65);
    pub const EAP_MESSAGE: AttrType = AttrType(79);
    pub const MESSAGE_AUTHENTICATOR: AttrType = AttrType(80);
    pub const TUNNEL_PRIVATE_GROUP_ID: AttrType = AttrType(81);
    pub const NAS_PORT_ID: AttrType = AttrType(87);
    pub const NAS_IPV6_ADDRESS: AttrType = AttrType(95);
    pub const ERROR_CAUSE: AttrType = AttrType(101);
    pub const EXTENDED_1: AttrType = AttrType(241);
    pub const EXTENDED_4: AttrType = AttrType(244);
    pub const LONG_EXTENDED_1: AttrType = AttrType(245);
    pub const LONG_EXTENDED_2: AttrType = AttrType(246);

    /// RFC 6929 §2.1: 241–244 carry an Extended-Type octet.
    pub fn is_extended(self) -> bool {
        (241..=246).contains(&self.0)
    }

    /// RFC 6929 §2.2: 245 and 246 also carry a flags octet (M = more follows).
    pub fn is_long_extended(self) -> bool {
        self.0 == 245 || self.0 == 246
    }
}

/// Service-Type values used by the server.
pub mod service_type {
    pub const LOGIN: u32 = 1;
    pub const FRAMED: u32 = 2;
    pub const CALL_CHECK: u32 = 10;
}

/// Acct-Status-Type values (RFC 2866 §5.1).
pub mod acct_status {
    pub const START: u32 = 1;
    pub const STOP: u32 = 2;
    pub const INTERIM_UPDATE: u32 = 3;
    pub const ACCOUNTING_ON: u32 = 7;
    pub const ACCOUNTING_OFF: u32 = 8;
}

/// Tunnel-Type and Tunnel-Medium-Type values (RFC 2868, RFC 3580 §3.31).
pub mod tunnel {
    pub const TYPE_VLAN: u32 = 13;
    pub const MEDIUM_IEEE_802: u32 = 6;
}

/// One sub-attribute of a Vendor-Specific attribute in the RFC 2865 §5.26
/// recommended format (vendor id, then type/length/value triples).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Vsa<'a> {
    pub vendor: u32,
    pub typ: u8,
    pub value: &'a [u8],
}

/// Splits the value of one Vendor-Specific attribute into its sub-attributes.
/// Returns `None` when the value does not follow the recommended format; the
/// attribute itself is still kept and re-encoded as it came.
pub fn parse_vsa(value: &[u8]) -> Option<Vec<Vsa<'_>>> {
    if value.len() < 4 {
        return None;
    }
    let vendor = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
    let mut rest = &value[4..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 2 {
            return None;
        }
        let len = rest[1] as usize;
        if len < 2 || len > rest.len() {
            return None;
        }
        out.push(Vsa {
            vendor,
            typ: rest[0],
            value: &rest[2..len],
        });
        rest = &rest[len..];
    }
    Some(out)
}

/// An RFC 6929 extended attribute after reassembly of long-extended fragments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExtendedAttr<'a> {
    /// 241..=246.
    pub parent: u8,
    pub ext_type: u8,
    pub value: Cow<'a, [u8]>,
}

/// Reads a 4-octet integer attribute value.
pub fn as_u32(value: &[u8]) -> Option<u32> {
    let b: [u8; 4] = value.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Reads a 4-octet IPv4 address attribute value.
pub fn as_ipv4(value: &[u8]) -> Option<std::net::Ipv4Addr> {
    let b: [u8; 4] = value.try_into().ok()?;
    Some(std::net::Ipv4Addr::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsa_recommended_format_splits() {
        // Cisco (9), Cisco-AVPair (1) = "a=b", then type 2 = 0x01.
        let v = hex::decode("00000009010561 3d62 020301".replace(' ', "")).unwrap();
        let subs = parse_vsa(&v).unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(
            subs[0],
            Vsa {
                vendor: 9,
                typ: 1,
                value: b"a=b"
            }
        );
        assert_eq!(subs[1].value, &[1]);
    }

    #[test]
    fn vsa_in_other_format_is_none() {
        assert!(parse_vsa(&[0, 0, 0]).is_none());
        assert!(parse_vsa(&[0, 0, 0, 9, 1, 9, 0]).is_none());
        assert!(parse_vsa(&[0, 0, 0, 9, 1, 1]).is_none());
    }

    #[test]
    fn unknown_codes_keep_their_number() {
        assert_eq!(Code(99).name(), "Code-99");
        assert_eq!(Code::STATUS_SERVER.to_string(), "Status-Server");
    }
}
