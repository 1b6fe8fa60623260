//! Group memberships: Graph's groups delta gives direct members only; policy
//! needs every group an account is in, through nesting. The table keeps the
//! direct members (that is what is stored) and expands them locally, when
//! the replica is loaded and after each groups round.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::GroupRef;

/// What one item of Graph's groups delta says: the group's name (if
/// carried), whether it was removed (`Some(true)` for good, `Some(false)`
/// soft), and its direct member changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupDelta {
    pub id: String,
    pub display_name: Option<String>,
    pub removed: Option<bool>,
    /// `(member id, member type, added)`; type is `user`, `device` or `group`.
    pub members: Vec<(String, String, bool)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub name: String,
    /// Direct members by object id, with their type (`user`, `device`, `group`).
    pub members: BTreeMap<String, String>,
}

/// Every group and its direct members, as synced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTable {
    pub groups: BTreeMap<String, GroupState>,
}

impl GroupTable {
    /// Applies one groups-delta item. Idempotent: adding a member twice or
    /// removing an absent one changes nothing.
    pub fn apply(&mut self, d: &GroupDelta) {
        if d.removed.is_some() {
            // Soft-deleted groups grant nothing until restored; a restored
            // group comes back in full with its members.
            self.groups.remove(&d.id);
            return;
        }
        let g = self.groups.entry(d.id.clone()).or_default();
        if let Some(n) = &d.display_name {
            g.name = n.clone();
        }
        for (id, typ, added) in &d.members {
            if *added {
                g.members.insert(id.clone(), typ.clone());
            } else {
                g.members.remove(id);
            }
        }
    }

    /// For every account that is a member of some group, directly or through
    /// nested groups: its groups, sorted by name then id. Cycles (which
    /// Entra ID forbids, but a half-applied delta can show) are cut.
    pub fn memberships(&self) -> HashMap<String, Arc<[GroupRef]>> {
        // The containers of each group.
        let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
        // The groups each account is directly in.
        let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
        for (gid, g) in &self.groups {
            for (mid, typ) in &g.members {
                let map = if typ == "group" { &mut parents } else { &mut direct };
                map.entry(mid.as_str()).or_default().push(gid.as_str());
            }
        }
        // Accounts in the same direct groups share one expanded list: most
        // accounts are directly in one or two groups, so the lists are
        // computed per combination, not per account.
        let mut cache: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        let mut lists: HashMap<Vec<&str>, Arc<[GroupRef]>> = HashMap::new();
        let mut out: HashMap<String, Arc<[GroupRef]>> = HashMap::with_capacity(direct.len());
        for (member, mut groups) in direct {
            groups.sort_unstable();
            groups.dedup();
            let list = match lists.get(&groups) {
                Some(l) => l.clone(),
                None => {
                    let mut all: BTreeSet<&str> = BTreeSet::new();
                    for g in &groups {
                        all.extend(ancestors(g, &parents, &mut cache));
                    }
                    let mut refs: Vec<GroupRef> = all
                        .into_iter()
                        .filter_map(|gid| {
                            self.groups.get(gid).map(|g| GroupRef {
                                id: gid.to_string(),
                                name: g.name.clone(),
                            })
                        })
                        .collect();
                    refs.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
                    let l: Arc<[GroupRef]> = refs.into();
                    lists.insert(groups, l.clone());
                    l
                }
            };
            if !list.is_empty() {
                out.insert(member.to_string(), list);
            }
        }
        out
    }
}

/// `g` and every group that contains it, transitively.
fn ancestors<'a>(
    g: &'a str,
    parents: &HashMap<&'a str, Vec<&'a str>>,
    cache: &mut HashMap<&'a str, BTreeSet<&'a str>>,
) -> BTreeSet<&'a str> {
    if let Some(c) = cache.get(g) {
        return c.clone();
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack = vec![g];
    let mut result = BTreeSet::new();
    while let Some(x) = stack.pop() {
        if !seen.insert(x) {
            continue;
        }
        result.insert(x);
        if let Some(ps) = parents.get(x) {
            stack.extend(ps.iter().copied());
        }
    }
    cache.insert(g, result.clone());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(id: &str, name: Option<&str>, members: &[(&str, &str, bool)]) -> GroupDelta {
        GroupDelta {
            id: id.into(),
            display_name: name.map(String::from),
            removed: None,
            members: members
                .iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
                .collect(),
        }
    }

    fn names(t: &GroupTable, member: &str) -> Vec<String> {
        t.memberships()
            .get(member)
            .map(|v| v.iter().map(|g| g.name.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn nested_groups_expand() {
        let mut t = GroupTable::default();
        t.apply(&delta(
            "g-eng",
            Some("Engineering"),
            &[("u1", "user", true), ("g-fw", "group", true)],
        ));
        t.apply(&delta(
            "g-fw",
            Some("Firmware"),
            &[("u2", "user", true), ("d1", "device", true)],
        ));
        t.apply(&delta("g-all", Some("All Staff"), &[("g-eng", "group", true)]));
        assert_eq!(names(&t, "u1"), vec!["All Staff", "Engineering"]);
        assert_eq!(names(&t, "u2"), vec!["All Staff", "Engineering", "Firmware"]);
        assert_eq!(names(&t, "d1"), vec!["All Staff", "Engineering", "Firmware"]);
        assert!(!t.memberships().contains_key("g-fw"), "groups are not accounts");
    }

    #[test]
    fn member_removal_replays_and_renames() {
        let mut t = GroupTable::default();
        let add = delta("g1", Some("Eng"), &[("u1", "user", true)]);
        t.apply(&add);
        t.apply(&add);
        assert_eq!(names(&t, "u1"), vec!["Eng"]);
        t.apply(&delta("g1", Some("Engineering"), &[]));
        assert_eq!(names(&t, "u1"), vec!["Engineering"]);
        t.apply(&delta("g1", None, &[("u1", "user", false)]));
        t.apply(&delta("g1", None, &[("u1", "user", false)]));
        assert!(names(&t, "u1").is_empty());
    }

    #[test]
    fn removed_groups_grant_nothing_and_cycles_end() {
        let mut t = GroupTable::default();
        t.apply(&delta("a", Some("A"), &[("b", "group", true), ("u1", "user", true)]));
        t.apply(&delta("b", Some("B"), &[("a", "group", true), ("u2", "user", true)]));
        assert_eq!(names(&t, "u2"), vec!["A", "B"]);
        t.apply(&GroupDelta {
            id: "a".into(),
            removed: Some(false),
            ..GroupDelta::default()
        });
        assert_eq!(names(&t, "u2"), vec!["B"]);
        assert!(names(&t, "u1").is_empty());
    }
}
