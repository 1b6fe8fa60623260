//! store: SQLite persistence under the state directory.
//!
//! This module owns the one database file `<state_dir>/entra-radius.db`
//! ([`DB_FILE`]): how it is created and secured (directory 0700, file and its
//! `-wal`/`-shm` companions 0600), the connection pragmas every user of it
//! gets, the schema and its forward-only migrations (`migrations.rs`,
//! [`MIGRATIONS`]), and the RADIUS accounting tables with their merge rules
//! (`acct.rs`, [`AcctRecord`]).
//!
//! Opening refuses a file that is not this program's database (another
//! program's SQLite file, or no SQLite file at all), and an empty one in a
//! state directory that other files show to have been used: starting afresh
//! there would silently drop the integration and the replica. The state
//! directory's lock (`lock.rs`, [`StateLock`]) keeps a second server off it.
//!
//! Writes of accounting records go through [`AcctWriter`], a single OS thread
//! that group-commits whatever the async server has queued, so that an
//! Accounting-Response is only sent once its record is durable (RFC 2866 §2).
//! Reads ([`Store::session`] and friends) open their own short-lived
//! connection; WAL mode lets them run alongside the writer.
//!
//! No SQLite type leaves this module: the replica objects, sync checkpoints
//! and integration settings are reached through typed operations, one-shot
//! on [`Store`] or on a [`Conn`] that a thread holds for a series of them
//! (`conn.rs`).

mod acct;
mod conn;
pub mod history;
pub mod integration;
mod lock;
mod migrations;
pub mod objects;
mod writer;

#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

pub use acct::{
    AcctRecord, AcctStatus, Applied, DisconnectOutcome, SessionAccount, SessionRow, TERMINATE_CAUSE_ADMIN_RESET,
    TERMINATE_CAUSE_NAS_REBOOT,
};
pub use conn::Conn;
pub use history::{HistoryFilter, HistoryRecord, HistoryRow, HistoryWriter, Retention};
pub use lock::{LOCK_FILE, StateLock};
pub use migrations::{MIGRATIONS, Migration, SCHEMA_VERSION};
pub use writer::{AcctWriter, MAX_BATCH};

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "entra-radius.db";

/// `PRAGMA application_id` of our databases (ASCII "ERad"), stamped on open,
/// so that a database is known to be ours from its header alone.
pub const APPLICATION_ID: i32 = 0x4552_6164;

/// What SQLite keeps beside the database; like the database itself, these
/// say nothing about whether the directory was in use.
const DB_COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// How long a connection waits for another one's write lock before failing
/// with `SQLITE_BUSY`. Long enough to ride out a migration or an admin tool,
/// short enough that a stuck writer surfaces as an error rather than a hang.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the store. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The state directory or the database file could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },

    /// The database file is there but cannot be opened for reading and
    /// writing (permissions, or a directory in its place).
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    /// The file is not an entra-radius database; it is left untouched.
    #[error(
        "{} is not an entra-radius database ({reason}); refusing to use it: point state_dir at the \
         right directory, restore the database from a backup, or move this file aside to start with \
         an empty one",
        path.display()
    )]
    Foreign { path: PathBuf, reason: String },

    /// The database is empty although the state directory holds other
    /// files of a server that ran there: it was truncated or replaced.
    #[error(
        "{} is empty, but the state directory {} has been used before (it holds {}); refusing to \
         start with empty state: restore the database from a backup, or delete {} to start afresh \
         (the Entra ID integration then has to be set up again)",
        path.display(),
        dir.display(),
        others.join(", "),
        path.display()
    )]
    EmptyInUsedDir {
        path: PathBuf,
        dir: PathBuf,
        others: Vec<String>,
    },

    /// Another process holds the state directory's lock.
    #[error(
        "the state directory {} is in use by another entra-radius server ({}, holding {}): stop it \
         first, or give this server its own state_dir",
        dir.display(),
        pid.map_or_else(|| "PID unknown".to_string(), |p| format!("PID {p}")),
        path.display()
    )]
    Locked {
        dir: PathBuf,
        path: PathBuf,
        pid: Option<u32>,
    },

    /// Taking the state directory's lock failed for another reason than
    /// another holder.
    #[error("cannot lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },

    /// The database could not be opened or configured (not a database,
    /// unreadable, WAL not available, ...).
    #[error("cannot open database {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },

    /// Reading or tightening the permissions of a file or directory failed.
    #[error("cannot restrict permissions of {}: {source}", path.display())]
    Permissions { path: PathBuf, source: io::Error },

    /// A statement on an already open database failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// Migration `version` failed; it was rolled back and the database keeps
    /// the previous version.
    #[error("migration to schema version {version} of {} failed: {source}", path.display())]
    Migration {
        path: PathBuf,
        version: u32,
        source: rusqlite::Error,
    },

    /// The database was written by a newer build; it is never downgraded.
    #[error(
        "database {} has schema version {found}, but this build supports at most {supported}; \
         refusing to use it (run a newer entra-radius or restore a matching backup)",
        path.display()
    )]
    NewerSchema { path: PathBuf, found: i64, supported: u32 },

    /// The accounting writer thread could not be started.
    #[error("cannot start the accounting writer thread: {0}")]
    Spawn(io::Error),

    /// The accounting writer thread is gone (it panicked, or was never
    /// reachable), so the record was not written.
    #[error("the accounting writer thread has stopped")]
    Closed,

    /// The accounting writer's queue is full; the record was not queued.
    #[error("the accounting writer's queue is full")]
    QueueFull,
}

