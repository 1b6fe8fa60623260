//! Fuzzes the RADIUS codec: `Packet::decode` on arbitrary datagrams, then every
//! view of a decoded packet (attributes, VSAs, extended attributes), the
//! authenticator checks, password unhiding, CHAP, re-encoding through `Builder`,
//! and `describe` with the builtin dictionary. Nothing may panic, and the
//! invariants asserted below must hold for every packet `decode` accepts.

#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use entra_radius::proto::attr::parse_vsa;
use entra_radius::proto::crypto::{
    MessageAuth, chap_challenge, chap_matches, chap_response, check_message_authenticator,
    hide_password, unhide_password, verify_hashed_request, verify_response,
};
use entra_radius::proto::dictionary::{Dictionary, describe};
use entra_radius::proto::{AttrType, Builder, ClientSecret, Code, DecodeError, Packet, RawAttr};

const SECRET: &[u8] = b"xyzzy5461";

fn dict() -> &'static Dictionary {
    static DICT: OnceLock<Dictionary> = OnceLock::new();
    DICT.get_or_init(|| Dictionary::builtin().expect("builtin dictionary parses"))
}

fn secret() -> &'static ClientSecret {
    static SECRET_STATE: OnceLock<ClientSecret> = OnceLock::new();
    SECRET_STATE.get_or_init(|| ClientSecret::new(SECRET))
}

/// `inner` is a sub-slice of `outer` (same allocation, in bounds).
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    i >= o && i + inner.len() <= o + outer.len()
}

/// (type, value) pairs, the attribute list compared across a round trip.
fn attr_list(p: &Packet<'_>) -> Vec<(u8, Vec<u8>)> {
    p.attrs().map(|a| (a.typ.0, a.value.to_vec())).collect()
}

fuzz_target!(|data: &[u8]| {
    let p = match Packet::decode(data) {
        Ok(p) => p,
        Err(e) => {
            if data.len() < 20 {
                assert!(matches!(e, DecodeError::TooShort(n) if n == data.len()));
            }
            return;
        }
    };
    check_packet(data, &p);
});

