//! From Microsoft Graph objects to replica changes. Pure functions: the
//! worker fetches pages, this module says what each item means.
//!
//! Delta semantics (GRAPH-NOTES): an item may carry only some properties,
//! so only the properties present are changed (a property present as
//! `null` is cleared); `@removed` with reason `changed` is a soft delete and
//! `deleted` is gone for good; an object that reappears without annotation
//! is restored; items may repeat and come in any order, which the replica's
//! idempotent changes absorb.

use std::collections::BTreeMap;

use serde_json::Value;

pub use crate::directory::groups::GroupDelta;
use crate::directory::{AccountKind, AccountPatch, Change, MacAddr};

/// Why an item could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} item without a usable id: {snippet}")]
pub struct MappingError {
    pub kind: &'static str,
    pub snippet: String,
}

fn snippet(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(120).collect()
}

/// `Some(None)` for an explicit null, `Some(Some(s))` for a string, `None`
/// when the property is absent (delta: unchanged).
fn opt_string(item: &Value, key: &str) -> Option<Option<String>> {
    match item.get(key)? {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        other => Some(Some(other.to_string())),
    }
}

fn removed(item: &Value) -> Option<&str> {
    item.get("@removed")
        .map(|r| r.get("reason").and_then(Value::as_str).unwrap_or("deleted"))
}

fn id_of<'a>(item: &'a Value, kind: &'static str) -> Result<&'a str, MappingError> {
    item.get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| MappingError {
            kind,
            snippet: snippet(item),
        })
}

/// `@removed` → soft or hard delete; `None` when the item is not a removal.
fn removal(item: &Value, id: &str) -> Option<Change> {
    let reason = removed(item)?;
    Some(if reason == "changed" {
        Change::SoftDelete {
            object_id: id.to_string(),
        }
    } else {
        Change::HardDelete {
            object_id: id.to_string(),
        }
    })
}

/// The NetBIOS name Windows derives by default from a DNS domain: its first
/// label, upper-cased. Graph does not carry the NetBIOS name on users, and
/// `CONTOSO\alice` is how most NASes and supplicants write them. Where an
/// organisation chose another NetBIOS name, `alice@contoso.local` and the UPN
/// still match.
pub fn netbios_from_dns(dns: &str) -> Option<String> {
    let first = dns.split('.').next()?.trim();
    (!first.is_empty() && first.len() <= 15).then(|| first.to_ascii_uppercase())
}

/// Whether a UPN belongs to one of the selected domains (case-insensitive
/// suffix after the last `@`). An empty selection selects nothing.
pub fn in_scope(upn: &str, selected: &[String]) -> bool {
    let Some((_, domain)) = upn.rsplit_once('@') else {
        return false;
    };
    selected.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

/// One item of `/users/delta`. `selected` scopes users by UPN suffix: a user
/// whose UPN is outside the selection is removed from the replica (it may
/// have moved out of scope); an item without a UPN (a partial change) is
/// applied to whatever the replica holds. `now` stamps the change.
pub fn user_change(item: &Value, selected: &[String], now: i64) -> Result<Change, MappingError> {
    let id = id_of(item, "user")?;
    if let Some(c) = removal(item, id) {
        return Ok(c);
    }
    if let Some(Some(upn)) = opt_string(item, "userPrincipalName")
        && !in_scope(&upn, selected)
    {
        return Ok(Change::HardDelete {
            object_id: id.to_string(),
        });
    }
    let dns = opt_string(item, "onPremisesDomainName");
    let patch = AccountPatch {
        display_name: opt_string(item, "displayName"),
        upn: opt_string(item, "userPrincipalName"),
        sam_account_name: opt_string(item, "onPremisesSamAccountName"),
        netbios_domain: dns.as_ref().map(|d| d.as_deref().and_then(netbios_from_dns)),
        dns_domain: dns,
        enabled: item.get("accountEnabled").and_then(Value::as_bool),
        last_change: Some(Some(now)),
        last_password_change: opt_string(item, "lastPasswordChangeDateTime"),
        soft_deleted: Some(false),
        ..AccountPatch::default()
    };
    Ok(Change::Merge {
        object_id: id.to_string(),
        kind: AccountKind::User,
        patch,
    })
}

/// Device properties kept as account attributes (for policy and
/// `accounts lookup`), by Graph name.
const DEVICE_ATTRIBUTES: &[&str] = &["operatingSystem", "trustType", "isCompliant", "isManaged"];

/// One item of `/devices/delta`. `existing` is the attribute map the
/// replica already holds for this device, so that a partial item does not
/// wipe the attributes it did not carry.
pub fn device_change(
    item: &Value,
    existing: Option<&BTreeMap<String, String>>,
    now: i64,
) -> Result<Change, MappingError> {
    let id = id_of(item, "device")?;
    if let Some(c) = removal(item, id) {
        return Ok(c);
    }
    let mut attributes = existing.cloned().unwrap_or_default();
    let mut touched = false;
    for key in DEVICE_ATTRIBUTES {
        match item.get(*key) {
            None => {}
            Some(Value::Null) => {
                touched |= attributes.remove(*key).is_some();
            }
            Some(Value::String(s)) => {
                attributes.insert(key.to_string(), s.clone());
                touched = true;
            }
            Some(other) => {
                attributes.insert(key.to_string(), other.to_string());
                touched = true;
            }
        }
    }
    let patch = AccountPatch {
        display_name: opt_string(item, "displayName"),
        device_id: opt_string(item, "deviceId").map(|d| d.map(|s| s.to_ascii_lowercase())),
        enabled: item.get("accountEnabled").and_then(Value::as_bool),
        attributes: touched.then_some(attributes),
        last_change: Some(Some(now)),
        soft_deleted: Some(false),
        ..AccountPatch::default()
    };
    Ok(Change::Merge {
        object_id: id.to_string(),
        kind: AccountKind::Device,
        patch,
    })
}

/// The MAC addresses of one Intune managed device (Wi-Fi and Ethernet),
/// keyed by the Entra `deviceId` they belong to. Intune writes them as 12
/// hex digits; empty strings and all-zero placeholders are skipped.
pub fn managed_device_macs(item: &Value) -> Option<(String, Vec<MacAddr>)> {
    managed_device(item).map(|(device_id, macs, _)| (device_id, macs))
}

pub use crate::directory::account::INTUNE_CERT_PREFIX;

/// [`managed_device_macs`] plus the managed device's own id (lower case),
/// which Intune certificates carry as `IntuneDeviceId://ID`.
pub fn managed_device(item: &Value) -> Option<(String, Vec<MacAddr>, Option<String>)> {
    let managed_id = item
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase);
    let device_id = item
        .get("azureADDeviceId")
        .and_then(Value::as_str)?
        .to_ascii_lowercase();
    if device_id.is_empty() || device_id == "00000000-0000-0000-0000-000000000000" {
        return None;
    }
    let mut macs = Vec::new();
    for key in ["wiFiMacAddress", "ethernetMacAddress"] {
        if let Some(s) = item.get(key).and_then(Value::as_str)
            && let Ok(m) = MacAddr::parse(s.trim())
            && m.0 != [0; 6]
            && !macs.contains(&m)
        {
            macs.push(m);
        }
    }
    Some((device_id, macs, managed_id))
}

