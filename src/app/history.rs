//! A decision as the authentication history keeps it: the composition root
//! knows both the decision (`auth`) and the record (`store`), so the
//! translation lives here. Cheap: a few small strings, copied on the
//! decision path, then queued without waiting.

use std::net::IpAddr;

use crate::auth::Decision;
use crate::directory::MacAddr;
use crate::proto::attr::as_u32;
use crate::proto::{AttrType, Packet};
use crate::store::HistoryRecord;

/// The record of `d`, decided for `packet` from `client` at `source`.
pub fn record_of(d: &Decision, packet: &Packet<'_>, client: &str, source: IpAddr, now_ms: i64) -> HistoryRecord {
    let text = |t: AttrType| packet.get(t).map(|v| String::from_utf8_lossy(v).into_owned());
    let calling = text(AttrType::CALLING_STATION_ID);
    // MAB decisions are about the MAC in the identity; others about the
    // station's.
    let mac = MacAddr::parse(&d.identity)
        .ok()
        .or_else(|| calling.as_deref().and_then(|c| MacAddr::parse(c).ok()))
        .map(|m| m.to_string());
    HistoryRecord {
        time_ms: now_ms,
        client: client.to_string(),
        nas_addr: source.to_string(),
        nas_port: text(AttrType::NAS_PORT_ID)
            .or_else(|| packet.get(AttrType::NAS_PORT).and_then(as_u32).map(|p| p.to_string())),
        called_station_id: text(AttrType::CALLED_STATION_ID),
        calling_station_id: calling,
        mac,
        identity: d.identity.clone(),
        method: d.method.as_str().to_string(),
        directory: d.directory.map(|k| k.as_str().to_string()),
        accept: d.accept,
        reason: d.reason.to_string(),
        vlan: d.reply.as_ref().and_then(|r| r.vlan.clone()),
        account: d.account.clone(),
        policy_rule: d.policy_rule.and_then(|r| u32::try_from(r).ok()),
    }
}

/// `auth log --mac` takes any notation; the store keeps one.
pub fn normalise_mac(s: &str) -> Option<String> {
    MacAddr::parse(s).ok().map(|m| m.to_string())
}