fn check_packet(data: &[u8], p: &Packet<'_>) {
    let secret = secret();
    let bytes = p.bytes();
    let len = bytes.len();

    // Header invariants.
    assert!(data.len() >= 20);
    let length_field = u16::from_be_bytes([data[2], data[3]]) as usize;
    assert_eq!(len, length_field, "bytes() is not Length long");
    assert!((20..=4096).contains(&len));
    assert!(len <= data.len());
    assert_eq!(bytes, &data[..len]);
    assert!(within(data, bytes));
    assert_eq!(p.code().0, data[0]);
    assert_eq!(p.identifier(), data[1]);
    assert_eq!(&p.authenticator()[..], &data[4..20]);

    // Attributes tile the packet exactly, each value inside bytes().
    let attrs: Vec<RawAttr<'_>> = p.attrs().collect();
    let mut next = 20;
    for a in &attrs {
        assert_eq!(a.offset, next, "attributes are not contiguous");
        assert!(a.value.len() <= 253);
        assert!(a.offset + 2 + a.value.len() <= len);
        assert!(within(bytes, a.value), "attribute value outside the packet");
        assert_eq!(a.value.as_ptr() as usize, bytes[a.offset + 2..].as_ptr() as usize);
        assert_eq!(bytes[a.offset], a.typ.0);
        assert_eq!(bytes[a.offset + 1] as usize, a.value.len() + 2);
        next = a.offset + 2 + a.value.len();
        // get() returns the first attribute of a type.
        let first = attrs.iter().find(|b| b.typ == a.typ).unwrap();
        assert_eq!(p.get(a.typ), Some(first.value));
        assert!(p.has(a.typ));
    }
    assert_eq!(next, len, "attributes do not cover the packet");

    // Vendor-Specific sub-attributes.
    let mut n_vsas = 0;
    for v in p.vsas() {
        assert!(within(bytes, v.value), "VSA value outside the packet");
        assert!(v.value.len() <= 253 - 6);
        n_vsas += 1;
    }
    let expected_vsas: usize = attrs
        .iter()
        .filter(|a| a.typ == AttrType::VENDOR_SPECIFIC)
        .filter_map(|a| parse_vsa(a.value))
        .map(|s| s.len())
        .sum();
    assert_eq!(n_vsas, expected_vsas);

    // RFC 6929 extended attributes.
    for e in p.extended() {
        assert!((241..=246).contains(&e.parent));
        let parent = AttrType(e.parent);
        assert!(parent.is_extended());
        match &e.value {
            Cow::Borrowed(v) => {
                assert!(within(bytes, v), "extended value outside the packet");
                assert!(v.len() <= 252);
            }
            Cow::Owned(v) => {
                assert!(parent.is_long_extended());
                assert!(v.len() <= len);
            }
        }
    }

    // Authenticator checks and hidden attributes: must not panic.
    let _ = check_message_authenticator(p, secret, None);
    let _ = check_message_authenticator(p, secret, Some(&[0u8; 16]));
    let _ = verify_hashed_request(p, secret);
    if let Some(hidden) = p.get(AttrType::USER_PASSWORD) {
        let well_formed = !hidden.is_empty() && hidden.len() <= 128 && hidden.len() % 16 == 0;
        match unhide_password(hidden, secret, p.authenticator()) {
            Some(pw) => {
                assert!(well_formed);
                assert!(pw.as_bytes().len() <= hidden.len());
                // Hiding the recovered password again reproduces the prefix of
                // the hidden value (the stripped NULs only shorten the tail).
                let again = hide_password(pw.as_bytes(), secret, p.authenticator())
                    .expect("password of at most 128 octets hides");
                assert_eq!(&again[..], &hidden[..again.len()]);
            }
            None => assert!(!well_formed),
        }
    }
    let challenge = chap_challenge(p);
    assert!(within(bytes, challenge));
    if let Some(chap) = p.get(AttrType::CHAP_PASSWORD) {
        let _ = chap_matches(chap, challenge, b"arctangent");
        if chap.len() == 17 {
            let mut good = [0u8; 17];
            good[0] = chap[0];
            good[1..].copy_from_slice(&chap_response(chap[0], b"arctangent", challenge));
            assert!(chap_matches(&good, challenge, b"arctangent"));
        } else {
            assert!(!chap_matches(chap, challenge, b"arctangent"));
        }
    }

    // Re-encoding as a request keeps everything but the Message-Authenticator
    // value, which finish_request re-signs (the first one of length 18).
    let out = Builder::from_packet(p).finish_request(secret);
    assert_eq!(out.len(), len);
    let q = Packet::decode(&out).expect("re-encoded packet decodes");
    assert_eq!(q.code().0, p.code().0);
    assert_eq!(q.identifier(), p.identifier());
    assert_eq!(q.authenticator(), p.authenticator());
    let signed = attrs
        .iter()
        .position(|a| a.typ == AttrType::MESSAGE_AUTHENTICATOR && a.value.len() == 16);
    let (before, after) = (attr_list(p), attr_list(&q));
    assert_eq!(before.len(), after.len(), "attribute count changed");
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b.0, a.0, "attribute {i} type changed");
        if Some(i) == signed {
            assert_eq!(a.1.len(), 16);
        } else {
            assert_eq!(b.1, a.1, "attribute {i} value changed");
        }
    }

    // With a freshly zeroed Message-Authenticator, each finish_* signs so that
    // the matching check accepts it.
    let mut zeroed = Builder::from_packet(p);
    zeroed.remove(AttrType::MESSAGE_AUTHENTICATOR);
    if zeroed.push(AttrType::MESSAGE_AUTHENTICATOR, &[0; 16]).is_ok() {
        let req = zeroed.clone().finish_request(secret);
        let r = Packet::decode(&req).expect("signed request decodes");
        assert_eq!(check_message_authenticator(&r, secret, None), MessageAuth::Valid);

        let hashed = zeroed.finish_hashed_request(secret);
        let h = Packet::decode(&hashed).expect("hashed request decodes");
        assert!(verify_hashed_request(&h, secret));
        assert_eq!(
            check_message_authenticator(&h, secret, Some(&[0u8; 16])),
            MessageAuth::Valid
        );
    }

    // A response carrying this packet's attributes verifies against it.
    let mut reply = Builder::reply_to(Code::ACCESS_ACCEPT, p, true);
    for a in attrs.iter().filter(|a| a.typ != AttrType::MESSAGE_AUTHENTICATOR) {
        if reply.push(a.typ, a.value).is_err() {
            break;
        }
    }
    let resp = reply.finish_response(secret);
    let r = Packet::decode(&resp).expect("response decodes");
    assert_eq!(r.identifier(), p.identifier());
    assert!(verify_response(&r, p.authenticator(), secret));
    assert_eq!(
        check_message_authenticator(&r, secret, Some(p.authenticator())),
        MessageAuth::Valid
    );

    // describe(): one line per attribute, VSAs in the recommended format
    // expanded into their sub-attributes; passwords never shown.
    let lines = describe(dict(), p);
    let expected_lines: usize = attrs
        .iter()
        .map(|a| {
            if a.typ == AttrType::VENDOR_SPECIFIC {
                parse_vsa(a.value).map_or(1, |s| s.len())
            } else {
                1
            }
        })
        .sum();
    assert_eq!(lines.len(), expected_lines);
    let mut line = 0;
    for a in &attrs {
        if a.typ == AttrType::VENDOR_SPECIFIC
            && let Some(subs) = parse_vsa(a.value)
        {
            line += subs.len();
            continue;
        }
        if a.typ == AttrType::USER_PASSWORD || a.typ == AttrType::CHAP_PASSWORD {
            let shown = &lines[line];
            assert!(shown.ends_with(" = <hidden>"), "password rendered: {shown}");
        }
        line += 1;
    }
    assert_eq!(line, lines.len());
}
