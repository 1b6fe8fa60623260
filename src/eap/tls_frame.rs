//! EAP-TLS / EAP-TTLS data framing (RFC 5216 §3.1, RFC 5281 §9.1, RFC 9190):
//! the Flags octet, the optional TLS Message Length, and the two directions
//! of fragmentation. A fragment is acknowledged by an empty message of the
//! same Type before the next one is sent (RFC 5216 §2.1.5).

use super::EapError;
use super::packet::{EapPacket, EapType};

/// RFC 5216 §3.1 Flags. The low three bits are the TTLS/PEAP version
/// (RFC 5281 §9.1); EAP-TLS leaves them zero.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// L: a 4-byte TLS Message Length follows.
    pub const LENGTH: u8 = 0x80;
    /// M: more fragments follow.
    pub const MORE: u8 = 0x40;
    /// S: EAP-TLS Start, sent by the server only.
    pub const START: u8 = 0x20;
    pub const VERSION_MASK: u8 = 0x07;

    pub fn length_included(self) -> bool {
        self.0 & Self::LENGTH != 0
    }
    pub fn more(self) -> bool {
        self.0 & Self::MORE != 0
    }
    pub fn start(self) -> bool {
        self.0 & Self::START != 0
    }
    pub fn version(self) -> u8 {
        self.0 & Self::VERSION_MASK
    }
}

/// RFC 5216 suggests 64 KB as the largest TLS message; hostapd refuses more
/// (EAP-NOTES §1). A peer's certificate chain fits well within it.
pub const MAX_TLS_MESSAGE: usize = 64 * 1024;

/// The fragment size used when the config says nothing (EAP-NOTES §1:
/// ≤1024 keeps a RADIUS packet near 1.1 KB for APs limited to 1500 bytes).
pub const DEFAULT_FRAGMENT_SIZE: usize = 1024;
/// Below this, Flags + Length would leave too little room for data to make
/// progress; it is also FreeRADIUS's floor for trusting Framed-MTU.
pub const MIN_FRAGMENT_SIZE: usize = 100;

/// The fragment size to use with one NAS: the configured size, lowered to fit
/// its Framed-MTU.
///
/// The fragment size counts Flags + TLS Message Length + data, as hostapd's
/// `fragment_size` does (eap_server_tls_common.c, EAP-NOTES §1). Framed-MTU
/// (RFC 3580 §3.12, RFC 3579 §2.4) is the largest EAP packet the NAS can
/// carry to the peer, so one EAP-Request is
///   4 (Code, Identifier, Length) + 1 (Type) + fragment
/// bytes, and the fragment must be at most Framed-MTU − 5. Like FreeRADIUS
/// (src/main/tls.c), a Framed-MTU of 100 or less is not believed, and the
/// result never goes below [`MIN_FRAGMENT_SIZE`].
pub fn fragment_size(configured: usize, framed_mtu: Option<u32>) -> usize {
    const EAP_OVERHEAD: usize = 4 + 1;
    let configured = configured.max(MIN_FRAGMENT_SIZE);
    match framed_mtu.map(|m| m as usize) {
        Some(mtu) if mtu > MIN_FRAGMENT_SIZE => configured.min(mtu - EAP_OVERHEAD).max(MIN_FRAGMENT_SIZE),
        _ => configured,
    }
}

/// The Type-Data of an EAP-TLS/TTLS message, decoded: flags, the announced
/// total length if L was set, and this fragment's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TlsData<'a> {
    pub flags: Flags,
    pub total_len: Option<u32>,
    pub data: &'a [u8],
}

