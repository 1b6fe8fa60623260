//! The account model shared by every directory: one user or device, the
//! directory that owns it, the identities it answers to and its (already
//! transitive) group memberships.
//!
//! Two shapes: [`AccountData`] has plain public fields and is what sync code
//! builds, patches and (de)serialises; [`Account`] is the compact, immutable
//! form the replica keeps a million of. Its short strings share one heap
//! block and its domains and groups are `Arc`s interned by the replica, which
//! is what keeps 1M accounts well under 512 MiB.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::flat::prefetch;
use super::identity::fold_eq;
use super::{DirectoryKind, MacAddr};

/// The prefix of an Intune managed-device id kept among a device's
/// certificate identities (by the sync's Intune round), so that an EAP-TLS
/// certificate naming `IntuneDeviceId://ID` finds the Entra device Intune
/// manages as `ID`.
pub const INTUNE_CERT_PREFIX: &str = "intune:";

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    User,
    Device,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::User => "user",
            AccountKind::Device => "device",
        }
    }
}

impl std::fmt::Display for AccountKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A group the account is a member of, directly or through nesting.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

/// The plain, owned form of an account: what the sync worker builds from
/// Graph objects, what `AccountPatch` edits and what is persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountData {
    pub directory: DirectoryKind,
    pub kind: AccountKind,
    pub object_id: String,
    pub display_name: Option<String>,
    pub upn: Option<String>,
    pub sam_account_name: Option<String>,
    pub netbios_domain: Option<String>,
    pub dns_domain: Option<String>,
    pub device_id: Option<String>,
    #[serde(with = "mac_strings")]
    pub macs: Vec<MacAddr>,
    /// Certificate subject and SAN strings, for EAP-TLS.
    pub cert_identities: Vec<String>,
    pub enabled: bool,
    /// Transitive memberships, already expanded.
    pub groups: Vec<GroupRef>,
    pub attributes: BTreeMap<String, String>,
    /// Unix seconds.
    pub last_change: Option<i64>,
    pub last_password_change: Option<String>,
    pub soft_deleted: bool,
}

impl AccountData {
    /// An account with only its identity set. It starts disabled: an
    /// account whose state nobody has told us yet must not let anyone in.
    pub fn new(directory: DirectoryKind, kind: AccountKind, object_id: impl Into<String>) -> Self {
        AccountData {
            directory,
            kind,
            object_id: object_id.into(),
            display_name: None,
            upn: None,
            sam_account_name: None,
            netbios_domain: None,
            dns_domain: None,
            device_id: None,
            macs: Vec::new(),
            cert_identities: Vec::new(),
            enabled: false,
            groups: Vec::new(),
            attributes: BTreeMap::new(),
            last_change: None,
            last_password_change: None,
            soft_deleted: false,
        }
    }

    /// Fields set in the patch replace, absent ones are kept.
    pub fn apply_patch(&mut self, patch: AccountPatch) {
        let AccountPatch {
            display_name,
            upn,
            sam_account_name,
            netbios_domain,
            dns_domain,
            device_id,
            macs,
            cert_identities,
            enabled,
            groups,
            attributes,
            last_change,
            last_password_change,
            soft_deleted,
        } = patch;
        fn set<T>(slot: &mut T, v: Option<T>) {
            if let Some(v) = v {
                *slot = v;
            }
        }
        set(&mut self.display_name, display_name);
        set(&mut self.upn, upn);
        set(&mut self.sam_account_name, sam_account_name);
        set(&mut self.netbios_domain, netbios_domain);
        set(&mut self.dns_domain, dns_domain);
        set(&mut self.device_id, device_id);
        set(&mut self.macs, macs);
        set(&mut self.cert_identities, cert_identities);
        set(&mut self.enabled, enabled);
        set(&mut self.groups, groups);
        set(&mut self.attributes, attributes);
        set(&mut self.last_change, last_change);
        set(&mut self.last_password_change, last_password_change);
        set(&mut self.soft_deleted, soft_deleted);
    }
}

