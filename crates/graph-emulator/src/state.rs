//! Shared emulator state: the live tenant, per-collection change logs that
//! delta rounds are computed from, fault queue, request log, and the
//! [`Control`] handle that tests use to change all of it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::model::{AdminUser, App, Device, Domain, GraphObject, Group, Kind, ManagedDevice, Tenant, User};

/// A fault injected in front of the next matching requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Fault {
    /// 429 Too Many Requests with `Retry-After`.
    Throttle { retry_after_s: u32 },
    /// 503 Service Unavailable, `Retry-After` only when given.
    Unavailable { retry_after_s: Option<u32> },
    /// 504 Gateway Timeout.
    GatewayTimeout,
    /// The next delta call carrying a `$deltatoken` or `$skiptoken` is told
    /// its token expired, in the given style.
    ExpireDeltaTokens { style: DeltaExpiry },
    /// No answer: the connection closes under the request (a reset).
    Reset,
    /// The real answer, cut off a few bytes into its body (the connection
    /// closes before the `Content-Length` promised is sent).
    Truncate,
}

/// How an expired delta token is reported; Graph documents both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaExpiry {
    /// `410 Gone` + `Location` = the initial delta URL with an empty `$deltatoken`.
    #[default]
    Gone,
    /// `400` with error code `syncStateNotFound`.
    SyncStateNotFound,
    /// `400` with error code `resyncRequired`.
    ResyncRequired,
}

/// What a changed object carries in a delta round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaProps {
    /// Only the changed properties (+ id), always: what the sync worker must
    /// survive (GRAPH-NOTES: "changed objects may carry only some properties").
    #[default]
    ChangedOnly,
    /// The documented default: all tracked properties, unless the request
    /// sends `Prefer: return=minimal`.
    Documented,
}

/// One request as seen by the emulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query, as sent.
    pub path_and_query: String,
    /// Value of `x-ms-throttle-priority`, if sent.
    pub throttle_priority: Option<String>,
    pub has_authorization: bool,
    pub client_request_id: Option<String>,
    /// Response status; 0 when no answer was sent ([`Fault::Reset`]).
    pub status: u16,
}

