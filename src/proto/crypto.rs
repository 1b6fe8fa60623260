//! Authenticators and hidden attributes: Request and Response Authenticators
//! (RFC 2865 §3, RFC 2866 §3), Message-Authenticator (RFC 3579 §3.2),
//! User-Password hiding (RFC 2865 §5.2) and CHAP (RFC 2865 §5.3).
//!
//! Every digest comparison is constant-time.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::attr::AttrType;
use super::md5x::{IV, Md5Batch};
use super::packet::{Builder, EncodeError, MAX_PACKET_LEN, Packet};

type HmacMd5 = Hmac<Md5>;

/// A client's shared secret, with the keyed HMAC-MD5 and MD5 states worked out
/// once so that each packet does only the per-packet part of the digests.
#[derive(Clone)]
pub struct ClientSecret {
    bytes: Vec<u8>,
    hmac: HmacMd5,
    md5_prefix: Md5,
    /// HMAC-MD5's inner and outer states after the padded key (RFC 2104),
    /// where the batched digests ([`HmacBatch`]) start.
    hmac_states: [[u32; 4]; 2],
}

impl ClientSecret {
    pub fn new(secret: &[u8]) -> ClientSecret {
        let hmac = HmacMd5::new_from_slice(secret).expect("HMAC takes keys of any length");
        let mut md5_prefix = Md5::new();
        md5_prefix.update(secret);
        ClientSecret {
            bytes: secret.to_vec(),
            hmac,
            md5_prefix,
            hmac_states: hmac_md5_states(secret),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// RFC 2104: the key (hashed first when longer than a block) padded to a
/// block, XORed with 0x36 for the inner hash and 0x5c for the outer.
fn hmac_md5_states(secret: &[u8]) -> [[u32; 4]; 2] {
    let mut key = [0u8; 64];
    if secret.len() > 64 {
        key[..16].copy_from_slice(&Md5::digest(secret));
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    let mut states = [IV; 2];
    for (state, pad) in states.iter_mut().zip([0x36u8, 0x5c]) {
        let mut block = key.map(|b| b ^ pad);
        md5::block_api::compress(state, &[block]);
        block.zeroize();
    }
    key.zeroize();
    states
}

impl Drop for ClientSecret {
    fn drop(&mut self) {
        self.bytes.zeroize();
        self.hmac_states.zeroize();
    }
}

/// Never prints the secret.
impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientSecret(<{} bytes redacted>)", self.bytes.len())
    }
}

/// A cleartext password taken out of a packet; zeroed when dropped and never
/// printed.
/// A boxed slice rather than a `Vec`: no spare capacity, 8 bytes less for
/// each of the (possibly 100k) local users that keep one.
pub struct Password(Box<[u8]>);

impl Password {
    pub fn new(bytes: Vec<u8>) -> Password {
        Password(bytes.into_boxed_slice())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time equality (the length itself is not hidden).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.ct_eq(other).into()
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What a packet's Message-Authenticator says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MessageAuth {
    Absent,
    Valid,
    /// Wrong digest, wrong length, or more than one of them.
    Invalid,
}

/// Checks Message-Authenticator. `header_auth` replaces the packet's own
/// authenticator in the digest: the Request Authenticator when checking a
/// response, sixteen zeros for Accounting-Request, CoA and Disconnect
/// (RFC 5176 §3.1); `None` for Access-Request and Status-Server.
pub fn check_message_authenticator(
    packet: &Packet<'_>,
    secret: &ClientSecret,
    header_auth: Option<&[u8; 16]>,
) -> MessageAuth {
    let (value, covered) = match ma_site(packet, header_auth) {
        Ok(site) => site,
        Err(verdict) => return verdict,
    };
    let mut mac = secret.hmac.clone();
    for part in covered {
        mac.update(part);
    }
    if mac.verify_slice(&value).is_ok() {
        MessageAuth::Valid
    } else {
        MessageAuth::Invalid
    }
}

/// The bytes a packet's Message-Authenticator covers, in five parts (its
/// own value as zeros, `header_auth` in the authenticator's place), and
/// the value to compare with; `Err` with the verdict when there is nothing
/// to compute: none (`Absent`), more than one, or one of the wrong length.
type MaSite<'a> = ([u8; 16], [&'a [u8]; 5]);

fn ma_site<'a>(packet: &Packet<'a>, header_auth: Option<&'a [u8; 16]>) -> Result<MaSite<'a>, MessageAuth> {
    let mut found = None;
    for a in packet.attrs() {
        if a.typ == AttrType::MESSAGE_AUTHENTICATOR {
            if found.is_some() {
                return Err(MessageAuth::Invalid);
            }
            found = Some(a);
        }
    }
    let ma = found.ok_or(MessageAuth::Absent)?;
    let value: [u8; 16] = ma.value.try_into().map_err(|_| MessageAuth::Invalid)?;
    let bytes = packet.bytes();
    let value_at = ma.offset + 2;
    Ok((
        value,
        [
            &bytes[..4],
            header_auth.unwrap_or(packet.authenticator()),
            &bytes[20..value_at],
            &[0u8; 16],
            &bytes[value_at + 16..],
        ],
    ))
}

/// HMAC-MD5 (RFC 2104) of many messages at once, on [`Md5Batch`]: the
/// inner hashes together, then the outer ones.
#[derive(Default)]
pub struct HmacBatch {
    inner: Md5Batch,
    outer: Md5Batch,
    /// Each message's outer starting state (its client's key).
    outer_states: Vec<[u32; 4]>,
}

impl HmacBatch {
    pub fn clear(&mut self) {
        self.inner.clear();
        self.outer.clear();
        self.outer_states.clear();
    }

