//! The in-memory replica of the Entra ID objects the sync worker delivers:
//! every synced user and device, never evicted, indexed by object id, UPN,
//! on-prem SAM name, device id and MAC.
//!
//! Readers load one immutable [`State`] through an `ArcSwap` and never wait
//! for a writer. A writer clones the state (cheap: the indexes are
//! persistent `HashIndex`es, so a clone shares every leaf), applies a whole batch to its
//! copy and publishes it with one pointer store, so a reader sees the state
//! before a batch or after it, never half of it.
//!
//! Index keys are 64-bit keyed hashes of the case-folded string, not the
//! strings themselves: an index entry is 24 bytes and holds no allocation
//! of its own. Every hit is checked against the account's own field, so a
//! hash collision can only put two accounts in one slot, never answer with
//! the wrong one.
//!
//! Two accounts may claim the same key for a while (a MAC moved from one
//! device to another, a UPN handed on, changes arriving out of order). All
//! claimants are kept in the slot, newest `last_change` first (ties: the one
//! applied last); the first is the answer. When it goes, the next one is
//! found again, so nothing is ever lost or left dangling.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use serde::Serialize;

use super::account::{Account, AccountData, AccountKind, AccountPatch, GroupRef, Interner, prefetch_arc};
use super::hashindex::HashIndex;
use super::identity::{WarmName, fold_eq, folded_chars};
use super::{DirectoryKind, Identity, MacAddr};

/// One change from the sync worker. Every change is idempotent and may
/// arrive in any order or more than once, as Graph delta promises.
/// Merge is the large variant; a batch is a short-lived `Vec` of a few
/// hundred changes, so boxing each patch would cost more than it saves.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The full object: replaces whatever was known.
    Upsert(Account),
    /// Some properties of the object: set fields replace, absent ones are
    /// kept. Creates the object (disabled unless the patch says otherwise)
    /// if it is unknown, including after a `HardDelete`.
    Merge {
        object_id: String,
        kind: AccountKind,
        patch: AccountPatch,
    },
    /// `@removed: changed`: restorable; not found by lookups until restored.
    SoftDelete {
        object_id: String,
    },
    Restore {
        object_id: String,
    },
    /// `@removed: deleted`: gone for good.
    HardDelete {
        object_id: String,
    },
}

/// Live users and devices; soft-deleted ones are counted apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplicaCounts {
    pub users: usize,
    pub devices: usize,
    pub soft_deleted: usize,
}

/// Handle to the live replica; clones share it.
#[derive(Clone)]
pub struct EntraReplica {
    inner: Arc<Inner>,
}

struct Inner {
    live: ArcSwap<State>,
    /// Serialises writers (readers never take it) and keeps the interning
    /// tables, which only writers use.
    writer: Mutex<Intern>,
}

impl Default for EntraReplica {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for EntraReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraReplica").field("counts", &self.counts()).finish()
    }
}

impl EntraReplica {
    pub fn new() -> Self {
        EntraReplica {
            inner: Arc::new(Inner {
                live: ArcSwap::from_pointee(State::new()),
                writer: Mutex::new(Intern::default()),
            }),
        }
    }

    /// The live account the identity names; soft-deleted ones are not found.
    pub fn lookup(&self, id: &Identity) -> Option<Arc<Account>> {
        self.inner.live.load().lookup(id).cloned()
    }

    /// The key `warm` takes for a request naming `user_name`, the first
    /// link of its lookup already loading. Picks the index the way
    /// `Identity::parse` picks the form, roughly: a wrong pick only loads
    /// lines in vain.
    pub fn warm_key(&self, name: WarmName<'_>) -> WarmKey {
        self.inner.live.load().warm_key(name)
    }

    /// Loads what the lookups of a receive batch will read, given their
    /// `warm_key`s, one link of the chain at a time across the batch (see
    /// `LocalDirectory::warm`): the leaves, then the accounts, then their
    /// text, groups and MACs. Keys of an older state (a sync commit in
    /// between) only load lines in vain.
    pub fn warm(&self, keys: impl Iterator<Item = WarmKey> + Clone) {
        let state = self.inner.live.load();
        for k in keys.clone() {
            state.index(k.ix).prefetch_leaf(k.key);
        }
        for k in keys.clone() {
            if let Some(a) = state.warm_account(k) {
                prefetch_arc(a);
            }
        }
        for k in keys {
            if let Some(a) = state.warm_account(k) {
                a.prefetch_fields();
            }
        }
    }

    /// The live device that lists `value` among its certificate identities
    /// (`intune:ID` for the Intune managed device `ID`).
    pub fn lookup_cert_identity(&self, value: &str) -> Option<Arc<Account>> {
        self.inner.live.load().by_cert_identity(value).cloned()
    }

