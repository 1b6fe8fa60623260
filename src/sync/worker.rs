//! One sync round per object type: follow pages from where the last round
//! (or the interrupted one) stopped, turn items into replica changes, apply
//! them to the live replica and store them with the checkpoint of the page,
//! in one transaction. A restart resumes at the last stored page.
//!
//! A full resync (first run, or Graph no longer accepting a stored delta or
//! page link, in any round) does not empty anything: every object of the
//! fresh enumeration is applied as it arrives (it is current data), and when
//! the enumeration ends, the objects of that type it did not see again are
//! removed in one batch. Lookups keep answering throughout, from a replica
//! that is at every moment a mix of last-round and fresh objects, all of them
//! valid data. The enumeration's start is a mark stored with the round: the
//! enumeration writes its objects at or after the mark, every earlier write
//! lies before it, so the sweep compares against exactly what this
//! enumeration saw, across a restart of the process or of the enumeration.

use std::future::Future;

use serde_json::Value;

use super::mapping::{self, MappingError};
use crate::clock::now_unix;
use crate::directory::groups::GroupTable;
use crate::directory::persist;
use crate::directory::persist::GROUP_KIND;
pub use crate::directory::persist::load_groups;
use crate::directory::{AccountKind, AccountPatch, Change, EntraReplica, GroupRef};
use crate::store::objects;
use crate::store::{Conn, Store, StoreError};

/// One page of a Graph collection.
#[derive(Debug, Clone, Default)]
pub struct PageData {
    pub items: Vec<Value>,
    pub next_link: Option<String>,
    pub delta_link: Option<String>,
}

/// Why a page could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The link is no longer valid (410 Gone, syncStateNotFound,
    /// resyncRequired, an expired or unknown page token): the enumeration
    /// starts over from its first URL.
    #[error("Graph no longer accepts the link (expired or unknown delta or page token)")]
    DeltaExpired,
    #[error("{0}")]
    Other(String),
}

/// Where pages come from: Microsoft Graph, or a scripted source in tests.
pub trait PageSource: Send + Sync {
    fn fetch(&self, url: &str) -> impl Future<Output = Result<PageData, FetchError>> + Send;
}

/// The object types synced by delta.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ObjectType {
    Users,
    Devices,
    Groups,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Users => "users",
            ObjectType::Devices => "devices",
            ObjectType::Groups => "groups",
        }
    }

    /// The kind its objects are stored under.
    fn stored_kind(self) -> &'static str {
        match self {
            ObjectType::Users => AccountKind::User.as_str(),
            ObjectType::Devices => AccountKind::Device.as_str(),
            ObjectType::Groups => GROUP_KIND,
        }
    }
}

/// Checkpoints that close a page, and the ids a finished full resync sweeps.
type Closing = (Vec<(String, String)>, Vec<String>);

/// Times one round may start its enumeration over: links that expire again
/// and again before the end would otherwise keep it going forever.
const MAX_RESTARTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    #[error("{object}: {source}")]
    Fetch { object: &'static str, source: FetchError },
    #[error("{object}: a page with neither @odata.nextLink nor @odata.deltaLink")]
    NoLink { object: &'static str },
    /// The first URL of a fresh enumeration was answered as expired too:
    /// starting over again would only loop.
    #[error(
        "{object}: Graph refused even the first page of a fresh enumeration as an expired link; gave up instead of starting over again"
    )]
    ExpiredAtStart { object: &'static str },
    /// Page links kept expiring before the enumeration could finish.
    #[error(
        "{object}: Graph's page links expired {restarts} times before the enumeration could finish; gave up instead of starting over again"
    )]
    KeepsExpiring { object: &'static str, restarts: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one round of one object type did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub pages: u64,
    pub items: u64,
    /// Items that could not be used (no id); logged and skipped.
    pub bad_items: u64,
    /// Objects removed by the sweep at the end of a full enumeration.
    pub swept: u64,
    pub full: bool,
    pub resumed: bool,
    /// Set when a link Graph no longer accepts made the enumeration start
    /// over during the round: what happened, in a sentence for the admin.
    pub restarted: Option<String>,
}

/// The checkpoint names of one object type.
fn cp(object: ObjectType, what: &str) -> String {
    format!("{}.{what}", object.as_str())
}

/// The write time of objects applied now: during a full enumeration never
/// before its mark, so the sweep cannot take them for unseen ones.
fn write_time(mark: Option<i64>) -> i64 {
    now_unix().max(mark.unwrap_or(i64::MIN))
}

/// What made the round start over, for the admin.
fn restart_reason(from_delta_link: bool, from_stored_link: bool, restarts: u32) -> String {
    let what = if from_delta_link {
        "the delta token had expired; the enumeration started over from the beginning (a full resync)"
    } else if from_stored_link {
        "the stored page link had expired; the enumeration started over from the beginning"
    } else {
        "a page link expired during the round; the enumeration started over from the beginning"
    };
    if restarts > 1 {
        format!("{what} ({restarts} times)")
    } else {
        what.to_string()
    }
}