    /// Queues the HMAC of `parts` under `secret`; returns its index for
    /// [`HmacBatch::tag`].
    pub fn push(&mut self, secret: &ClientSecret, parts: &[&[u8]]) -> usize {
        self.outer_states.push(secret.hmac_states[1]);
        self.inner.push(secret.hmac_states[0], 64, parts)
    }

    pub fn run(&mut self) {
        self.inner.run();
        self.outer.clear();
        for (i, state) in self.outer_states.iter().enumerate() {
            self.outer.push(*state, 64, &[&self.inner.digest(i)]);
        }
        self.outer.run();
    }

    pub fn tag(&self, i: usize) -> [u8; 16] {
        self.outer.digest(i)
    }
}

/// The Message-Authenticators of a batch of requests, checked together:
/// [`MaBatch::push`] each, [`MaBatch::run`], then [`MaBatch::verdict`] in
/// the order pushed. Gives what [`check_message_authenticator`] gives.
#[derive(Default)]
pub struct MaBatch {
    hmac: HmacBatch,
    checks: Vec<Result<(usize, [u8; 16]), MessageAuth>>,
}

impl MaBatch {
    pub fn clear(&mut self) {
        self.hmac.clear();
        self.checks.clear();
    }

    /// Queues `packet`'s check; returns its index for [`MaBatch::verdict`].
    pub fn push(&mut self, packet: &Packet<'_>, secret: &ClientSecret, header_auth: Option<&[u8; 16]>) -> usize {
        let check = ma_site(packet, header_auth).map(|(value, covered)| (self.hmac.push(secret, &covered), value));
        self.checks.push(check);
        self.checks.len() - 1
    }

    pub fn run(&mut self) {
        self.hmac.run();
    }

