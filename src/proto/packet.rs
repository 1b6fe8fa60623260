//! Strict decoding of RFC 2865 packets into a borrowed view, and a builder
//! that writes attributes straight into wire format.
//!
//! Decoding checks the whole packet before anything looks at it ("full
//! recognition before processing"): header, Length against the datagram,
//! every attribute's length. After that, attribute iteration cannot fail.

use std::borrow::Cow;

use super::attr::{AttrType, Code, ExtendedAttr, Vsa, parse_vsa};

/// RFC 2865 §3: the smallest and largest legal Length.
pub const MIN_PACKET_LEN: usize = 20;
pub const MAX_PACKET_LEN: usize = 4096;
/// The longest value one attribute can carry (255 minus type and length).
pub const MAX_ATTR_VALUE_LEN: usize = 253;
const HEADER_LEN: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("datagram of {0} bytes is shorter than a RADIUS header")]
    TooShort(usize),
    #[error("Length field {0} is outside 20..=4096")]
    BadLength(usize),
    #[error("Length field {length} exceeds the {received} bytes received")]
    Truncated { length: usize, received: usize },
    #[error("attribute at offset {offset} has invalid length {length}")]
    BadAttribute { offset: usize, length: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("attribute {0} value of {1} bytes exceeds 253")]
    ValueTooLong(u8, usize),
    #[error("packet would exceed 4096 bytes")]
    PacketTooLong,
}

/// One top-level attribute as it appears on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RawAttr<'a> {
    pub typ: AttrType,
    pub value: &'a [u8],
    /// Offset of the attribute's type octet within the packet.
    pub offset: usize,
}

/// A decoded packet borrowing the received datagram (only the first Length
/// bytes: RFC 2865 says octets past Length are padding and are ignored).
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    bytes: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn decode(datagram: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        if datagram.len() < HEADER_LEN {
            return Err(DecodeError::TooShort(datagram.len()));
        }
        let length = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
        if !(MIN_PACKET_LEN..=MAX_PACKET_LEN).contains(&length) {
            return Err(DecodeError::BadLength(length));
        }
        if length > datagram.len() {
            return Err(DecodeError::Truncated {
                length,
                received: datagram.len(),
            });
        }
        let bytes = &datagram[..length];
        let mut offset = HEADER_LEN;
        while offset < length {
            let remaining = length - offset;
            let alen = if remaining >= 2 {
                bytes[offset + 1] as usize
            } else {
                remaining
            };
            if alen < 2 || alen > remaining {
                return Err(DecodeError::BadAttribute { offset, length: alen });
            }
            offset += alen;
        }
        Ok(Packet { bytes })
    }

    pub fn code(&self) -> Code {
        Code(self.bytes[0])
    }

    pub fn identifier(&self) -> u8 {
        self.bytes[1]
    }

    pub fn authenticator(&self) -> &'a [u8; 16] {
        self.bytes[4..20].try_into().expect("length checked in decode")
    }

    /// The packet's bytes up to Length.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn attrs(&self) -> Attrs<'a> {
        Attrs {
            bytes: self.bytes,
            offset: HEADER_LEN,
        }
    }

    /// The first attribute of this type.
    pub fn get(&self, typ: AttrType) -> Option<&'a [u8]> {
        self.attrs().find(|a| a.typ == typ).map(|a| a.value)
    }

    pub fn get_all(&self, typ: AttrType) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.attrs().filter(move |a| a.typ == typ).map(|a| a.value)
    }

    pub fn count(&self, typ: AttrType) -> usize {
        self.attrs().filter(|a| a.typ == typ).count()
    }

    pub fn has(&self, typ: AttrType) -> bool {
        self.attrs().any(|a| a.typ == typ)
    }

    pub fn get_u32(&self, typ: AttrType) -> Option<u32> {
        self.get(typ).and_then(super::attr::as_u32)
    }

    /// Every sub-attribute of every Vendor-Specific attribute that follows the
    /// recommended format.
    pub fn vsas(&self) -> impl Iterator<Item = Vsa<'a>> + use<'a> {
        self.get_all(AttrType::VENDOR_SPECIFIC).filter_map(parse_vsa).flatten()
    }

    /// RFC 6929 extended attributes, with long-extended fragments (M flag)
    /// joined. Malformed ones are skipped here ("invalid attributes", RFC
    /// 6929 §5) but stay in `attrs()`, so they are still re-encoded verbatim.
    pub fn extended(&self) -> Vec<ExtendedAttr<'a>> {
        let mut out: Vec<ExtendedAttr<'a>> = Vec::new();
        let mut pending: Option<(u8, u8, Vec<u8>)> = None;
        for a in self.attrs() {
            if !a.typ.is_extended() {
                continue;
            }
            if !a.typ.is_long_extended() {
                if let Some((&ext_type, value)) = a.value.split_first() {
                    out.push(ExtendedAttr {
                        parent: a.typ.0,
                        ext_type,
                        value: Cow::Borrowed(value),
                    });
                }
                continue;
            }
            if a.value.len() < 2 {
                continue;
            }
            let (ext_type, more, data) = (a.value[0], a.value[1] & 0x80 != 0, &a.value[2..]);
            match pending.as_mut() {
                Some((p, t, buf)) if *p == a.typ.0 && *t == ext_type => buf.extend_from_slice(data),
                _ => {
                    // A new attribute starts; an unterminated earlier one is
                    // malformed and is dropped from this view.
                    pending = Some((a.typ.0, ext_type, data.to_vec()));
                }
            }
            if !more && let Some((parent, ext_type, value)) = pending.take() {
                out.push(ExtendedAttr {
                    parent,
                    ext_type,
                    value: Cow::Owned(value),
                });
            }
        }
        out
    }
}

