//! Sessions from accounting. Today: turning a verified Accounting-Request
//! into the record the store keeps (the session table is written from it).

use std::net::IpAddr;

use crate::proto::attr::{as_ipv4, as_u32};
use crate::proto::{AttrType, Packet};
use crate::store::{AcctRecord, AcctStatus};

/// `now` is the receive time in unix seconds; the caller reads the clock.
pub fn record_from_packet(packet: &Packet<'_>, source: IpAddr, client_name: &str, now: i64) -> AcctRecord {
    let text = |t: AttrType| packet.get(t).map(|v| String::from_utf8_lossy(v).into_owned());
    let u32_of = |t: AttrType| packet.get(t).and_then(as_u32);
    // RFC 2866 §5.3: the NAS's identity is NAS-IP-Address or NAS-Identifier;
    // the source address is the last resort (it changes behind NAT).
    let nas = packet
        .get(AttrType::NAS_IP_ADDRESS)
        .and_then(as_ipv4)
        .map(|ip| ip.to_string())
        .or_else(|| {
            packet
                .get(AttrType::NAS_IPV6_ADDRESS)
                .and_then(|v| <[u8; 16]>::try_from(v).ok())
                .map(|b| std::net::Ipv6Addr::from(b).to_string())
        })
        .or_else(|| text(AttrType::NAS_IDENTIFIER))
        .unwrap_or_else(|| source.to_string());
    let octets = |low: AttrType, giga: AttrType| {
        u32_of(low).map(|l| (u64::from(u32_of(giga).unwrap_or(0)) << 32) | u64::from(l))
    };
    // Event-Timestamp says when it happened; otherwise receive time minus
    // Acct-Delay-Time (RFC 2866 §5.2).
    let event_time = u32_of(AttrType::EVENT_TIMESTAMP)
        .map(i64::from)
        .unwrap_or_else(|| now - i64::from(u32_of(AttrType::ACCT_DELAY_TIME).unwrap_or(0)));
    AcctRecord {
        nas,
        client_name: client_name.to_string(),
        status: AcctStatus::from_code(u32_of(AttrType::ACCT_STATUS_TYPE).unwrap_or(0)),
        session_id: text(AttrType::ACCT_SESSION_ID).unwrap_or_default(),
        user_name: text(AttrType::USER_NAME),
        calling_station_id: text(AttrType::CALLING_STATION_ID),
        called_station_id: text(AttrType::CALLED_STATION_ID),
        framed_ip: packet
            .get(AttrType::FRAMED_IP_ADDRESS)
            .and_then(as_ipv4)
            .map(|i| i.to_string()),
        nas_port: u32_of(AttrType::NAS_PORT),
        nas_port_id: text(AttrType::NAS_PORT_ID),
        session_time: u32_of(AttrType::ACCT_SESSION_TIME),
        input_octets: octets(AttrType::ACCT_INPUT_OCTETS, AttrType::ACCT_INPUT_GIGAWORDS),
        output_octets: octets(AttrType::ACCT_OUTPUT_OCTETS, AttrType::ACCT_OUTPUT_GIGAWORDS),
        input_packets: u32_of(AttrType::ACCT_INPUT_PACKETS),
        output_packets: u32_of(AttrType::ACCT_OUTPUT_PACKETS),
        terminate_cause: u32_of(AttrType::ACCT_TERMINATE_CAUSE),
        event_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Builder, ClientSecret, Code};

    #[test]
    fn fields_are_taken_from_the_packet() {
        let mut b = Builder::new(Code::ACCOUNTING_REQUEST, 1, [0; 16]);
        b.push_u32(AttrType::ACCT_STATUS_TYPE, 3).unwrap();
        b.push(AttrType::ACCT_SESSION_ID, b"sess-1").unwrap();
        b.push(AttrType::NAS_IDENTIFIER, b"sw1").unwrap();
        b.push_u32(AttrType::ACCT_INPUT_OCTETS, 5).unwrap();
        b.push_u32(AttrType::ACCT_INPUT_GIGAWORDS, 2).unwrap();
        b.push_u32(AttrType::ACCT_DELAY_TIME, 10).unwrap();
        let bytes = b.finish_hashed_request(&ClientSecret::new(b"s"));
        let r = record_from_packet(&Packet::decode(&bytes).unwrap(), "10.0.0.1".parse().unwrap(), "c", 1000);
        assert_eq!(r.nas, "sw1");
        assert_eq!(r.status, AcctStatus::InterimUpdate);
        assert_eq!(r.session_id, "sess-1");
        assert_eq!(r.input_octets, Some((2u64 << 32) + 5));
        assert_eq!(r.output_octets, None);
        assert_eq!(r.event_time, 990);
    }
}