    pub fn verdict(&self, i: usize) -> MessageAuth {
        match self.checks[i] {
            Ok((job, value)) => {
                if bool::from(self.hmac.tag(job)[..].ct_eq(&value[..])) {
                    MessageAuth::Valid
                } else {
                    MessageAuth::Invalid
                }
            }
            Err(verdict) => verdict,
        }
    }
}

/// A response built but not yet signed (`Builder::finish_unsigned`), with
/// the secret of the client it goes to.
pub trait Unsigned {
    fn bytes_and_secret(&mut self) -> (&mut [u8], &ClientSecret);
}

/// Signs a batch of responses together: each gets what
/// `Builder::finish_response` gives one, Message-Authenticator (when it
/// has the zeroed attribute) and then the Response Authenticator.
#[derive(Default)]
pub struct ResponseBatch {
    hmac: HmacBatch,
    md5: Md5Batch,
    /// Per response: where its Message-Authenticator's value goes and the
    /// HMAC computing it.
    ma: Vec<Option<(usize, usize)>>,
}

impl ResponseBatch {
    pub fn finish<T: Unsigned>(&mut self, responses: &mut [T]) {
        self.hmac.clear();
        self.ma.clear();
        for r in responses.iter_mut() {
            let (bytes, secret) = r.bytes_and_secret();
            let site = ma_value_offset(bytes).map(|at| (at, self.hmac.push(secret, &[bytes])));
            self.ma.push(site);
        }
        self.hmac.run();
        self.md5.clear();
        for (r, site) in responses.iter_mut().zip(&self.ma) {
            let (bytes, secret) = r.bytes_and_secret();
            if let Some((at, job)) = *site {
                bytes[at..at + 16].copy_from_slice(&self.hmac.tag(job));
            }
            self.md5.push(IV, 0, &[bytes, &secret.bytes]);
        }
        self.md5.run();
        for (i, r) in responses.iter_mut().enumerate() {
            r.bytes_and_secret().0[4..20].copy_from_slice(&self.md5.digest(i));
        }
    }
}

/// Where the value of the first well-formed Message-Authenticator is, in
/// a packet being built.
fn ma_value_offset(buf: &[u8]) -> Option<usize> {
    let mut o = 20;
    while o + 2 <= buf.len() {
        let len = buf[o + 1] as usize;
        if buf[o] == AttrType::MESSAGE_AUTHENTICATOR.0 && len == 18 {
            return Some(o + 2);
        }
        o += len.max(2);
    }
    None
}

/// RFC 2866 §3: the Request Authenticator of Accounting-Request (and of CoA
/// and Disconnect requests, RFC 5176 §2.3) is MD5 over the packet with
/// sixteen zero octets in its place, followed by the secret.
pub fn verify_hashed_request(packet: &Packet<'_>, secret: &ClientSecret) -> bool {
    let bytes = packet.bytes();
    let mut h = Md5::new();
    h.update(&bytes[..4]);
    h.update([0u8; 16]);
    h.update(&bytes[20..]);
    h.update(&secret.bytes);
    let digest = h.finalize();
    digest.as_slice().ct_eq(packet.authenticator()).into()
}

/// Checks a response's Response Authenticator against the request it answers.
pub fn verify_response(response: &Packet<'_>, request_auth: &[u8; 16], secret: &ClientSecret) -> bool {
    let bytes = response.bytes();
    let mut h = Md5::new();
    h.update(&bytes[..4]);
    h.update(request_auth);
    h.update(&bytes[20..]);
    h.update(&secret.bytes);
    let digest = h.finalize();
    digest.as_slice().ct_eq(response.authenticator()).into()
}

/// Recovers a hidden User-Password (RFC 2865 §5.2). `None` when the value
/// is not 16..=128 octets in 16-octet blocks. Trailing NUL padding is removed.
pub fn unhide_password(hidden: &[u8], secret: &ClientSecret, request_auth: &[u8; 16]) -> Option<Password> {
    if hidden.is_empty() || hidden.len() > 128 || !hidden.len().is_multiple_of(16) {
        return None;
    }
    // Decoded on the stack, then copied once into an allocation of the
    // exact length; the stack copy is wiped.
    let mut buf = [0u8; 128];
    let mut prev: &[u8] = request_auth;
    for (i, block) in hidden.chunks_exact(16).enumerate() {
        let mut h = secret.md5_prefix.clone();
        h.update(prev);
        let b = h.finalize();
        for (j, (c, k)) in block.iter().zip(b.iter()).enumerate() {
            buf[i * 16 + j] = c ^ k;
        }
        prev = block;
    }
    let mut len = hidden.len();
    while len > 0 && buf[len - 1] == 0 {
        len -= 1;
    }
    let password = Password(Box::from(&buf[..len]));
    buf.zeroize();
    Some(password)
}

/// Hides a password for an Access-Request (what a NAS or `test-auth` does).
pub fn hide_password(password: &[u8], secret: &ClientSecret, request_auth: &[u8; 16]) -> Result<Vec<u8>, EncodeError> {
    if password.len() > 128 {
        return Err(EncodeError::ValueTooLong(AttrType::USER_PASSWORD.0, password.len()));
    }
    let padded_len = password.len().div_ceil(16).max(1) * 16;
    let mut out = Vec::with_capacity(padded_len);
    let mut padded = password.to_vec();
    padded.resize(padded_len, 0);
    let mut prev = request_auth.to_vec();
    for block in padded.chunks_exact(16) {
        let mut h = secret.md5_prefix.clone();
        h.update(&prev);
        let b = h.finalize();
        let c: Vec<u8> = block.iter().zip(b.iter()).map(|(p, k)| p ^ k).collect();
        out.extend_from_slice(&c);
        prev = c;
    }
    padded.zeroize();
    Ok(out)
}

/// Microsoft's vendor id and the MPPE key attributes (RFC 2548 §2.4).
pub const VENDOR_MICROSOFT: u32 = 311;
pub const MS_MPPE_SEND_KEY: u8 = 16;
pub const MS_MPPE_RECV_KEY: u8 = 17;

/// Encrypts an MS-MPPE-Send-Key or -Recv-Key value (RFC 2548 §2.4.2): the
/// salt (its top bit set), then the key-length octet, the key and zero
/// padding to a multiple of 16, each block XORed with
/// b1 = MD5(secret ‖ Request Authenticator ‖ salt), bi = MD5(secret ‖ c(i−1)).
pub fn mppe_encrypt_key(key: &[u8], salt: [u8; 2], secret: &ClientSecret, request_auth: &[u8; 16]) -> Vec<u8> {
    let salt = [salt[0] | 0x80, salt[1]];
    let mut plain = Vec::with_capacity(1 + key.len() + 15);
    plain.push(key.len() as u8);
    plain.extend_from_slice(key);
    plain.resize(plain.len().div_ceil(16) * 16, 0);
    let mut out = Vec::with_capacity(2 + plain.len());
    out.extend_from_slice(&salt);
    for (i, block) in plain.chunks_exact(16).enumerate() {
        let mut h = secret.md5_prefix.clone();
        if i == 0 {
            h.update(request_auth);
            h.update(salt);
        } else {
            h.update(&out[out.len() - 16..]);
        }
        let b = h.finalize();
        let c: Vec<u8> = block.iter().zip(b.iter()).map(|(p, k)| p ^ k).collect();
        out.extend_from_slice(&c);
    }
    plain.zeroize();
    out
}

/// The inverse of [`mppe_encrypt_key`], as a NAS does it: the key, or
/// `None` when the value is malformed (no salt, not whole blocks, a length
/// octet beyond the data). `test-auth` checks the server's keys with it.
pub fn mppe_decrypt_key(value: &[u8], secret: &ClientSecret, request_auth: &[u8; 16]) -> Option<Vec<u8>> {
    let (salt, cipher) = value.split_first_chunk::<2>()?;
    if cipher.is_empty() || cipher.len() % 16 != 0 {
        return None;
    }
    let mut plain = Vec::with_capacity(cipher.len());
    for (i, block) in cipher.chunks_exact(16).enumerate() {
        let mut h = secret.md5_prefix.clone();
        if i == 0 {
            h.update(request_auth);
            h.update(salt);
        } else {
            h.update(&cipher[(i - 1) * 16..i * 16]);
        }
        let b = h.finalize();
        plain.extend(block.iter().zip(b.iter()).map(|(c, k)| c ^ k));
    }
    let len = usize::from(plain[0]);
    let key = plain.get(1..1 + len).map(<[u8]>::to_vec);
    plain.zeroize();
    key
}

/// The CHAP response a peer computes: MD5(CHAP id, password, challenge).
pub fn chap_response(chap_id: u8, password: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([chap_id]);
    h.update(password);
    h.update(challenge);
    h.finalize().into()
}

/// Verifies CHAP-Password (one octet CHAP id, sixteen octets response) against
/// a cleartext password. The challenge is CHAP-Challenge if the request has
/// one, else the Request Authenticator (RFC 2865 §2.2).
pub fn chap_matches(chap_password: &[u8], challenge: &[u8], cleartext: &[u8]) -> bool {
    if chap_password.len() != 17 {
        return false;
    }
    let expected = chap_response(chap_password[0], cleartext, challenge);
    expected.ct_eq(&chap_password[1..]).into()
}

/// The challenge a CHAP check must use for this request.
pub fn chap_challenge<'a>(packet: &Packet<'a>) -> &'a [u8] {
    packet.get(AttrType::CHAP_CHALLENGE).unwrap_or(packet.authenticator())
}