    /// By object id, soft-deleted or not.
    pub fn get(&self, object_id: &str) -> Option<Arc<Account>> {
        self.inner.live.load().get(object_id).cloned()
    }

    /// Live (not soft-deleted) accounts.
    pub fn len(&self) -> usize {
        let c = self.counts();
        c.users + c.devices
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn counts(&self) -> ReplicaCounts {
        self.inner.live.load().counts
    }

    /// Applies the batch and publishes it at once.
    pub fn apply(&self, changes: Vec<Change>) {
        let mut intern = self.writer();
        let mut state = State::clone(&self.inner.live.load());
        for c in changes {
            state.apply(c, &mut intern);
        }
        self.inner.live.store(Arc::new(state));
    }

    /// Every account, soft-deleted ones included, for persistence.
    pub fn snapshot_accounts(&self) -> Vec<Arc<Account>> {
        self.inner.live.load().accounts()
    }

    /// Replaces the contents with `accounts` (startup from the store). A
    /// repeated object id: the later one wins, as with `Upsert`.
    pub fn load(&self, accounts: impl IntoIterator<Item = Account>) {
        let mut intern = self.writer();
        let state = State::build(accounts, &mut intern);
        self.inner.live.store(Arc::new(state));
    }

    fn writer(&self) -> MutexGuard<'_, Intern> {
        // The state is only published whole, so a panicking writer leaves
        // nothing half-done behind; the interning tables stay valid too.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Interning tables: one `Arc` per distinct domain and group.
#[derive(Default)]
struct Intern {
    strings: HashSet<Arc<str>>,
    groups: HashMap<String, Arc<GroupRef>>,
}

impl Interner for Intern {
    fn string(&mut self, s: String) -> Arc<str> {
        match self.strings.get(s.as_str()) {
            Some(a) => a.clone(),
            None => {
                let a: Arc<str> = s.into();
                self.strings.insert(a.clone());
                a
            }
        }
    }

    fn shared(&mut self, s: Arc<str>) -> Arc<str> {
        match self.strings.get(&*s) {
            Some(a) => a.clone(),
            None => {
                self.strings.insert(s.clone());
                s
            }
        }
    }

    fn group(&mut self, g: GroupRef) -> Arc<GroupRef> {
        match self.groups.get(&g.id) {
            Some(a) if a.name == g.name => a.clone(),
            // New, or renamed: the new name is the one to share from now on.
            _ => {
                let a = Arc::new(g);
                self.groups.insert(a.id.clone(), a.clone());
                a
            }
        }
    }

    fn shared_group(&mut self, g: Arc<GroupRef>) -> Arc<GroupRef> {
        match self.groups.get(&g.id) {
            Some(a) if a.name == g.name => a.clone(),
            _ => {
                self.groups.insert(g.id.clone(), g.clone());
                g
            }
        }
    }
}

type Map = HashIndex<Slot>;

/// The accounts claiming one index key; almost always exactly one.
#[derive(Clone)]
enum Slot {
    One(Arc<Account>),
    /// Newest first (see the module docs). A thin pointer, so that a slot
    /// is 16 bytes rather than 24.
    Many(Arc<Vec<Arc<Account>>>),
}

impl Slot {
    fn as_slice(&self) -> &[Arc<Account>] {
        match self {
            Slot::One(a) => std::slice::from_ref(a),
            Slot::Many(v) => v,
        }
    }

    /// `None` for an empty list.
    fn from_vec(mut v: Vec<Arc<Account>>) -> Option<Slot> {
        match v.len() {
            0 => None,
            1 => v.pop().map(Slot::One),
            _ => Some(Slot::Many(Arc::new(v))),
        }
    }
}

/// Orders claimants: newest `last_change` first (`None` oldest).
fn newer_or_same(a: &Account, b: &Account) -> bool {
    a.last_change() >= b.last_change()
}

fn slot_insert(map: &mut Map, key: u64, acc: &Arc<Account>) {
    let Some(slot) = map.get(&key) else {
        map.insert(key, Slot::One(acc.clone()));
        return;
    };
    let mut v: Vec<Arc<Account>> = slot
        .as_slice()
        .iter()
        .filter(|a| !fold_eq(a.object_id(), acc.object_id()))
        .cloned()
        .collect();
    let pos = v.iter().position(|a| newer_or_same(acc, a)).unwrap_or(v.len());
    v.insert(pos, acc.clone());
    if let Some(slot) = Slot::from_vec(v) {
        map.insert(key, slot);
    }
}

fn slot_remove(map: &mut Map, key: u64, object_id: &str) {
    let Some(slot) = map.get(&key) else {
        return;
    };
    if !slot.as_slice().iter().any(|a| fold_eq(a.object_id(), object_id)) {
        return;
    }
    let v: Vec<Arc<Account>> = slot
        .as_slice()
        .iter()
        .filter(|a| !fold_eq(a.object_id(), object_id))
        .cloned()
        .collect();
    match Slot::from_vec(v) {
        Some(slot) => {
            map.insert(key, slot);
        }
        None => {
            map.remove(&key);
        }
    }
}

fn find(map: &Map, key: u64, mut pred: impl FnMut(&Account) -> bool) -> Option<&Arc<Account>> {
    map.get(&key)?.as_slice().iter().find(|a| pred(a))
}

/// Which secondary index a key belongs to.
#[derive(Clone, Copy)]
enum Ix {
    Upn,
    Sam,
    Device,
    Mac,
}

const SECONDARY: [Ix; 4] = [Ix::Upn, Ix::Sam, Ix::Device, Ix::Mac];

/// A lookup to load ahead (`EntraReplica::warm_key`): which index, which
/// key.
#[derive(Clone, Copy)]
pub struct WarmKey {
    ix: Ix,
    key: u64,
}

/// One immutable version of the replica.
#[derive(Clone)]
struct State {
    /// Keys the index hashes: random per state, so nobody can aim
    /// collisions at the indexes from the tenant side.
    hasher: RandomState,
    by_object: Map,
    by_upn: Map,
    by_sam: Map,
    by_device: Map,
    by_mac: Map,
    counts: ReplicaCounts,
}

impl State {
    fn new() -> State {
        State {
            hasher: RandomState::new(),
            by_object: Map::new(),
            by_upn: Map::new(),
            by_sam: Map::new(),
            by_device: Map::new(),
            by_mac: Map::new(),
            counts: ReplicaCounts::default(),
        }
    }

    /// Hash of the case-folded string, fed in chunks without allocating.
    fn key(&self, s: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        let mut buf = [0u8; 64];
        if s.is_ascii() {
            // The same bytes as the general path, without decoding chars;
            // the hasher does not care how its input is chunked.
            for chunk in s.as_bytes().chunks(buf.len()) {
                let out = &mut buf[..chunk.len()];
                out.copy_from_slice(chunk);
                out.make_ascii_lowercase();
                h.write(out);
            }
            return h.finish();
        }
        let mut n = 0;
        for c in folded_chars(s) {
            if n + 4 > buf.len() {
                h.write(&buf[..n]);
                n = 0;
            }
            n += c.encode_utf8(&mut buf[n..]).len();
        }
        h.write(&buf[..n]);
        h.finish()
    }

    /// MACs are hashed too: the index wants well-mixed keys.
    fn mac_key(&self, m: &MacAddr) -> u64 {
        self.hasher.hash_one(m.0)
    }

    fn index(&self, ix: Ix) -> &Map {
        match ix {
            Ix::Upn => &self.by_upn,
            Ix::Sam => &self.by_sam,
            Ix::Device => &self.by_device,
            Ix::Mac => &self.by_mac,
        }
    }

    fn warm_key(&self, name: WarmName<'_>) -> WarmKey {
        let name = match name {
            WarmName::Mac(mac) => {
                let key = self.mac_key(&mac);
                self.by_mac.prefetch_path(key);
                return WarmKey { ix: Ix::Mac, key };
            }
            WarmName::Text(s) => s,
        };
        let (ix, key) = if let Some((_, user)) = name.split_once('\\') {
            (Ix::Sam, self.key(user))
        } else if name.contains('@') {
            (Ix::Upn, self.key(name))
        } else if name.len() >= 36 && name.len() <= 38 {
            (Ix::Device, self.key(name.trim_matches(['{', '}'])))
        } else {
            (Ix::Sam, self.key(name))
        };
        self.index(ix).prefetch_path(key);
        WarmKey { ix, key }
    }

    /// The first account under `k` (for loading only).
    fn warm_account(&self, k: WarmKey) -> Option<&Arc<Account>> {
        self.index(k.ix).get(&k.key)?.as_slice().first()
    }

    fn map_mut(&mut self, ix: Ix) -> &mut Map {
        match ix {
            Ix::Upn => &mut self.by_upn,
            Ix::Sam => &mut self.by_sam,
            Ix::Device => &mut self.by_device,
            Ix::Mac => &mut self.by_mac,
        }
    }

    /// The keys `acc` is found by in index `ix`.
    fn keys_of(&self, ix: Ix, acc: &Account, out: &mut Vec<u64>) {
        out.clear();
        match ix {
            Ix::Upn => out.extend(acc.upn().filter(|s| !s.is_empty()).map(|s| self.key(s))),
            Ix::Sam => out.extend(acc.sam_account_name().filter(|s| !s.is_empty()).map(|s| self.key(s))),
            Ix::Device => {
                out.extend(acc.device_id().filter(|s| !s.is_empty()).map(|s| self.key(s)));
                out.extend(acc.cert_identities().filter(|s| !s.is_empty()).map(|s| self.key(s)));
            }
            Ix::Mac => {
                out.extend(acc.macs().iter().map(|m| self.mac_key(m)));
                // An account listing one MAC twice claims it once.
                out.sort_unstable();
                out.dedup();
            }
        }
    }

    fn get(&self, object_id: &str) -> Option<&Arc<Account>> {
        find(&self.by_object, self.key(object_id), |a| {
            fold_eq(a.object_id(), object_id)
        })
    }

    fn lookup(&self, id: &Identity) -> Option<&Arc<Account>> {
        match id {
            Identity::Upn(upn) => find(&self.by_upn, self.key(upn), |a| {
                a.upn().is_some_and(|x| fold_eq(x, upn))
            })
            .or_else(|| {
                // `alice@contoso.local` for a synced on-prem user.
                let (name, realm) = upn.rsplit_once('@')?;
                self.find_sam(name, Some(realm))
            }),
            Identity::Sam { domain, name } => self.find_sam(name, domain.as_deref()),
            Identity::Mac(mac) => find(&self.by_mac, self.mac_key(mac), |a| a.macs().contains(mac)),
            Identity::Guid(g) => find(&self.by_device, self.key(g), |a| {
                a.device_id().is_some_and(|d| fold_eq(d, g))
            })
            .or_else(|| self.get(g).filter(|a| !a.soft_deleted())),
            Identity::Name(name) => self.find_sam(name, None),
        }
    }

    /// A device by one of its certificate identities (an Intune
    /// managed-device id as `intune:ID`, kept by the Intune round).
    fn by_cert_identity(&self, value: &str) -> Option<&Arc<Account>> {
        find(&self.by_device, self.key(value), |a| {
            !a.soft_deleted() && a.cert_identities().any(|c| fold_eq(c, value))
        })
    }

    /// A SAM name, in `domain` (NetBIOS or DNS name) if given. Without a
    /// domain the name must be unambiguous: two `alice`s in two domains
    /// are refused rather than guessed between.
    fn find_sam(&self, name: &str, domain: Option<&str>) -> Option<&Arc<Account>> {
        let slot = self.by_sam.get(&self.key(name))?;
        let mut hits = slot.as_slice().iter().filter(|a| {
            a.sam_account_name().is_some_and(|s| fold_eq(s, name))
                && domain.is_none_or(|d| {
                    a.netbios_domain().is_some_and(|x| fold_eq(x, d)) || a.dns_domain().is_some_and(|x| fold_eq(x, d))
                })
        });
        let first = hits.next()?;
        if domain.is_none() && hits.next().is_some() {
            tracing::debug!(name, "ambiguous SAM name without a domain");
            return None;
        }
        Some(first)
    }

    fn accounts(&self) -> Vec<Arc<Account>> {
        self.by_object
            .values()
            .flat_map(|s| s.as_slice().iter().cloned())
            .collect()
    }

    fn apply(&mut self, change: Change, intern: &mut Intern) {
        match change {
            Change::Upsert(acc) => self.put(acc.reintern(intern)),
            Change::Merge { object_id, kind, patch } => {
                let merged = match self.get(&object_id) {
                    Some(a) if a.kind() == kind => a.merged(patch, intern),
                    Some(a) => {
                        let mut data = a.to_data();
                        data.kind = kind;
                        data.apply_patch(patch);
                        Account::build(data, intern)
                    }
                    None => {
                        let mut data = AccountData::new(DirectoryKind::Entra, kind, object_id);
                        data.apply_patch(patch);
                        Account::build(data, intern)
                    }
                };
                self.put(merged);
            }
            Change::SoftDelete { object_id } => self.set_soft_deleted(&object_id, true),
            Change::Restore { object_id } => self.set_soft_deleted(&object_id, false),
            Change::HardDelete { object_id } => self.remove(&object_id),
        }
    }

    fn set_soft_deleted(&mut self, object_id: &str, soft_deleted: bool) {
        if let Some(a) = self.get(object_id)
            && a.soft_deleted() != soft_deleted
        {
            let a = a.with_soft_deleted(soft_deleted);
            self.put(a);
        }
    }

    fn put(&mut self, acc: Account) {
        if acc.directory() != DirectoryKind::Entra {
            tracing::warn!(
                object_id = acc.object_id(),
                directory = %acc.directory(),
                "not an Entra account; ignored by the Entra replica"
            );
            return;
        }
        let acc = Arc::new(acc);
        let old = self.get(acc.object_id()).cloned();
        // Object ids are keyed case-insensitively, so the old account sits
        // under the same key and `slot_insert` replaces it in place.
        let key = self.key(acc.object_id());
        slot_insert(&mut self.by_object, key, &acc);
        if let Some(old) = &old {
            self.count(old, false);
        }
        self.count(&acc, true);
        // Per index: drop the keys the account no longer has, then (re)insert
        // its keys, which replaces it where the key stayed the same. One leaf
        // update per unchanged key instead of a remove and an insert.
        let (mut old_keys, mut new_keys) = (Vec::new(), Vec::new());
        for ix in SECONDARY {
            old_keys.clear();
            if let Some(old) = old.as_ref().filter(|o| !o.soft_deleted()) {
                self.keys_of(ix, old, &mut old_keys);
            }
            new_keys.clear();
            if !acc.soft_deleted() {
                self.keys_of(ix, &acc, &mut new_keys);
            }
            for &k in &old_keys {
                if !new_keys.contains(&k) {
                    let oid = old.as_ref().map(|o| o.object_id()).unwrap_or_default();
                    slot_remove(self.map_mut(ix), k, oid);
                }
            }
            for &k in &new_keys {
                slot_insert(self.map_mut(ix), k, &acc);
            }
        }
    }

    fn remove(&mut self, object_id: &str) {
        let Some(old) = self.get(object_id).cloned() else {
            return;
        };
        // The old account's own spelling: the index holds that one.
        let oid = old.object_id();
        let key = self.key(oid);
        slot_remove(&mut self.by_object, key, oid);
        self.count(&old, false);
        if !old.soft_deleted() {
            let mut keys = Vec::new();
            for ix in SECONDARY {
                self.keys_of(ix, &old, &mut keys);
                for &k in &keys {
                    slot_remove(self.map_mut(ix), k, oid);
                }
            }
        }
    }

    fn count(&mut self, acc: &Account, add: bool) {
        let c = &mut self.counts;
        let n = if acc.soft_deleted() {
            &mut c.soft_deleted
        } else {
            match acc.kind() {
                AccountKind::User => &mut c.users,
                AccountKind::Device => &mut c.devices,
            }
        };
        *n = if add { *n + 1 } else { n.saturating_sub(1) };
    }

    /// Bulk build: the same result as upserting each account in turn, built
    /// index by index from sorted key lists. One thread on purpose: building
    /// indexes on threads of their own was no faster on two cores and left
    /// 57 MB behind in per-thread malloc arenas.
    fn build(accounts: impl IntoIterator<Item = Account>, intern: &mut Intern) -> State {
        let mut state = State::new();
        let mut all: Vec<(u64, Arc<Account>)> = Vec::new();
        for acc in accounts {
            if acc.directory() != DirectoryKind::Entra {
                tracing::warn!(object_id = acc.object_id(), "not an Entra account; not loaded");
                continue;
            }
            let acc = Arc::new(acc.reintern(intern));
            all.push((state.key(acc.object_id()), acc));
        }
        // Later duplicates of an object id replace earlier ones.
        let by_object = build_map(&mut all, |a, b| !fold_eq(a.object_id(), b.object_id()));
        let live: Vec<Arc<Account>> = by_object
            .values()
            .flat_map(|s| s.as_slice().iter())
            .filter(|a| !a.soft_deleted())
            .cloned()
            .collect();
        for s in by_object.values() {
            for a in s.as_slice() {
                state.count(a, true);
            }
        }
        drop(all);
        state.by_object = by_object;
        let st = &state;
        let secondary = |ix: Ix| {
            let mut pairs = Vec::with_capacity(live.len());
            let mut keys = Vec::new();
            for acc in &live {
                st.keys_of(ix, acc, &mut keys);
                pairs.extend(keys.iter().map(|&k| (k, acc.clone())));
            }
            build_map(&mut pairs, |_, _| true)
        };
        // Two at a time: the UPN and device-id indexes on a helper thread
        // while this one builds the sAMAccountName and MAC indexes (startup
        // at a million accounts is mostly these sorts).
        let ([upn, device], [sam, mac]) = std::thread::scope(|scope| {
            let helper = scope.spawn(|| [secondary(Ix::Upn), secondary(Ix::Device)]);
            let here = [secondary(Ix::Sam), secondary(Ix::Mac)];
            let there = match helper.join() {
                Ok(maps) => maps,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            (there, here)
        });
        state.by_upn = upn;
        state.by_sam = sam;
        state.by_device = device;
        state.by_mac = mac;
        state
    }
}

/// Builds an index from `(key, account)` pairs in apply order. `distinct`
/// says whether two accounts under one key may both stay (secondary
/// indexes: yes, ordered newest first; by object id: only different ids).
fn build_map(pairs: &mut [(u64, Arc<Account>)], distinct: impl Fn(&Account, &Account) -> bool) -> Map {
    // Stable, so equal keys keep apply order.
    pairs.sort_by_key(|(k, _)| *k);
    let mut out: Vec<(u64, Slot)> = Vec::with_capacity(pairs.len());
    let mut i = 0;
    while i < pairs.len() {
        let key = pairs[i].0;
        let mut j = i + 1;
        while j < pairs.len() && pairs[j].0 == key {
            j += 1;
        }
        let slot = if j == i + 1 {
            Some(Slot::One(pairs[i].1.clone()))
        } else {
            // Replay the group as single inserts: rare, and keeps one rule.
            let mut v: Vec<Arc<Account>> = Vec::new();
            for (_, acc) in &pairs[i..j] {
                v.retain(|a| distinct(a, acc));
                let pos = v.iter().position(|a| newer_or_same(acc, a)).unwrap_or(v.len());
                v.insert(pos, acc.clone());
            }
            Slot::from_vec(v)
        };
        out.extend(slot.map(|s| (key, s)));
        i = j;
    }
    Map::from_sorted(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(oid: &str, upn: &str) -> AccountData {
        let mut d = AccountData::new(DirectoryKind::Entra, AccountKind::User, oid);
        d.upn = Some(upn.into());
        d.enabled = true;
        d
    }

    fn device(oid: &str, mac: &str, at: i64) -> AccountData {
        let mut d = AccountData::new(DirectoryKind::Entra, AccountKind::Device, oid);
        d.device_id = Some(format!("{oid}-0000-0000-0000-000000000000"));
        d.macs = vec![MacAddr::parse(mac).unwrap()];
        d.last_change = Some(at);
        d.enabled = true;
        d
    }

    fn up(d: AccountData) -> Change {
        Change::Upsert(d.into())
    }

    fn oid_of(r: &EntraReplica, id: &str) -> Option<String> {
        r.lookup(&Identity::parse(id)).map(|a| a.object_id().to_owned())
    }

    fn id(oid: &str) -> String {
        oid.to_owned()
    }

    #[test]
    fn warm_keys_lead_to_the_account_the_lookup_finds() {
        let r = EntraReplica::new();
        let mut onprem = user("6f9619ff-8b86-d011-b42d-00c04fc964ff", "Alice@Contoso.com");
        onprem.sam_account_name = Some("Alice".into());
        onprem.netbios_domain = Some("CONTOSO".into());
        r.apply(vec![up(onprem), up(device("aaaaaaaa", "00-11-22-33-44-55", 1))]);
        let state = r.inner.live.load();
        let key = |s: &str| r.warm_key(WarmName::of(s.as_bytes()).unwrap());
        for name in [
            "ALICE@contoso.com",
            "contoso\\alice",
            "alice",
            "00:11:22:33:44:55",
            "aaaaaaaa-0000-0000-0000-000000000000",
        ] {
            let warmed = state.warm_account(key(name)).map(|a| a.object_id().to_owned());
            assert_eq!(warmed, oid_of(&r, name), "{name}");
            assert!(warmed.is_some(), "{name}");
        }
        // Unknown names and keys of an older state load nothing and break nothing.
        let stale = key("alice");
        assert!(state.warm_account(key("mallory")).is_none());
        r.apply(vec![up(user("bbbbbbbb", "bob@contoso.com"))]);
        r.warm([stale, key("bob@contoso.com")].into_iter());
    }

    #[test]
    fn every_index_finds_the_account() {
        let r = EntraReplica::new();
        let mut onprem = user("6f9619ff-8b86-d011-b42d-00c04fc964ff", "Alice@Contoso.com");
        onprem.sam_account_name = Some("Alice".into());
        onprem.netbios_domain = Some("CONTOSO".into());
        onprem.dns_domain = Some("contoso.local".into());
        r.apply(vec![up(onprem), up(device("aaaaaaaa", "00-11-22-33-44-55", 1))]);
        let alice = Some(id("6f9619ff-8b86-d011-b42d-00c04fc964ff"));
        for name in [
            "alice@contoso.com",
            "ALICE@CONTOSO.COM",
            "CONTOSO\\alice",
            "contoso.local\\ALICE",
            "alice@contoso.local",
            "alice@CONTOSO",
            "\\alice",
            "alice",
            "{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
        ] {
            assert_eq!(oid_of(&r, name), alice, "{name}");
        }
        for name in ["FABRIKAM\\alice", "bob@contoso.com", "alice@fabrikam.com"] {
            assert_eq!(oid_of(&r, name), None, "{name}");
        }
        let dev = Some(id("aaaaaaaa"));
        assert_eq!(oid_of(&r, "0011.2233.4455"), dev);
        assert_eq!(oid_of(&r, "AAAAAAAA-0000-0000-0000-000000000000"), dev);
        assert_eq!(
            r.counts(),
            ReplicaCounts {
                users: 1,
                devices: 1,
                soft_deleted: 0
            }
        );
    }

    #[test]
    fn bare_name_in_two_domains_is_ambiguous() {
        let r = EntraReplica::new();
        let mut a = user("a", "a@x.com");
        a.sam_account_name = Some("bob".into());
        a.netbios_domain = Some("X".into());
        let mut b = user("b", "b@y.com");
        b.sam_account_name = Some("bob".into());
        b.netbios_domain = Some("Y".into());
        r.apply(vec![up(a), up(b)]);
        assert_eq!(oid_of(&r, "bob"), None);
        assert_eq!(oid_of(&r, "x\\bob"), Some(id("a")));
        assert_eq!(oid_of(&r, "Y\\bob"), Some(id("b")));
    }

    #[test]
    fn renaming_drops_the_old_keys() {
        let r = EntraReplica::new();
        r.apply(vec![up(user("u1", "old@x.com"))]);
        r.apply(vec![Change::Merge {
            object_id: "u1".into(),
            kind: AccountKind::User,
            patch: AccountPatch {
                upn: Some(Some("new@x.com".into())),
                ..AccountPatch::default()
            },
        }]);
        assert_eq!(oid_of(&r, "old@x.com"), None);
        assert_eq!(oid_of(&r, "new@x.com"), Some(id("u1")));
        // The merge kept what it did not mention.
        assert!(r.get("u1").unwrap().enabled());
    }

    #[test]
    fn a_shared_mac_goes_to_the_newest_and_comes_back() {
        let r = EntraReplica::new();
        let mac = "00:11:22:33:44:55";
        r.apply(vec![up(device("d2", mac, 200)), up(device("d1", mac, 100))]);
        // d2 changed last, whatever the order of arrival.
        assert_eq!(oid_of(&r, mac), Some(id("d2")));
        r.apply(vec![Change::SoftDelete { object_id: "d2".into() }]);
        assert_eq!(oid_of(&r, mac), Some(id("d1")));
        r.apply(vec![Change::Restore { object_id: "d2".into() }]);
        assert_eq!(oid_of(&r, mac), Some(id("d2")));
        r.apply(vec![Change::HardDelete { object_id: "d2".into() }]);
        assert_eq!(oid_of(&r, mac), Some(id("d1")));
        // d1 gives the MAC up: nothing dangles.
        let mut d1 = device("d1", "aa-aa-aa-aa-aa-aa", 300);
        d1.macs.clear();
        r.apply(vec![up(d1)]);
        assert_eq!(oid_of(&r, mac), None);
        // Equal timestamps: the one applied last wins.
        r.apply(vec![up(device("e1", mac, 5)), up(device("e2", mac, 5))]);
        assert_eq!(oid_of(&r, mac), Some(id("e2")));
    }

    #[test]
    fn soft_delete_hides_restore_shows_hard_delete_forgets() {
        let r = EntraReplica::new();
        r.apply(vec![up(user("u1", "a@x.com"))]);
        r.apply(vec![Change::SoftDelete { object_id: "u1".into() }]);
        assert_eq!(oid_of(&r, "a@x.com"), None);
        assert_eq!(oid_of(&r, "a@x.com"), None);
        assert!(r.get("u1").unwrap().soft_deleted());
        assert_eq!(r.len(), 0);
        assert_eq!(r.counts().soft_deleted, 1);
        assert_eq!(r.snapshot_accounts().len(), 1);
        // Replays are no-ops.
        r.apply(vec![Change::SoftDelete { object_id: "u1".into() }]);
        assert_eq!(r.counts().soft_deleted, 1);
        r.apply(vec![Change::Restore { object_id: "u1".into() }]);
        assert_eq!(oid_of(&r, "a@x.com"), Some(id("u1")));
        r.apply(vec![
            Change::HardDelete { object_id: "u1".into() },
            Change::HardDelete { object_id: "u1".into() },
            Change::HardDelete {
                object_id: "never-seen".into(),
            },
            Change::SoftDelete {
                object_id: "never-seen".into(),
            },
            Change::Restore {
                object_id: "never-seen".into(),
            },
        ]);
        assert_eq!(r.get("u1"), None);
        assert_eq!(r.counts(), ReplicaCounts::default());
        // A merge after a hard delete recreates, disabled unless told.
        r.apply(vec![Change::Merge {
            object_id: "u1".into(),
            kind: AccountKind::User,
            patch: AccountPatch {
                upn: Some(Some("a@x.com".into())),
                ..AccountPatch::default()
            },
        }]);
        let a = r.lookup(&Identity::parse("a@x.com")).unwrap();
        assert!(!a.enabled());
        assert_eq!(a.directory(), DirectoryKind::Entra);
    }

    #[test]
    fn order_and_replays_do_not_matter() {
        let changes = vec![
            up(device("d1", "00-00-00-00-00-01", 10)),
            up(device("d2", "00-00-00-00-00-01", 20)),
            up(user("u1", "a@x.com")),
            Change::Merge {
                object_id: "u2".into(),
                kind: AccountKind::User,
                patch: AccountPatch {
                    upn: Some(Some("b@x.com".into())),
                    enabled: Some(true),
                    ..AccountPatch::default()
                },
            },
        ];
        let fingerprint = |r: &EntraReplica| {
            let mut v: Vec<String> = r
                .snapshot_accounts()
                .iter()
                .map(|a| format!("{:?}", a.to_data()))
                .collect();
            v.sort();
            (
                v,
                oid_of(r, "00-00-00-00-00-01"),
                oid_of(r, "a@x.com"),
                oid_of(r, "b@x.com"),
            )
        };
        let forward = EntraReplica::new();
        forward.apply(changes.clone());
        let backward = EntraReplica::new();
        backward.apply(changes.iter().rev().cloned().collect());
        let twice = EntraReplica::new();
        twice.apply(changes.clone());
        twice.apply(changes.clone());
        assert_eq!(fingerprint(&forward), fingerprint(&backward));
        assert_eq!(fingerprint(&forward), fingerprint(&twice));
        assert_eq!(forward.counts(), twice.counts());
    }

    #[test]
    fn load_equals_applying_upserts() {
        let accounts = vec![
            device("d1", "00-00-00-00-00-01", 10),
            device("d2", "00-00-00-00-00-01", 20),
            user("u1", "a@x.com"),
            user("u1", "a2@x.com"),
        ];
        let loaded = EntraReplica::new();
        loaded.load(accounts.iter().cloned().map(Account::from));
        let applied = EntraReplica::new();
        applied.apply(accounts.into_iter().map(up).collect());
        for name in ["00-00-00-00-00-01", "a@x.com", "a2@x.com"] {
            assert_eq!(oid_of(&loaded, name), oid_of(&applied, name), "{name}");
        }
        assert_eq!(loaded.counts(), applied.counts());
        assert_eq!(loaded.len(), 3);
        // Soft-deleted accounts load too, but stay hidden.
        let mut gone = user("u9", "gone@x.com");
        gone.soft_deleted = true;
        loaded.load([gone.into()]);
        assert_eq!(oid_of(&loaded, "gone@x.com"), None);
        assert_eq!(loaded.counts().soft_deleted, 1);
        assert_eq!(loaded.snapshot_accounts().len(), 1);
    }

    #[test]
    fn non_entra_accounts_are_refused() {
        let r = EntraReplica::new();
        let d = AccountData::new(DirectoryKind::Local, AccountKind::User, "x");
        r.apply(vec![Change::Upsert(d.clone().into())]);
        r.load([d.into()]);
        assert!(r.is_empty());
    }

    #[test]
    fn readers_see_whole_batches() {
        // Each batch moves one MAC from one device to the other and flips
        // both devices' enabled flag: a reader must never see the MAC on
        // nobody, nor see a device with the old flag next to the new one.
        let r = EntraReplica::new();
        let mac = "00-00-00-00-00-09";
        let batch = |round: i64| {
            let (from, to) = if round.rem_euclid(2) == 0 {
                ("d1", "d2")
            } else {
                ("d2", "d1")
            };
            let mut a = device(to, mac, round);
            a.enabled = round.rem_euclid(2) == 0;
            let mut b = device(from, "00-00-00-00-00-0a", round);
            b.macs.clear();
            b.enabled = round.rem_euclid(2) == 0;
            vec![up(b), up(a)]
        };
        r.apply(batch(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let r = r.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let st = r.inner.live.load();
                    let owner = st.lookup(&Identity::parse(mac)).cloned();
                    let owner = owner.expect("the MAC always has an owner");
                    let (d1, d2) = (st.get("d1").cloned(), st.get("d2").cloned());
                    let (d1, d2) = (d1.expect("d1"), d2.expect("d2"));
                    assert_eq!(d1.enabled(), d2.enabled());
                    assert_eq!(owner.enabled(), d1.enabled());
                    reads += 1;
                }
                reads
            })
        };
        for round in 1..2000 {
            r.apply(batch(round));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
