//! The authentication history: every Access-Request decision, written by a
//! thread of its own a batch at a time (one row a batch, [`chunk`]), read
//! by `auth log`.
//!
//! It lives in a database of its own, `history.db` beside the store's
//! file: the writer runs at the lowest CPU priority, and at full load it
//! may be descheduled for seconds in the middle of a transaction. In the
//! store's file it would then hold the write lock that accounting (which
//! must commit before it answers) and the sync wait for; in its own file it
//! holds up nobody.
//!
//! The RADIUS path hands a record over with [`HistoryWriter::record`], which
//! never waits: when the queue is full (the disk is slower than the
//! decisions), the record is dropped and counted, and the server goes on
//! answering. Retention (by age and by count) is applied by the same
//! thread, once a minute, in small deletes so that a large prune never holds
//! the write lock for long. The thread runs at the lowest CPU priority: when
//! the RADIUS threads need every cycle, they get them.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

mod chunk;

use super::migrations::{self, Migration};
use super::{Store, StoreError, configure, ensure_private_file, open_flags, tighten_if_exists};

/// The history's database, in the state directory beside the store's.
pub const HISTORY_FILE: &str = "history.db";

/// The schema of `history.db`.
///
/// Version 1 kept one row per decision, the rowid in writing (and so time)
/// order, and no other index: at full load an index on identity or MAC
/// cost every row a write in a random page of it, which doubled the
/// writer's CPU per row and its bytes written (`cargo bench --bench
/// history`).
///
/// Version 2 writes each batch of the writer as one row of
/// `auth_history_chunk` ([`chunk`]): its decisions have the ids `first_id`
/// to `first_id + rows - 1`, after every id of the version 1 table, which
/// is still read and pruned, and written no more. `first_time_ms` and
/// `last_time_ms` are the earliest and latest time in the chunk (retention
/// and `--since` look at the latest). `data` comes last so that a chunk passed over (by id or
/// time) is never read past its first page.
/// Queries walk the chunks newest first and stop at their limit (or at
/// [`HistoryFilter::scan`]); a filter that matches nothing reads the whole
/// history.
const HISTORY_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: "
CREATE TABLE auth_history (
    id                 INTEGER PRIMARY KEY,
    time_ms            INTEGER NOT NULL,
    client             TEXT    NOT NULL,
    nas_addr           TEXT    NOT NULL,
    nas_port           TEXT,
    called_station_id  TEXT,
    calling_station_id TEXT,
    mac                TEXT,
    identity           TEXT    NOT NULL,
    method             TEXT    NOT NULL,
    directory          TEXT,
    accept             INTEGER NOT NULL CHECK (accept IN (0, 1)),
    reason             TEXT    NOT NULL,
    vlan               TEXT,
    account            TEXT,
    policy_rule        INTEGER
);
",
    },
    Migration {
        version: 2,
        sql: "
CREATE TABLE auth_history_chunk (
    first_id      INTEGER PRIMARY KEY,
    rows          INTEGER NOT NULL CHECK (rows > 0),
    first_time_ms INTEGER NOT NULL,
    last_time_ms  INTEGER NOT NULL,
    data          BLOB    NOT NULL
);
",
    },
];

/// Page size of a new `history.db` (an existing one keeps its own): a
/// chunk is tens of KiB, and with 16 KiB pages the writer spends 15–20 %
/// less CPU per decision than with 4 KiB ones, in fewer WAL frames and
/// system calls, for the same file size (`cargo bench --bench history`;
/// 64 KiB pages were no faster and a third larger).
const HISTORY_PAGE_SIZE: i64 = 16384;

/// Page cache of a history connection: the writer only appends (the rowid
/// b-tree's rightmost pages), so the store's 32 MiB would mostly hold pages
/// it never reads again, in the server's resident memory. 512 KiB writes as
/// fast as 2 MiB did (`cargo bench --bench history`) and keeps RSS after
/// full-load runs 2 MiB lower.
const HISTORY_CACHE_KIB: i64 = 512;

