//! The EAP core (RFC 3748, RFC 3579, RFC 5216 §3.1, RFC 5281 §9.1): EAP
//! packets, EAP-Message reassembly and splitting over RADIUS attributes, the
//! EAP-TLS/TTLS fragment framing, and the table of live conversations keyed
//! by the RADIUS State attribute.
//!
//! Like `proto`, nothing here opens a socket, reads a clock or spawns a task:
//! callers pass bytes, `now` and random State values in. That keeps every
//! exchange replayable in unit tests from hex vectors.
//!
//! `auth::eap` drives it: it reads the EAP-Message with
//! [`message::eap_message`], finds the conversation with
//! [`Conversations::take`] (State + NAS + Calling-Station-Id), runs it as an
//! [`session::EapSession`] (Identity, Nak, fragments both ways, the TLS
//! engine in [`tls`], the TTLS inner PAP in [`ttls`], who it is from the
//! certificate in [`cert_name`]), and answers through
//! [`message::push_eap_message`]. `test_auth::eap_tls` uses the same
//! framing from the peer's side.

pub mod cert_name;
pub mod conversation;
pub mod message;
pub mod packet;
pub mod session;
pub mod tls;
pub mod tls_frame;
pub mod ttls;

pub use conversation::{Conversations, Peer, StateId};
pub use packet::{EapCode, EapPacket, EapType};

/// Everything the EAP layer refuses. Every variant is a reason to discard or
/// reject, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EapError {
    // Packets (RFC 3748 §4).
    #[error("EAP packet of {0} bytes is shorter than its header")]
    TooShort(usize),
    #[error("EAP Length field {length} disagrees with the {received} bytes received")]
    BadLength { length: usize, received: usize },
    #[error("unknown EAP Code {0}")]
    UnknownCode(u8),
    #[error("EAP Request/Response without a Type")]
    MissingType,
    #[error("EAP Success/Failure with {0} bytes after the header")]
    TrailingData(usize),
    #[error("EAP packet of {0} bytes does not fit the 16-bit Length")]
    TooLong(usize),
    #[error("Nak without any desired type")]
    EmptyNak,
    // RADIUS carriage (RFC 3579 §3.1).
    #[error(transparent)]
    Encode(#[from] crate::proto::EncodeError),
    // EAP-TLS/TTLS framing (RFC 5216 §3.1).
    #[error("TLS Message Length flag set but only {0} bytes follow the flags")]
    TruncatedTlsLength(usize),
    #[error("Start flag in a message from the peer")]
    PeerStart,
    #[error("fragment with the More flag but no data")]
    EmptyFragment,
    #[error("TLS message of {len} bytes exceeds the {cap}-byte limit")]
    TlsTooLarge { len: usize, cap: usize },
    #[error("TLS Message Length {announced} disagrees with {received} bytes received")]
    TlsLengthMismatch { announced: usize, received: usize },
    #[error("expected an empty ACK from the peer")]
    NotAnAck,
    #[error("ACK received while no fragment was outstanding")]
    UnexpectedAck,
    #[error("the previous fragment has not been acknowledged")]
    AwaitingAck,
    #[error("every fragment has been sent")]
    FlightDone,
    // Conversations (RFC 2865 §5.24 State).
    #[error("no EAP conversation has this State")]
    UnknownState,
    #[error("the EAP conversation expired")]
    Expired,
    #[error("State presented by another NAS or station")]
    WrongPeer,
    #[error("the EAP conversation is being processed")]
    Busy,
    #[error("too many EAP conversations in progress ({0})")]
    TooManyConversations(usize),
    #[error("State value already in use")]
    StateCollision,
    // EAP-TTLS inner AVPs (RFC 5281 §10.1).
    #[error("inner AVP: {0}")]
    BadAvp(&'static str),
}

#[cfg(test)]
mod fuzz {
    //! Quick fuzz-style check without a new dependency: random and mutated
    //! inputs from a fixed-seed xorshift must be rejected or accepted, never
    //! panic.

    use super::tls_frame::{Reassembler, TlsData};
    use super::*;

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let n = (self.next() % (max as u64 + 1)) as usize;
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn decoders_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut r = Reassembler::new(4096);
        for i in 0..20_000 {
            let mut b = rng.bytes(64);
            // Half the time make the Length field agree, to get past it.
            if i % 2 == 0 && b.len() >= 4 {
                let len = b.len() as u16;
                b[2..4].copy_from_slice(&len.to_be_bytes());
                b[0] = 1 + (b[0] % 4);
            }
            if let Ok(p) = EapPacket::decode(&b) {
                assert_eq!(p.encode().unwrap(), b);
                let _ = p.nak_desired();
            }
            if let Ok(t) = TlsData::decode(&b) {
                let _ = r.push(&t);
            }
        }
    }
}
