//! The in-memory index of active sessions: what the store's `sessions` table
//! holds for sessions without a Stop, kept in step with every committed
//! accounting record (the writer hands back the merged row), so that a sync
//! round finds an account's sessions without touching the disk. Bounded: when
//! the cap is reached, the stale sessions make room (they stay in the store,
//! counted as evicted; at most one such sweep a minute); past that, new
//! sessions stay in the store only and are counted as shed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::{Applied, SessionRow};

/// Sessions indexed by default; a campus with more active sessions raises it
/// (`SessionTable::new`). About 500 bytes a session.
pub const DEFAULT_CAP: usize = 1_000_000;

/// Without Interim-Updates, a session with no news for this long is stale.
pub const STALE_WITHOUT_INTERIM: i64 = 24 * 3600;

type Key = (String, String);

pub struct SessionTable {
    rows: Mutex<HashMap<Key, SessionRow>>,
    cap: usize,
    /// Sessions not indexed because the table was full (they are stored).
    shed: AtomicU64,
    /// Stale sessions dropped from the index to make room (still stored).
    evicted: AtomicU64,
    /// Event time of the last sweep for stale sessions (full table only).
    last_sweep: std::sync::atomic::AtomicI64,
}

/// Seconds between two sweeps of a full table for stale sessions: a sweep
/// walks the whole table, so a full table of live sessions must not pay it
/// on every Start.
const SWEEP_EVERY: i64 = 60;