/// Records waiting for the writer; more are dropped and counted. At
/// 100,000 decisions a second this is 20 ms of decisions, twice a batch.
/// A queued record is about 300 bytes with its text ([`Pending`]); the
/// queue and a batch in the writer's hands are most of what the history
/// adds to the resident memory once the server has been busy.
pub const QUEUE: usize = 2048;
/// Most records in one transaction, and so in one chunk (about 0.4 ms of
/// the writer's CPU).
const MAX_BATCH: usize = 1024;
/// How long the writer lets records gather after a batch that did not fill
/// ([`MAX_BATCH`]); [`QUEUE`] holds several times this at full load.
const GATHER: Duration = Duration::from_millis(10);
/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Rows of the version 1 table deleted per statement while pruning.
const PRUNE_CHUNK: i64 = 10_000;
/// Chunks looked at, and at most deleted, per statement while pruning.
const PRUNE_CHUNKS: i64 = 64;
/// Most rows one query returns.
pub const MAX_LIMIT: usize = 10_000;

/// One decision as `auth log` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Unix time in milliseconds.
    pub time_ms: i64,
    /// The NAS's name in the client table, and the packet's source address.
    pub client: String,
    pub nas_addr: String,
    /// NAS-Port-Id, or NAS-Port as a number.
    pub nas_port: Option<String>,
    pub called_station_id: Option<String>,
    pub calling_station_id: Option<String>,
    /// The MAC the request was about (MAB User-Name or Calling-Station-Id),
    /// normalised, for `--mac`.
    pub mac: Option<String>,
    /// The identity as looked up (User-Name, a normalised MAC, or the one
    /// a certificate names).
    pub identity: String,
    pub method: String,
    /// The directory that decided, if one knew the identity.
    pub directory: Option<String>,
    pub accept: bool,
    pub reason: String,
    pub vlan: Option<String>,
    /// The object id of the account the identity resolved to, if one did.
    #[serde(default)]
    pub account: Option<String>,
    /// The `[[policy]]` rule that gave the reply, from 1 in configuration
    /// order.
    #[serde(default)]
    pub policy_rule: Option<u32>,
}

/// What a [`Pending`] record is made of, borrowed from the decision and the
/// request: the fields of [`HistoryRecord`], with the NAS's address and
/// port number kept as numbers (a chunk stores them so; `auth log` formats
/// them).
#[derive(Clone, Copy, Debug)]
pub struct RecordParts<'a> {
    pub time_ms: i64,
    pub client: &'a str,
    pub nas_addr: NasAddr<'a>,
    pub nas_port: NasPort<'a>,
    pub called_station_id: Option<&'a str>,
    pub calling_station_id: Option<&'a str>,
    pub mac: Option<&'a str>,
    pub identity: &'a str,
    pub method: &'a str,
    pub directory: Option<&'a str>,
    pub accept: bool,
    pub reason: &'a str,
    pub vlan: Option<&'a str>,
    pub account: Option<&'a str>,
    pub policy_rule: Option<u32>,
}

/// The packet's source address, or a text already made.
#[derive(Clone, Copy, Debug)]
pub enum NasAddr<'a> {
    Ip(IpAddr),
    Text(&'a str),
}

/// NAS-Port-Id, or NAS-Port as a number, or neither.
#[derive(Clone, Copy, Debug)]
pub enum NasPort<'a> {
    Absent,
    Id(&'a str),
    Number(u32),
}

/// The text fields of a [`Pending`] record, in the order it keeps them.
#[derive(Clone, Copy)]
enum Field {
    Client,
    NasAddr,
    NasPort,
    Called,
    Calling,
    Mac,
    Identity,
    Method,
    Directory,
    Reason,
    Vlan,
    Account,
}
const FIELDS: usize = Field::Account as usize + 1;

/// A decision on its way to the writer, made to cost the RADIUS path as
/// little as it can: all its text in one allocation (a [`HistoryRecord`]
/// is a dozen, allocated by a RADIUS thread and freed by the writer, which
/// in glibc's allocator takes the arena's lock), and the NAS's address and
/// port number never formatted on that path.
#[derive(Debug)]
pub struct Pending {
    time_ms: i64,
    text: Box<str>,
    /// Where each field ends in `text`; it starts where the one before ends.
    ends: [u32; FIELDS],
    /// Bit `f` is set when field `f` is present (`None` otherwise).
    present: u16,
    source: Option<IpAddr>,
    nas_port: Option<u32>,
    policy_rule: Option<u32>,
    accept: bool,
}

