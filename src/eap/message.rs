//! EAP over RADIUS (RFC 3579 §3.1): an EAP packet travels in one or more
//! EAP-Message attributes of at most 253 bytes each, concatenated in order.
//!
//! Checking Message-Authenticator, mandatory with any EAP-Message, is the
//! caller's job (`proto::crypto`) and comes before anything here.

use super::EapError;
use super::packet::HEADER_LEN;
use crate::proto::{AttrType, Builder, Packet};

/// The EAP packet carried by `packet`: every EAP-Message value, in order,
/// concatenated. `None` when there is no EAP-Message; the result is not
/// decoded yet (pass it to [`super::EapPacket::decode`]).
pub fn eap_message(packet: &Packet<'_>) -> Option<Vec<u8>> {
    let mut parts = packet.get_all(AttrType::EAP_MESSAGE).peekable();
    parts.peek()?;
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(part);
    }
    Some(out)
}

/// Appends `eap` (one encoded EAP packet) as EAP-Message attributes. An empty
/// or headerless packet is refused: a NAS would drop the reply.
pub fn push_eap_message(b: &mut Builder, eap: &[u8]) -> Result<(), EapError> {
    if eap.len() < HEADER_LEN {
        return Err(EapError::TooShort(eap.len()));
    }
    b.push_split(AttrType::EAP_MESSAGE, eap)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eap::packet::tests::h;
    use crate::eap::{EapPacket, EapType};
    use crate::proto::{ClientSecret, Code};

    fn attrs_of(bytes: &[u8]) -> Vec<usize> {
        let p = Packet::decode(bytes).unwrap();
        p.get_all(AttrType::EAP_MESSAGE).map(<[u8]>::len).collect()
    }

    #[test]
    fn split_and_reassemble_1029_bytes() {
        // A 1024-byte fragment (flags + data) is 1029 bytes of EAP: five
        // attributes, 4×253 + 17 (EAP-NOTES §1).
        let data: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
        let eap = EapPacket::request(3, EapType::TLS, &data).encode().unwrap();
        assert_eq!(eap.len(), 1029);
        let mut b = Builder::new(Code::ACCESS_CHALLENGE, 1, [0; 16]);
        b.push(AttrType::STATE, &[9; 16]).unwrap();
        push_eap_message(&mut b, &eap).unwrap();
        let bytes = b.finish_response(&ClientSecret::new(b"s"));
        assert_eq!(attrs_of(&bytes), [253, 253, 253, 253, 17]);
        let p = Packet::decode(&bytes).unwrap();
        assert_eq!(eap_message(&p).unwrap(), eap);
    }

    #[test]
    fn reassembles_in_order_around_other_attributes() {
        // Access-Request: EAP-Message "02 05 00", User-Name "a", EAP-Message "06 01 61".
        let b = h("01 01 0021 00000000000000000000000000000000 4f05 020500 0103 61 4f05 060161");
        let p = Packet::decode(&b).unwrap();
        let eap = eap_message(&p).unwrap();
        assert_eq!(eap, h("02 05 0006 01 61"));
        assert!(EapPacket::decode(&eap).is_ok());
    }

    #[test]
    fn absent_and_refused() {
        let b = h("01 01 0014 00000000000000000000000000000000");
        assert_eq!(eap_message(&Packet::decode(&b).unwrap()), None);
        let mut builder = Builder::new(Code::ACCESS_CHALLENGE, 1, [0; 16]);
        assert_eq!(push_eap_message(&mut builder, &[]), Err(EapError::TooShort(0)));
        let huge = vec![0u8; 5000];
        assert!(matches!(
            push_eap_message(&mut builder, &huge),
            Err(EapError::Encode(_))
        ));
    }
}