/// Cheap clone handle on the database at `<state_dir>/entra-radius.db`.
///
/// Opening creates the state directory (0700) and the file (0600) when
/// missing, tightens them when they are more open than that, checks that the
/// file is ours, configures WAL and runs pending migrations. It does not take
/// the state directory's [`StateLock`]: the server does, and tools that read
/// the store beside a running server must not. The handle holds no
/// connection itself: each thread that needs one calls [`Store::conn`].
#[derive(Debug, Clone)]
pub struct Store {
    path: Arc<Path>,
}

impl Store {
    /// Opens (creating if needed) the database under `state_dir` and brings
    /// its schema up to [`SCHEMA_VERSION`].
    ///
    /// Fails with [`StoreError::NewerSchema`] if the file was migrated by a
    /// newer build, [`StoreError::Foreign`] if it is not ours, and
    /// [`StoreError::EmptyInUsedDir`] if it is empty beside other state.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        ensure_private_dir(state_dir)?;
        let path = state_dir.join(DB_FILE);
        let existed = ensure_private_file(&path)?;

        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let foreign = |reason: &str| StoreError::Foreign {
            path: path.clone(),
            reason: reason.into(),
        };
        let mut conn = Connection::open_with_flags(&path, open_flags()).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Before `configure`, which would already switch a foreign file to WAL.
        match identify(&conn) {
            Ok(Contents::Ours) => {}
            Ok(Contents::Empty) => {
                // A file we just created is a first start. One that was
                // already there and is empty is a first start only if
                // nothing else in the directory says a server ran here.
                let others = if existed { other_state(state_dir) } else { Vec::new() };
                if !others.is_empty() {
                    return Err(StoreError::EmptyInUsedDir {
                        path,
                        dir: state_dir.to_path_buf(),
                        others,
                    });
                }
            }
            Ok(Contents::Foreign(reason)) => return Err(foreign(&reason)),
            Err(e) if is_not_a_database(&e) => return Err(foreign("it is not an SQLite database")),
            Err(e) => return Err(open_err(e)),
        }
        configure(&conn).map_err(open_err)?;
        migrations::migrate(&mut conn, &path, MIGRATIONS)?;
        let app_id: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(open_err)?;
        if app_id != APPLICATION_ID {
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(open_err)?;
        }

        // SQLite creates these with the database file's mode, but a file left
        // by an older build or copied in by hand may be more open, and the WAL
        // holds the same accounting data as the database.
        for suffix in ["-wal", "-shm"] {
            let mut companion = path.clone().into_os_string();
            companion.push(suffix);
            tighten_if_exists(Path::new(&companion), 0o600)?;
        }

