//! A decision as the authentication history keeps it: the composition root
//! knows both the decision (`auth`) and the record (`store`), so the
//! translation lives here. Cheap: the texts copied into one allocation on
//! the decision path, the numbers left as numbers, then queued without
//! waiting.

use std::net::IpAddr;

use crate::auth::Decision;
use crate::directory::MacAddr;
use crate::proto::attr::as_u32;
use crate::proto::{AttrType, Packet};
use crate::store::history::{NasAddr, NasPort, Pending, RecordParts};

/// The record of `d`, decided for `packet` from `client` at `source`.
pub fn record_of(d: &Decision, packet: &Packet<'_>, client: &str, source: IpAddr, now_ms: i64) -> Pending {
    // Borrowed from the packet when it is UTF-8, as it nearly always is.
    let text = |t: AttrType| packet.get(t).map(String::from_utf8_lossy);
    let calling = text(AttrType::CALLING_STATION_ID);
    let called = text(AttrType::CALLED_STATION_ID);
    let port_id = text(AttrType::NAS_PORT_ID);
    // MAB decisions are about the MAC in the identity; others about the
    // station's.
    let mac = MacAddr::parse(&d.identity)
        .ok()
        .or_else(|| calling.as_deref().and_then(|c| MacAddr::parse(c).ok()))
        .map(|m| m.text());
    let nas_port = match (&port_id, packet.get(AttrType::NAS_PORT).and_then(as_u32)) {
        (Some(id), _) => NasPort::Id(id),
        (None, Some(n)) => NasPort::Number(n),
        (None, None) => NasPort::Absent,
    };
    Pending::new(&RecordParts {
        time_ms: now_ms,
        client,
        nas_addr: NasAddr::Ip(source),
        nas_port,
        called_station_id: called.as_deref(),
        calling_station_id: calling.as_deref(),
        mac: mac.as_ref().map(|m| m.as_str()),
        identity: &d.identity,
        method: d.method.as_str(),
        directory: d.directory.map(|k| k.as_str()),
        accept: d.accept,
        reason: &d.reason,
        vlan: d.reply.as_ref().and_then(|r| r.vlan.as_deref()),
        account: d.account_id(),
        policy_rule: d.policy_rule.and_then(|r| u32::try_from(r).ok()),
    })
}

/// `auth log --mac` takes any notation; the store keeps one.
pub fn normalise_mac(s: &str) -> Option<String> {
    MacAddr::parse(s).ok().map(|m| m.to_string())
}