/// Runs sync rounds for one tenant against one replica and store.
pub struct Syncer<S> {
    pub source: S,
    pub replica: EntraReplica,
    pub store: Store,
    /// UPN suffixes in scope.
    pub selected_domains: Vec<String>,
    /// First-round URLs (with `$select`), per object type.
    pub initial_urls: Vec<(ObjectType, String)>,
    /// Groups and their direct members, as synced (see
    /// `persist::load_groups`).
    pub groups: std::sync::Mutex<GroupTable>,
}

impl<S: PageSource> Syncer<S> {
    fn initial_url(&self, object: ObjectType) -> Option<&str> {
        self.initial_urls
            .iter()
            .find(|(o, _)| *o == object)
            .map(|(_, u)| u.as_str())
    }

    /// One round of `object`: resumes an interrupted round, else a delta
    /// round from the stored delta link, else a full enumeration. When Graph
    /// no longer accepts a link (`DeltaExpired`) the enumeration starts over
    /// at once, a few times at most.
    pub async fn round(&self, object: ObjectType) -> Result<RoundReport, SyncError> {
        self.round_observed(object, &|_| {}).await
    }

    /// [`Syncer::round`], calling `observe` with the report so far after
    /// every page (progress for the admin CLI).
    pub async fn round_observed(
        &self,
        object: ObjectType,
        observe: &(dyn Fn(&RoundReport) + Send + Sync),
    ) -> Result<RoundReport, SyncError> {
        let mut conn = self.store.conn()?;
        let next = conn.checkpoint(&cp(object, "next"))?;
        let delta = conn.checkpoint(&cp(object, "delta"))?;
        // An unreadable mark sweeps nothing: keeping a stale object until the
        // next full resync is better than removing a current one.
        let stored_mark = conn
            .checkpoint(&cp(object, "resync_since"))?
            .map(|m| m.parse::<i64>().unwrap_or(i64::MIN));
        let mut report = RoundReport::default();
        let from_delta_link = next.is_none() && delta.is_some();
        // Whether `url` is the first page of an enumeration started from
        // scratch: if that is refused as expired too, starting over is no cure.
        let mut fresh = false;
        let (mut url, mut mark) = match (next, delta) {
            (Some(n), _) => {
                report.resumed = true;
                (n, stored_mark)
            }
            (None, Some(d)) => (d, stored_mark),
            (None, None) => {
                fresh = true;
                let (url, mark) = self.start_full(&mut conn, object)?;
                (url, Some(mark))
            }
        };
        report.full = mark.is_some();
        let mut restarts = 0u32;
        loop {
            let page = match self.source.fetch(&url).await {
                Ok(p) => p,
                Err(FetchError::DeltaExpired) => {
                    let name = object.as_str();
                    if fresh {
                        return Err(SyncError::ExpiredAtStart { object: name });
                    }
                    if restarts == MAX_RESTARTS {
                        return Err(SyncError::KeepsExpiring { object: name, restarts });
                    }
                    let first_fetch = report.pages == 0 && restarts == 0;
                    restarts += 1;
                    let why = restart_reason(first_fetch && from_delta_link, first_fetch && report.resumed, restarts);
                    tracing::warn!(object = name, reason = %why, "starting the enumeration over; the replica keeps serving meanwhile");
                    report.restarted = Some(why);
                    let (first, new_mark) = self.start_full(&mut conn, object)?;
                    url = first;
                    mark = Some(new_mark);
                    report.full = true;
                    fresh = true;
                    continue;
                }
                Err(source) => {
                    return Err(SyncError::Fetch {
                        object: object.as_str(),
                        source,
                    });
                }
            };
            fresh = false;
            report.pages += 1;
            self.apply_page(&mut conn, object, &page, &mut report, mark)?;
            observe(&report);
            if page.delta_link.is_some() {
                break;
            }
            url = page.next_link.ok_or(SyncError::NoLink {
                object: object.as_str(),
            })?;
        }
        Ok(report)
    }

    /// Starts the enumeration from scratch: clears the round's links and
    /// stores the mark that tells this enumeration's writes from earlier
    /// ones (for the sweep). Returns the first URL and the mark.
    fn start_full(&self, conn: &mut Conn, object: ObjectType) -> Result<(String, i64), SyncError> {
        // Later than every write so far, not only than the clock: what an
        // abandoned enumeration wrote this very second still counts as
        // unseen, and what this one writes (at or after the mark) as seen.
        let last = conn.last_written(object.stored_kind())?.unwrap_or(i64::MIN);
        let mark = now_unix().max(last).saturating_add(1);
        conn.apply(
            &[],
            &[
                (&cp(object, "delta"), ""),
                (&cp(object, "next"), ""),
                (&cp(object, "resync_since"), &mark.to_string()),
            ],
            now_unix(),
        )?;
        Ok((self.initial_url(object).unwrap_or_default().to_string(), mark))
    }