impl Builder {
    /// Starts a reply to `request`: its identifier, its authenticator in the
    /// header (both digests are computed over it), and a zeroed
    /// Message-Authenticator as the first attribute when `with_ma` is set
    /// (the BlastRADIUS defence puts it first).
    pub fn reply_to(code: super::Code, request: &Packet<'_>, with_ma: bool) -> Builder {
        Builder::reply_into(Vec::new(), code, request, with_ma)
    }

    /// `reply_to` writing into a recycled buffer.
    pub fn reply_into(buf: Vec<u8>, code: super::Code, request: &Packet<'_>, with_ma: bool) -> Builder {
        let mut b = Builder::with_buffer(buf, code, request.identifier(), *request.authenticator());
        if with_ma {
            b.push(AttrType::MESSAGE_AUTHENTICATOR, &[0; 16])
                .expect("first attribute always fits");
        }
        b
    }

    /// A request that will carry Message-Authenticator as its first attribute.
    pub fn request_with_ma(code: super::Code, identifier: u8, authenticator: [u8; 16]) -> Builder {
        let mut b = Builder::new(code, identifier, authenticator);
        b.push(AttrType::MESSAGE_AUTHENTICATOR, &[0; 16])
            .expect("first attribute always fits");
        b
    }

    /// Fills in a zeroed Message-Authenticator, if the packet has one, over the
    /// bytes as they stand.
    fn sign_message_authenticator(&mut self, secret: &ClientSecret) {
        let buf = self.as_bytes();
        if let Some(at) = ma_value_offset(buf) {
            let mut mac = secret.hmac.clone();
            mac.update(buf);
            let tag = mac.finalize().into_bytes();
            self.buf_mut()[at..at + 16].copy_from_slice(&tag);
        }
    }

    /// Finishes a response begun with `reply_to`: Length, Message-Authenticator
    /// (with the Request Authenticator in the header), then the Response
    /// Authenticator over the final bytes.
    pub fn finish_response(mut self, secret: &ClientSecret) -> Vec<u8> {
        self.set_length();
        self.sign_message_authenticator(secret);
        let mut h = Md5::new();
        h.update(self.as_bytes());
        h.update(&secret.bytes);
        let digest = h.finalize();
        self.buf_mut()[4..20].copy_from_slice(&digest);
        self.into_bytes()
    }

    /// Sets Length and leaves the digests to a [`ResponseBatch`], which signs
    /// a batch of responses begun with `reply_to` together.
    pub fn finish_unsigned(mut self) -> Vec<u8> {
        self.set_length();
        self.into_bytes()
    }