/// Iterator over the attributes of a decoded packet.
#[derive(Clone)]
pub struct Attrs<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Attrs<'a> {
    type Item = RawAttr<'a>;

    fn next(&mut self) -> Option<RawAttr<'a>> {
        if self.offset + 2 > self.bytes.len() {
            return None;
        }
        let o = self.offset;
        let len = self.bytes[o + 1] as usize;
        // decode() has checked every length, so this slice is in bounds.
        let value = &self.bytes[o + 2..o + len];
        self.offset += len;
        Some(RawAttr {
            typ: AttrType(self.bytes[o]),
            value,
            offset: o,
        })
    }
}

/// Writes a packet in wire format. The header's Length and authenticator are
/// filled in by the `finish_*` functions of `proto::crypto`.
#[derive(Clone, Debug)]
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    pub fn new(code: Code, identifier: u8, authenticator: [u8; 16]) -> Builder {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[code.0, identifier, 0, 0]);
        buf.extend_from_slice(&authenticator);
        Builder { buf }
    }

    /// Reuses an existing buffer (no allocation on the hot path).
    pub fn with_buffer(mut buf: Vec<u8>, code: Code, identifier: u8, authenticator: [u8; 16]) -> Builder {
        buf.clear();
        buf.extend_from_slice(&[code.0, identifier, 0, 0]);
        buf.extend_from_slice(&authenticator);
        Builder { buf }
    }

    /// Copies every attribute of `packet`, known or not, in order.
    pub fn from_packet(packet: &Packet<'_>) -> Builder {
        Builder {
            buf: packet.bytes().to_vec(),
        }
    }

    pub fn code(&self) -> Code {
        Code(self.buf[0])
    }

    pub fn push(&mut self, typ: AttrType, value: &[u8]) -> Result<&mut Self, EncodeError> {
        if value.len() > MAX_ATTR_VALUE_LEN {
            return Err(EncodeError::ValueTooLong(typ.0, value.len()));
        }
        if self.buf.len() + 2 + value.len() > MAX_PACKET_LEN {
            return Err(EncodeError::PacketTooLong);
        }
        self.buf.push(typ.0);
        self.buf.push((value.len() + 2) as u8);
        self.buf.extend_from_slice(value);
        Ok(self)
    }

    pub fn push_u32(&mut self, typ: AttrType, value: u32) -> Result<&mut Self, EncodeError> {
        self.push(typ, &value.to_be_bytes())
    }

    /// A tagged integer (RFC 2868 §3.1): the tag replaces the top octet.
    pub fn push_tagged_u32(&mut self, typ: AttrType, tag: u8, value: u32) -> Result<&mut Self, EncodeError> {
        let b = value.to_be_bytes();
        self.push(typ, &[tag, b[1], b[2], b[3]])
    }

    /// A tagged string (RFC 2868 §3.6): tag octet, then the text.
    pub fn push_tagged(&mut self, typ: AttrType, tag: u8, value: &[u8]) -> Result<&mut Self, EncodeError> {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.push(tag);
        v.extend_from_slice(value);
        self.push(typ, &v)
    }

    /// One Vendor-Specific attribute holding one sub-attribute.
    pub fn push_vsa(&mut self, vendor: u32, typ: u8, value: &[u8]) -> Result<&mut Self, EncodeError> {
        if value.len() > MAX_ATTR_VALUE_LEN - 6 {
            return Err(EncodeError::ValueTooLong(26, value.len()));
        }
        let mut v = Vec::with_capacity(value.len() + 6);
        v.extend_from_slice(&vendor.to_be_bytes());
        v.push(typ);
        v.push((value.len() + 2) as u8);
        v.extend_from_slice(value);
        self.push(AttrType::VENDOR_SPECIFIC, &v)
    }

    /// An RFC 6929 extended attribute; on 245/246 values longer than one
    /// attribute are split with the M flag.
    pub fn push_extended(&mut self, parent: AttrType, ext_type: u8, value: &[u8]) -> Result<&mut Self, EncodeError> {
        if !parent.is_long_extended() {
            if value.len() > MAX_ATTR_VALUE_LEN - 1 {
                return Err(EncodeError::ValueTooLong(parent.0, value.len()));
            }
            let mut v = Vec::with_capacity(value.len() + 1);
            v.push(ext_type);
            v.extend_from_slice(value);
            return self.push(parent, &v);
        }
        let chunk = MAX_ATTR_VALUE_LEN - 2;
        let mut chunks = value.chunks(chunk).peekable();
        if chunks.peek().is_none() {
            return self.push(parent, &[ext_type, 0]);
        }
        while let Some(c) = chunks.next() {
            let more = if chunks.peek().is_some() { 0x80 } else { 0 };
            let mut v = Vec::with_capacity(c.len() + 2);
            v.extend_from_slice(&[ext_type, more]);
            v.extend_from_slice(c);
            self.push(parent, &v)?;
        }
        Ok(self)
    }

    /// Splits a long value over consecutive attributes of one type (EAP-Message).
    pub fn push_split(&mut self, typ: AttrType, value: &[u8]) -> Result<&mut Self, EncodeError> {
        for c in value.chunks(MAX_ATTR_VALUE_LEN) {
            self.push(typ, c)?;
        }
        Ok(self)
    }

    /// Removes every attribute of this type (used to drop a stale
    /// Message-Authenticator before adding a fresh one).
    pub fn remove(&mut self, typ: AttrType) {
        let mut out = Vec::with_capacity(self.buf.len());
        out.extend_from_slice(&self.buf[..HEADER_LEN]);
        let mut o = HEADER_LEN;
        while o + 2 <= self.buf.len() {
            let len = (self.buf[o + 1] as usize).max(2);
            let end = (o + len).min(self.buf.len());
            if self.buf[o] != typ.0 {
                out.extend_from_slice(&self.buf[o..end]);
            }
            o = end;
        }
        self.buf = out;
    }

    pub(crate) fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The bytes written so far (Length not yet set).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn set_length(&mut self) {
        let len = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// RFC 2865 §7.1: "nemo" with password "arctangent", secret "xyzzy5461".
    pub(crate) const RFC2865_7_1_REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
        98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee
        04 06 c0 a8 01 10 05 06 00 00 00 03";

    #[test]
    fn decodes_rfc_example() {
        let b = h(RFC2865_7_1_REQUEST);
        let p = Packet::decode(&b).unwrap();
        assert_eq!(p.code(), Code::ACCESS_REQUEST);
        assert_eq!(p.identifier(), 0);
        assert_eq!(p.get(AttrType::USER_NAME), Some(&b"nemo"[..]));
        assert_eq!(p.get(AttrType::USER_PASSWORD).unwrap().len(), 16);
        assert_eq!(p.get_u32(AttrType::NAS_PORT), Some(3));
        assert_eq!(p.attrs().count(), 4);
    }

    #[test]
    fn bytes_past_length_are_ignored() {
        let mut b = h(RFC2865_7_1_REQUEST);
        b.extend_from_slice(&[0xff; 37]);
        let p = Packet::decode(&b).unwrap();
        assert_eq!(p.bytes().len(), 0x38);
        assert_eq!(p.attrs().count(), 4);
    }

    #[test]
    fn header_rules() {
        assert!(matches!(Packet::decode(&[1; 19]), Err(DecodeError::TooShort(19))));
        let mut b = h(RFC2865_7_1_REQUEST);
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert!(matches!(Packet::decode(&b), Err(DecodeError::BadLength(19))));
        b[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert!(matches!(Packet::decode(&b), Err(DecodeError::BadLength(4097))));
        b[2..4].copy_from_slice(&0x39u16.to_be_bytes());
        assert!(matches!(
            Packet::decode(&b),
            Err(DecodeError::Truncated {
                length: 0x39,
                received: 0x38
            })
        ));
    }

    #[test]
    fn attribute_length_rules() {
        let mut b = h(RFC2865_7_1_REQUEST);
        b[21] = 1; // User-Name with length 1
        assert!(matches!(
            Packet::decode(&b),
            Err(DecodeError::BadAttribute { offset: 20, length: 1 })
        ));
        let mut b = h(RFC2865_7_1_REQUEST);
        b[0x38 - 5] = 7; // NAS-Port runs past Length
        assert!(matches!(Packet::decode(&b), Err(DecodeError::BadAttribute { .. })));
        // A lone trailing octet cannot be an attribute.
        let mut b = h(RFC2865_7_1_REQUEST);
        b.push(5);
        b[2..4].copy_from_slice(&0x39u16.to_be_bytes());
        assert!(matches!(
            Packet::decode(&b),
            Err(DecodeError::BadAttribute {
                offset: 0x38,
                length: 1
            })
        ));
    }

    #[test]
    fn unknown_attributes_round_trip() {
        let mut b = Builder::new(Code::ACCESS_REQUEST, 7, [9; 16]);
        b.push(AttrType(200), b"opaque").unwrap();
        b.push(AttrType::USER_NAME, b"bob").unwrap();
        b.push_vsa(311, 16, &[1, 2, 3]).unwrap();
        b.set_length();
        let bytes = b.into_bytes();
        let p = Packet::decode(&bytes).unwrap();
        let again = Builder::from_packet(&p).into_bytes();
        assert_eq!(bytes, again);
        assert_eq!(p.get(AttrType(200)), Some(&b"opaque"[..]));
        let vsas: Vec<_> = p.vsas().collect();
        assert_eq!(
            vsas,
            vec![Vsa {
                vendor: 311,
                typ: 16,
                value: &[1, 2, 3]
            }]
        );
    }

    #[test]
    fn extended_and_long_extended() {
        let long = vec![0xab; 400];
        let mut b = Builder::new(Code::ACCESS_ACCEPT, 1, [0; 16]);
        b.push_extended(AttrType::EXTENDED_1, 5, b"x").unwrap();
        b.push_extended(AttrType::LONG_EXTENDED_1, 9, &long).unwrap();
        b.push(AttrType::EXTENDED_1, &[]).unwrap(); // malformed: no Extended-Type
        b.set_length();
        let bytes = b.into_bytes();
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(p.count(AttrType::LONG_EXTENDED_1), 2);
        let ext = p.extended();
        assert_eq!(ext.len(), 2);
        assert_eq!(
            ext[0],
            ExtendedAttr {
                parent: 241,
                ext_type: 5,
                value: Cow::Borrowed(b"x")
            }
        );
        assert_eq!(ext[1].parent, 245);
        assert_eq!(ext[1].ext_type, 9);
        assert_eq!(&ext[1].value[..], &long[..]);
        // The malformed one is still there for re-encoding.
        assert_eq!(Builder::from_packet(&p).into_bytes(), bytes);
    }

    #[test]
    fn tagged_values() {
        let mut b = Builder::new(Code::ACCESS_ACCEPT, 1, [0; 16]);
        b.push_tagged_u32(AttrType::TUNNEL_TYPE, 1, 13).unwrap();
        b.push_tagged(AttrType::TUNNEL_PRIVATE_GROUP_ID, 1, b"20").unwrap();
        assert_eq!(&b.as_bytes()[20..], &h("40 06 01 00 00 0d 51 05 01 32 30")[..]);
    }

    #[test]
    fn encode_limits() {
        let mut b = Builder::new(Code::ACCESS_ACCEPT, 1, [0; 16]);
        assert_eq!(
            b.push(AttrType::REPLY_MESSAGE, &[b'a'; 254]).unwrap_err(),
            EncodeError::ValueTooLong(18, 254)
        );
        for _ in 0..15 {
            b.push(AttrType::REPLY_MESSAGE, &[b'a'; 253]).unwrap();
        }
        assert_eq!(
            b.push(AttrType::REPLY_MESSAGE, &[b'a'; 253]).unwrap_err(),
            EncodeError::PacketTooLong
        );
    }

    #[test]
    fn remove_drops_only_that_type() {
        let mut b = Builder::new(Code::ACCESS_ACCEPT, 1, [0; 16]);
        b.push(AttrType::MESSAGE_AUTHENTICATOR, &[0; 16]).unwrap();
        b.push(AttrType::REPLY_MESSAGE, b"hi").unwrap();
        b.remove(AttrType::MESSAGE_AUTHENTICATOR);
        assert_eq!(&b.as_bytes()[20..], &[18, 4, b'h', b'i'][..]);
    }
}