    /// Applies and stores one page; `mark` is the start of the full
    /// enumeration in progress, if one is.
    fn apply_page(
        &self,
        conn: &mut Conn,
        object: ObjectType,
        page: &PageData,
        report: &mut RoundReport,
        mark: Option<i64>,
    ) -> Result<(), SyncError> {
        if object == ObjectType::Groups {
            return self.apply_groups_page(conn, page, report, mark);
        }
        let now = write_time(mark);
        let mut changes = Vec::with_capacity(page.items.len());
        for item in &page.items {
            report.items += 1;
            // Groups never get here (see above): users and devices only.
            let change: Result<Change, MappingError> = if object == ObjectType::Users {
                mapping::user_change(item, &self.selected_domains, now)
            } else {
                let existing = item
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|id| self.replica.get(id))
                    .map(|a| a.attributes().clone());
                mapping::device_change(item, existing.as_ref(), now)
            };
            match change {
                Ok(c) => changes.push(c),
                Err(e) => {
                    report.bad_items += 1;
                    tracing::warn!(object = object.as_str(), error = %e, "skipped a Graph item");
                }
            }
        }
        let touched: Vec<String> = changes.iter().map(|c| change_id(c).to_string()).collect();
        self.replica.apply(changes);
        // What to store: the replica's resulting state of every touched object.
        let mut puts: Vec<std::sync::Arc<crate::directory::Account>> = Vec::new();
        let mut gone: Vec<&str> = Vec::new();
        for id in &touched {
            match self.replica.get(id) {
                Some(a) => puts.push(a),
                None => gone.push(id),
            }
        }
        let (checkpoints, swept_ids) = self.closing_checkpoints(conn, object, page, &touched, mark)?;
        gone.extend(swept_ids.iter().map(String::as_str));
        let cps: Vec<(&str, &str)> = checkpoints.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        persist::save_accounts(conn, &puts, &gone, &cps, now)?;
        if !swept_ids.is_empty() {
            report.swept = swept_ids.len() as u64;
            self.replica.apply(
                swept_ids
                    .into_iter()
                    .map(|object_id| Change::HardDelete { object_id })
                    .collect(),
            );
        }
        Ok(())
    }
}

impl<S: PageSource> Syncer<S> {
    /// The checkpoints that close a page: the next link, or at the end of a
    /// round the delta link (and the end of a full resync). Returns them with
    /// the ids of `kind` that a finished full resync, begun at `mark`, did
    /// not see again.
    fn closing_checkpoints(
        &self,
        conn: &Conn,
        object: ObjectType,
        page: &PageData,
        seen: &[String],
        mark: Option<i64>,
    ) -> Result<Closing, SyncError> {
        let mut checkpoints = Vec::new();
        let mut swept = Vec::new();
        match (&page.next_link, &page.delta_link) {
            (_, Some(d)) => {
                checkpoints.push((cp(object, "delta"), d.clone()));
                checkpoints.push((cp(object, "next"), String::new()));
                if let Some(mark) = mark {
                    swept = conn.ids_written_before(object.stored_kind(), mark)?;
                    swept.retain(|id| !seen.contains(id));
                    checkpoints.push((cp(object, "resync_since"), String::new()));
                }
            }
            (Some(n), None) => checkpoints.push((cp(object, "next"), n.clone())),
            (None, None) => {}
        }
        Ok((checkpoints, swept))
    }

    fn apply_groups_page(
        &self,
        conn: &mut Conn,
        page: &PageData,
        report: &mut RoundReport,
        mark: Option<i64>,
    ) -> Result<(), SyncError> {
        let now = write_time(mark);
        let mut seen = Vec::new();
        let mut table = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        for item in &page.items {
            report.items += 1;
            match mapping::group_delta(item) {
                Ok(d) => {
                    table.apply(&d);
                    seen.push(d.id);
                }
                Err(e) => {
                    report.bad_items += 1;
                    tracing::warn!(error = %e, "skipped a Graph group item");
                }
            }
        }
        let (checkpoints, swept) = self.closing_checkpoints(conn, ObjectType::Groups, page, &seen, mark)?;
        for id in &swept {
            table.groups.remove(id);
        }
        let blobs: Vec<(String, Vec<u8>)> = seen
            .iter()
            .filter_map(|id| {
                table
                    .groups
                    .get(id)
                    .map(|g| (id.clone(), crate::directory::persist::encode_group(g)))
            })
            .collect();
        let mut ops: Vec<objects::ObjectOp<'_>> = blobs
            .iter()
            .map(|(id, b)| objects::ObjectOp::Put {
                object_id: id,
                kind: GROUP_KIND,
                data: b,
            })
            .collect();
        let removed: Vec<&String> = seen
            .iter()
            .filter(|id| !table.groups.contains_key(*id))
            .chain(swept.iter())
            .collect();
        ops.extend(removed.iter().map(|id| objects::ObjectOp::Delete { object_id: id }));
        let cps: Vec<(&str, &str)> = checkpoints.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        conn.apply(&ops, &cps, now)?;
        report.swept += swept.len() as u64;
        if page.delta_link.is_some() {
            // The round is complete: expand nesting once and give every
            // account its groups.
            let memberships = table.memberships();
            drop(table);
            self.apply_memberships(conn, memberships, now)?;
        }
        Ok(())
    }