/// A partial update, as Graph delta delivers it: `None` = property absent
/// (keep), `Some(None)` = property set to null (clear), `Some(Some(v))` =
/// new value. List and map fields are replaced whole.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountPatch {
    pub display_name: Option<Option<String>>,
    pub upn: Option<Option<String>>,
    pub sam_account_name: Option<Option<String>>,
    pub netbios_domain: Option<Option<String>>,
    pub dns_domain: Option<Option<String>>,
    pub device_id: Option<Option<String>>,
    pub macs: Option<Vec<MacAddr>>,
    pub cert_identities: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub groups: Option<Vec<GroupRef>>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub last_change: Option<Option<i64>>,
    pub last_password_change: Option<Option<String>>,
    /// Graph brings a soft-deleted object back without annotation; the sync
    /// worker says `Some(false)` then (or sends `Change::Restore`).
    pub soft_deleted: Option<bool>,
}

/// Indexes into `Account::ends`: the short strings packed into `text`.
const OBJECT_ID: usize = 0;
const DISPLAY_NAME: usize = 1;
const UPN: usize = 2;
const SAM: usize = 3;
const DEVICE_ID: usize = 4;
const LAST_PASSWORD_CHANGE: usize = 5;
const PACKED: usize = 6;

static NO_ATTRIBUTES: BTreeMap<String, String> = BTreeMap::new();

/// The compact, immutable account. Build it from [`AccountData`]; read it
/// through the accessors. Serialises exactly like `AccountData`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "AccountData", into = "AccountData")]
pub struct Account {
    directory: DirectoryKind,
    kind: AccountKind,
    enabled: bool,
    soft_deleted: bool,
    /// Bit i set: packed field i is present (an empty string is not None).
    present: u8,
    /// End offsets into `text` of the packed fields, in order. 16 bits are
    /// plenty: Entra ID caps these properties at a few hundred characters.
    ends: [u16; PACKED],
    /// One allocation for six short strings instead of six.
    text: Box<str>,
    netbios_domain: Option<Arc<str>>,
    dns_domain: Option<Arc<str>>,
    groups: Box<[Arc<GroupRef>]>,
    /// Fields most accounts leave empty (users have no MACs, devices no
    /// UPN); boxed so that the common all-empty case costs 8 bytes.
    extra: Option<Box<Extra>>,
    /// Unix seconds, or `NO_LAST_CHANGE` (8 bytes instead of an `Option`'s
    /// 16: with the 16-bit offsets, the account fits a 128-byte allocation).
    last_change: i64,
}

/// Starts loading the allocation behind `a`: its counts (a clone writes
/// them) and the account's 128 bytes.
pub(crate) fn prefetch_arc(a: &Arc<Account>) {
    let p = Arc::as_ptr(a).cast::<u8>();
    prefetch(p.wrapping_sub(16));
    prefetch(p.wrapping_add(48));
    prefetch(p.wrapping_add(112));
}

const NO_LAST_CHANGE: i64 = i64::MIN;

#[derive(Clone, Debug, PartialEq)]
struct Extra {
    macs: Box<[MacAddr]>,
    cert_identities: Box<[Box<str>]>,
    attributes: BTreeMap<String, String>,
}