impl<'a> TlsData<'a> {
    /// Decodes the bytes after the EAP Type. An empty Type-Data is refused:
    /// even an ACK has its Flags octet.
    pub fn decode(type_data: &'a [u8]) -> Result<Self, EapError> {
        let Some((&flags, rest)) = type_data.split_first() else {
            return Err(EapError::TruncatedTlsLength(0));
        };
        let flags = Flags(flags);
        if !flags.length_included() {
            return Ok(TlsData {
                flags,
                total_len: None,
                data: rest,
            });
        }
        let Some((len, data)) = rest.split_first_chunk::<4>() else {
            return Err(EapError::TruncatedTlsLength(rest.len()));
        };
        Ok(TlsData {
            flags,
            total_len: Some(u32::from_be_bytes(*len)),
            data,
        })
    }

    /// An ACK: no data, no L, no M, no S (version bits allowed).
    pub fn is_ack(&self) -> bool {
        self.data.is_empty() && self.flags.0 & !Flags::VERSION_MASK == 0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.data.len());
        out.push(self.flags.0);
        if let Some(len) = self.total_len {
            out.extend_from_slice(&len.to_be_bytes());
        }
        out.extend_from_slice(self.data);
        out
    }
}

/// The EAP-Request that opens an EAP-TLS or TTLS conversation.
pub fn start_request(identifier: u8, typ: EapType, version: u8) -> Result<Vec<u8>, EapError> {
    let flags = [Flags::START | (version & Flags::VERSION_MASK)];
    EapPacket::request(identifier, typ, &flags).encode()
}

/// Sends one TLS flight to the peer as EAP-Requests, one fragment per round,
/// each after the peer's ACK of the previous one.
///
/// Splitting follows hostapd (EAP-NOTES §1), which every supplicant accepts:
/// if the flight fits one fragment it goes alone, without L (RFC 9190 says
/// don't set it unfragmented); otherwise the first fragment carries L|M and
/// 4 bytes less data, the middle ones M, the last none.
#[derive(Debug)]
pub struct Fragmenter {
    typ: EapType,
    version: u8,
    flight: Vec<u8>,
    sent: usize,
    fragment_size: usize,
    awaiting_ack: bool,
    first: bool,
    /// Fragments go out as EAP-Responses: the peer's side (`test-auth`).
    as_peer: bool,
}

impl Fragmenter {
    /// `fragment_size` as from [`fragment_size`]; an empty `flight` makes one
    /// empty Request (flags only), which TLS 1.3 conversations need.
    pub fn new(typ: EapType, version: u8, flight: Vec<u8>, fragment_size: usize) -> Self {
        Fragmenter {
            typ,
            version: version & Flags::VERSION_MASK,
            flight,
            sent: 0,
            fragment_size: fragment_size.max(MIN_FRAGMENT_SIZE),
            awaiting_ack: false,
            first: true,
            as_peer: false,
        }
    }

    /// The same splitting for a peer's flight: fragments are EAP-Responses
    /// and the server's ACKs are Requests ([`Fragmenter::next_response`]).
    pub fn for_peer(typ: EapType, version: u8, flight: Vec<u8>, fragment_size: usize) -> Self {
        Fragmenter {
            as_peer: true,
            ..Fragmenter::new(typ, version, flight, fragment_size)
        }
    }

    /// Every byte sent (the last fragment's answer is the next TLS input,
    /// not an ACK).
    pub fn is_done(&self) -> bool {
        !self.first && self.sent == self.flight.len()
    }

    /// The next EAP-Request, with the Identifier the caller chose (a new one
    /// every Request, ACK rounds included; EAP-NOTES §1).
    pub fn next_request(&mut self, identifier: u8) -> Result<Vec<u8>, EapError> {
        debug_assert!(!self.as_peer, "a peer's fragments are Responses");
        self.next_fragment(identifier)
    }

    /// The next EAP-Response of a peer's flight, with the Identifier of the
    /// Request it answers.
    pub fn next_response(&mut self, identifier: u8) -> Result<Vec<u8>, EapError> {
        debug_assert!(self.as_peer, "a server's fragments are Requests");
        self.next_fragment(identifier)
    }

