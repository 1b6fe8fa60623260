//! Fuzzes the EAP layer's decoders: `EapPacket::decode` and re-encoding, the
//! EAP-TLS/TTLS Flags and Length framing, the fragment `Reassembler` fed the
//! input as a sequence of fragments, a `Fragmenter` → `Reassembler` round trip
//! of the input as one TLS flight, and EAP-Message carriage over RADIUS
//! attributes. Nothing may panic, and the invariants below must hold.

#![no_main]

use libfuzzer_sys::fuzz_target;

use entra_radius::eap::message::{eap_message, push_eap_message};
use entra_radius::eap::tls_frame::{Fragmenter, MAX_TLS_MESSAGE, Reassembled, Reassembler, TlsData};
use entra_radius::eap::{EapCode, EapPacket, EapType};
use entra_radius::proto::{Builder, ClientSecret, Code, Packet};

/// A small cap, so that the limits are reached often.
const CAP: usize = 4096;

fuzz_target!(|data: &[u8]| {
    one_packet(data);
    fragments(data);
    flight_round_trip(data);
    radius_carriage(data);
});

fn one_packet(data: &[u8]) {
    let Ok(p) = EapPacket::decode(data) else {
        return;
    };
    assert_eq!(p.encode().expect("a decoded packet encodes"), data);
    let typed = p.code == EapCode::REQUEST || p.code == EapCode::RESPONSE;
    assert_eq!(p.typ.is_some(), typed);
    if let Some(Ok(types)) = p.nak_desired() {
        assert!(types.len() <= p.data.len());
        assert!(types.iter().all(|t| t.0 != 0));
    }
    if matches!(p.typ, Some(EapType::TLS | EapType::TTLS))
        && let Ok(frame) = TlsData::decode(p.data)
    {
        assert_eq!(frame.encode(), p.data);
    }
}

/// The input as fragments: a 2-byte length, then that many bytes (mod 512).
fn fragments(data: &[u8]) {
    let mut r = Reassembler::new(CAP);
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let n = (usize::from(u16::from_be_bytes(*len)) % 512).min(tail.len());
        let (fragment, tail) = tail.split_at(n);
        rest = tail;
        let Ok(frame) = TlsData::decode(fragment) else {
            continue;
        };
        assert_eq!(frame.encode(), fragment);
        match r.push(&frame) {
            Ok(Reassembled::SendAck) => {
                assert!(frame.flags.more());
                assert!(r.in_progress());
            }
            Ok(Reassembled::Complete(message)) => {
                assert!(!frame.flags.more());
                assert!(message.len() <= CAP);
                assert!(!r.in_progress());
            }
            Err(_) => assert!(!r.in_progress(), "an error resets the reassembler"),
        }
    }
}

/// The input as one TLS flight, split by a Fragmenter of an input-chosen
/// size and put back together by a Reassembler.
fn flight_round_trip(data: &[u8]) {
    if data.len() > MAX_TLS_MESSAGE {
        return;
    }
    let size = 100 + data.first().map_or(0, |b| usize::from(*b) * 4);
    let mut f = Fragmenter::new(EapType::TLS, 0, data.to_vec(), size);
    let mut r = Reassembler::default();
    for id in 0u8..=255 {
        let request = f.next_request(id).expect("a fragment while the flight lasts");
        assert!(request.len() <= size + 5, "fragment over the size");
        let p = EapPacket::decode(&request).expect("the Fragmenter's output decodes");
        let frame = TlsData::decode(p.data).expect("its framing decodes");
        match r.push(&frame).expect("the Reassembler takes the Fragmenter's output") {
            Reassembled::SendAck => {
                let ack = EapPacket::response(id, EapType::TLS, &[0]);
                f.ack(&ack).expect("an ACK is taken");
            }
            Reassembled::Complete(message) => {
                assert_eq!(message, data);
                assert!(f.is_done());
                return;
            }
        }
    }
    // 256 fragments of at least 95 bytes hold more than 64 KB.
    panic!("the flight did not end");
}

/// The input as one EAP-Message split over attributes of a RADIUS packet:
/// reassembled, it is the input again.
fn radius_carriage(data: &[u8]) {
    let secret = ClientSecret::new(b"xyzzy5461");
    let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, 7, [3u8; 16]);
    if push_eap_message(&mut b, data).is_err() {
        assert!(data.len() < 4 || data.len() > 4000);
        return;
    }
    let bytes = b.finish_request(&secret);
    let p = Packet::decode(&bytes).expect("the built packet decodes");
    assert_eq!(eap_message(&p).as_deref(), Some(data));
}
