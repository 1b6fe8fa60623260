//! Group-based reply policy: an ordered list of rules from the config file;
//! the first rule that matches the account decides what goes in the
//! Access-Accept (VLAN, Filter-Id, Session-Timeout, Reply-Message).

use serde::{Deserialize, Serialize};

use super::{Account, AccountKind};

/// One `[[policy]]` table. A rule with neither `group` nor `kind` is a
/// default rule and matches every account.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// A group display name (case-insensitive) or object id.
    pub group: Option<String>,
    pub kind: Option<AccountKind>,
    /// A VLAN id (1–4094) or a VLAN name, as the switch knows it.
    pub vlan: Option<String>,
    pub filter_id: Option<String>,
    pub session_timeout: Option<u32>,
    pub reply_message: Option<String>,
}

/// What the reply should carry; the auth layer turns it into attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplyPlan {
    pub vlan: Option<String>,
    pub filter_id: Option<String>,
    pub session_timeout: Option<u32>,
    pub reply_message: Option<String>,
}

impl PolicyRule {
    pub fn is_default(&self) -> bool {
        self.group.is_none() && self.kind.is_none()
    }

    /// Every condition the rule sets must hold.
    pub fn matches(&self, account: &Account) -> bool {
        self.kind.is_none_or(|k| k == account.kind()) && self.group.as_deref().is_none_or(|g| account.in_group(g))
    }

    pub fn plan(&self) -> ReplyPlan {
        ReplyPlan {
            vlan: self.vlan.clone(),
            filter_id: self.filter_id.clone(),
            session_timeout: self.session_timeout,
            reply_message: self.reply_message.clone(),
        }
    }
}

/// The first rule, in order, that matches.
pub fn select<'a>(rules: &'a [PolicyRule], account: &Account) -> Option<&'a PolicyRule> {
    rules.iter().find(|r| r.matches(account))
}

/// Tunnel-Private-Group-Id is a string of at most 253 bytes, but switches
/// take VLAN names of at most 32 characters (IEEE 802.1Q-style names).
const MAX_VLAN_NAME: usize = 32;

/// What is wrong with one policy rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("group is empty")]
    EmptyGroup,
    #[error("sets no reply attribute (one of vlan, filter_id, session_timeout, reply_message)")]
    NoReplyAttribute,
    #[error("filter_id is empty")]
    EmptyFilterId,
    #[error("session_timeout must be at least 1 second")]
    ZeroSessionTimeout,
    #[error("reply_message is empty")]
    EmptyReplyMessage,
    #[error("vlan {0:?}: a VLAN id must be 1 to 4094")]
    VlanIdOutOfRange(String),
    #[error("vlan is empty")]
    EmptyVlan,
    #[error("vlan {0:?}: a VLAN name is at most {MAX_VLAN_NAME} characters")]
    VlanNameTooLong(String),
    #[error("vlan {0:?}: control characters")]
    VlanControlCharacters(String),
    /// A catch-all rule before others; the number of rules it hides.
    #[error(
        "a rule without group or kind matches every account, so the {0} rule(s) after it can never apply; move it last"
    )]
    HidesLaterRules(usize),
}

/// Checks the rules as a whole; the error names the rule's index (0-based)
/// and what is wrong with it.
pub fn validate(rules: &[PolicyRule]) -> Result<(), (usize, PolicyError)> {
    for (i, r) in rules.iter().enumerate() {
        validate_rule(r).map_err(|e| (i, e))?;
        if r.is_default() && i + 1 < rules.len() {
            return Err((i, PolicyError::HidesLaterRules(rules.len() - i - 1)));
        }
    }
    Ok(())
}

fn validate_rule(r: &PolicyRule) -> Result<(), PolicyError> {
    if r.group.as_deref().is_some_and(|g| g.trim().is_empty()) {
        return Err(PolicyError::EmptyGroup);
    }
    if r.vlan.is_none() && r.filter_id.is_none() && r.session_timeout.is_none() && r.reply_message.is_none() {
        return Err(PolicyError::NoReplyAttribute);
    }
    if let Some(v) = &r.vlan {
        validate_vlan(v)?;
    }
    if r.filter_id.as_deref().is_some_and(str::is_empty) {
        return Err(PolicyError::EmptyFilterId);
    }
    if r.session_timeout == Some(0) {
        return Err(PolicyError::ZeroSessionTimeout);
    }
    if r.reply_message.as_deref().is_some_and(str::is_empty) {
        return Err(PolicyError::EmptyReplyMessage);
    }
    Ok(())
}