impl Account {
    fn packed(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize)
    }

    pub fn directory(&self) -> DirectoryKind {
        self.directory
    }
    pub fn kind(&self) -> AccountKind {
        self.kind
    }
    pub fn object_id(&self) -> &str {
        self.packed(OBJECT_ID).unwrap_or("")
    }
    pub fn display_name(&self) -> Option<&str> {
        self.packed(DISPLAY_NAME)
    }
    pub fn upn(&self) -> Option<&str> {
        self.packed(UPN)
    }
    pub fn sam_account_name(&self) -> Option<&str> {
        self.packed(SAM)
    }
    pub fn netbios_domain(&self) -> Option<&str> {
        self.netbios_domain.as_deref()
    }
    pub fn dns_domain(&self) -> Option<&str> {
        self.dns_domain.as_deref()
    }
    pub fn device_id(&self) -> Option<&str> {
        self.packed(DEVICE_ID)
    }
    pub fn macs(&self) -> &[MacAddr] {
        self.extra.as_ref().map_or(&[], |e| &e.macs)
    }
    pub fn cert_identities(&self) -> impl Iterator<Item = &str> {
        self.extra.iter().flat_map(|e| e.cert_identities.iter().map(|s| &**s))
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    pub fn groups(&self) -> &[Arc<GroupRef>] {
        &self.groups
    }
    pub fn attributes(&self) -> &BTreeMap<String, String> {
        self.extra.as_ref().map_or(&NO_ATTRIBUTES, |e| &e.attributes)
    }
    pub fn last_change(&self) -> Option<i64> {
        (self.last_change != NO_LAST_CHANGE).then_some(self.last_change)
    }
    pub fn last_password_change(&self) -> Option<&str> {
        self.packed(LAST_PASSWORD_CHANGE)
    }
    pub fn soft_deleted(&self) -> bool {
        self.soft_deleted
    }

    /// Member of `group`, given as an object id or a display name, both
    /// compared case-insensitively.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups
            .iter()
            .any(|g| fold_eq(&g.id, group) || fold_eq(&g.name, group))
    }

    /// Starts loading what a decision reads after the account itself: its
    /// text (names and ids), its groups, and the rarer fields (a device's
    /// MACs) when it has them.
    pub(crate) fn prefetch_fields(&self) {
        let p = self.text.as_ptr();
        prefetch(p);
        if self.text.len() > 64 {
            prefetch(p.wrapping_add(64));
        }
        if !self.groups.is_empty() {
            prefetch(self.groups.as_ptr());
        }
        if let Some(extra) = &self.extra {
            prefetch(&**extra);
        }
    }

    /// The name people know this account by: UPN, then DOMAIN\sam, then
    /// display name, then object id.
    pub fn label(&self) -> String {
        if let Some(upn) = self.upn() {
            return upn.to_owned();
        }
        if let Some(sam) = self.sam_account_name() {
            return match self.netbios_domain() {
                Some(d) => format!("{d}\\{sam}"),
                None => sam.to_owned(),
            };
        }
        self.display_name().unwrap_or_else(|| self.object_id()).to_owned()
    }

    pub fn to_data(&self) -> AccountData {
        let mut d = self.to_data_without_groups();
        d.groups = self.groups.iter().map(|g| (**g).clone()).collect();
        d
    }

    /// This account with `patch` applied (a Graph delta item). Groups the
    /// patch does not change are shared with this account, not copied: a
    /// user with a hundred groups whose `accountEnabled` flips costs no
    /// group allocations.
    pub(crate) fn merged(&self, mut patch: AccountPatch, intern: &mut impl Interner) -> Account {
        let new_groups = patch.groups.take();
        let keep_groups = new_groups.is_none();
        let mut data = self.to_data_without_groups();
        data.apply_patch(patch);
        data.groups = new_groups.unwrap_or_default();
        let mut account = Account::build(data, intern);
        if keep_groups {
            account.groups = self.groups.clone();
        }
        account
    }

    fn to_data_without_groups(&self) -> AccountData {
        let own = |s: Option<&str>| s.map(str::to_owned);
        AccountData {
            directory: self.directory,
            kind: self.kind,
            object_id: self.object_id().to_owned(),
            display_name: own(self.display_name()),
            upn: own(self.upn()),
            sam_account_name: own(self.sam_account_name()),
            netbios_domain: own(self.netbios_domain()),
            dns_domain: own(self.dns_domain()),
            device_id: own(self.device_id()),
            macs: self.macs().to_vec(),
            cert_identities: self.cert_identities().map(str::to_owned).collect(),
            enabled: self.enabled,
            groups: Vec::new(),
            attributes: self.attributes().clone(),
            last_change: self.last_change(),
            last_password_change: own(self.last_password_change()),
            soft_deleted: self.soft_deleted,
        }
    }

    /// The same account, soft-deleted or restored.
    pub(crate) fn with_soft_deleted(&self, soft_deleted: bool) -> Account {
        Account {
            soft_deleted,
            ..self.clone()
        }
    }

    /// Builds the compact form, taking domains and groups from `intern` so
    /// that equal values share one allocation across accounts.
    pub(crate) fn build(d: AccountData, intern: &mut impl Interner) -> Account {
        let fields: [Option<&str>; PACKED] = [
            Some(&d.object_id),
            d.display_name.as_deref(),
            d.upn.as_deref(),
            d.sam_account_name.as_deref(),
            d.device_id.as_deref(),
            d.last_password_change.as_deref(),
        ];
        let len: usize = fields.iter().flatten().map(|s| s.len()).sum();
        let mut text = String::with_capacity(len);
        let mut ends = [0u16; PACKED];
        let mut present = 0u8;
        for (i, f) in fields.iter().enumerate() {
            // Entra ID's limits keep these strings far below 64 KiB together;
            // a field that would not fit is left out (absent), so offsets
            // never wrap into another field's bytes.
            if let Some(s) = f
                && text.len() + s.len() <= usize::from(u16::MAX)
            {
                present |= 1 << i;
                text.push_str(s);
            }
            ends[i] = u16::try_from(text.len()).unwrap_or(u16::MAX);
        }
        Account {
            directory: d.directory,
            kind: d.kind,
            enabled: d.enabled,
            soft_deleted: d.soft_deleted,
            present,
            ends,
            text: text.into_boxed_str(),
            netbios_domain: d.netbios_domain.map(|s| intern.string(s)),
            dns_domain: d.dns_domain.map(|s| intern.string(s)),
            groups: d.groups.into_iter().map(|g| intern.group(g)).collect(),
            extra: (!d.macs.is_empty() || !d.cert_identities.is_empty() || !d.attributes.is_empty()).then(|| {
                Box::new(Extra {
                    macs: d.macs.into_boxed_slice(),
                    cert_identities: d.cert_identities.into_iter().map(String::into_boxed_str).collect(),
                    attributes: d.attributes,
                })
            }),
            last_change: d.last_change.unwrap_or(NO_LAST_CHANGE),
        }
    }

    /// Re-points domains and groups at `intern`'s copies (accounts built
    /// elsewhere arrive with their own).
    pub(crate) fn reintern(mut self, intern: &mut impl Interner) -> Account {
        let i = intern;
        self.netbios_domain = self.netbios_domain.map(|s| i.shared(s));
        self.dns_domain = self.dns_domain.map(|s| i.shared(s));
        for g in self.groups.iter_mut() {
            *g = i.shared_group(g.clone());
        }
        self
    }
}