    /// Finishes an Access-Request or Status-Server: the caller chose a random
    /// authenticator; only Length and Message-Authenticator remain.
    pub fn finish_request(mut self, secret: &ClientSecret) -> Vec<u8> {
        self.set_length();
        self.sign_message_authenticator(secret);
        self.into_bytes()
    }

    /// Finishes an Accounting-Request, CoA-Request or Disconnect-Request:
    /// Message-Authenticator over zeros, then the hashed Request Authenticator.
    pub fn finish_hashed_request(mut self, secret: &ClientSecret) -> Vec<u8> {
        self.set_length();
        self.buf_mut()[4..20].fill(0);
        self.sign_message_authenticator(secret);
        let mut h = Md5::new();
        h.update(self.as_bytes());
        h.update(&secret.bytes);
        let digest = h.finalize();
        self.buf_mut()[4..20].copy_from_slice(&digest);
        self.into_bytes()
    }

    /// How many bytes the finished packet will have.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Room left before the 4096-byte limit.
    pub fn room(&self) -> usize {
        MAX_PACKET_LEN - self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Code;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    const RFC2865_7_1_REQUEST: &str = "01 00 00 38 0f 40 3f 94 73 97 80 57 bd 83 d5 cb
        98 f4 22 7a 01 06 6e 65 6d 6f 02 12 0d be 70 8d 93 d4 13 ce 31 96 e4 3f 78 2a 0a ee
        04 06 c0 a8 01 10 05 06 00 00 00 03";
    /// The Access-Accept of RFC 2865 §7.1.
    const RFC2865_7_1_ACCEPT: &str = "02 00 00 26 86 fe 22 0e 76 24 ba 2a 10 05 f6 bf
        9b 55 e0 b2 06 06 00 00 00 01 0f 06 00 00 00 00 0e 06 c0 a8 01 03";

    #[test]
    fn rfc2865_password_unhides() {
        let secret = ClientSecret::new(b"xyzzy5461");
        let b = h(RFC2865_7_1_REQUEST);
        let p = Packet::decode(&b).unwrap();
        let pw = unhide_password(p.get(AttrType::USER_PASSWORD).unwrap(), &secret, p.authenticator()).unwrap();
        assert_eq!(pw.as_bytes(), b"arctangent");
        // And hiding it again gives the RFC's bytes.
        let hidden = hide_password(b"arctangent", &secret, p.authenticator()).unwrap();
        assert_eq!(&hidden[..], p.get(AttrType::USER_PASSWORD).unwrap());
    }

    #[test]
    fn rfc2865_response_authenticator() {
        let secret = ClientSecret::new(b"xyzzy5461");
        let req = h(RFC2865_7_1_REQUEST);
        let req = Packet::decode(&req).unwrap();
        let acc = h(RFC2865_7_1_ACCEPT);
        let acc_p = Packet::decode(&acc).unwrap();
        assert!(verify_response(&acc_p, req.authenticator(), &secret));
        assert!(!verify_response(
            &acc_p,
            req.authenticator(),
            &ClientSecret::new(b"wrong")
        ));
        // Building the same reply gives the same bytes.
        let mut b = Builder::reply_to(Code::ACCESS_ACCEPT, &req, false);
        b.push_u32(AttrType::SERVICE_TYPE, 1).unwrap();
        b.push_u32(AttrType(15), 0).unwrap();
        b.push(AttrType(14), &[192, 168, 1, 3]).unwrap();
        assert_eq!(b.finish_response(&secret), acc);
    }

    #[test]
    fn password_lengths() {
        let s = ClientSecret::new(b"s");
        let ra = [7u8; 16];
        assert!(unhide_password(&[], &s, &ra).is_none());
        assert!(unhide_password(&[0; 15], &s, &ra).is_none());
        assert!(unhide_password(&[0; 144], &s, &ra).is_none());
        for len in [0usize, 1, 15, 16, 17, 64, 128] {
            let pw = vec![b'x'; len];
            let hidden = hide_password(&pw, &s, &ra).unwrap();
            assert_eq!(hidden.len(), len.div_ceil(16).max(1) * 16);
            assert_eq!(unhide_password(&hidden, &s, &ra).unwrap().as_bytes(), &pw[..]);
        }
        assert!(hide_password(&[b'x'; 129], &s, &ra).is_err());
    }

    #[test]
    fn message_authenticator_round_trip_and_tamper() {
        let s = ClientSecret::new(b"testing123");
        let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, 3, [5; 16]);
        b.push(AttrType::USER_NAME, b"bob").unwrap();
        let bytes = b.finish_request(&s);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(check_message_authenticator(&p, &s, None), MessageAuth::Valid);
        assert_eq!(
            check_message_authenticator(&p, &ClientSecret::new(b"other"), None),
            MessageAuth::Invalid
        );
        let mut t = bytes.clone();
        *t.last_mut().unwrap() ^= 1;
        assert_eq!(
            check_message_authenticator(&Packet::decode(&t).unwrap(), &s, None),
            MessageAuth::Invalid
        );
        // Two Message-Authenticators are never valid.
        let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, 3, [5; 16]);
        b.push(AttrType::MESSAGE_AUTHENTICATOR, &[0; 16]).unwrap();
        let bytes = b.finish_request(&s);
        assert_eq!(
            check_message_authenticator(&Packet::decode(&bytes).unwrap(), &s, None),
            MessageAuth::Invalid
        );
        // Wrong length.
        let mut b = Builder::new(Code::ACCESS_REQUEST, 3, [5; 16]);
        b.push(AttrType::MESSAGE_AUTHENTICATOR, &[0; 15]).unwrap();
        let bytes = b.finish_request(&s);
        assert_eq!(
            check_message_authenticator(&Packet::decode(&bytes).unwrap(), &s, None),
            MessageAuth::Invalid
        );
        let mut b = Builder::new(Code::ACCESS_REQUEST, 3, [5; 16]);
        b.push(AttrType::USER_NAME, b"x").unwrap();
        let bytes = b.finish_request(&s);
        assert_eq!(
            check_message_authenticator(&Packet::decode(&bytes).unwrap(), &s, None),
            MessageAuth::Absent
        );
    }

    #[test]
    fn batched_hmac_matches_the_hmac_crate_for_every_key_length() {
        // Keys shorter than, equal to and longer than a block (hashed first).
        let secrets: Vec<ClientSecret> = [0usize, 1, 10, 55, 63, 64, 65, 100, 200]
            .iter()
            .map(|&n| ClientSecret::new(&(0..n).map(|i| i as u8 ^ 0xa5).collect::<Vec<_>>()))
            .collect();
        let msgs: Vec<Vec<u8>> = (0..150)
            .step_by(7)
            .map(|n| (0..n).map(|i| (i * 31) as u8).collect())
            .collect();
        let mut batch = HmacBatch::default();
        let mut want = Vec::new();
        for s in &secrets {
            for m in &msgs {
                batch.push(s, &[&m[..m.len() / 2], &m[m.len() / 2..]]);
                let mut mac = HmacMd5::new_from_slice(s.as_bytes()).unwrap();
                mac.update(m);
                want.push(<[u8; 16]>::from(mac.finalize().into_bytes()));
            }
        }
        batch.run();
        for (i, w) in want.iter().enumerate() {
            assert_eq!(&batch.tag(i), w, "message {i}");
        }
    }

    #[test]
    fn batched_checks_give_what_one_check_gives() {
        let s = ClientSecret::new(b"testing123");
        let other = ClientSecret::new(b"a-longer-shared-secret-of-another-client");
        let mut packets: Vec<(Vec<u8>, &ClientSecret)> = Vec::new();
        for (i, secret) in [&s, &other].into_iter().cycle().take(20).enumerate() {
            let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, i as u8, [i as u8; 16]);
            b.push(AttrType::USER_NAME, "u".repeat(i * 9).as_bytes()).unwrap();
            let mut bytes = b.finish_request(secret);
            if i % 5 == 3 {
                *bytes.last_mut().unwrap() ^= 1;
            }
            // Every seventh checked with the wrong secret.
            packets.push((bytes, if i % 7 == 6 { &other } else { secret }));
        }
        // Two, of the wrong length, and none.
        let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, 3, [5; 16]);
        b.push(AttrType::MESSAGE_AUTHENTICATOR, &[0; 16]).unwrap();
        packets.push((b.finish_request(&s), &s));
        let mut b = Builder::new(Code::ACCESS_REQUEST, 3, [5; 16]);
        b.push(AttrType::MESSAGE_AUTHENTICATOR, &[0; 15]).unwrap();
        packets.push((b.finish_request(&s), &s));
        let mut b = Builder::new(Code::ACCESS_REQUEST, 3, [5; 16]);
        b.push(AttrType::USER_NAME, b"x").unwrap();
        packets.push((b.finish_request(&s), &s));

        let mut batch = MaBatch::default();
        for (bytes, secret) in &packets {
            batch.push(&Packet::decode(bytes).unwrap(), secret, None);
        }
        batch.run();
        let mut seen = std::collections::HashSet::new();
        for (i, (bytes, secret)) in packets.iter().enumerate() {
            let one = check_message_authenticator(&Packet::decode(bytes).unwrap(), secret, None);
            assert_eq!(batch.verdict(i), one, "packet {i}");
            seen.insert(format!("{one:?}"));
        }
        assert_eq!(seen.len(), 3, "valid, invalid and absent all tried");
        // Reused after clear: a header authenticator in the packet's place.
        batch.clear();
        let resp = {
            let req = Packet::decode(&packets[0].0).unwrap();
            let mut b = Builder::reply_to(Code::ACCESS_ACCEPT, &req, true);
            b.push(AttrType::REPLY_MESSAGE, b"hi").unwrap();
            b.finish_response(&s)
        };
        let req_auth = [0u8; 16];
        batch.push(&Packet::decode(&resp).unwrap(), &s, Some(&req_auth));
        batch.push(&Packet::decode(&resp).unwrap(), &s, Some(&[0; 16]));
        batch.run();
        assert_eq!(batch.verdict(0), MessageAuth::Valid);
        assert_eq!(batch.verdict(1), MessageAuth::Valid);
    }

    struct Reply<'a>(Vec<u8>, &'a ClientSecret);

    impl Unsigned for Reply<'_> {
        fn bytes_and_secret(&mut self) -> (&mut [u8], &ClientSecret) {
            (&mut self.0, self.1)
        }
    }

    #[test]
    fn batched_signing_gives_what_finish_response_gives() {
        let a = ClientSecret::new(b"testing123");
        let b = ClientSecret::new(&[7u8; 80]);
        let mut unsigned = Vec::new();
        let mut want = Vec::new();
        for i in 0..19u8 {
            let secret = if i % 3 == 0 { &b } else { &a };
            let req_bytes = {
                let mut r = Builder::request_with_ma(Code::ACCESS_REQUEST, i, [i; 16]);
                r.push(AttrType::USER_NAME, b"bob").unwrap();
                r.finish_request(secret)
            };
            let req = Packet::decode(&req_bytes).unwrap();
            // With and without Message-Authenticator, short and long.
            let build = || {
                let mut r = Builder::reply_to(Code::ACCESS_ACCEPT, &req, i % 4 != 1);
                r.push(AttrType::REPLY_MESSAGE, &vec![b'x'; usize::from(i) * 13])
                    .unwrap();
                r
            };
            want.push(build().finish_response(secret));
            unsigned.push(Reply(build().finish_unsigned(), secret));
        }
        ResponseBatch::default().finish(&mut unsigned);
        for (i, (got, want)) in unsigned.iter().zip(&want).enumerate() {
            assert_eq!(&got.0, want, "response {i}");
        }
    }

    /// RFC 3579 §3.2 with an independent computation: HMAC-MD5 over the
    /// packet as sent, with the MA value zeroed.
    #[test]
    fn message_authenticator_matches_plain_hmac() {
        let s = ClientSecret::new(b"xyzzy5461");
        let mut b = Builder::request_with_ma(
            Code::STATUS_SERVER,
            0xda,
            h("8a54f4686fb394c52866e302185d0623").try_into().unwrap(),
        );
        b.push(AttrType::NAS_IDENTIFIER, b"nas1").unwrap();
        let bytes = b.finish_request(&s);
        let mut zeroed = bytes.clone();
        zeroed[22..38].fill(0);
        let mut mac = HmacMd5::new_from_slice(b"xyzzy5461").unwrap();
        mac.update(&zeroed);
        assert_eq!(&bytes[22..38], &mac.finalize().into_bytes()[..]);
        assert_eq!(bytes[20], 80);
    }

    #[test]
    fn response_with_ma_verifies_against_request_authenticator() {
        let s = ClientSecret::new(b"secret");
        let mut rq = Builder::request_with_ma(Code::ACCESS_REQUEST, 9, [0x42; 16]);
        rq.push(AttrType::USER_NAME, b"u").unwrap();
        let rq = rq.finish_request(&s);
        let rq = Packet::decode(&rq).unwrap();
        let mut b = Builder::reply_to(Code::ACCESS_REJECT, &rq, true);
        b.push(AttrType::REPLY_MESSAGE, b"no").unwrap();
        let resp = b.finish_response(&s);
        let rp = Packet::decode(&resp).unwrap();
        assert_eq!(rp.attrs().next().unwrap().typ, AttrType::MESSAGE_AUTHENTICATOR);
        assert!(verify_response(&rp, rq.authenticator(), &s));
        assert_eq!(
            check_message_authenticator(&rp, &s, Some(rq.authenticator())),
            MessageAuth::Valid
        );
        assert_eq!(check_message_authenticator(&rp, &s, None), MessageAuth::Invalid);
    }

    #[test]
    fn accounting_request_authenticator() {
        let s = ClientSecret::new(b"testing123");
        let mut b = Builder::new(Code::ACCOUNTING_REQUEST, 1, [0; 16]);
        b.push_u32(AttrType::ACCT_STATUS_TYPE, 1).unwrap();
        b.push(AttrType::ACCT_SESSION_ID, b"abc").unwrap();
        let bytes = b.finish_hashed_request(&s);
        let p = Packet::decode(&bytes).unwrap();
        assert!(verify_hashed_request(&p, &s));
        assert!(!verify_hashed_request(&p, &ClientSecret::new(b"x")));
        // Independent computation.
        let mut z = bytes.clone();
        z[4..20].fill(0);
        z.extend_from_slice(b"testing123");
        assert_eq!(&bytes[4..20], &Md5::digest(&z)[..]);
        // With a Message-Authenticator, it is computed over zeros.
        let mut b = Builder::request_with_ma(Code::ACCOUNTING_REQUEST, 1, [0; 16]);
        b.push_u32(AttrType::ACCT_STATUS_TYPE, 2).unwrap();
        let bytes = b.finish_hashed_request(&s);
        let p = Packet::decode(&bytes).unwrap();
        assert!(verify_hashed_request(&p, &s));
        assert_eq!(check_message_authenticator(&p, &s, Some(&[0; 16])), MessageAuth::Valid);
    }

    #[test]
    fn chap() {
        let challenge = [0x11u8; 16];
        let resp = chap_response(7, b"secretpw", &challenge);
        let mut attr = vec![7];
        attr.extend_from_slice(&resp);
        assert!(chap_matches(&attr, &challenge, b"secretpw"));
        assert!(!chap_matches(&attr, &challenge, b"secretpx"));
        assert!(!chap_matches(&attr[..16], &challenge, b"secretpw"));
        // Independent: MD5 of id || password || challenge.
        let mut m = vec![7u8];
        m.extend_from_slice(b"secretpw");
        m.extend_from_slice(&challenge);
        assert_eq!(&resp[..], &Md5::digest(&m)[..]);
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = ClientSecret::new(b"hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        let p = Password::new(b"hunter2".to_vec());
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}

#[cfg(test)]
mod mppe_tests {
    use super::*;

    /// Decryption as hostapd's decrypt_ms_key does it, written apart from
    /// both functions under test.
    fn decrypt(value: &[u8], secret: &[u8], request_auth: &[u8; 16]) -> Vec<u8> {
        let (salt, cipher) = value.split_at(2);
        let mut plain = Vec::new();
        let mut prev: Vec<u8> = [request_auth.as_slice(), salt].concat();
        for block in cipher.chunks(16) {
            let mut h = Md5::new();
            h.update(secret);
            h.update(&prev);
            let b = h.finalize();
            plain.extend(block.iter().zip(b.iter()).map(|(c, k)| c ^ k));
            prev = block.to_vec();
        }
        let len = plain[0] as usize;
        plain.get(1..1 + len).map(<[u8]>::to_vec).unwrap_or_default()
    }

    #[test]
    fn the_nas_side_decrypts_what_the_server_encrypts() {
        let secret = ClientSecret::new(b"testing123");
        let auth = [9u8; 16];
        let key: Vec<u8> = (100..132).collect();
        let v = mppe_encrypt_key(&key, [0x01, 0x02], &secret, &auth);
        assert_eq!(mppe_decrypt_key(&v, &secret, &auth).as_deref(), Some(key.as_slice()));
        assert_eq!(decrypt(&v, b"testing123", &auth), key);
        // Wrong secret or authenticator: garbage or refused, never the key.
        assert_ne!(
            mppe_decrypt_key(&v, &ClientSecret::new(b"other"), &auth).as_deref(),
            Some(key.as_slice())
        );
        assert_ne!(
            mppe_decrypt_key(&v, &secret, &[0u8; 16]).as_deref(),
            Some(key.as_slice())
        );
        // Malformed: no salt, a partial block, a length beyond the data.
        assert_eq!(mppe_decrypt_key(&v[..1], &secret, &auth), None);
        assert_eq!(mppe_decrypt_key(&v[..v.len() - 1], &secret, &auth), None);
        assert_eq!(mppe_decrypt_key(&v[..2], &secret, &auth), None);
    }

    #[test]
    fn a_32_byte_key_is_50_bytes_and_decrypts() {
        let secret = ClientSecret::new(b"testing123");
        let auth = [7u8; 16];
        let key: Vec<u8> = (0..32).collect();
        let v = mppe_encrypt_key(&key, [0x12, 0x34], &secret, &auth);
        assert_eq!(v.len(), 2 + 48, "33 bytes of plaintext pad to 48");
        assert_eq!(v[0], 0x92, "salt top bit set");
        assert_eq!(decrypt(&v, b"testing123", &auth), key);
        // The VSA that carries it: 2 + 4 + 1 + 1 + 50 = 58 bytes.
        let mut b = Builder::new(super::super::Code::ACCESS_ACCEPT, 1, auth);
        b.push_vsa(VENDOR_MICROSOFT, MS_MPPE_RECV_KEY, &v).unwrap();
        assert_eq!(b.len(), 20 + 58);
        // Another salt, another ciphertext; a wrong secret gives garbage.
        let w = mppe_encrypt_key(&key, [0x12, 0x35], &secret, &auth);
        assert_ne!(v[2..], w[2..]);
        assert_ne!(decrypt(&v, b"wrong", &auth), key);
    }
}