    /// Sets each account's transitive groups where they changed, and stores
    /// those accounts. Compared in place, so a round in which memberships did
    /// not change writes nothing; the first round writes every member.
    fn apply_memberships(
        &self,
        conn: &mut Conn,
        mut memberships: std::collections::HashMap<String, std::sync::Arc<[GroupRef]>>,
        now: i64,
    ) -> Result<(), SyncError> {
        let mut changes = Vec::new();
        for account in self.replica.snapshot_accounts() {
            let want = memberships.remove(account.object_id());
            let want: &[GroupRef] = want.as_deref().unwrap_or(&[]);
            // Compared in place: only accounts whose groups changed are copied.
            let have = account.groups();
            if want.len() != have.len() || want.iter().zip(have).any(|(w, h)| w != &**h) {
                changes.push(Change::Merge {
                    object_id: account.object_id().to_string(),
                    kind: account.kind(),
                    patch: AccountPatch {
                        groups: Some(want.to_vec()),
                        ..AccountPatch::default()
                    },
                });
            }
        }
        self.apply_and_store(conn, changes, now)?;
        // After the accounts have their groups, in the replica and the
        // store: until then (a first enumeration, or the one after a
        // purge, which deletes every checkpoint) accounts have no groups
        // and `[[policy]]` would see them in no group.
        conn.apply(&[], &[(GROUPS_APPLIED, &now.to_string())], now)?;
        Ok(())
    }

    /// Applies merges to the live replica and stores the accounts as they
    /// now stand, in one transaction.
    fn apply_and_store(&self, conn: &mut Conn, changes: Vec<Change>, now: i64) -> Result<(), SyncError> {
        if changes.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = changes.iter().map(|c| change_id(c).to_string()).collect();
        self.replica.apply(changes);
        let puts: Vec<_> = ids.iter().filter_map(|id| self.replica.get(id)).collect();
        persist::save_accounts(conn, &puts, &[], &[], now)?;
        Ok(())
    }
}

/// The checkpoint a finished Intune pass leaves; its time is when.
pub const INTUNE_DONE: &str = "intune.done";

/// The checkpoint left once a complete groups round has given every
/// account its transitive groups (the groups' delta link is stored before
/// that, with the round's last page).
pub const GROUPS_APPLIED: &str = "groups.memberships";

/// What an Intune pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntuneReport {
    pub pages: u64,
    pub managed_devices: u64,
    /// Entra devices whose MAC list changed.
    pub updated: u64,
}

impl<S: PageSource> Syncer<S> {
    /// Reads Intune's managed devices (a list, not a delta: the whole list
    /// each time) and gives each Entra device the Wi-Fi and Ethernet MACs
    /// Intune reports for its `deviceId`, so MAB finds it. A device Intune no
    /// longer lists loses its MACs.
    pub async fn intune_round(&self, first_url: &str) -> Result<IntuneReport, SyncError> {
        self.intune_round_observed(first_url, &|_| {}).await
    }