    fn next_fragment(&mut self, identifier: u8) -> Result<Vec<u8>, EapError> {
        if self.awaiting_ack {
            return Err(EapError::AwaitingAck);
        }
        if self.is_done() {
            return Err(EapError::FlightDone);
        }
        let remaining = self.flight.len() - self.sent;
        let limit = self.fragment_size;
        let mut flags = self.version;
        let mut total_len = None;
        // Flags octet + the rest fit one fragment.
        let take = if remaining < limit {
            remaining
        } else if self.first {
            flags |= Flags::LENGTH | Flags::MORE;
            // The flight is capped well below 4 GiB by whoever built it;
            // saturate rather than wrap if it ever is not.
            total_len = Some(u32::try_from(self.flight.len()).unwrap_or(u32::MAX));
            limit - 1 - 4
        } else {
            flags |= Flags::MORE;
            limit - 1
        };
        let data = &self.flight[self.sent..self.sent + take];
        let type_data = TlsData {
            flags: Flags(flags),
            total_len,
            data,
        }
        .encode();
        let out = if self.as_peer {
            EapPacket::response(identifier, self.typ, &type_data)
        } else {
            EapPacket::request(identifier, self.typ, &type_data)
        }
        .encode()?;
        self.sent += take;
        self.first = false;
        self.awaiting_ack = self.sent < self.flight.len();
        Ok(out)
    }

    /// The other side's answer to a fragment that had M set: it must be an
    /// ACK of the same Type.
    pub fn ack(&mut self, response: &EapPacket<'_>) -> Result<(), EapError> {
        if !self.awaiting_ack {
            return Err(EapError::UnexpectedAck);
        }
        if response.typ != Some(self.typ) || !TlsData::decode(response.data)?.is_ack() {
            return Err(EapError::NotAnAck);
        }
        self.awaiting_ack = false;
        Ok(())
    }
}

/// What to do after a fragment from the peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembled {
    /// More fragments follow: answer with an ACK ([`ack_request`]).
    SendAck,
    /// The whole TLS message, for the TLS engine.
    Complete(Vec<u8>),
}

/// Collects the peer's fragments into one TLS message (RFC 5216 §2.1.5).
///
/// Refuses a total above the cap (announced or accumulated), data beyond the
/// announced length, a final size different from it, a later L that changes
/// it, S from the peer, and M fragments without data (they would loop on
/// ACKs forever). A missing L on a first fragment is tolerated, as hostapd
/// does; the cap still bounds it.
#[derive(Debug)]
pub struct Reassembler {
    buf: Vec<u8>,
    announced: Option<usize>,
    in_progress: bool,
    cap: usize,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(MAX_TLS_MESSAGE)
    }
}

impl Reassembler {
    pub fn new(cap: usize) -> Self {
        Reassembler {
            buf: Vec::new(),
            announced: None,
            in_progress: false,
            cap,
        }
    }

    /// Whether a fragmented message is half received.
    pub fn in_progress(&self) -> bool {
        self.in_progress
    }

    /// Takes one fragment. After an error the reassembler is reset; the
    /// caller should end the conversation.
    pub fn push(&mut self, frame: &TlsData<'_>) -> Result<Reassembled, EapError> {
        let r = self.push_inner(frame);
        if !matches!(r, Ok(Reassembled::SendAck)) {
            self.reset();
        }
        r
    }

