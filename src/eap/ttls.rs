//! EAP-TTLS inner AVPs (RFC 5281 §10.1): the Diameter-style records the
//! peer sends inside the tunnel. Only inner PAP is offered: User-Name (1)
//! and User-Password (2).

use super::EapError;

const AVP_USER_NAME: u32 = 1;
const AVP_USER_PASSWORD: u32 = 2;
const FLAG_VENDOR: u8 = 0x80;
const FLAG_MANDATORY: u8 = 0x40;

/// One AVP as received.
#[derive(Debug, PartialEq, Eq)]
pub struct Avp<'a> {
    pub code: u32,
    pub vendor: Option<u32>,
    pub mandatory: bool,
    pub data: &'a [u8],
}

/// Decodes every AVP in `buf`. Each is code (4), flags (1), length (3,
/// header included, padding not), vendor id (4, if V), data, padding to 4.
pub fn decode_avps(mut buf: &[u8]) -> Result<Vec<Avp<'_>>, EapError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 8 {
            return Err(EapError::BadAvp("truncated AVP header"));
        }
        let code = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let flags = buf[4];
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        let header = if flags & FLAG_VENDOR != 0 { 12 } else { 8 };
        if len < header || len > buf.len() {
            return Err(EapError::BadAvp("AVP length outside the message"));
        }
        let vendor = (flags & FLAG_VENDOR != 0).then(|| u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
        out.push(Avp {
            code,
            vendor,
            mandatory: flags & FLAG_MANDATORY != 0,
            data: &buf[header..len],
        });
        let padded = len.div_ceil(4) * 4;
        buf = &buf[padded.min(buf.len())..];
    }
    Ok(out)
}

/// Inner PAP credentials.
pub struct InnerPap {
    pub user_name: String,
    /// Trailing NULs (the peer pads to 16) removed.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for InnerPap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InnerPap")
            .field("user_name", &self.user_name)
            .finish_non_exhaustive()
    }
}

/// The inner User-Name and User-Password. A mandatory AVP we do not
/// understand is refused (RFC 5281 §10.1: the M bit).
pub fn inner_pap(buf: &[u8]) -> Result<InnerPap, EapError> {
    let mut user = None;
    let mut password = None;
    for avp in decode_avps(buf)? {
        match (avp.vendor, avp.code) {
            (None, AVP_USER_NAME) => user = Some(avp.data),
            (None, AVP_USER_PASSWORD) => password = Some(avp.data),
            _ if avp.mandatory => return Err(EapError::BadAvp("mandatory inner AVP other than PAP")),
            _ => {}
        }
    }
    let user = user.ok_or(EapError::BadAvp("no inner User-Name"))?;
    let password = password.ok_or(EapError::BadAvp("no inner User-Password (only inner PAP is offered)"))?;
    let end = password.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Ok(InnerPap {
        user_name: String::from_utf8_lossy(user).into_owned(),
        password: password[..end].to_vec(),
    })
}

/// Encodes one AVP (tests and the test client).
pub fn encode_avp(out: &mut Vec<u8>, code: u32, mandatory: bool, data: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    let len = 8 + data.len();
    out.push(if mandatory { FLAG_MANDATORY } else { 0 });
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
    out.resize(out.len() + (len.div_ceil(4) * 4 - len), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pap_round_trip_strips_padding() {
        let mut b = Vec::new();
        encode_avp(&mut b, 1, true, b"alice@contoso.com");
        let mut pw = b"Secret1".to_vec();
        pw.resize(16, 0);
        encode_avp(&mut b, 2, true, &pw);
        let p = inner_pap(&b).unwrap();
        assert_eq!(p.user_name, "alice@contoso.com");
        assert_eq!(p.password, b"Secret1");
        // 17 bytes of name → 25 with header → padded to 28.
        assert_eq!(b.len(), 28 + 24);
    }

    #[test]
    fn an_empty_password_is_sixteen_nuls() {
        let mut b = Vec::new();
        encode_avp(&mut b, 1, true, b"bob");
        encode_avp(&mut b, 2, true, &[0; 16]);
        assert!(inner_pap(&b).unwrap().password.is_empty());
    }

    #[test]
    fn bad_avps_are_refused() {
        assert!(decode_avps(&[0, 0, 0, 1, 0x40, 0, 0]).is_err());
        // Length 4 < header.
        assert!(decode_avps(&[0, 0, 0, 1, 0x40, 0, 0, 4]).is_err());
        // Length beyond the buffer.
        assert!(decode_avps(&[0, 0, 0, 1, 0x40, 0, 0, 40, 1, 2]).is_err());
        // Vendor flag with a short header.
        assert!(decode_avps(&[0, 0, 0, 1, 0xc0, 0, 0, 8]).is_err());
        let mut b = Vec::new();
        encode_avp(&mut b, 1, true, b"bob");
        assert!(inner_pap(&b).is_err(), "no password");
        encode_avp(&mut b, 2, true, b"pw");
        encode_avp(&mut b, 79, true, b"\x02\x00\x00\x05\x01");
        assert!(inner_pap(&b).is_err(), "mandatory EAP-Message inside");
        let mut ok = Vec::new();
        encode_avp(&mut ok, 1, true, b"bob");
        encode_avp(&mut ok, 2, true, b"pw");
        encode_avp(&mut ok, 4711, false, b"x");
        assert_eq!(inner_pap(&ok).unwrap().password, b"pw");
    }
}