impl From<AccountData> for Account {
    /// Without a replica at hand, nothing is shared.
    fn from(d: AccountData) -> Account {
        Account::build(d, &mut NoInterning)
    }
}

impl From<Account> for AccountData {
    fn from(a: Account) -> AccountData {
        a.to_data()
    }
}

/// Where shared copies of repeated values come from.
pub(crate) trait Interner {
    fn string(&mut self, s: String) -> Arc<str>;
    fn shared(&mut self, s: Arc<str>) -> Arc<str>;
    fn group(&mut self, g: GroupRef) -> Arc<GroupRef>;
    fn shared_group(&mut self, g: Arc<GroupRef>) -> Arc<GroupRef>;
}

pub(crate) struct NoInterning;

impl Interner for NoInterning {
    fn string(&mut self, s: String) -> Arc<str> {
        s.into()
    }
    fn shared(&mut self, s: Arc<str>) -> Arc<str> {
        s
    }
    fn group(&mut self, g: GroupRef) -> Arc<GroupRef> {
        Arc::new(g)
    }
    fn shared_group(&mut self, g: Arc<GroupRef>) -> Arc<GroupRef> {
        g
    }
}

/// MACs travel as `AA-BB-CC-DD-EE-FF` strings in JSON.
/// Serialises an [`Account`] exactly as its [`AccountData`] serialises
/// (same fields, same order, same types), without building the owned copy:
/// what the sync stores after every page. A test keeps the two in step.
pub(crate) struct StoredView<'a>(pub &'a Account);