    fn push_inner(&mut self, frame: &TlsData<'_>) -> Result<Reassembled, EapError> {
        if frame.flags.start() {
            return Err(EapError::PeerStart);
        }
        if let Some(total) = frame.total_len {
            let total = total as usize;
            if total > self.cap {
                return Err(EapError::TlsTooLarge {
                    len: total,
                    cap: self.cap,
                });
            }
            match self.announced {
                Some(a) if a != total => {
                    return Err(EapError::TlsLengthMismatch {
                        announced: a,
                        received: total,
                    });
                }
                None if self.in_progress => {
                    // L appearing mid-message: it cannot describe what was
                    // already received without it, so refuse.
                    return Err(EapError::TlsLengthMismatch {
                        announced: total,
                        received: self.buf.len(),
                    });
                }
                _ => self.announced = Some(total),
            }
        }
        if frame.flags.more() && frame.data.is_empty() {
            return Err(EapError::EmptyFragment);
        }
        let received = self.buf.len() + frame.data.len();
        if received > self.cap {
            return Err(EapError::TlsTooLarge {
                len: received,
                cap: self.cap,
            });
        }
        if let Some(announced) = self.announced
            && (received > announced || (!frame.flags.more() && received != announced))
        {
            return Err(EapError::TlsLengthMismatch { announced, received });
        }
        self.buf.extend_from_slice(frame.data);
        if frame.flags.more() {
            self.in_progress = true;
            return Ok(Reassembled::SendAck);
        }
        Ok(Reassembled::Complete(std::mem::take(&mut self.buf)))
    }

    fn reset(&mut self) {
        self.buf = Vec::new();
        self.announced = None;
        self.in_progress = false;
    }
}

