//! Forward-only schema migrations, tracked in `PRAGMA user_version`.
//!
//! To change the schema, append a [`Migration`] with the next version to
//! [`MIGRATIONS`]; never edit one that has shipped, since databases in the
//! field already recorded it as applied. Each migration runs in its own
//! `BEGIN IMMEDIATE` transaction together with the version bump, so a
//! failure leaves the database at the previous version, and two processes
//! opening the same file at once cannot both apply it.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// One schema step: `sql` brings a database at `version - 1` to `version`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub sql: &'static str,
}

/// Every migration, in ascending contiguous version order starting at 1.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: MIGRATION_1_ACCOUNTING,
    },
    Migration {
        version: 2,
        sql: MIGRATION_2_REPLICA,
    },
    Migration {
        version: 3,
        sql: MIGRATION_3_INTEGRATION,
    },
    Migration {
        version: 4,
        sql: MIGRATION_4_REPLICA_ROWID,
    },
    Migration {
        version: 5,
        sql: MIGRATION_5_AUTH_HISTORY,
    },
];

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Accounting sessions, one row per (NAS, Acct-Session-Id). The merge rules
/// live in `acct.rs`; the table only stores their result.
///
/// The CHECKs reject keys that cannot identify a session (RFC 2866 requires
/// Acct-Session-Id in every Start/Interim/Stop). WITHOUT ROWID because every
/// lookup is by the primary key. The partial index serves the open-session
/// queries (Accounting-On/Off, `open_sessions`) without indexing the closed
/// sessions, which are the vast majority.
const MIGRATION_1_ACCOUNTING: &str = "
CREATE TABLE sessions (
    nas                TEXT    NOT NULL CHECK (length(nas) > 0),
    session_id         TEXT    NOT NULL CHECK (length(session_id) > 0),
    client_name        TEXT    NOT NULL,
    user_name          TEXT,
    calling_station_id TEXT,
    called_station_id  TEXT,
    framed_ip          TEXT,
    nas_port           INTEGER,
    nas_port_id        TEXT,
    started_at         INTEGER,
    updated_at         INTEGER NOT NULL,
    stopped_at         INTEGER,
    session_time       INTEGER,
    input_octets       INTEGER,
    output_octets      INTEGER,
    input_packets      INTEGER,
    output_packets     INTEGER,
    terminate_cause    INTEGER,
    interim_count      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (nas, session_id)
) WITHOUT ROWID;

CREATE INDEX sessions_open_by_nas ON sessions (nas) WHERE stopped_at IS NULL;
";

/// The Entra ID replica and the sync checkpoints that go with it.
///
/// Objects are kept as opaque serialised blobs keyed by object id: the
/// directory layer owns their shape, the store only guarantees that a batch
/// of objects and the checkpoint that says how far the sync got commit
/// together. `kind` is there for counting without decoding every blob.
const MIGRATION_2_REPLICA: &str = "
CREATE TABLE replica_objects (
    object_id  TEXT    NOT NULL PRIMARY KEY CHECK (length(object_id) > 0),
    kind       TEXT    NOT NULL,
    data       BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE sync_checkpoints (
    name       TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The Entra ID integration's settings that the CLI sets and the server
/// reads (tenant, application id, enabled, selected domains), as key/value
/// text. Secrets are not here: they live in their own 0600 files.
const MIGRATION_3_INTEGRATION: &str = "
CREATE TABLE integration_state (
    key        TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// `replica_objects` as a rowid table with a unique index on the object id.
/// Version 2 made it WITHOUT ROWID, which keeps each row inside the primary
/// key's B-tree: right for small rows, wrong for account blobs of a few
/// kilobytes (users with many groups), which then spill into overflow pages
/// and make every keyed update of a delta round walk and rewrite large
/// pages. With a rowid table the index holds only the ids.
const MIGRATION_4_REPLICA_ROWID: &str = "
CREATE TABLE replica_objects_v4 (
    object_id  TEXT    NOT NULL UNIQUE CHECK (length(object_id) > 0),
    kind       TEXT    NOT NULL,
    data       BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO replica_objects_v4 (object_id, kind, data, updated_at)
    SELECT object_id, kind, data, updated_at FROM replica_objects;
DROP TABLE replica_objects;
ALTER TABLE replica_objects_v4 RENAME TO replica_objects;
";

/// The authentication history as it was first kept, in this file; it now
/// has a database of its own (`history.rs`, `history.db`), and this table
/// stays unused.
const MIGRATION_5_AUTH_HISTORY: &str = "
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
    vlan               TEXT
);
CREATE INDEX auth_history_identity ON auth_history (identity COLLATE NOCASE, id);
CREATE INDEX auth_history_mac ON auth_history (mac, id);
";

/// Raw `PRAGMA user_version`; SQLite stores it as a signed 32-bit value.
pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Applies the migrations of `migrations` newer than the database's version,
/// one transaction each, and returns the resulting version.
///
/// `migrations` is a parameter (rather than always [`MIGRATIONS`]) so that
/// tests can exercise failure and upgrade paths with their own lists.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, migrations: &[Migration]) -> Result<u32, StoreError> {
    let supported = migrations.last().map_or(0, |m| m.version);
    loop {
        // The version is read inside the write transaction: another process
        // may have migrated between our open and this point.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let found = user_version(&tx).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let current = match u32::try_from(found) {
            Ok(v) if v <= supported => v,
            _ => {
                return Err(StoreError::NewerSchema {
                    path: path.to_path_buf(),
                    found,
                    supported,
                });
            }
        };
        let Some(next) = migrations.iter().find(|m| m.version > current) else {
            // Nothing to do; dropping `tx` ends the empty transaction.
            return Ok(current);
        };
        let version = next.version;
        let mig_err = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version,
            source,
        };
        tx.execute_batch(next.sql).map_err(mig_err)?;
        tx.pragma_update(None, "user_version", version).map_err(mig_err)?;
        tx.commit().map_err(mig_err)?;
        tracing::info!(path = %path.display(), version, "applied schema migration");
    }
}