fn validate_vlan(v: &str) -> Result<(), PolicyError> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return match v.parse::<u32>() {
            Ok(1..=4094) => Ok(()),
            _ => Err(PolicyError::VlanIdOutOfRange(v.to_owned())),
        };
    }
    if v.trim().is_empty() {
        return Err(PolicyError::EmptyVlan);
    }
    if v.chars().count() > MAX_VLAN_NAME {
        return Err(PolicyError::VlanNameTooLong(v.to_owned()));
    }
    if v.chars().any(char::is_control) {
        return Err(PolicyError::VlanControlCharacters(v.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{AccountData, DirectoryKind, GroupRef};

    fn rules(toml_like: &str) -> Vec<PolicyRule> {
        serde_json::from_str(toml_like).unwrap()
    }

    fn user_in(groups: &[(&str, &str)]) -> Account {
        let mut d = AccountData::new(DirectoryKind::Entra, AccountKind::User, "u1");
        d.groups = groups
            .iter()
            .map(|(id, name)| GroupRef {
                id: (*id).into(),
                name: (*name).into(),
            })
            .collect();
        d.into()
    }

    #[test]
    fn first_match_in_order() {
        let r = rules(
            r#"[{"group":"engineering","vlan":"20"},
                {"group":"00000000-0000-0000-0000-0000000000aa","vlan":"30"},
                {"kind":"device","vlan":"40"},
                {"reply_message":"welcome"}]"#,
        );
        assert_eq!(validate(&r), Ok(()));
        let eng = user_in(&[("g1", "Engineering")]);
        assert_eq!(select(&r, &eng).and_then(|r| r.vlan.as_deref()), Some("20"));
        let by_id = user_in(&[("00000000-0000-0000-0000-0000000000AA", "Sales")]);
        assert_eq!(select(&r, &by_id).and_then(|r| r.vlan.as_deref()), Some("30"));
        let nobody = user_in(&[]);
        assert_eq!(
            select(&r, &nobody).map(|r| r.plan()),
            Some(ReplyPlan {
                reply_message: Some("welcome".into()),
                ..ReplyPlan::default()
            })
        );
        let dev: Account = AccountData::new(DirectoryKind::Entra, AccountKind::Device, "d1").into();
        assert_eq!(select(&r, &dev).and_then(|r| r.vlan.as_deref()), Some("40"));
        assert_eq!(select(&r[..2], &nobody), None);
    }

    #[test]
    fn group_and_kind_both_must_hold() {
        let r = rules(r#"[{"group":"Engineering","kind":"device","vlan":"20"}]"#);
        assert_eq!(select(&r, &user_in(&[("g1", "Engineering")])), None);
    }

    #[test]
    fn validation() {
        let bad = [
            (r#"[{"group":"x"}]"#, 0, "no reply attribute"),
            (r#"[{"group":"x","vlan":"0"}]"#, 0, "1 to 4094"),
            (r#"[{"group":"x","vlan":"4095"}]"#, 0, "1 to 4094"),
            (r#"[{"group":"x","vlan":"99999999999999"}]"#, 0, "1 to 4094"),
            (r#"[{"group":"x","vlan":""}]"#, 0, "empty"),
            (
                r#"[{"group":"x","vlan":"a-very-long-vlan-name-that-goes-on-and-on"}]"#,
                0,
                "at most 32",
            ),
            (r#"[{"group":"","vlan":"1"}]"#, 0, "group is empty"),
            (r#"[{"group":"x","session_timeout":0}]"#, 0, "at least 1"),
            (
                r#"[{"group":"x","vlan":"1"},{"vlan":"2"},{"group":"y","vlan":"3"}]"#,
                1,
                "never apply",
            ),
        ];
        for (input, index, msg) in bad {
            let err = validate(&rules(input)).unwrap_err();
            assert_eq!(err.0, index, "{input}");
            assert!(err.1.to_string().contains(msg), "{input}: {}", err.1);
        }
        let good = r#"[{"group":"x","vlan":"4094"},{"kind":"user","vlan":"guests"},{"vlan":"1"}]"#;
        assert_eq!(validate(&rules(good)), Ok(()));
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        assert!(serde_json::from_str::<PolicyRule>(r#"{"vlan":"1","vlna":"2"}"#).is_err());
        assert!(serde_json::from_str::<PolicyRule>(r#"{"vlan":"1","kind":"User"}"#).is_err());
    }
}