/// The server's ACK of a peer fragment: a Request holding only the Flags
/// octet (with the version bits for TTLS).
pub fn ack_request(identifier: u8, typ: EapType, version: u8) -> Result<Vec<u8>, EapError> {
    EapPacket::request(identifier, typ, &[version & Flags::VERSION_MASK]).encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eap::EapCode;
    use crate::eap::packet::tests::h;

    fn flight(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn tls_start_vector() {
        assert_eq!(start_request(1, EapType::TLS, 0).unwrap(), h("01 01 0006 0d 20"));
        // TTLS version 0 (RFC 5281 §9.1).
        assert_eq!(start_request(2, EapType::TTLS, 0).unwrap(), h("01 02 0006 15 20"));
    }

    #[test]
    fn fragment_with_length_vector() {
        // Response/TLS, L|M, TLS Message Length 3000, 3 bytes of data.
        let b = h("02 05 000d 0d c0 00000bb8 160303");
        let p = EapPacket::decode(&b).unwrap();
        let t = TlsData::decode(p.data).unwrap();
        assert_eq!(t.flags, Flags(0xc0));
        assert!(t.flags.length_included() && t.flags.more() && !t.flags.start());
        assert_eq!(t.total_len, Some(3000));
        assert_eq!(t.data, h("160303"));
        assert_eq!(t.encode(), p.data);
    }

    #[test]
    fn tls_data_malformed() {
        assert_eq!(TlsData::decode(&[]), Err(EapError::TruncatedTlsLength(0)));
        assert_eq!(TlsData::decode(&h("80 0000")), Err(EapError::TruncatedTlsLength(2)));
        assert!(TlsData::decode(&h("00")).unwrap().is_ack());
        assert!(TlsData::decode(&h("01")).unwrap().is_ack(), "TTLS version bits");
        assert!(!TlsData::decode(&h("80 00000000")).unwrap().is_ack());
        assert!(!TlsData::decode(&h("00 16")).unwrap().is_ack());
    }

    #[test]
    fn fragment_size_from_framed_mtu() {
        assert_eq!(fragment_size(1024, None), 1024);
        // eapol_test's Framed-MTU 1400 leaves 1024 alone.
        assert_eq!(fragment_size(1024, Some(1400)), 1024);
        // 1000-byte MTU: 4 header + 1 type + 995 fragment.
        assert_eq!(fragment_size(1024, Some(1000)), 995);
        // Absurd MTUs are ignored; tiny configs are raised.
        assert_eq!(fragment_size(1024, Some(64)), 1024);
        assert_eq!(fragment_size(1024, Some(101)), MIN_FRAGMENT_SIZE);
        assert_eq!(fragment_size(10, None), MIN_FRAGMENT_SIZE);
    }

    /// Sends a flight through a Fragmenter and a Reassembler, checking the
    /// wire shape; returns the EAP sizes of the Requests.
    fn round_trip(n: usize, size: usize) -> Vec<usize> {
        let data = flight(n);
        let mut f = Fragmenter::new(EapType::TLS, 0, data.clone(), size);
        let mut r = Reassembler::default();
        let mut sizes = Vec::new();
        let mut id = 10u8;
        loop {
            let req = f.next_request(id).unwrap();
            let p = EapPacket::decode(&req).unwrap();
            assert_eq!(p.identifier, id);
            assert!(req.len() <= size + 5);
            sizes.push(req.len());
            let t = TlsData::decode(p.data).unwrap();
            assert_eq!(t.flags.length_included(), sizes.len() == 1 && t.flags.more());
            match r.push(&t).unwrap() {
                Reassembled::SendAck => {
                    assert_eq!(f.next_request(id + 1), Err(EapError::AwaitingAck));
                    let ack = EapPacket::response(id, EapType::TLS, &[0]);
                    f.ack(&ack).unwrap();
                }
                Reassembled::Complete(got) => {
                    assert_eq!(got, data);
                    assert!(f.is_done());
                    assert_eq!(f.next_request(id + 1), Err(EapError::FlightDone));
                    return sizes;
                }
            }
            id = id.wrapping_add(1);
        }
    }

    /// A peer's flight goes out as Responses and takes the server's ACK
    /// Requests; the same Reassembler takes it back.
    #[test]
    fn a_peer_flight_is_responses() {
        let data = flight(700);
        let mut f = Fragmenter::for_peer(EapType::TLS, 0, data.clone(), 300);
        let mut r = Reassembler::default();
        let mut codes = Vec::new();
        for id in 1u8.. {
            let bytes = f.next_response(id).unwrap();
            let p = EapPacket::decode(&bytes).unwrap();
            codes.push(p.code);
            assert_eq!(p.identifier, id);
            match r.push(&TlsData::decode(p.data).unwrap()).unwrap() {
                Reassembled::SendAck => {
                    let ack = ack_request(id + 1, EapType::TLS, 0).unwrap();
                    f.ack(&EapPacket::decode(&ack).unwrap()).unwrap();
                }
                Reassembled::Complete(got) => {
                    assert_eq!(got, data);
                    break;
                }
            }
        }
        // 295 (after L) + 299 + 106.
        assert_eq!(codes, [EapCode::RESPONSE; 3]);
        // An empty flight is one flags-only Response: the peer's ACK.
        let mut empty = Fragmenter::for_peer(EapType::TLS, 0, Vec::new(), 300);
        assert_eq!(empty.next_response(9).unwrap(), h("02 09 0006 0d 00"));
        assert!(empty.is_done());
    }

    #[test]
    fn three_thousand_bytes_at_1020() {
        // 1015 (after L) + 1019 + 966 = 3000.
        assert_eq!(round_trip(3000, 1020), [1025, 1025, 972]);
    }

    #[test]
    fn unfragmented_has_no_length_flag() {
        assert_eq!(round_trip(1019, 1020), [1025]);
        assert_eq!(round_trip(1020, 1020), [1025, 11]);
        let mut f = Fragmenter::new(EapType::TLS, 0, Vec::new(), 1020);
        assert_eq!(f.next_request(1).unwrap(), h("01 01 0006 0d 00"));
        assert!(f.is_done());
    }

    #[test]
    fn ttls_version_bits_on_every_fragment() {
        let mut f = Fragmenter::new(EapType::TTLS, 1, flight(300), 100);
        let first = f.next_request(1).unwrap();
        assert_eq!(first[5], 0xc1);
        f.ack(&EapPacket::response(1, EapType::TTLS, &[0x01])).unwrap();
        assert_eq!(f.next_request(2).unwrap()[5], 0x41);
    }

    #[test]
    fn ack_checks() {
        let mut f = Fragmenter::new(EapType::TLS, 0, flight(3000), 1020);
        assert_eq!(
            f.ack(&EapPacket::response(1, EapType::TLS, &[0])),
            Err(EapError::UnexpectedAck)
        );
        f.next_request(1).unwrap();
        assert_eq!(
            f.ack(&EapPacket::response(1, EapType::TTLS, &[0])),
            Err(EapError::NotAnAck)
        );
        assert_eq!(
            f.ack(&EapPacket::response(1, EapType::TLS, &[0, 0x16])),
            Err(EapError::NotAnAck)
        );
        assert_eq!(
            f.ack(&EapPacket::response(1, EapType::TLS, &[0x40])),
            Err(EapError::NotAnAck)
        );
        assert_eq!(
            f.ack(&EapPacket::response(1, EapType::TLS, &[])),
            Err(EapError::TruncatedTlsLength(0))
        );
        f.ack(&EapPacket::response(1, EapType::TLS, &[0])).unwrap();
        assert_eq!(ack_request(2, EapType::TLS, 0).unwrap(), h("01 02 0006 0d 00"));
    }

    fn frame(flags: u8, total: Option<u32>, data: &[u8]) -> TlsData<'_> {
        TlsData {
            flags: Flags(flags),
            total_len: total,
            data,
        }
    }

    #[test]
    fn reassembler_refuses_bad_lengths() {
        let mut r = Reassembler::default();
        let too_big = Some(MAX_TLS_MESSAGE as u32 + 1);
        assert!(matches!(
            r.push(&frame(0xc0, too_big, b"x")),
            Err(EapError::TlsTooLarge { .. })
        ));
        // More data than announced.
        assert_eq!(
            r.push(&frame(0xc0, Some(2), b"abc")),
            Err(EapError::TlsLengthMismatch {
                announced: 2,
                received: 3
            })
        );
        // Last fragment short of the announced total.
        assert_eq!(r.push(&frame(0xc0, Some(5), b"ab")), Ok(Reassembled::SendAck));
        assert_eq!(
            r.push(&frame(0x00, None, b"c")),
            Err(EapError::TlsLengthMismatch {
                announced: 5,
                received: 3
            })
        );
        assert!(!r.in_progress(), "reset after an error");
        // A later L that changes the total.
        r.push(&frame(0xc0, Some(5), b"ab")).unwrap();
        assert_eq!(
            r.push(&frame(0xc0, Some(6), b"c")),
            Err(EapError::TlsLengthMismatch {
                announced: 5,
                received: 6
            })
        );
        // L turning up mid-message.
        r.push(&frame(0x40, None, b"ab")).unwrap();
        assert!(r.push(&frame(0x80, Some(3), b"c")).is_err());
        // Start from the peer, empty M fragment.
        assert_eq!(r.push(&frame(0x20, None, b"")), Err(EapError::PeerStart));
        assert_eq!(r.push(&frame(0x40, None, b"")), Err(EapError::EmptyFragment));
    }

    #[test]
    fn reassembler_caps_without_length() {
        let mut r = Reassembler::new(10);
        assert_eq!(r.push(&frame(0x40, None, &[0; 6])), Ok(Reassembled::SendAck));
        assert_eq!(
            r.push(&frame(0x40, None, &[0; 5])),
            Err(EapError::TlsTooLarge { len: 11, cap: 10 })
        );
        // Tolerated: fragments without L, and L repeated on every fragment
        // (BeryJu/radius-eap sends it so).
        assert_eq!(r.push(&frame(0x40, None, b"ab")), Ok(Reassembled::SendAck));
        assert_eq!(
            r.push(&frame(0x00, None, b"c")),
            Ok(Reassembled::Complete(b"abc".to_vec()))
        );
        assert_eq!(r.push(&frame(0xc0, Some(3), b"ab")), Ok(Reassembled::SendAck));
        assert_eq!(
            r.push(&frame(0x80, Some(3), b"c")),
            Ok(Reassembled::Complete(b"abc".to_vec()))
        );
        // Unfragmented with L (RFC 9190: accept both).
        assert_eq!(
            r.push(&frame(0x80, Some(1), b"z")),
            Ok(Reassembled::Complete(b"z".to_vec()))
        );
    }
}