    /// `intune_round`, calling `observe` after each page (progress for
    /// `sync now --wait`). A finished pass leaves the checkpoint
    /// `intune.done`, whose time is the last success after a restart.
    pub async fn intune_round_observed(
        &self,
        first_url: &str,
        observe: &(dyn Fn(&IntuneReport) + Sync),
    ) -> Result<IntuneReport, SyncError> {
        let mut report = IntuneReport::default();
        // Entra deviceId → (MACs, Intune managed-device ids).
        let mut macs: std::collections::HashMap<String, (Vec<crate::directory::MacAddr>, Vec<String>)> =
            std::collections::HashMap::new();
        let mut url = first_url.to_string();
        loop {
            let page = self.source.fetch(&url).await.map_err(|source| SyncError::Fetch {
                object: "managedDevices",
                source,
            })?;
            report.pages += 1;
            for item in &page.items {
                report.managed_devices += 1;
                if let Some((device_id, list, managed_id)) = mapping::managed_device(item) {
                    let (entry, ids) = macs.entry(device_id).or_default();
                    for m in list {
                        if !entry.contains(&m) {
                            entry.push(m);
                        }
                    }
                    if let Some(id) = managed_id {
                        let id = format!("{}{id}", mapping::INTUNE_CERT_PREFIX);
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                }
            }
            observe(&report);
            match page.next_link {
                Some(n) => url = n,
                None => break,
            }
        }
        let mut changes = Vec::new();
        for account in self.replica.snapshot_accounts() {
            if account.kind() != AccountKind::Device {
                continue;
            }
            let Some(device_id) = account.device_id() else {
                continue;
            };
            let (want, ids) = macs.remove(&device_id.to_ascii_lowercase()).unwrap_or_default();
            let have_ids: Vec<&str> = account.cert_identities().collect();
            if want.as_slice() != account.macs() || ids != have_ids {
                changes.push(Change::Merge {
                    object_id: account.object_id().to_string(),
                    kind: AccountKind::Device,
                    patch: AccountPatch {
                        macs: Some(want),
                        cert_identities: Some(ids),
                        last_change: Some(Some(now_unix())),
                        ..AccountPatch::default()
                    },
                });
            }
        }
        report.updated = changes.len() as u64;
        let mut conn = self.store.conn()?;
        let now = now_unix();
        self.apply_and_store(&mut conn, changes, now)?;
        conn.apply(&[], &[(INTUNE_DONE, &report.managed_devices.to_string())], now)?;
        Ok(report)
    }
}

fn change_id(c: &Change) -> &str {
    match c {
        Change::Upsert(a) => a.object_id(),
        Change::Merge { object_id, .. }
        | Change::SoftDelete { object_id }
        | Change::Restore { object_id }
        | Change::HardDelete { object_id } => object_id,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::directory::Identity;

    /// Pages by URL; URLs in `fail` fail once; everything fetched is logged.
    #[derive(Default)]
    struct Scripted {
        pages: Mutex<HashMap<String, Result<PageData, &'static str>>>,
        fail: Mutex<HashSet<String>>,
        fetched: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn page(&self, url: &str, items: Vec<Value>, next: Option<&str>, delta: Option<&str>) {
            let p = PageData {
                items,
                next_link: next.map(String::from),
                delta_link: delta.map(String::from),
            };
            self.pages.lock().unwrap().insert(url.into(), Ok(p));
        }
        fn expired(&self, url: &str) {
            self.pages.lock().unwrap().insert(url.into(), Err("expired"));
        }
        fn fetched(&self) -> Vec<String> {
            std::mem::take(&mut *self.fetched.lock().unwrap())
        }
    }

    impl PageSource for Scripted {
        async fn fetch(&self, url: &str) -> Result<PageData, FetchError> {
            let mut fetched = self.fetched.lock().unwrap();
            assert!(fetched.len() < 1000, "the round keeps fetching: {:?}", &fetched[..20]);
            fetched.push(url.to_string());
            drop(fetched);
            if self.fail.lock().unwrap().remove(url) {
                return Err(FetchError::Other("connection reset".into()));
            }
            match self.pages.lock().unwrap().get(url) {
                Some(Ok(p)) => Ok(p.clone()),
                Some(Err(_)) => Err(FetchError::DeltaExpired),
                None => Err(FetchError::Other(format!("no page {url}"))),
            }
        }
    }

    fn user(id: &str, upn: &str, enabled: bool) -> Value {
        json!({"id": id, "userPrincipalName": upn, "accountEnabled": enabled, "displayName": id})
    }

    fn syncer(dir: &std::path::Path) -> Syncer<Scripted> {
        Syncer {
            source: Scripted::default(),
            replica: EntraReplica::new(),
            store: Store::open(dir).unwrap(),
            selected_domains: vec!["contoso.com".into()],
            initial_urls: vec![
                (ObjectType::Users, "start".into()),
                (ObjectType::Devices, "dev-start".into()),
                (ObjectType::Groups, "grp-start".into()),
            ],
            groups: Default::default(),
        }
    }

    fn enabled(s: &Syncer<Scripted>, upn: &str) -> Option<bool> {
        s.replica.lookup(&Identity::parse(upn)).map(|a| a.enabled())
    }

    /// The store alone, loaded into a fresh replica, as after a restart.
    fn reloaded(s: &Syncer<Scripted>) -> EntraReplica {
        let r = EntraReplica::new();
        persist::load_replica(&s.store, &r).unwrap();
        r
    }

    #[tokio::test]
    async fn full_enumeration_then_delta_rounds() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        s.source.page(
            "start",
            vec![user("u1", "a@contoso.com", true), user("u2", "b@contoso.com", true)],
            Some("p2"),
            None,
        );
        // A replay of u1 on the next page, and a user outside the selection.
        s.source.page(
            "p2",
            vec![user("u1", "a@contoso.com", true), user("u3", "c@fabrikam.com", true)],
            None,
            Some("d1"),
        );
        let r = s.round(ObjectType::Users).await.unwrap();
        assert_eq!((r.pages, r.items, r.full, r.resumed), (2, 4, true, false));
        assert_eq!(s.replica.counts().users, 2);
        assert_eq!(enabled(&s, "a@contoso.com"), Some(true));
        assert!(s.replica.lookup(&Identity::parse("c@fabrikam.com")).is_none());
        assert_eq!(s.source.fetched(), vec!["start", "p2"]);

        // A delta round: u1 disabled (only that property), u2 soft-deleted.
        s.source.page(
            "d1",
            vec![
                json!({"id": "u1", "accountEnabled": false}),
                json!({"id": "u2", "@removed": {"reason": "changed"}}),
            ],
            None,
            Some("d2"),
        );
        let r = s.round(ObjectType::Users).await.unwrap();
        assert!(!r.full);
        let a = s.replica.lookup(&Identity::parse("a@contoso.com")).unwrap();
        assert!(!a.enabled());
        assert_eq!(
            a.display_name(),
            Some("u1"),
            "a partial item keeps what it did not carry"
        );
        assert!(s.replica.lookup(&Identity::parse("b@contoso.com")).is_none());
        // The store says the same after a restart.
        let r2 = reloaded(&s);
        assert_eq!(
            r2.lookup(&Identity::parse("a@contoso.com")).map(|a| a.enabled()),
            Some(false)
        );
        assert!(r2.lookup(&Identity::parse("b@contoso.com")).is_none());

        // Restored: reappears in full without annotation.
        s.source
            .page("d2", vec![user("u2", "b@contoso.com", true)], None, Some("d3"));
        s.round(ObjectType::Users).await.unwrap();
        assert_eq!(enabled(&s, "b@contoso.com"), Some(true));
        assert_eq!(s.source.fetched(), vec!["d1", "d2"]);
    }

    #[tokio::test]
    async fn an_interrupted_round_resumes_at_the_stored_page() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        s.source
            .page("start", vec![user("u1", "a@contoso.com", true)], Some("p2"), None);
        s.source
            .page("p2", vec![user("u2", "b@contoso.com", true)], Some("p3"), None);
        s.source
            .page("p3", vec![user("u3", "c@contoso.com", true)], None, Some("d1"));
        s.source.fail.lock().unwrap().insert("p3".into());
        assert!(matches!(s.round(ObjectType::Users).await, Err(SyncError::Fetch { .. })));
        assert_eq!(s.replica.counts().users, 2);
        // A new process: the store has two users and the position.
        let s2 = Syncer {
            replica: reloaded(&s),
            ..syncer(dir.path())
        };
        s2.source
            .page("p3", vec![user("u3", "c@contoso.com", true)], None, Some("d1"));
        let r = s2.round(ObjectType::Users).await.unwrap();
        assert!(r.resumed);
        assert!(r.full);
        assert_eq!(s2.source.fetched(), vec!["p3"], "nothing started from scratch");
        assert_eq!(s2.replica.counts().users, 3);
    }

