//! EAP packets (RFC 3748 §4, §5): Code and Type as open newtypes, strict
//! decoding into a borrowed view, and encoding.

use std::fmt;

use super::EapError;

/// Code, Identifier, Length.
pub const HEADER_LEN: usize = 4;

/// RFC 3748 §4 Code. An open newtype so logs can name what they got.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EapCode(pub u8);

impl EapCode {
    pub const REQUEST: EapCode = EapCode(1);
    pub const RESPONSE: EapCode = EapCode(2);
    pub const SUCCESS: EapCode = EapCode(3);
    pub const FAILURE: EapCode = EapCode(4);

    fn has_type(self) -> bool {
        self == Self::REQUEST || self == Self::RESPONSE
    }
}

/// RFC 3748 §5 Type (IANA "Method Types"). Unknown values are kept as they
/// are, so a Nak or a log line can carry them back unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EapType(pub u8);

impl EapType {
    pub const IDENTITY: EapType = EapType(1);
    pub const NOTIFICATION: EapType = EapType(2);
    pub const NAK: EapType = EapType(3);
    pub const MD5_CHALLENGE: EapType = EapType(4);
    pub const OTP: EapType = EapType(5);
    pub const GTC: EapType = EapType(6);
    pub const TLS: EapType = EapType(13);
    pub const TTLS: EapType = EapType(21);
    pub const PEAP: EapType = EapType(25);
    pub const MSCHAPV2: EapType = EapType(26);
    pub const TEAP: EapType = EapType(55);
    pub const EXPANDED: EapType = EapType(254);
}

impl fmt::Display for EapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::IDENTITY => "Identity",
            Self::NOTIFICATION => "Notification",
            Self::NAK => "Nak",
            Self::MD5_CHALLENGE => "MD5-Challenge",
            Self::OTP => "OTP",
            Self::GTC => "GTC",
            Self::TLS => "TLS",
            Self::TTLS => "TTLS",
            Self::PEAP => "PEAP",
            Self::MSCHAPV2 => "MSCHAPv2",
            Self::TEAP => "TEAP",
            Self::EXPANDED => "Expanded",
            EapType(n) => return write!(f, "Type-{n}"),
        };
        f.write_str(name)
    }
}

/// A decoded EAP packet borrowing its bytes. `typ` is `Some` exactly for
/// Requests and Responses; `data` is what follows the Type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EapPacket<'a> {
    pub code: EapCode,
    pub identifier: u8,
    pub typ: Option<EapType>,
    pub data: &'a [u8],
}

impl<'a> EapPacket<'a> {
    /// Strict decode: the Length field must equal the bytes given (RFC 3579
    /// §3.1 hands over exactly one reassembled packet, so a mismatch means a
    /// broken NAS or a forged message, and RFC 3748 §4 says discard it).
    pub fn decode(bytes: &'a [u8]) -> Result<EapPacket<'a>, EapError> {
        if bytes.len() < HEADER_LEN {
            return Err(EapError::TooShort(bytes.len()));
        }
        let length = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        if length != bytes.len() {
            return Err(EapError::BadLength {
                length,
                received: bytes.len(),
            });
        }
        let code = EapCode(bytes[0]);
        let identifier = bytes[1];
        match code {
            c if c.has_type() => {
                let Some(&t) = bytes.get(HEADER_LEN) else {
                    return Err(EapError::MissingType);
                };
                Ok(EapPacket {
                    code,
                    identifier,
                    typ: Some(EapType(t)),
                    data: &bytes[HEADER_LEN + 1..],
                })
            }
            EapCode::SUCCESS | EapCode::FAILURE => {
                if bytes.len() != HEADER_LEN {
                    return Err(EapError::TrailingData(bytes.len() - HEADER_LEN));
                }
                Ok(EapPacket {
                    code,
                    identifier,
                    typ: None,
                    data: &[],
                })
            }
            EapCode(c) => Err(EapError::UnknownCode(c)),
        }
    }

    pub fn request(identifier: u8, typ: EapType, data: &'a [u8]) -> Self {
        EapPacket {
            code: EapCode::REQUEST,
            identifier,
            typ: Some(typ),
            data,
        }
    }

    pub fn response(identifier: u8, typ: EapType, data: &'a [u8]) -> Self {
        EapPacket {
            code: EapCode::RESPONSE,
            identifier,
            typ: Some(typ),
            data,
        }
    }

    /// RFC 3748 §4.2: Success and Failure carry the Identifier of the
    /// Response they answer.
    pub fn success(identifier: u8) -> Self {
        EapPacket {
            code: EapCode::SUCCESS,
            identifier,
            typ: None,
            data: &[],
        }
    }

    pub fn failure(identifier: u8) -> Self {
        EapPacket {
            code: EapCode::FAILURE,
            identifier,
            typ: None,
            data: &[],
        }
    }

    /// The packet in wire format. Fails only if it would not fit the 16-bit
    /// Length, or a Request/Response lacks its Type.
    pub fn encode(&self) -> Result<Vec<u8>, EapError> {
        let len = match (self.code.has_type(), self.typ) {
            (true, Some(_)) => HEADER_LEN + 1 + self.data.len(),
            (true, None) => return Err(EapError::MissingType),
            (false, _) if !self.data.is_empty() => return Err(EapError::TrailingData(self.data.len())),
            (false, _) => HEADER_LEN,
        };
        let len16 = u16::try_from(len).map_err(|_| EapError::TooLong(len))?;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&[self.code.0, self.identifier]);
        out.extend_from_slice(&len16.to_be_bytes());
        if self.code.has_type() {
            out.extend(self.typ.map(|t| t.0));
            out.extend_from_slice(self.data);
        }
        Ok(out)
    }