        Ok(Store { path: path.into() })
    }

    /// Full path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh connection with the same pragmas (each thread owns its own
    /// connection; `rusqlite::Connection` is not `Sync`). Private: outside
    /// the store, connections are [`Conn`]s.
    ///
    /// Unlike [`Store::open`] this never creates the file: if it vanished
    /// since opening, that is an error rather than a silent empty database.
    fn connect(&self) -> Result<Connection, StoreError> {
        let flags = open_flags() - OpenFlags::SQLITE_OPEN_CREATE;
        let open_err = |source| StoreError::Open {
            path: self.path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        Ok(conn)
    }

    /// The schema version recorded in the database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        let conn = self.connect()?;
        let found = migrations::user_version(&conn)?;
        u32::try_from(found).map_err(|_| StoreError::NewerSchema {
            path: self.path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        })
    }

    /// The accounting session `session_id` of NAS `nas`, if any record of it
    /// was stored.
    pub fn session(&self, nas: &str, session_id: &str) -> Result<Option<SessionRow>, StoreError> {
        let conn = self.connect()?;
        Ok(acct::load_session(&conn, nas, session_id).optional()?)
    }

    /// Sessions of `nas` that have no Stop yet (nor were closed by an
    /// Accounting-On/Off), ordered by session id.
    pub fn open_sessions(&self, nas: &str) -> Result<Vec<SessionRow>, StoreError> {
        let conn = self.connect()?;
        Ok(acct::open_sessions(&conn, nas)?)
    }

    /// The `limit` most recently updated open sessions, over all NASes
    /// (loading the session index).
    pub fn newest_open_sessions(&self, limit: usize) -> Result<Vec<SessionRow>, StoreError> {
        let conn = self.connect()?;
        Ok(acct::newest_open_sessions(&conn, limit)?)
    }

    /// Writes Disconnect outcomes on their sessions, in one transaction.
    pub fn record_disconnects(&self, outcomes: &[DisconnectOutcome]) -> Result<(), StoreError> {
        let mut conn = self.connect()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for d in outcomes {
            acct::record_disconnect(&tx, d)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets sessions' account baselines, in one transaction.
    pub fn set_session_baselines(&self, items: &[(String, String, SessionAccount)]) -> Result<(), StoreError> {
        let mut conn = self.connect()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (nas, sid, a) in items {
            acct::set_baseline(&tx, nas, sid, a)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Number of stored sessions, open or closed, over all NASes.
    pub fn count_sessions(&self) -> Result<u64, StoreError> {
        let conn = self.connect()?;
        let n: i64 = conn.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))?;
        // count(*) is never negative.
        Ok(n.unsigned_abs())
    }
}

fn open_flags() -> OpenFlags {
    // NO_MUTEX: a connection is only ever used by the thread that owns it,
    // so SQLite's own per-connection mutex would be pure overhead.
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// Per-connection settings. `journal_mode` is persistent in the file, the
/// others are not, so every connection runs all of them.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // First, so that the pragmas below already wait for a busy writer.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // E.g. a filesystem without shared memory support. Without WAL the
        // durability reasoning below does not hold, so refuse instead of
        // quietly running in another mode.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("journal_mode=WAL was refused (got {mode})")),
        ));
    }
    // In WAL mode, synchronous=NORMAL fsyncs only at checkpoints, not at
    // every commit. A commit is still in the WAL file (in the OS page cache)
    // before COMMIT returns, so it survives a crash or restart of the
    // process, which is the durability a RADIUS server needs before it sends
    // the Accounting-Response. Only an OS crash or power loss can lose the
    // last few commits; FULL would cost an fsync per group commit for that.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Off by default in SQLite, per connection; later tables (account
    // replica, sync checkpoints) rely on it.
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // SQLite's default page cache is 2 MiB: a delta round's keyed updates
    // spread over a replica of hundreds of megabytes then re-read most
    // index pages from the OS on every page of changes. 32 MiB per
    // connection (allocated only as used) keeps the id index resident.
    conn.pragma_update(None, "cache_size", -32_768)?;
    Ok(())
}

/// Writes `bytes` to `path` readable by the owner only, atomically: a
/// temporary file (created 0600) beside it is written, synced and renamed
/// over `path`, so a crash leaves the old file or the new one, never half.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(source) => {
            return Err(StoreError::Create {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    // `create` leaves an existing directory as it was.
    tighten_if_exists(dir, 0o700)
}

/// Makes sure the database file exists and can be opened for reading and
/// writing; returns whether it was already there.
fn ensure_private_file(path: &Path) -> Result<bool, StoreError> {
    let existed = match fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Created here rather than by SQLite because SQLite would use 0644
            // (minus umask), leaving the file readable to others until our chmod.
            match fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => false,
                // Another process created it since our first attempt.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => true,
                Err(source) => {
                    return Err(StoreError::Create {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
        // The file is there, so saying "cannot create" would mislead.
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    tighten_if_exists(path, 0o600)?;
    Ok(existed)
}

/// What an opened database file holds.
enum Contents {
    /// No schema at all: a new file, or a zero-byte one.
    Empty,
    Ours,
    /// Another program's SQLite database; the reason, for the error.
    Foreign(String),
}

fn identify(conn: &Connection) -> rusqlite::Result<Contents> {
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if app_id == APPLICATION_ID {
        return Ok(Contents::Ours);
    }
    if app_id != 0 {
        return Ok(Contents::Foreign(format!(
            "its application_id is {:#010x}, not entra-radius's {APPLICATION_ID:#010x}",
            app_id.cast_unsigned()
        )));
    }
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    let version = migrations::user_version(conn)?;
    if objects == 0 && version == 0 {
        return Ok(Contents::Empty);
    }
    // Databases from before the application id was stamped: every schema
    // version has had the accounting table of version 1.
    let sessions: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'sessions'",
        [],
        |r| r.get(0),
    )?;
    if version >= 1 && sessions == 1 {
        Ok(Contents::Ours)
    } else {
        Ok(Contents::Foreign("its tables are not entra-radius's schema".into()))
    }
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase)
}

/// Names in `dir` other than the database, its companions and the lock:
/// files a server leaves (admin token and address, credentials), so signs
/// that the directory was in use. Sorted; empty if it cannot be listed.
fn other_state(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let ours = |name: &str| {
        name == LOCK_FILE
            || name
                .strip_prefix(DB_FILE)
                .is_some_and(|rest| rest.is_empty() || DB_COMPANIONS.contains(&rest))
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !ours(n))
        .collect();
    names.sort();
    names
}

/// Removes permission bits outside `allowed` (e.g. group/other) from `path`.
/// Never adds bits: a deliberately stricter mode is left alone.
fn tighten_if_exists(path: &Path, allowed: u32) -> Result<(), StoreError> {
    let perm_err = |source| StoreError::Permissions {
        path: path.to_path_buf(),
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(perm_err(e)),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & !allowed != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & allowed)).map_err(perm_err)?;
    }
    Ok(())
}