impl Pending {
    pub fn new(p: &RecordParts<'_>) -> Pending {
        let (source, nas_addr) = match p.nas_addr {
            NasAddr::Ip(ip) => (Some(ip), None),
            NasAddr::Text(t) => (None, Some(t)),
        };
        let (nas_port, nas_port_id) = match p.nas_port {
            NasPort::Absent => (None, None),
            NasPort::Id(t) => (None, Some(t)),
            NasPort::Number(n) => (Some(n), None),
        };
        let fields: [Option<&str>; FIELDS] = [
            Some(p.client),
            nas_addr,
            nas_port_id,
            p.called_station_id,
            p.calling_station_id,
            p.mac,
            Some(p.identity),
            Some(p.method),
            p.directory,
            Some(p.reason),
            p.vlan,
            p.account,
        ];
        // One allocation of the exact size: `into_boxed_str` keeps it.
        let mut text = String::with_capacity(fields.iter().flatten().map(|f| f.len()).sum());
        let mut ends = [0u32; FIELDS];
        let mut present = 0u16;
        for (i, f) in fields.iter().enumerate() {
            if let Some(f) = f {
                present |= 1 << i;
                text.push_str(f);
            }
            // A request is at most 4,096 bytes; past 4 GiB `get` would
            // find no field rather than a wrong one.
            ends[i] = u32::try_from(text.len()).unwrap_or(u32::MAX);
        }
        Pending {
            time_ms: p.time_ms,
            text: text.into_boxed_str(),
            ends,
            present,
            source,
            nas_port,
            policy_rule: p.policy_rule,
            accept: p.accept,
        }
    }

    fn field_at(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize)
    }

    /// The text fields, in [`Field`] order.
    fn fields(&self) -> [Option<&str>; FIELDS] {
        std::array::from_fn(|i| self.field_at(i))
    }

    /// The record as `auth log` would show it.
    #[cfg(test)]
    fn to_record(&self) -> HistoryRecord {
        chunk::Decoded {
            time_ms: self.time_ms,
            accept: self.accept,
            policy_rule: self.policy_rule,
            nas_port: self.nas_port,
            source: self.source,
            fields: self.fields(),
        }
        .to_record()
    }
}

impl From<&HistoryRecord> for Pending {
    fn from(r: &HistoryRecord) -> Pending {
        Pending::new(&RecordParts {
            time_ms: r.time_ms,
            client: &r.client,
            nas_addr: NasAddr::Text(&r.nas_addr),
            nas_port: r.nas_port.as_deref().map_or(NasPort::Absent, NasPort::Id),
            called_station_id: r.called_station_id.as_deref(),
            calling_station_id: r.calling_station_id.as_deref(),
            mac: r.mac.as_deref(),
            identity: &r.identity,
            method: &r.method,
            directory: r.directory.as_deref(),
            accept: r.accept,
            reason: &r.reason,
            vlan: r.vlan.as_deref(),
            account: r.account.as_deref(),
            policy_rule: r.policy_rule,
        })
    }
}

/// A stored decision with its row id (ascending with time of writing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub id: i64,
    #[serde(flatten)]
    pub record: HistoryRecord,
}

/// What `auth log` asks for; every set field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryFilter {
    /// Exact identity, compared without case.
    pub identity: Option<String>,
    /// Normalised MAC.
    pub mac: Option<String>,
    pub client: Option<String>,
    pub accept: Option<bool>,
    pub since_ms: Option<i64>,
    /// Only rows newer than this id, oldest first (`--follow`); without it,
    /// newest first.
    pub after_id: Option<i64>,
    pub limit: usize,
    /// Look at no more than the newest this many rows (`accounts lookup`
    /// asks for a few recent decisions and must stay quick on a large
    /// history); `None` looks at all of them.
    #[serde(default)]
    pub scan: Option<u64>,
}