pub fn group_delta(item: &Value) -> Result<GroupDelta, MappingError> {
    let id = id_of(item, "group")?.to_string();
    if let Some(reason) = removed(item) {
        return Ok(GroupDelta {
            id,
            removed: Some(reason == "deleted"),
            ..GroupDelta::default()
        });
    }
    let mut members = Vec::new();
    if let Some(list) = item.get("members@delta").and_then(Value::as_array) {
        for m in list {
            let Some(mid) = m.get("id").and_then(Value::as_str) else {
                continue;
            };
            let typ = m
                .get("@odata.type")
                .and_then(Value::as_str)
                .and_then(|t| t.strip_prefix("#microsoft.graph."))
                .unwrap_or("unknown")
                .to_string();
            members.push((mid.to_string(), typ, m.get("@removed").is_none()));
        }
    }
    Ok(GroupDelta {
        id,
        display_name: item.get("displayName").and_then(Value::as_str).map(String::from),
        removed: None,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merge(c: Change) -> (String, AccountPatch) {
        match c {
            Change::Merge { object_id, patch, .. } => (object_id, patch),
            other => panic!("not a merge: {other:?}"),
        }
    }

    const DOMAINS: &[&str] = &["contoso.com"];

    fn sel() -> Vec<String> {
        DOMAINS.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_full_user_sets_everything() {
        let item = json!({
            "id": "u1", "userPrincipalName": "Alice@Contoso.com", "accountEnabled": true, "displayName": "Alice",
            "onPremisesSamAccountName": "alice", "onPremisesDomainName": "contoso.local",
            "lastPasswordChangeDateTime": "2024-05-01T10:00:00Z"
        });
        let (id, p) = merge(user_change(&item, &sel(), 7).unwrap());
        assert_eq!(id, "u1");
        assert_eq!(p.upn, Some(Some("Alice@Contoso.com".into())));
        assert_eq!(p.enabled, Some(true));
        assert_eq!(p.sam_account_name, Some(Some("alice".into())));
        assert_eq!(p.dns_domain, Some(Some("contoso.local".into())));
        assert_eq!(p.netbios_domain, Some(Some("CONTOSO".into())));
        assert_eq!(p.last_change, Some(Some(7)));
        assert_eq!(p.soft_deleted, Some(false));
    }

    #[test]
    fn a_partial_user_changes_only_what_it_carries() {
        let (_, p) = merge(user_change(&json!({"id": "u1", "accountEnabled": false}), &sel(), 8).unwrap());
        assert_eq!(p.enabled, Some(false));
        assert_eq!(p.upn, None);
        assert_eq!(p.display_name, None);
        assert_eq!(p.dns_domain, None);
        assert_eq!(p.netbios_domain, None);
        // An explicit null clears.
        let (_, p) = merge(user_change(&json!({"id": "u1", "displayName": null}), &sel(), 8).unwrap());
        assert_eq!(p.display_name, Some(None));
    }

    #[test]
    fn removals_and_scope() {
        let soft = user_change(&json!({"id": "u1", "@removed": {"reason": "changed"}}), &sel(), 1).unwrap();
        assert!(matches!(soft, Change::SoftDelete { ref object_id } if object_id == "u1"));
        let hard = user_change(&json!({"id": "u1", "@removed": {"reason": "deleted"}}), &sel(), 1).unwrap();
        assert!(matches!(hard, Change::HardDelete { .. }));
        // Out of the selected domains: out of the replica.
        let out = user_change(&json!({"id": "u2", "userPrincipalName": "bob@fabrikam.com"}), &sel(), 1).unwrap();
        assert!(matches!(out, Change::HardDelete { ref object_id } if object_id == "u2"));
        assert!(in_scope("x@CONTOSO.COM", &sel()));
        assert!(!in_scope("x@sub.contoso.com", &sel()));
        assert!(!in_scope("nodomain", &sel()));
        assert!(!in_scope("x@contoso.com", &[]));
        assert!(user_change(&json!({"userPrincipalName": "a@contoso.com"}), &sel(), 1).is_err());
    }

    #[test]
    fn devices_keep_attributes_they_were_not_sent() {
        let item = json!({"id": "d1", "deviceId": "ABC-1", "accountEnabled": true, "operatingSystem": "Windows", "trustType": "AzureAd", "isCompliant": true});
        let (_, p) = merge(device_change(&item, None, 1).unwrap());
        assert_eq!(p.device_id, Some(Some("abc-1".into())));
        let attrs = p.attributes.unwrap();
        assert_eq!(attrs.get("operatingSystem").map(String::as_str), Some("Windows"));
        assert_eq!(attrs.get("isCompliant").map(String::as_str), Some("true"));
        let (_, p) = merge(device_change(&json!({"id": "d1", "isCompliant": false}), Some(&attrs), 2).unwrap());
        let attrs2 = p.attributes.unwrap();
        assert_eq!(attrs2.get("operatingSystem").map(String::as_str), Some("Windows"));
        assert_eq!(attrs2.get("isCompliant").map(String::as_str), Some("false"));
        let (_, p) = merge(device_change(&json!({"id": "d1", "accountEnabled": false}), Some(&attrs), 3).unwrap());
        assert!(p.attributes.is_none(), "no attribute carried: leave them");
    }

    #[test]
    fn intune_macs() {
        let item = json!({"azureADDeviceId": "AAAA-1", "wiFiMacAddress": "A1B2C3D4E5F6", "ethernetMacAddress": "000000000000"});
        let (dev, macs) = managed_device_macs(&item).unwrap();
        assert_eq!(dev, "aaaa-1");
        assert_eq!(macs, vec![MacAddr::parse("a1:b2:c3:d4:e5:f6").unwrap()]);
        assert!(managed_device_macs(&json!({"azureADDeviceId": "00000000-0000-0000-0000-000000000000"})).is_none());
        let (_, macs) =
            managed_device_macs(&json!({"azureADDeviceId": "x", "wiFiMacAddress": "", "ethernetMacAddress": null}))
                .unwrap();
        assert!(macs.is_empty());
    }

    #[test]
    fn group_members_delta() {
        let item = json!({"id": "g1", "displayName": "Engineering", "members@delta": [
            {"@odata.type": "#microsoft.graph.user", "id": "u1"},
            {"@odata.type": "#microsoft.graph.group", "id": "g2"},
            {"@odata.type": "#microsoft.graph.user", "id": "u3", "@removed": {"reason": "deleted"}}
        ]});
        let g = group_delta(&item).unwrap();
        assert_eq!(g.display_name.as_deref(), Some("Engineering"));
        assert_eq!(
            g.members,
            vec![
                ("u1".into(), "user".into(), true),
                ("g2".into(), "group".into(), true),
                ("u3".into(), "user".into(), false)
            ]
        );
        let g = group_delta(&json!({"id": "g1", "@removed": {"reason": "changed"}})).unwrap();
        assert_eq!(g.removed, Some(false));
    }

    #[test]
    fn netbios_guess() {
        assert_eq!(netbios_from_dns("contoso.local").as_deref(), Some("CONTOSO"));
        assert_eq!(netbios_from_dns("").as_deref(), None);
        assert_eq!(netbios_from_dns("averyveryverylongname.local"), None);
    }
}