impl Serialize for StoredView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Macs<'a>(&'a [MacAddr]);
        impl Serialize for Macs<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                mac_strings::serialize(self.0, s)
            }
        }
        struct Certs<'a>(&'a Account);
        impl Serialize for Certs<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                // A slice, so the length is known up front (postcard needs it).
                let certs: &[Box<str>] = self.0.extra.as_ref().map_or(&[], |e| &e.cert_identities);
                s.collect_seq(certs)
            }
        }
        struct Groups<'a>(&'a [Arc<GroupRef>]);
        impl Serialize for Groups<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|g| &**g))
            }
        }
        let a = self.0;
        let mut st = s.serialize_struct("AccountData", 17)?;
        st.serialize_field("directory", &a.directory)?;
        st.serialize_field("kind", &a.kind)?;
        st.serialize_field("object_id", a.object_id())?;
        st.serialize_field("display_name", &a.display_name())?;
        st.serialize_field("upn", &a.upn())?;
        st.serialize_field("sam_account_name", &a.sam_account_name())?;
        st.serialize_field("netbios_domain", &a.netbios_domain())?;
        st.serialize_field("dns_domain", &a.dns_domain())?;
        st.serialize_field("device_id", &a.device_id())?;
        st.serialize_field("macs", &Macs(a.macs()))?;
        st.serialize_field("cert_identities", &Certs(a))?;
        st.serialize_field("enabled", &a.enabled)?;
        st.serialize_field("groups", &Groups(&a.groups))?;
        st.serialize_field("attributes", a.attributes())?;
        st.serialize_field("last_change", &a.last_change())?;
        st.serialize_field("last_password_change", &a.last_password_change())?;
        st.serialize_field("soft_deleted", &a.soft_deleted)?;
        st.end()
    }
}

mod mac_strings {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::MacAddr;