/// How long rows are kept and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub keep: Duration,
    pub max_rows: u64,
}

/// Counters of the writer, for `/metrics`.
#[derive(Debug, Default)]
pub struct HistoryStats {
    pub written: AtomicU64,
    /// Dropped because the queue was full (the writer fell behind).
    pub dropped: AtomicU64,
    /// Lost to a failed transaction.
    pub failed: AtomicU64,
    pub pruned: AtomicU64,
}

/// Handle for the writer thread; cheap to clone. The thread ends once every
/// clone is dropped and the queue is written.
#[derive(Debug, Clone)]
pub struct HistoryWriter {
    tx: SyncSender<Pending>,
    stats: Arc<HistoryStats>,
    /// Records sent and not yet taken by the writer, and the queue's size:
    /// a full queue is seen before a record is built, so that a decision
    /// whose record would be dropped costs one atomic load, not a dozen
    /// small allocations (at full load nearly every record is dropped).
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl HistoryWriter {
    pub fn spawn(store: &Store, retention: Retention) -> Result<(HistoryWriter, JoinHandle<()>), StoreError> {
        HistoryWriter::spawn_with_queue(store, retention, QUEUE)
    }

    /// `spawn` with another queue size (tests fill a small one).
    pub fn spawn_with_queue(
        store: &Store,
        retention: Retention,
        queue: usize,
    ) -> Result<(HistoryWriter, JoinHandle<()>), StoreError> {
        let conn = store.history_connect()?;
        let capacity = queue.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let stats = Arc::new(HistoryStats::default());
        let s = Arc::clone(&stats);
        let queued = Arc::new(AtomicUsize::new(0));
        let q = Arc::clone(&queued);
        let handle = thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                // At full load the RADIUS threads come first; the history
                // then falls behind and drops (counted), as designed.
                crate::sys::lower_thread_priority();
                run(conn, &rx, retention, &s, &q)
            })
            .map_err(StoreError::Spawn)?;
        Ok((
            HistoryWriter {
                tx,
                stats,
                queued,
                capacity,
            },
            handle,
        ))
    }

    /// Queues one record; never waits. A full queue drops it (counted).
    pub fn record(&self, rec: HistoryRecord) {
        self.record_with(|| Pending::from(&rec));
    }

    /// Queues the record `build` makes, building it only when the queue has
    /// room; never waits. A full queue drops it (counted) unbuilt.
    pub fn record_with(&self, build: impl FnOnce() -> Pending) {
        if self.queued.load(Ordering::Relaxed) >= self.capacity {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(build()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &HistoryStats {
        &self.stats
    }
}

fn run(mut conn: Connection, rx: &Receiver<Pending>, retention: Retention, stats: &HistoryStats, queued: &AtomicUsize) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut buf = Vec::new();
    let mut last_prune: Option<Instant> = None;
    let mut last_error: Option<Instant> = None;
    loop {
        match rx.recv_timeout(PRUNE_EVERY) {
            Ok(first) => {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                queued.fetch_sub(batch.len(), Ordering::Relaxed);
                let n = batch.len() as u64;
                match write_batch(&mut conn, &batch, &mut buf) {
                    Ok(()) => stats.written.fetch_add(n, Ordering::Relaxed),
                    Err(e) => {
                        if last_error.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                            tracing::error!("authentication history: {n} records lost: {e}");
                            last_error = Some(Instant::now());
                        }
                        stats.failed.fetch_add(n, Ordering::Relaxed)
                    }
                };
                let full = batch.len() == MAX_BATCH;
                batch.clear();
                if !full {
                    // Let the next batch gather while we sleep rather than
                    // waiting in `recv`: a writer blocked in the channel
                    // must be woken by the sender, a syscall on the RADIUS
                    // path for every record that finds it asleep.
                    thread::sleep(GATHER);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            let now_ms = crate::clock::now_unix() * 1000;
            match prune(&conn, retention, now_ms) {
                Ok(n) => {
                    stats.pruned.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("authentication history: pruning failed: {e}"),
            }
            last_prune = Some(Instant::now());
        }
    }
}

/// Writes `batch` as one chunk, its first id after every id already given
/// (in chunks, or in the table of rows of the versions before them).
fn write_batch(conn: &mut Connection, batch: &[Pending], buf: &mut Vec<u8>) -> rusqlite::Result<()> {
    // The chunk's time range: its first and last decisions' times, unless
    // the clock was set back while the batch gathered.
    let times = batch.iter().map(|r| r.time_ms);
    let (Some(first_time), Some(last_time)) = (times.clone().min(), times.max()) else {
        return Ok(());
    };
    chunk::encode(batch, buf);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let first_id = newest_id(&tx)?.map_or(1, |n| n + 1);
    tx.prepare_cached(
        "INSERT INTO auth_history_chunk (first_id, rows, first_time_ms, last_time_ms, data)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![first_id, batch.len() as i64, first_time, last_time, &buf[..]])?;
    tx.commit()
}

/// The newest decision's id, in chunks or in rows.
fn newest_id(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let in_chunks: Option<i64> = conn
        .prepare_cached("SELECT first_id + rows - 1 FROM auth_history_chunk ORDER BY first_id DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    if in_chunks.is_some() {
        return Ok(in_chunks);
    }
    conn.prepare_cached("SELECT max(id) FROM auth_history")?
        .query_row([], |r| r.get(0))
}

/// Deletes decisions older than `keep` and beyond the newest `max_rows`,
/// oldest first; returns how many went. A chunk goes whole, once every
/// decision in it is to go: retention keeps up to one batch more than it
/// says (at most 1,024 decisions, written within 10 ms of each other).
pub(crate) fn prune(conn: &Connection, retention: Retention, now_ms: i64) -> rusqlite::Result<u64> {
    let keep_ms = i64::try_from(retention.keep.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(keep_ms);
    let max_rows = i64::try_from(retention.max_rows).unwrap_or(i64::MAX);
    // The chunks' decisions are the newest: they count first.
    let in_chunks: i64 = conn.query_row("SELECT coalesce(sum(rows), 0) FROM auth_history_chunk", [], |r| {
        r.get(0)
    })?;
    let mut total = prune_rows(conn, cutoff, max_rows.saturating_sub(in_chunks).max(0))?;
    // Decisions at or below this id are beyond the newest `max_rows`.
    let by_count = newest_id(conn)?.map_or(i64::MIN, |n| n.saturating_sub(max_rows));
    loop {
        let mut oldest = conn
            .prepare_cached("SELECT first_id, rows, last_time_ms FROM auth_history_chunk ORDER BY first_id LIMIT ?1")?;
        let mut last = None;
        let mut going = 0i64;
        let mut seen = 0;
        let mut rows = oldest.query([PRUNE_CHUNKS])?;
        while let Some(r) = rows.next()? {
            seen += 1;
            let (first_id, n, last_time): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if last_time >= cutoff && first_id.saturating_add(n - 1) > by_count {
                break;
            }
            last = Some(first_id);
            going += n;
        }
        drop(rows);
        let Some(last) = last else {
            return Ok(total);
        };
        conn.execute("DELETE FROM auth_history_chunk WHERE first_id <= ?1", [last])?;
        total += u64::try_from(going).unwrap_or(0);
        if seen < PRUNE_CHUNKS {
            return Ok(total);
        }
    }
}

/// Deletes rows of the version 1 table older than `cutoff` (ms) and beyond
/// the newest `max_rows` of them, oldest first in chunks; returns how many
/// went. Rows are written in time order, so what goes is a prefix of the
/// rowids: each chunk reads the oldest rows and stops at the first one that
/// stays (no scan of the whole table, no index on time). A clock set back
/// leaves a few rows a little longer.
fn prune_rows(conn: &Connection, cutoff: i64, max_rows: i64) -> rusqlite::Result<u64> {
    let mut total = 0u64;
    loop {
        // Rows at or below this id are beyond the newest `max_rows`.
        let by_count: i64 = conn
            .query_row(
                "SELECT id FROM auth_history ORDER BY id DESC LIMIT 1 OFFSET ?1",
                [max_rows],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(i64::MIN),
                e => Err(e),
            })?;
        let mut oldest = conn.prepare_cached("SELECT id, time_ms FROM auth_history ORDER BY id LIMIT ?1")?;
        let mut last = None;
        let mut rows = oldest.query([PRUNE_CHUNK])?;
        while let Some(r) = rows.next()? {
            let (id, time): (i64, i64) = (r.get(0)?, r.get(1)?);
            if time >= cutoff && id > by_count {
                break;
            }
            last = Some(id);
        }
        drop(rows);
        let Some(last) = last else {
            return Ok(total);
        };
        let n = conn.execute("DELETE FROM auth_history WHERE id <= ?1", [last])?;
        total += n as u64;
        if (n as i64) < PRUNE_CHUNK {
            return Ok(total);
        }
    }
}

impl Store {
    /// Where the history is kept: [`HISTORY_FILE`] beside the store's file.
    pub fn history_path(&self) -> std::path::PathBuf {
        self.path().with_file_name(HISTORY_FILE)
    }

    /// A connection to the history's database, created (0600) and brought
    /// to its schema on first use.
    fn history_connect(&self) -> Result<Connection, StoreError> {
        let path = self.history_path();
        ensure_private_file(&path)?;
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_with_flags(&path, open_flags()).map_err(open_err)?;
        // Before WAL mode is set: a database in it keeps its page size.
        conn.pragma_update(None, "page_size", HISTORY_PAGE_SIZE)
            .map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        conn.pragma_update(None, "cache_size", -HISTORY_CACHE_KIB)
            .map_err(open_err)?;
        migrations::migrate(&mut conn, &path, HISTORY_MIGRATIONS)?;
        for suffix in ["-wal", "-shm"] {
            let mut companion = path.clone().into_os_string();
            companion.push(suffix);
            tighten_if_exists(std::path::Path::new(&companion), 0o600)?;
        }
        Ok(conn)
    }

    /// The decisions `filter` selects (at most [`MAX_LIMIT`]).
    pub fn auth_history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRow>, StoreError> {
        let conn = self.history_connect()?;
        Ok(query(&conn, filter)?)
    }
}

fn query(conn: &Connection, f: &HistoryFilter) -> rusqlite::Result<Vec<HistoryRow>> {
    let limit = f.limit.clamp(1, MAX_LIMIT);
    // Decisions at or below this id are not asked for.
    let mut floor = f.after_id;
    if let Some(scan) = f.scan
        && let Some(newest) = newest_id(conn)?
    {
        let below = newest.saturating_sub(i64::try_from(scan).unwrap_or(i64::MAX));
        floor = Some(floor.map_or(below, |a| a.max(below)));
    }
    // Every id in a chunk is above every id in the version 1 table.
    let mut out;
    if f.after_id.is_some() {
        out = query_rows(conn, f, floor, limit)?;
        query_chunks(conn, f, floor, limit, &mut out)?;
    } else {
        out = Vec::new();
        query_chunks(conn, f, floor, limit, &mut out)?;
        if out.len() < limit {
            out.extend(query_rows(conn, f, floor, limit - out.len())?);
        }
    }
    Ok(out)
}

/// Appends to `out` the decisions in chunks that `f` selects above
/// `floor`, newest first (oldest first after [`HistoryFilter::after_id`]),
/// until `out` holds `limit`.
fn query_chunks(
    conn: &Connection,
    f: &HistoryFilter,
    floor: Option<i64>,
    limit: usize,
    out: &mut Vec<HistoryRow>,
) -> rusqlite::Result<()> {
    if out.len() >= limit {
        return Ok(());
    }
    let oldest_first = f.after_id.is_some();
    // The chunk that holds the first id above `floor`, and those after it.
    let from: i64 = match floor {
        None => i64::MIN,
        Some(floor) => conn
            .prepare_cached(
                "SELECT first_id FROM auth_history_chunk WHERE first_id <= ?1 ORDER BY first_id DESC LIMIT 1",
            )?
            .query_row([floor.saturating_add(1)], |r| r.get(0))
            .optional()?
            .unwrap_or(i64::MIN),
    };
    let mut stmt = conn.prepare_cached(if oldest_first {
        "SELECT first_id, last_time_ms, data FROM auth_history_chunk WHERE first_id >= ?1 ORDER BY first_id ASC"
    } else {
        "SELECT first_id, last_time_ms, data FROM auth_history_chunk WHERE first_id >= ?1 ORDER BY first_id DESC"
    })?;
    let mut rows = stmt.query([from])?;
    let mut matched = Vec::new();
    while let Some(row) = rows.next()? {
        let first_id: i64 = row.get(0)?;
        let last_time_ms: i64 = row.get(1)?;
        if f.since_ms.is_some_and(|s| last_time_ms < s) {
            continue;
        }
        let mut records = chunk::Decoder::new(first_id, row.get_ref(2)?.as_blob()?);
        let mut id = first_id;
        while let Some(d) = records
            .next_record()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Blob, Box::new(e)))?
        {
            if floor.is_none_or(|floor| id > floor) && selects(f, &d) {
                matched.push(HistoryRow {
                    id,
                    record: d.to_record(),
                });
            }
            id += 1;
        }
        let room = limit - out.len();
        if oldest_first {
            out.extend(matched.drain(..).take(room));
        } else {
            out.extend(matched.drain(..).rev().take(room));
        }
        if out.len() >= limit {
            break;
        }
    }
    Ok(())
}

/// Whether `f` selects `d` (the id aside): what the version 1 query asks
/// of SQLite, whose `NOCASE` folds ASCII only.
fn selects(f: &HistoryFilter, d: &chunk::Decoded<'_>) -> bool {
    let is = |want: &Option<String>, field: Field| want.as_deref().is_none_or(|w| d.get(field) == Some(w));
    f.identity
        .as_deref()
        .is_none_or(|w| d.get(Field::Identity).is_some_and(|i| i.eq_ignore_ascii_case(w)))
        && is(&f.mac, Field::Mac)
        && is(&f.client, Field::Client)
        && f.accept.is_none_or(|a| d.accept == a)
        && f.since_ms.is_none_or(|s| d.time_ms >= s)
}

/// The version 1 table's rows that `f` selects, above `floor`, at most `limit`.
fn query_rows(
    conn: &Connection,
    f: &HistoryFilter,
    floor: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<HistoryRow>> {
    use rusqlite::types::Value;
    let order = if f.after_id.is_some() { "ASC" } else { "DESC" };
    // Only the filters that are set, so that the rowid bounds below are
    // seen by SQLite's planner as a range on the primary key.
    let mut conds: Vec<&str> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let mut cond = |c: &'static str, v: Option<Value>| {
        if let Some(v) = v {
            conds.push(c);
            args.push(v);
        }
    };
    cond("identity = ? COLLATE NOCASE", f.identity.clone().map(Value::Text));
    cond("mac = ?", f.mac.clone().map(Value::Text));
    cond("client = ?", f.client.clone().map(Value::Text));
    cond("accept = ?", f.accept.map(|a| Value::Integer(a.into())));
    cond("time_ms >= ?", f.since_ms.map(Value::Integer));
    cond("id > ?", floor.map(Value::Integer));
    let limit = i64::try_from(limit).unwrap_or(1);
    args.push(Value::Integer(limit));
    let sql = format!(
        "SELECT id, time_ms, client, nas_addr, nas_port, called_station_id, calling_station_id, mac,
                identity, method, directory, accept, reason, vlan, account, policy_rule
         FROM auth_history {} {}
         ORDER BY id {order} LIMIT ?",
        if conds.is_empty() { "" } else { "WHERE" },
        conds.join(" AND ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(HistoryRow {
            id: r.get(0)?,
            record: HistoryRecord {
                time_ms: r.get(1)?,
                client: r.get(2)?,
                nas_addr: r.get(3)?,
                nas_port: r.get(4)?,
                called_station_id: r.get(5)?,
                calling_station_id: r.get(6)?,
                mac: r.get(7)?,
                identity: r.get(8)?,
                method: r.get(9)?,
                directory: r.get(10)?,
                accept: r.get(11)?,
                reason: r.get(12)?,
                vlan: r.get(13)?,
                account: r.get(14)?,
                policy_rule: r.get(15)?,
            },
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests;