    #[tokio::test]
    async fn an_expired_delta_token_resyncs_and_sweeps_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        s.source.page(
            "start",
            vec![user("u1", "a@contoso.com", true), user("u2", "b@contoso.com", true)],
            None,
            Some("d1"),
        );
        let r = s.round(ObjectType::Users).await.unwrap();
        assert_eq!(r.restarted, None);
        // The token has expired and u2 is gone from the tenant. Within the
        // same second: the sweep does not depend on the clock moving on.
        s.source.expired("d1");
        s.source
            .page("start", vec![user("u1", "a@contoso.com", false)], None, Some("d9"));
        let r = s.round(ObjectType::Users).await.unwrap();
        assert!(r.full);
        assert_eq!(r.swept, 1);
        assert!(r.restarted.as_deref().is_some_and(|w| w.contains("delta")), "{r:?}");
        assert_eq!(s.source.fetched(), vec!["start", "d1", "start"]);
        assert_eq!(enabled(&s, "a@contoso.com"), Some(false));
        assert!(s.replica.lookup(&Identity::parse("b@contoso.com")).is_none());
        let r2 = reloaded(&s);
        assert_eq!(r2.counts().users, 1);
    }

    fn upns(r: &EntraReplica) -> Vec<String> {
        let mut v: Vec<String> = r
            .snapshot_accounts()
            .iter()
            .filter_map(|a| a.upn().map(str::to_string))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_resumed_enumeration_whose_link_expired_starts_over_and_converges() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        s.source.page(
            "start",
            vec![user("u1", "a@contoso.com", true), user("u2", "b@contoso.com", true)],
            Some("p2"),
            None,
        );
        s.source
            .page("p2", vec![user("u3", "c@contoso.com", true)], Some("p3"), None);
        s.source.fail.lock().unwrap().insert("p3".into());
        assert!(s.round(ObjectType::Users).await.is_err());
        assert_eq!(s.replica.counts().users, 3);

        // Meanwhile u2 left the tenant, u4 joined, and Graph forgot p3.
        let s2 = Syncer {
            replica: reloaded(&s),
            ..syncer(dir.path())
        };
        s2.source.expired("p3");
        s2.source.page(
            "start",
            vec![user("u3", "c@contoso.com", true), user("u1", "a@contoso.com", false)],
            Some("q2"),
            None,
        );
        s2.source
            .page("q2", vec![user("u4", "d@contoso.com", true)], None, Some("d1"));
        let r = s2.round(ObjectType::Users).await.unwrap();
        assert!(r.resumed && r.full, "{r:?}");
        assert_eq!(s2.source.fetched(), vec!["p3", "start", "q2"]);
        let why = r.restarted.expect("the report says the enumeration started over");
        assert!(why.contains("started over"), "{why}");
        assert_eq!(r.swept, 1, "u2, seen before the restart only");
        let want = ["a@contoso.com", "c@contoso.com", "d@contoso.com"];
        assert_eq!(upns(&s2.replica), want);
        assert_eq!(enabled(&s2, "a@contoso.com"), Some(false));
        assert_eq!(upns(&reloaded(&s2)), want, "the store agrees");

        // The next round is an ordinary delta round.
        s2.source.page(
            "d1",
            vec![json!({"id": "u3", "accountEnabled": false})],
            None,
            Some("d2"),
        );
        let r = s2.round(ObjectType::Users).await.unwrap();
        assert!(!r.full && r.restarted.is_none(), "{r:?}");
        assert_eq!(enabled(&s2, "c@contoso.com"), Some(false));
        assert_eq!(upns(&s2.replica), want);
    }

    #[tokio::test]
    async fn an_expired_page_link_mid_round_starts_over_without_losing_objects() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        s.source.page(
            "start",
            vec![user("u1", "a@contoso.com", true), user("u2", "b@contoso.com", true)],
            None,
            Some("d1"),
        );
        s.round(ObjectType::Users).await.unwrap();
        // A delta round whose second page link expires under it.
        s.source
            .page("d1", vec![user("u3", "c@contoso.com", true)], Some("d1-p2"), None);
        s.source.expired("d1-p2");
        s.source.page(
            "start",
            vec![user("u1", "a@contoso.com", true), user("u3", "c@contoso.com", true)],
            None,
            Some("d2"),
        );
        let r = s.round(ObjectType::Users).await.unwrap();
        assert!(r.full && r.restarted.is_some(), "{r:?}");
        assert_eq!(s.source.fetched(), vec!["start", "d1", "d1-p2", "start"]);
        assert_eq!(upns(&s.replica), ["a@contoso.com", "c@contoso.com"]);
        assert_eq!(upns(&reloaded(&s)), ["a@contoso.com", "c@contoso.com"]);
    }

    #[tokio::test]
    async fn a_source_that_keeps_answering_expired_ends_the_round() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        // Even the first URL of a fresh enumeration is "expired".
        s.source.expired("start");
        let e = s.round(ObjectType::Users).await.unwrap_err();
        assert!(matches!(e, SyncError::ExpiredAtStart { .. }), "{e:?}");
        assert!(e.to_string().contains("first page"), "{e}");
        assert_eq!(s.source.fetched(), vec!["start"]);

        // A stored delta link that expired, then the same.
        s.source
            .page("start", vec![user("u1", "a@contoso.com", true)], None, Some("d1"));
        s.round(ObjectType::Users).await.unwrap();
        s.source.fetched();
        s.source.expired("d1");
        s.source.expired("start");
        let e = s.round(ObjectType::Users).await.unwrap_err();
        assert!(matches!(e, SyncError::ExpiredAtStart { .. }), "{e:?}");
        assert_eq!(s.source.fetched(), vec!["d1", "start"]);
        assert_eq!(s.replica.counts().users, 1, "the replica keeps serving");

        // The first page works, the second always expires: a few restarts, then an error.
        s.source
            .page("start", vec![user("u1", "a@contoso.com", true)], Some("p2"), None);
        s.source.expired("p2");
        let e = s.round(ObjectType::Users).await.unwrap_err();
        assert!(matches!(e, SyncError::KeepsExpiring { .. }), "{e:?}");
        let fetched = s.source.fetched();
        assert!(fetched.len() <= 10, "{fetched:?}");
        assert_eq!(enabled(&s, "a@contoso.com"), Some(true));
    }

    #[tokio::test]
    async fn devices_keep_their_attributes_across_partial_items() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        s.source.page(
            "dev-start",
            vec![json!({"id": "d1", "deviceId": "AAAA", "accountEnabled": true, "operatingSystem": "Windows", "isCompliant": true})],
            None,
            Some("dd1"),
        );
        s.round(ObjectType::Devices).await.unwrap();
        s.source.page(
            "dd1",
            vec![json!({"id": "d1", "isCompliant": false})],
            None,
            Some("dd2"),
        );
        s.round(ObjectType::Devices).await.unwrap();
        let d = s
            .replica
            .lookup(&Identity::parse("aaaa"))
            .or_else(|| s.replica.get("d1"))
            .unwrap();
        assert_eq!(
            d.attributes().get("operatingSystem").map(String::as_str),
            Some("Windows")
        );
        assert_eq!(d.attributes().get("isCompliant").map(String::as_str), Some("false"));
        assert!(d.enabled());
    }

    #[tokio::test]
    async fn groups_give_accounts_their_transitive_memberships() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        s.source.page(
            "start",
            vec![user("u1", "a@contoso.com", true), user("u2", "b@contoso.com", true)],
            None,
            Some("d1"),
        );
        s.round(ObjectType::Users).await.unwrap();
        s.source.page(
            "grp-start",
            vec![json!({"id": "g-eng", "displayName": "Engineering", "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1"},
                {"@odata.type": "#microsoft.graph.group", "id": "g-fw"}]})],
            Some("grp-p2"),
            None,
        );
        let applied = |s: &Syncer<Scripted>| s.store.checkpoint(GROUPS_APPLIED).unwrap();
        assert_eq!(applied(&s), None);
        s.source.page(
            "grp-p2",
            vec![json!({"id": "g-fw", "displayName": "Firmware", "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u2"}]})],
            None,
            Some("gd1"),
        );
        s.round(ObjectType::Groups).await.unwrap();
        let groups = |s: &Syncer<Scripted>, upn: &str| -> Vec<String> {
            s.replica
                .lookup(&Identity::parse(upn))
                .unwrap()
                .groups()
                .iter()
                .map(|g| g.name.clone())
                .collect()
        };
        assert_eq!(groups(&s, "a@contoso.com"), vec!["Engineering"]);
        assert_eq!(groups(&s, "b@contoso.com"), vec!["Engineering", "Firmware"]);
        // Left once the accounts have their groups (what the sessions wait
        // for before comparing after a resync).
        assert!(applied(&s).is_some());
        // Stored: a restart sees the same memberships and group table.
        let r2 = reloaded(&s);
        assert!(
            r2.lookup(&Identity::parse("b@contoso.com"))
                .unwrap()
                .in_group("firmware")
        );
        assert_eq!(load_groups(&s.store).unwrap().groups.len(), 2);
        // u2 leaves Firmware.
        s.source.page(
            "gd1",
            vec![json!({"id": "g-fw", "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u2", "@removed": {"reason": "deleted"}}]})],
            None,
            Some("gd2"),
        );
        s.round(ObjectType::Groups).await.unwrap();
        assert!(groups(&s, "b@contoso.com").is_empty());
        assert_eq!(groups(&s, "a@contoso.com"), vec!["Engineering"]);
    }

    #[tokio::test]
    async fn intune_macs_attach_to_entra_devices() {
        let dir = tempfile::tempdir().unwrap();
        let s = syncer(dir.path());
        s.source.page(
            "dev-start",
            vec![
                json!({"id": "d1", "deviceId": "AAAA-1", "accountEnabled": true}),
                json!({"id": "d2", "deviceId": "bbbb-2", "accountEnabled": true}),
            ],
            None,
            Some("dd1"),
        );
        s.round(ObjectType::Devices).await.unwrap();
        s.source.page(
            "md",
            vec![json!({"azureADDeviceId": "aaaa-1", "wiFiMacAddress": "A1B2C3D4E5F6"})],
            Some("md2"),
            None,
        );
        s.source.page(
            "md2",
            vec![json!({"azureADDeviceId": "aaaa-1", "ethernetMacAddress": "0A0B0C0D0E0F"})],
            None,
            None,
        );
        let seen = Mutex::new(Vec::new());
        let r = s
            .intune_round_observed("md", &|r| seen.lock().unwrap().push((r.pages, r.managed_devices)))
            .await
            .unwrap();
        assert_eq!((r.pages, r.managed_devices, r.updated), (2, 2, 1));
        // Progress after each page, for `sync now --wait`.
        assert_eq!(*seen.lock().unwrap(), vec![(1, 1), (2, 2)]);
        // The pass is recorded, so its last success survives a restart.
        assert!(s.store.checkpoints().unwrap().iter().any(|(n, _, _)| n == INTUNE_DONE));
        let d = s.replica.lookup(&Identity::parse("a1:b2:c3:d4:e5:f6")).unwrap();
        assert_eq!(d.object_id(), "d1");
        assert!(s.replica.lookup(&Identity::parse("0a0b.0c0d.0e0f")).is_some());
        assert!(reloaded(&s).lookup(&Identity::parse("a1b2c3d4e5f6")).is_some());
        // Unchanged: nothing written. Gone from Intune: the MACs go too.
        assert_eq!(s.intune_round("md").await.unwrap().updated, 0);
        s.source.page("md", vec![], None, None);
        assert_eq!(s.intune_round("md").await.unwrap().updated, 1);
        assert!(s.replica.lookup(&Identity::parse("a1:b2:c3:d4:e5:f6")).is_none());
    }
}