    pub fn serialize<S: Serializer>(macs: &[MacAddr], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(macs.iter().map(|m| m.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MacAddr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| MacAddr::parse(s).map_err(|e| D::Error::custom(format!("{s:?}: {e}"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> AccountData {
        let mut d = AccountData::new(DirectoryKind::Entra, AccountKind::User, "oid-1");
        d.display_name = Some("Alice".into());
        d.upn = Some("Alice@Contoso.com".into());
        d.sam_account_name = Some(String::new());
        d.netbios_domain = Some("CONTOSO".into());
        d.macs = vec![MacAddr([0, 1, 2, 3, 4, 5])];
        d.cert_identities = vec!["CN=alice".into()];
        d.enabled = true;
        d.groups = vec![GroupRef {
            id: "g1".into(),
            name: "Engineering".into(),
        }];
        d.attributes.insert("k".into(), "v".into());
        d.last_change = Some(1_700_000_000);
        d
    }

    #[test]
    fn stored_view_encodes_exactly_like_the_owned_form() {
        let mut minimal = AccountData::new(DirectoryKind::Entra, AccountKind::Device, "d-1");
        minimal.device_id = Some("dev".into());
        let mut deleted = sample();
        deleted.soft_deleted = true;
        deleted.last_password_change = Some("2024-03-01T09:30:00Z".into());
        deleted.dns_domain = Some("contoso.com".into());
        for d in [sample(), minimal, deleted] {
            let a = Account::from(d.clone());
            assert_eq!(
                postcard::to_allocvec(&StoredView(&a)).unwrap(),
                postcard::to_allocvec(&d).unwrap(),
                "{d:?}"
            );
        }
    }

    #[test]
    fn an_account_fits_a_128_byte_allocation_with_its_arc() {
        // Arc adds two counters (16 bytes); glibc adds 8 of its own and
        // rounds to 16: 104 bytes is the most that stays in the 128 class.
        assert!(
            std::mem::size_of::<Account>() <= 104,
            "{}",
            std::mem::size_of::<Account>()
        );
    }

    #[test]
    fn an_oversized_field_is_left_out_and_the_rest_kept() {
        let mut d = sample();
        d.display_name = Some("x".repeat(70_000));
        d.upn = Some("after@contoso.com".into());
        let a = Account::from(d);
        assert_eq!(a.object_id(), "oid-1");
        assert_eq!(a.display_name(), None, "a field that would pass 64 KiB is left out");
        assert_eq!(a.upn(), Some("after@contoso.com"), "the fields after it are intact");
        assert_eq!(a.last_change(), Some(1_700_000_000));
        let mut none = sample();
        none.last_change = None;
        assert_eq!(Account::from(none).last_change(), None);
    }

    #[test]
    fn merged_keeps_unpatched_groups_shared_and_replaces_patched_ones() {
        let a = Account::from(sample());
        let m = a.merged(
            AccountPatch {
                enabled: Some(false),
                display_name: Some(None),
                ..AccountPatch::default()
            },
            &mut NoInterning,
        );
        assert!(!m.enabled());
        assert_eq!(m.display_name(), None);
        assert_eq!(m.upn(), a.upn());
        assert!(Arc::ptr_eq(&m.groups()[0], &a.groups()[0]), "groups shared, not copied");
        let mut expected = sample();
        expected.enabled = false;
        expected.display_name = None;
        assert_eq!(m.to_data(), expected);
        let m2 = a.merged(
            AccountPatch {
                groups: Some(vec![]),
                ..AccountPatch::default()
            },
            &mut NoInterning,
        );
        assert!(m2.groups().is_empty());
    }

    #[test]
    fn compact_form_round_trips() {
        let d = sample();
        let a = Account::from(d.clone());
        assert_eq!(a.object_id(), "oid-1");
        assert_eq!(a.upn(), Some("Alice@Contoso.com"));
        // Present-but-empty is kept apart from absent.
        assert_eq!(a.sam_account_name(), Some(""));
        assert_eq!(a.device_id(), None);
        assert_eq!(a.last_password_change(), None);
        assert_eq!(a.to_data(), d);
        assert!(a.in_group("engineering"));
        assert!(a.in_group("G1"));
        assert!(!a.in_group("Sales"));
    }

    #[test]
    fn json_shape_is_the_plain_one() {
        let a = Account::from(sample());
        let j = serde_json::to_value(&a).unwrap();
        assert_eq!(j["directory"], "entra");
        assert_eq!(j["kind"], "user");
        assert_eq!(j["macs"][0], "00-01-02-03-04-05");
        let back: Account = serde_json::from_value(j).unwrap();
        assert_eq!(back, a);
        let bad = r#"{"macs":["nope"]}"#;
        assert!(serde_json::from_str::<AccountData>(bad).is_err());
    }

    #[test]
    fn patch_replaces_set_fields_only() {
        let mut d = sample();
        d.apply_patch(AccountPatch {
            upn: Some(Some("alice2@contoso.com".into())),
            display_name: Some(None),
            enabled: Some(false),
            ..AccountPatch::default()
        });
        assert_eq!(d.upn.as_deref(), Some("alice2@contoso.com"));
        assert_eq!(d.display_name, None);
        assert!(!d.enabled);
        assert_eq!(d.netbios_domain.as_deref(), Some("CONTOSO"));
        assert_eq!(d.macs.len(), 1);
    }
}