#[derive(Debug, Clone)]
pub(crate) enum EventKind {
    Added,
    Changed(Vec<String>),
    SoftDeleted,
    HardDeleted,
    Restored,
    /// (member id, member @odata.type, added?)
    Member(String, &'static str, bool),
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub seq: u64,
    pub id: String,
    pub kind: EventKind,
}

/// Live objects in insertion order, the soft-deleted ones, and the log of
/// every change since start (delta rounds replay it from a token's seq).
#[derive(Debug)]
pub(crate) struct Collection<T> {
    pub live: Vec<T>,
    index: HashMap<String, usize>,
    pub deleted: HashMap<String, T>,
    pub log: Vec<Event>,
}

impl<T: GraphObject> Collection<T> {
    fn new(items: Vec<T>) -> Self {
        let index = items.iter().enumerate().map(|(i, o)| (o.id().to_owned(), i)).collect();
        Collection {
            live: items,
            index,
            deleted: HashMap::new(),
            log: Vec::new(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&T> {
        self.index.get(id).map(|&i| &self.live[i])
    }

    fn push_event(&mut self, seq: u64, id: &str, kind: EventKind) {
        self.log.push(Event {
            seq,
            id: id.to_owned(),
            kind,
        });
    }

    /// Applies `f`; records the changed Graph property names. Returns the
    /// object before and after, so group member diffs can be logged too.
    fn update(&mut self, seq: u64, id: &str, f: impl FnOnce(&mut T)) -> Option<(T, T)> {
        let &i = self.index.get(id)?;
        let before = self.live[i].clone();
        f(&mut self.live[i]);
        // The id is the key; a closure must not move the object.
        if self.live[i].id() != id {
            self.live[i] = before;
            return None;
        }
        let after = self.live[i].clone();
        let (a, b) = (before.to_json(), after.to_json());
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let changed: Vec<String> = keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
        if !changed.is_empty() {
            self.push_event(seq, id, EventKind::Changed(changed));
        }
        Some((before, after))
    }

    fn add(&mut self, seq: u64, obj: T) {
        let id = obj.id().to_owned();
        self.deleted.remove(&id);
        if let Some(&i) = self.index.get(&id) {
            self.live[i] = obj;
        } else {
            self.index.insert(id.clone(), self.live.len());
            self.live.push(obj);
        }
        self.push_event(seq, &id, EventKind::Added);
    }

    fn take_live(&mut self, id: &str) -> Option<T> {
        let i = self.index.remove(id)?;
        let obj = self.live.remove(i);
        // Keep insertion order (list paging is stable); reindex the tail.
        for (j, o) in self.live.iter().enumerate().skip(i) {
            self.index.insert(o.id().to_owned(), j);
        }
        Some(obj)
    }

    fn soft_delete(&mut self, seq: u64, id: &str) -> bool {
        match self.take_live(id) {
            Some(obj) => {
                self.deleted.insert(id.to_owned(), obj);
                self.push_event(seq, id, EventKind::SoftDeleted);
                true
            }
            None => false,
        }
    }

    fn hard_delete(&mut self, seq: u64, id: &str) -> bool {
        let found = self.take_live(id).is_some() | self.deleted.remove(id).is_some();
        if found {
            self.push_event(seq, id, EventKind::HardDeleted);
        }
        found
    }

    fn restore(&mut self, seq: u64, id: &str) -> bool {
        match self.deleted.remove(id) {
            Some(obj) => {
                self.index.insert(id.to_owned(), self.live.len());
                self.live.push(obj);
                self.push_event(seq, id, EventKind::Restored);
                true
            }
            None => false,
        }
    }
}

/// One page-able unit of a delta round.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// The whole object (tracked properties), rendered at page time.
    Full(String),
    /// Changed tracked properties, plus member changes for groups.
    Partial {
        id: String,
        fields: Vec<String>,
        members: Vec<(String, &'static str, bool)>,
    },
    Removed(String, &'static str),
}

/// A delta round in progress: its entries are fixed when the round starts.
#[derive(Debug)]
pub(crate) struct Round {
    pub kind: Kind,
    pub select: Option<Vec<String>>,
    pub entries: Vec<Entry>,
    pub end_seq: u64,
    pub epoch: u64,
}

/// Rounds kept for skiptokens; older ones are reported as expired.
const MAX_ROUNDS: usize = 256;
/// Request log cap: enough for a 1M-user sync (5,000 pages) several times over.
const MAX_LOG: usize = 200_000;

#[derive(Debug)]
pub(crate) struct Inner {
    /// Password grants answered (right or wrong), for tests of how many
    /// guesses reach the tenant.
    pub password_grants: std::sync::atomic::AtomicU64,
    pub tenant_id: String,
    pub base_url: String,
    pub domains: Vec<Domain>,
    pub users: Collection<User>,
    pub devices: Collection<Device>,
    pub groups: Collection<Group>,
    pub managed: Collection<ManagedDevice>,
    pub apps: Vec<App>,
    pub seq: u64,
    /// Random per emulator and carried in every paging and delta token, so a
    /// restarted emulator does not mistake an earlier one's links for its own.
    pub instance: u64,
    /// Delta tokens minted under an older epoch are expired.
    pub epoch: u64,
    pub expiry_style: DeltaExpiry,
    pub delta_props: DeltaProps,
    pub rounds: HashMap<u64, Round>,
    round_order: VecDeque<u64>,
    pub next_round: u64,
    pub page_size: usize,
    /// Percent of later delta pages that replay an object from an earlier page.
    pub replay_pct: u64,
    /// Percent of later delta pages that are empty but still carry a nextLink.
    pub empty_pct: u64,
    pub faults: Vec<(String, Fault, u32)>,
    pub log: VecDeque<LoggedRequest>,
    pub token_lifetime_s: u64,
    /// HMAC key for access tokens, random per emulator.
    pub key: [u8; 32],
    /// The administrator who signs in at `/devicelogin`.
    pub admin: AdminUser,
    /// Object id of the administrator (the `oid` of delegated tokens).
    pub admin_oid: String,
    /// Device-code sign-ins started at `/devicecode`, newest last.
    pub device_codes: Vec<DeviceCode>,
    /// `interval` and `expires_in` of new device codes (Entra: 5 s, 900 s).
    pub device_interval_s: u64,
    pub device_expires_s: u64,
    /// Replication window of applications created through Graph: how many
    /// service-principal / addPassword calls fail before the app is visible.
    pub replication_delay: u32,
    /// appId → calls still to fail in its replication window.
    pub replicating: HashMap<String, u32>,
}

/// Where a device-code sign-in stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceCodeState {
    Pending,
    Approved,
    Declined,
    /// The token was issued; the device code cannot be used again.
    Redeemed,
}

/// One device-code sign-in.
#[derive(Debug, Clone)]
pub(crate) struct DeviceCode {
    pub device_code: String,
    pub user_code: String,
    pub client_id: String,
    /// Graph permission names requested (the future token's `scp`).
    pub scopes: Vec<String>,
    /// `openid` was requested: the token answer carries an `id_token`.
    pub openid: bool,
    pub interval: std::time::Duration,
    pub expires_at: std::time::Instant,
    pub last_poll: Option<std::time::Instant>,
    pub state: DeviceCodeState,
}

/// Gives a seeded (or `add_app`ed) application the object id and service
/// principal that registering it in the portal would have created.
pub(crate) fn install_app(app: &mut App) {
    if app.object_id.is_empty() {
        app.object_id = super::login::new_guid();
    }
    if app.service_principal_id.is_none() {
        app.service_principal_id = Some(super::login::new_guid());
    }
    if app.sign_in_audience.is_empty() {
        app.sign_in_audience = "AzureADMyOrg".into();
    }
}

impl Inner {
    pub fn new(t: Tenant, key: [u8; 32]) -> Self {
        let mut apps = t.apps;
        apps.iter_mut().for_each(install_app);
        Inner {
            password_grants: Default::default(),
            tenant_id: t.id,
            base_url: String::new(),
            domains: t.domains,
            users: Collection::new(t.users),
            devices: Collection::new(t.devices),
            groups: Collection::new(t.groups),
            managed: Collection::new(t.managed_devices),
            apps,
            seq: 0,
            instance: {
                use rand::RngExt;
                rand::rng().random()
            },
            epoch: 0,
            expiry_style: DeltaExpiry::Gone,
            delta_props: DeltaProps::ChangedOnly,
            rounds: HashMap::new(),
            round_order: VecDeque::new(),
            next_round: 1,
            page_size: 200,
            replay_pct: 25,
            empty_pct: 10,
            faults: Vec::new(),
            log: VecDeque::new(),
            token_lifetime_s: 3599,
            key,
            admin_oid: super::model::guid(0xad, 9, 0),
            admin: t.admin,
            device_codes: Vec::new(),
            device_interval_s: 5,
            device_expires_s: 900,
            replication_delay: 1,
            replicating: HashMap::new(),
        }
    }

    fn bump(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn add_round(&mut self, r: Round) -> u64 {
        let id = self.next_round;
        self.next_round += 1;
        self.rounds.insert(id, r);
        self.round_order.push_back(id);
        while self.round_order.len() > MAX_ROUNDS {
            if let Some(old) = self.round_order.pop_front() {
                self.rounds.remove(&old);
            }
        }
        id
    }

    pub fn push_log(&mut self, r: LoggedRequest) {
        if self.log.len() >= MAX_LOG {
            self.log.pop_front();
        }
        self.log.push_back(r);
    }

    /// Index of the pending, unexpired device code with this user code
    /// (compared as Entra's page does: case-insensitive, dashes and spaces ignored).
    pub fn pending_device_code(&mut self, user_code: &str) -> Option<usize> {
        let norm = |c: &str| -> String {
            c.chars()
                .filter(|ch| ch.is_ascii_alphanumeric())
                .map(|ch| ch.to_ascii_uppercase())
                .collect()
        };
        let wanted = norm(user_code);
        let now = std::time::Instant::now();
        self.device_codes.iter().position(|d| {
            !wanted.is_empty()
                && norm(&d.user_code) == wanted
                && d.state == DeviceCodeState::Pending
                && now < d.expires_at
        })
    }

    /// `@odata.type` of a directory object by id, for members@delta.
    pub fn member_type(&self, id: &str) -> &'static str {
        if self.users.get(id).is_some() || self.users.deleted.contains_key(id) {
            Kind::Users.odata_type()
        } else if self.devices.get(id).is_some() || self.devices.deleted.contains_key(id) {
            Kind::Devices.odata_type()
        } else if self.groups.get(id).is_some() || self.groups.deleted.contains_key(id) {
            Kind::Groups.odata_type()
        } else {
            "#microsoft.graph.directoryObject"
        }
    }

    /// Takes one matching fault (decrementing its count). Expiry faults are
    /// taken only by delta calls that carry a token (`expiry == true`), the
    /// others by the request middleware.
    pub fn take_fault(&mut self, path: &str, expiry: bool) -> Option<Fault> {
        let pos = self.faults.iter().position(|(p, f, n)| {
            *n > 0 && path.starts_with(p.as_str()) && expiry == matches!(f, Fault::ExpireDeltaTokens { .. })
        })?;
        let (_, fault, n) = &mut self.faults[pos];
        *n -= 1;
        let fault = fault.clone();
        if self.faults[pos].2 == 0 {
            self.faults.remove(pos);
        }
        Some(fault)
    }

    fn group_member_events(&mut self, seq: u64, before: &Group, after: &Group) {
        let old: BTreeSet<&String> = before.members.iter().collect();
        let new: BTreeSet<&String> = after.members.iter().collect();
        let mut evs = Vec::new();
        for m in new.difference(&old) {
            evs.push(((*m).clone(), self.member_type(m), true));
        }
        for m in old.difference(&new) {
            evs.push(((*m).clone(), self.member_type(m), false));
        }
        for (m, t, added) in evs {
            self.groups.push_event(seq, &after.id, EventKind::Member(m, t, added));
        }
    }

    /// Net changes of one collection since `since`, restricted to the
    /// tracked properties (a change to an untracked property is invisible).
    pub fn changes(&self, kind: Kind, since: u64, tracked: &[String], members_tracked: bool) -> Vec<Entry> {
        let (log, live, deleted): (&[Event], &IdTest, &IdTest) = match kind {
            Kind::Users => (&self.users.log, &|id| self.users.get(id).is_some(), &|id| {
                self.users.deleted.contains_key(id)
            }),
            Kind::Devices => (&self.devices.log, &|id| self.devices.get(id).is_some(), &|id| {
                self.devices.deleted.contains_key(id)
            }),
            Kind::Groups => (&self.groups.log, &|id| self.groups.get(id).is_some(), &|id| {
                self.groups.deleted.contains_key(id)
            }),
            Kind::ManagedDevices => (&self.managed.log, &|id| self.managed.get(id).is_some(), &|id| {
                self.managed.deleted.contains_key(id)
            }),
        };
        #[derive(Default)]
        struct Agg {
            full: bool,
            fields: BTreeSet<String>,
            members: Vec<(String, &'static str, bool)>,
        }
        let start = log.partition_point(|e| e.seq <= since);
        let mut order: Vec<&str> = Vec::new();
        let mut aggs: HashMap<&str, Agg> = HashMap::new();
        for e in &log[start..] {
            let agg = aggs.entry(e.id.as_str()).or_insert_with(|| {
                order.push(e.id.as_str());
                Agg::default()
            });
            match &e.kind {
                EventKind::Added | EventKind::Restored => agg.full = true,
                EventKind::Changed(f) => agg.fields.extend(f.iter().filter(|p| tracked.contains(p)).cloned()),
                EventKind::Member(m, t, added) if members_tracked => {
                    agg.members.retain(|(x, _, _)| x != m);
                    agg.members.push((m.clone(), t, *added));
                }
                EventKind::Member(..) | EventKind::SoftDeleted | EventKind::HardDeleted => {}
            }
        }
        let mut out = Vec::new();
        for id in order {
            let Some(agg) = aggs.remove(id) else { continue };
            if live(id) {
                if agg.full {
                    out.push(Entry::Full(id.to_owned()));
                } else if !agg.fields.is_empty() || !agg.members.is_empty() {
                    out.push(Entry::Partial {
                        id: id.to_owned(),
                        fields: agg.fields.into_iter().collect(),
                        members: agg.members,
                    });
                }
            } else if deleted(id) {
                out.push(Entry::Removed(id.to_owned(), "changed"));
            } else {
                out.push(Entry::Removed(id.to_owned(), "deleted"));
            }
        }
        out
    }
}

/// "Is this id live / soft-deleted" for one collection.
type IdTest<'a> = dyn Fn(&str) -> bool + 'a;

/// Shared handle over the state.
pub(crate) type Shared = Arc<Mutex<Inner>>;

pub(crate) fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock must not take every later request down.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// In-process control of a running emulator: tenant changes, consent,
/// fault injection and the request log. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    pub(crate) shared: Shared,
}

macro_rules! crud {
    ($col:ident, $ty:ty, $update:ident, $add:ident, $del:ident, $soft:ident, $restore:ident) => {
        /// Changes an object in place; changed properties are tracked for delta.
        pub fn $update(&self, id: &str, f: impl FnOnce(&mut $ty)) {
            let mut s = lock(&self.shared);
            let seq = s.bump();
            s.$col.update(seq, id, f);
        }
        /// Adds (or replaces) an object; it appears in full in the next delta round.
        pub fn $add(&self, o: $ty) {
            let mut s = lock(&self.shared);
            let seq = s.bump();
            s.$col.add(seq, o);
        }
        /// Hard delete: `@removed {"reason":"deleted"}` in the next round.
        pub fn $del(&self, id: &str) {
            let mut s = lock(&self.shared);
            let seq = s.bump();
            s.$col.hard_delete(seq, id);
        }
        /// Soft delete: `@removed {"reason":"changed"}`; restorable.
        pub fn $soft(&self, id: &str) {
            let mut s = lock(&self.shared);
            let seq = s.bump();
            s.$col.soft_delete(seq, id);
        }
        /// Restores a soft-deleted object; it reappears in full without annotation.
        pub fn $restore(&self, id: &str) {
            let mut s = lock(&self.shared);
            let seq = s.bump();
            s.$col.restore(seq, id);
        }
    };
}

impl Control {
    crud!(
        users,
        User,
        update_user,
        add_user,
        delete_user,
        soft_delete_user,
        restore_user
    );
    crud!(
        devices,
        Device,
        update_device,
        add_device,
        delete_device,
        soft_delete_device,
        restore_device
    );
    crud!(
        managed,
        ManagedDevice,
        update_managed_device,
        add_managed_device,
        delete_managed_device,
        soft_delete_managed_device,
        restore_managed_device
    );

    /// Adds (or replaces) a group. Its members appear in members@delta.
    pub fn add_group(&self, g: Group) {
        let mut s = lock(&self.shared);
        let seq = s.bump();
        s.groups.add(seq, g);
    }

    /// Changes a group; member list changes are tracked per member.
    pub fn update_group(&self, id: &str, f: impl FnOnce(&mut Group)) {
        let mut s = lock(&self.shared);
        let seq = s.bump();
        if let Some((before, after)) = s.groups.update(seq, id, f) {
            s.group_member_events(seq, &before, &after);
        }
    }

    pub fn add_group_member(&self, group_id: &str, member_id: &str) {
        let m = member_id.to_owned();
        self.update_group(group_id, |g| {
            if !g.members.contains(&m) {
                g.members.push(m);
            }
        });
    }

    pub fn remove_group_member(&self, group_id: &str, member_id: &str) {
        self.update_group(group_id, |g| g.members.retain(|x| x != member_id));
    }

    pub fn delete_group(&self, id: &str) {
        let mut s = lock(&self.shared);
        let seq = s.bump();
        s.groups.hard_delete(seq, id);
    }

    pub fn soft_delete_group(&self, id: &str) {
        let mut s = lock(&self.shared);
        let seq = s.bump();
        s.groups.soft_delete(seq, id);
    }

    pub fn restore_group(&self, id: &str) {
        let mut s = lock(&self.shared);
        let seq = s.bump();
        s.groups.restore(seq, id);
    }

    /// Queues `fault` for the next `times` requests whose path starts with `path_prefix`.
    pub fn fail_next(&self, path_prefix: &str, fault: Fault, times: u32) {
        if times > 0 {
            lock(&self.shared).faults.push((path_prefix.to_owned(), fault, times));
        }
    }

    /// Expires every delta token and skiptoken minted so far.
    pub fn expire_delta_tokens(&self) {
        lock(&self.shared).epoch += 1;
    }

    /// Forgets every delta round in progress, as a restarted service would:
    /// their `$skiptoken` links become unknown (answered as expired, in the
    /// current expiry style), while delta links of finished rounds keep working.
    pub fn forget_page_links(&self) {
        let mut s = lock(&self.shared);
        s.rounds.clear();
        s.round_order.clear();
    }

    /// How expired delta tokens are reported (default: 410 Gone + Location).
    pub fn set_delta_expiry_style(&self, style: DeltaExpiry) {
        lock(&self.shared).expiry_style = style;
    }

    /// What changed objects carry in later delta rounds (default: changed properties only).
    pub fn set_delta_props(&self, mode: DeltaProps) {
        lock(&self.shared).delta_props = mode;
    }

    /// Replay and empty-page rates (percent of delta pages after the first).
    /// `(0, 0)` makes rounds clean; defaults are 25 and 10.
    pub fn set_delta_quirks(&self, replay_pct: u8, empty_page_pct: u8) {
        let mut s = lock(&self.shared);
        s.replay_pct = u64::from(replay_pct.min(100));
        s.empty_pct = u64::from(empty_page_pct.min(90));
    }

    /// Resource-owner password grants the token endpoint has answered.
    pub fn password_grants(&self) -> u64 {
        lock(&self.shared)
            .password_grants
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Everything the emulator has answered (newest last, capped).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        lock(&self.shared).log.iter().cloned().collect()
    }

    pub fn clear_request_log(&self) {
        lock(&self.shared).log.clear();
    }

    /// Consents the given application roles (replacing earlier grants).
    pub fn grant_consent(&self, client_id: &str, roles: &[&str]) {
        let mut s = lock(&self.shared);
        if let Some(app) = s.apps.iter_mut().find(|a| a.client_id == client_id) {
            app.granted_roles = roles.iter().map(|r| (*r).to_owned()).collect();
        }
    }

    /// Removes every grant. Tokens already issued keep their roles until they expire, as in Entra.
    pub fn revoke_consent(&self, client_id: &str) {
        let mut s = lock(&self.shared);
        if let Some(app) = s.apps.iter_mut().find(|a| a.client_id == client_id) {
            app.granted_roles.clear();
        }
    }

    /// Registers (or replaces) an application, with a service principal
    /// (as if registered in the portal and installed in the tenant).
    pub fn add_app(&self, mut app: App) {
        install_app(&mut app);
        let mut s = lock(&self.shared);
        s.apps.retain(|a| a.client_id != app.client_id);
        s.apps.push(app);
    }

    /// Uploads a certificate to an application (for client assertions).
    pub fn add_app_certificate(&self, client_id: &str, cert: super::model::AppCertificate) {
        let mut s = lock(&self.shared);
        if let Some(app) = s.apps.iter_mut().find(|a| a.client_id == client_id) {
            app.certificates.push(cert);
        }
    }

    /// Delta page size (default 200).
    pub fn set_page_size(&self, n: usize) {
        lock(&self.shared).page_size = n.max(1);
    }

    /// Lifetime of newly issued access tokens (`expires_in`); 0 issues already-expired tokens.
    pub fn set_token_lifetime(&self, secs: u64) {
        lock(&self.shared).token_lifetime_s = secs;
    }

    /// Replaces the token signing key: every access token issued so far is
    /// refused with 401 before it expires, as after a revocation in Entra
    /// ID. Clients must fetch a new token and carry on.
    pub fn revoke_issued_tokens(&self) {
        use rand::RngExt;
        lock(&self.shared).key = rand::rng().random();
    }

    /// A copy of one application (by client id) as the emulator holds it
    /// now, including apps created through `POST /v1.0/applications`.
    pub fn app(&self, client_id: &str) -> Option<App> {
        lock(&self.shared)
            .apps
            .iter()
            .find(|a| a.client_id == client_id)
            .cloned()
    }

    /// Approves a pending device-code sign-in as the tenant's administrator,
    /// as `POST /devicelogin` with the right password does. `false` when no
    /// pending, unexpired code has this user code.
    pub fn approve_device_code(&self, user_code: &str) -> bool {
        self.settle_device_code(user_code, DeviceCodeState::Approved)
    }

    /// Declines a pending device-code sign-in (the admin clicked "Cancel").
    pub fn decline_device_code(&self, user_code: &str) -> bool {
        self.settle_device_code(user_code, DeviceCodeState::Declined)
    }

    fn settle_device_code(&self, user_code: &str, to: DeviceCodeState) -> bool {
        let mut s = lock(&self.shared);
        match s.pending_device_code(user_code) {
            Some(i) => {
                s.device_codes[i].state = to;
                true
            }
            None => false,
        }
    }

    /// `interval` and `expires_in` of device codes issued from now on
    /// (defaults 5 s and 900 s, as Entra). Tests use 0 or 1 s intervals.
    pub fn set_device_code_timing(&self, interval_s: u64, expires_in_s: u64) {
        let mut s = lock(&self.shared);
        s.device_interval_s = interval_s;
        s.device_expires_s = expires_in_s;
    }

    /// How many `POST /servicePrincipals` and `addPassword` calls for an
    /// application created from now on fail as not yet replicated
    /// (default 1, so clients always exercise their retry path; 0 = none).
    /// Windows still open are shortened to `n` too (0: replicated now).
    pub fn set_replication_delay(&self, n: u32) {
        let mut s = lock(&self.shared);
        s.replication_delay = n;
        s.replicating.values_mut().for_each(|left| *left = (*left).min(n));
    }

    /// A copy of one user as the emulator holds it now.
    pub fn user(&self, id: &str) -> Option<User> {
        lock(&self.shared).users.get(id).cloned()
    }
}