impl SessionTable {
    pub fn new(cap: usize) -> SessionTable {
        SessionTable {
            rows: Mutex::new(HashMap::new()),
            cap,
            shed: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            last_sweep: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<Key, SessionRow>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Indexes the open sessions read from the store at startup.
    pub fn load(&self, rows: Vec<SessionRow>) {
        for row in rows {
            self.put(row);
        }
    }

    fn put(&self, row: SessionRow) {
        let mut rows = self.rows();
        let key = (row.nas.clone(), row.session_id.clone());
        if rows.len() >= self.cap && !rows.contains_key(&key) {
            // The row's own time stands for now (pure code reads no clock).
            let now = row.updated_at;
            let last = self.last_sweep.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= SWEEP_EVERY {
                self.last_sweep.store(now, Ordering::Relaxed);
                let before = rows.len();
                rows.retain(|_, r| !is_stale(r, now));
                self.evicted.fetch_add((before - rows.len()) as u64, Ordering::Relaxed);
            }
            if rows.len() >= self.cap {
                drop(rows);
                self.shed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        // The row comes back from the store after each accounting record;
        // the index may already hold a newer baseline for the same account
        // (a sync round moved it, and its write to the store is still on
        // its way). Keeping the store's older one would make the next
        // round see the change again and send a second Disconnect.
        let mut row = row;
        if let Some(old) = rows.get(&key) {
            let same_account = match (&old.account, &row.account) {
                (Some(o), Some(n)) => o.directory == n.directory && o.object_id == n.object_id,
                (Some(_), None) => true,
                _ => false,
            };
            if same_account {
                row.account = old.account.clone();
            }
            if row.disconnect_outcome.is_none() {
                row.disconnect_outcome = old.disconnect_outcome.clone();
                row.disconnect_at = old.disconnect_at;
            }
        }
        rows.insert(key, row);
    }

    /// Follows one committed accounting record.
    pub fn apply(&self, applied: &Applied) {
        match applied {
            Applied::Session(row) if row.stopped_at.is_some() => {
                self.rows().remove(&(row.nas.clone(), row.session_id.clone()));
            }
            Applied::Session(row) => self.put((**row).clone()),
            // The same rule as the store: sessions with later news belong to
            // the NAS's new boot.
            Applied::NasClosed { nas, at } => self.rows().retain(|_, r| !(r.nas == *nas && r.updated_at <= *at)),
            Applied::Ignored => {}
        }
    }

    /// The sessions `keep` selects, ordered by start, NAS and session id.
    pub fn select(&self, keep: impl Fn(&SessionRow) -> bool) -> Vec<SessionRow> {
        let mut out: Vec<SessionRow> = self.rows().values().filter(|r| keep(r)).cloned().collect();
        out.sort_by(|a, b| (a.started_at, &a.nas, &a.session_id).cmp(&(b.started_at, &b.nas, &b.session_id)));
        out
    }

    /// Calls `f` on every indexed session, under the lock: `f` must not
    /// block (memory only) and may change the row.
    pub fn visit(&self, mut f: impl FnMut(&mut SessionRow)) {
        for row in self.rows().values_mut() {
            f(row);
        }
    }

    /// A Disconnect-ACK ended the session.
    pub fn end(&self, nas: &str, session_id: &str) {
        self.rows().remove(&(nas.to_string(), session_id.to_string()));
    }

    /// Writes a Disconnect outcome (and the account state it acted on).
    pub fn note_outcome(&self, nas: &str, session_id: &str, outcome: &str, at: i64) {
        if let Some(r) = self.rows().get_mut(&(nas.to_string(), session_id.to_string())) {
            r.disconnect_outcome = Some(outcome.to_string());
            r.disconnect_at = Some(at);
        }
    }

    pub fn len(&self) -> usize {
        self.rows().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Sessions stale at `now`.
    pub fn stale_count(&self, now: i64) -> usize {
        self.rows().values().filter(|r| is_stale(r, now)).count()
    }
}

/// No news for twice its interim interval, or for 24 hours when it sends no
/// Interim-Updates. The interval is estimated from the updates seen.
pub fn is_stale(row: &SessionRow, now: i64) -> bool {
    let quiet = now - row.updated_at;
    match (row.started_at, row.interim_count) {
        (Some(start), n) if n > 0 && row.updated_at > start => {
            let interval = (row.updated_at - start) / i64::from(n);
            quiet > 2 * interval.max(1)
        }
        _ => quiet > STALE_WITHOUT_INTERIM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SessionAccount;

    fn row(nas: &str, sid: &str, updated: i64) -> SessionRow {
        SessionRow {
            started_at: Some(1000),
            ..SessionRow::new(nas.into(), sid.into(), "c".into(), updated)
        }
    }

    #[test]
    fn stop_and_accounting_on_remove_sessions() {
        let t = SessionTable::new(10);
        t.apply(&Applied::Session(Box::new(row("a", "1", 1000))));
        t.apply(&Applied::Session(Box::new(row("a", "2", 3000))));
        t.apply(&Applied::Session(Box::new(row("b", "1", 1000))));
        assert_eq!(t.len(), 3);
        let mut stopped = row("b", "1", 1100);
        stopped.stopped_at = Some(1100);
        t.apply(&Applied::Session(Box::new(stopped)));
        assert_eq!(t.len(), 2);
        // The NAS rebooted at 2000: its session updated at 3000 is of the new boot.
        t.apply(&Applied::NasClosed {
            nas: "a".into(),
            at: 2000,
        });
        let left: Vec<String> = t.select(|_| true).into_iter().map(|r| r.session_id).collect();
        assert_eq!(left, ["2"]);
    }

    #[test]
    fn an_interim_update_keeps_the_newer_baseline_of_the_index() {
        let t = SessionTable::new(10);
        let account = |enabled| SessionAccount {
            directory: "entra".into(),
            kind: "user".into(),
            object_id: "u1".into(),
            enabled,
            policy_rule: Some(0),
            vlan: Some("20".into()),
        };
        let mut start = row("a", "1", 1000);
        start.account = Some(account(true));
        t.apply(&Applied::Session(Box::new(start.clone())));
        // A sync round disabled the account: the index has the new baseline
        // before the store does.
        t.visit(|r| r.account = Some(account(false)));
        // An Interim-Update merged with the store's (older) baseline.
        let mut interim = start.clone();
        interim.updated_at = 1100;
        t.apply(&Applied::Session(Box::new(interim)));
        let rows = t.select(|_| true);
        assert_eq!(rows[0].account, Some(account(false)));
        assert_eq!(rows[0].updated_at, 1100);
        // Another account under the same session id is another baseline.
        let mut other = start;
        other.account = Some(SessionAccount {
            object_id: "u2".into(),
            ..account(true)
        });
        t.apply(&Applied::Session(Box::new(other)));
        assert_eq!(t.select(|_| true)[0].account.as_ref().unwrap().object_id, "u2");
    }

    #[test]
    fn the_cap_sheds_and_counts() {
        let t = SessionTable::new(2);
        for i in 0..5 {
            t.apply(&Applied::Session(Box::new(row("a", &i.to_string(), 1000))));
        }
        assert_eq!(t.len(), 2);
        assert_eq!(t.shed(), 3);
        // An indexed session is still updated when the table is full.
        let mut r = row("a", "0", 1500);
        r.user_name = Some("u".into());
        t.apply(&Applied::Session(Box::new(r)));
        assert_eq!(t.select(|r| r.user_name.is_some()).len(), 1);
        assert_eq!(t.shed(), 3);
    }

    #[test]
    fn a_full_table_makes_room_by_dropping_stale_sessions() {
        let t = SessionTable::new(3);
        let day = STALE_WITHOUT_INTERIM;
        t.apply(&Applied::Session(Box::new(row("a", "old", 1000))));
        t.apply(&Applied::Session(Box::new(row("a", "live-1", 1000 + day))));
        t.apply(&Applied::Session(Box::new(row("a", "live-2", 1000 + day))));
        // Full: "old" has had no news for more than a day.
        t.apply(&Applied::Session(Box::new(row("a", "new", 1001 + day))));
        let ids: Vec<String> = t.select(|_| true).into_iter().map(|r| r.session_id).collect();
        assert_eq!(ids, ["live-1", "live-2", "new"]);
        assert_eq!((t.evicted(), t.shed()), (1, 0));
        // Nothing stale and a sweep just done: shed.
        t.apply(&Applied::Session(Box::new(row("a", "more", 1002 + day))));
        assert_eq!((t.evicted(), t.shed()), (1, 1));
    }

    #[test]
    fn stale_after_two_interims_or_a_day() {
        let mut r = row("a", "1", 1000 + 600);
        r.interim_count = 1; // one interim after 600 s
        assert!(!is_stale(&r, 1600 + 1200));
        assert!(is_stale(&r, 1600 + 1201));
        let quiet = row("a", "2", 1000);
        assert!(!is_stale(&quiet, 1000 + 86_400));
        assert!(is_stale(&quiet, 1000 + 86_401));
    }
}