    /// The types a Nak Response asks for instead (RFC 3748 §5.3.1); `None`
    /// if this is not a Nak. A lone 0 means "no alternative".
    pub fn nak_desired(&self) -> Option<Result<Vec<EapType>, EapError>> {
        if self.code != EapCode::RESPONSE || self.typ != Some(EapType::NAK) {
            return None;
        }
        if self.data.is_empty() {
            return Some(Err(EapError::EmptyNak));
        }
        Some(Ok(self.data.iter().map(|&t| EapType(t)).filter(|t| t.0 != 0).collect()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn response_identity() {
        // Response, id 0, length 13, Identity, "@contoso" (eapol_test shape).
        let b = h("02 00 000d 01 40636f6e746f736f");
        let p = EapPacket::decode(&b).unwrap();
        assert_eq!(p.code, EapCode::RESPONSE);
        assert_eq!(p.identifier, 0);
        assert_eq!(p.typ, Some(EapType::IDENTITY));
        assert_eq!(p.data, b"@contoso");
        assert_eq!(p.encode().unwrap(), b);
    }

    #[test]
    fn request_tls_start() {
        let b = h("01 01 0006 0d 20");
        let p = EapPacket::decode(&b).unwrap();
        assert_eq!((p.code, p.identifier, p.typ), (EapCode::REQUEST, 1, Some(EapType::TLS)));
        assert_eq!(p.data, [0x20]);
        assert_eq!(EapPacket::request(1, EapType::TLS, &[0x20]).encode().unwrap(), b);
    }

    #[test]
    fn success_and_failure() {
        let s = h("03 07 0004");
        assert_eq!(EapPacket::decode(&s).unwrap(), EapPacket::success(7));
        assert_eq!(EapPacket::success(7).encode().unwrap(), s);
        let f = h("04 07 0004");
        assert_eq!(EapPacket::decode(&f).unwrap(), EapPacket::failure(7));
        assert_eq!(EapPacket::failure(7).encode().unwrap(), f);
    }

    #[test]
    fn nak() {
        // Response/Nak asking for TTLS then PEAP.
        let b = h("02 03 0007 03 15 19");
        let p = EapPacket::decode(&b).unwrap();
        assert_eq!(p.nak_desired(), Some(Ok(vec![EapType::TTLS, EapType::PEAP])));
        assert_eq!(p.encode().unwrap(), b);
        let nak = |hex: &str| EapPacket::decode(&h(hex)).unwrap().nak_desired();
        assert_eq!(nak("02 03 0006 03 00"), Some(Ok(vec![])));
        assert_eq!(nak("02 03 0005 03"), Some(Err(EapError::EmptyNak)));
        assert_eq!(nak("02 03 0006 01 61"), None);
    }

    #[test]
    fn unknown_type_round_trips() {
        let b = h("02 09 0008 c8 010203");
        let p = EapPacket::decode(&b).unwrap();
        assert_eq!(p.typ, Some(EapType(200)));
        assert_eq!(p.typ.unwrap().to_string(), "Type-200");
        assert_eq!(p.encode().unwrap(), b);
    }

    #[test]
    fn malformed_rejected() {
        let cases: &[(&str, EapError)] = &[
            ("", EapError::TooShort(0)),
            ("02 00 00", EapError::TooShort(3)),
            ("02 00 0004", EapError::MissingType),
            ("02 00 0006 01", EapError::BadLength { length: 6, received: 5 }),
            ("02 00 0005 01 61", EapError::BadLength { length: 5, received: 6 }),
            ("03 00 0005 00", EapError::TrailingData(1)),
            ("05 00 0004", EapError::UnknownCode(5)),
            ("00 00 0004", EapError::UnknownCode(0)),
        ];
        for (hex, want) in cases {
            assert_eq!(EapPacket::decode(&h(hex)), Err(want.clone()), "{hex}");
        }
    }

    #[test]
    fn encode_refuses_what_decode_would() {
        let big = vec![0u8; 70_000];
        assert_eq!(
            EapPacket::request(0, EapType::TLS, &big).encode(),
            Err(EapError::TooLong(70_005))
        );
        let bad = EapPacket {
            code: EapCode::SUCCESS,
            identifier: 0,
            typ: None,
            data: b"x",
        };
        assert_eq!(bad.encode(), Err(EapError::TrailingData(1)));
    }
}
