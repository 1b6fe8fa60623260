use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::Connection;

use super::migrations::{self, Migration};
use super::writer::write_batch;
use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("state")).unwrap();
    (tmp, store)
}

fn rec(nas: &str, sid: &str, status: AcctStatus, t: i64) -> AcctRecord {
    AcctRecord {
        nas: nas.into(),
        client_name: "switch-1".into(),
        status,
        session_id: sid.into(),
        user_name: Some("alice@example.com".into()),
        event_time: t,
        ..AcctRecord::default()
    }
}

fn with_counters(mut r: AcctRecord, session_time: u32, octets: u64) -> AcctRecord {
    r.session_time = Some(session_time);
    r.input_octets = Some(octets);
    r.output_octets = Some(octets * 2);
    r.input_packets = Some(session_time * 10);
    r.output_packets = Some(session_time * 20);
    r
}

/// Writes each record in its own batch, as the writer thread would.
fn apply_all(store: &Store, recs: &[AcctRecord]) {
    let mut conn = store.connect().unwrap();
    for r in recs {
        let results = write_batch(&mut conn, &[r]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
    }
}

fn get(store: &Store, nas: &str, sid: &str) -> SessionRow {
    store.session(nas, sid).unwrap().expect("session stored")
}

// ---- opening, permissions, migrations ----

#[test]
fn open_creates_private_dir_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("state");
    let store = Store::open(&dir).unwrap();

    assert_eq!(store.path(), dir.join(DB_FILE));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(store.path()), 0o600);
    for suffix in ["-wal", "-shm"] {
        let companion = format!("{}{suffix}", store.path().display());
        if Path::new(&companion).exists() {
            assert_eq!(mode(Path::new(&companion)), 0o600, "{companion}");
        }
    }
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);

    let conn = store.connect().unwrap();
    let journal: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(journal, "wal");
    let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
    assert_eq!(sync, 1, "synchronous=NORMAL");
    let fk: i64 = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = conn.pragma_query_value(None, "busy_timeout", |r| r.get(0)).unwrap();
    assert_eq!(busy, 5000);
}

#[test]
fn open_tightens_existing_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let db = dir.join(DB_FILE);
    fs::write(&db, b"").unwrap();
    fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();

    let store = Store::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn open_tightens_wal_and_shm() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    // A live connection with a write keeps -wal and -shm on disk.
    let keep = store.connect().unwrap();
    keep.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    let wal = tmp.path().join(format!("{DB_FILE}-wal"));
    let shm = tmp.path().join(format!("{DB_FILE}-shm"));
    assert_eq!(mode(&wal), 0o600, "SQLite copies the db file's mode");
    assert_eq!(mode(&shm), 0o600);

    fs::set_permissions(&wal, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&shm, fs::Permissions::from_mode(0o666)).unwrap();
    let _reopened = Store::open(tmp.path()).unwrap();
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&shm), 0o600);
    drop(keep);
}

#[test]
fn reopen_keeps_data_and_version() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    apply_all(&store, &[rec("10.0.0.1", "s1", AcctStatus::Start, 100)]);
    drop(store);

    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.count_sessions().unwrap(), 1);
    assert_eq!(get(&store, "10.0.0.1", "s1").started_at, Some(100));
}

#[test]
fn newer_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store
        .connect()
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();

    let err = Store::open(tmp.path()).unwrap_err();
    match &err {
        StoreError::NewerSchema { path, found, supported } => {
            assert_eq!(path, &tmp.path().join(DB_FILE));
            assert_eq!(*found, i64::from(SCHEMA_VERSION + 1));
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    assert!(err.to_string().contains(DB_FILE), "{err}");
    // Refusing must not have touched the version.
    let conn = Connection::open(tmp.path().join(DB_FILE)).unwrap();
    assert_eq!(migrations::user_version(&conn).unwrap(), i64::from(SCHEMA_VERSION + 1));
}

#[test]
fn not_a_database_is_refused_naming_the_file_and_the_way_out() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(DB_FILE);
    fs::write(&db, vec![0x42; 4096]).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{} is not an entra-radius database (it is not an SQLite database)",
            db.display()
        )),
        "{text}"
    );
    assert!(text.contains("move this file aside"), "{text}");
    assert_eq!(fs::read(&db).unwrap(), vec![0x42; 4096]);
}

#[test]
fn another_programs_sqlite_database_is_refused_and_left_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(DB_FILE);
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY); PRAGMA user_version = 3;")
            .unwrap();
    }
    let before = fs::read(&db).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert!(
        err.to_string().contains("its tables are not entra-radius's schema"),
        "{err}"
    );
    assert_eq!(fs::read(&db).unwrap(), before, "neither migrated nor switched to WAL");

    // Another program's application id is enough, whatever the tables.
    let conn = Connection::open(&db).unwrap();
    conn.pragma_update(None, "application_id", 0x1234_5678).unwrap();
    drop(conn);
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(err.to_string().contains("its application_id is 0x12345678"), "{err}");
}

#[test]
fn databases_are_stamped_and_older_unstamped_ones_are_ours() {
    let (tmp, store) = temp_store();
    let app_id = |path: &Path| -> i32 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap()
    };
    assert_eq!(app_id(store.path()), APPLICATION_ID);

    // A database written before the stamp existed.
    let old = tmp.path().join("old");
    fs::create_dir(&old).unwrap();
    let path = old.join(DB_FILE);
    let mut conn = Connection::open(&path).unwrap();
    migrations::migrate(&mut conn, &path, MIGRATIONS).unwrap();
    drop(conn);
    assert_eq!(app_id(&path), 0);
    Store::open(&old).unwrap();
    assert_eq!(app_id(&path), APPLICATION_ID);
}

#[test]
fn empty_database_in_a_used_state_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(DB_FILE);
    fs::write(tmp.path().join("admin.token"), "x").unwrap();
    fs::write(tmp.path().join("entra-client-secret"), "x").unwrap();
    fs::write(&db, b"").unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::EmptyInUsedDir { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{} is empty, but the state directory {} has been used before (it holds admin.token, entra-client-secret)",
            db.display(),
            tmp.path().display()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("delete {} to start afresh", db.display())),
        "{text}"
    );
    assert_eq!(fs::metadata(&db).unwrap().len(), 0, "left as found");

    // Deleting it is the administrator's way to start afresh.
    fs::remove_file(&db).unwrap();
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn empty_database_alone_or_beside_only_the_lock_is_a_first_start() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = StateLock::acquire(tmp.path()).unwrap();
    fs::write(tmp.path().join(DB_FILE), b"").unwrap();
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(lock);
}

#[test]
fn a_database_written_only_to_its_wal_is_not_empty() {
    // A server killed before its first checkpoint leaves a main file with
    // no schema (only the header that switching to WAL wrote) and everything
    // else in the WAL: that is not an empty database.
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(DB_FILE);
    fs::write(&db, b"").unwrap();
    // While this connection is open, closing the others checkpoints nothing.
    let keep = Connection::open(&db).unwrap();
    let _: String = keep
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .unwrap();
    let _: i64 = keep
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    let store = Store::open(tmp.path()).unwrap();
    apply_all(&store, &[rec("10.0.0.1", "s1", AcctStatus::Start, 100)]);
    let copy = tmp.path().join("copy");
    fs::create_dir(&copy).unwrap();
    for suffix in ["", "-wal"] {
        fs::copy(
            format!("{}{suffix}", db.display()),
            copy.join(format!("{DB_FILE}{suffix}")),
        )
        .unwrap();
    }
    drop(keep);
    let main_only = tmp.path().join("main-only.db");
    fs::copy(copy.join(DB_FILE), &main_only).unwrap();
    let objects: i64 = Connection::open(&main_only)
        .unwrap()
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(objects, 0, "without its WAL the copy would look empty");
    fs::write(copy.join("admin.token"), "x").unwrap();
    let copied = Store::open(&copy).unwrap();
    assert_eq!(copied.count_sessions().unwrap(), 1);
}

#[test]
fn unreadable_database_is_cannot_read_not_cannot_create() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(DB_FILE);
    fs::create_dir(&db).unwrap();
    let err = Store::open(tmp.path()).unwrap_err();
    assert!(matches!(err, StoreError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!("cannot read {}:", db.display())),
        "{err}"
    );
    fs::remove_dir(&db).unwrap();

    // Root reads any file whatever its mode: only an ordinary user can see this.
    if unsafe { libc::geteuid() } != 0 {
        Store::open(tmp.path()).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o000)).unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}: Permission denied", db.display())),
            "{err}"
        );
    }
}

#[test]
fn state_lock_is_exclusive_names_its_holder_and_ends_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let lock = StateLock::acquire(&dir).unwrap();
    assert_eq!(lock.path(), dir.join(LOCK_FILE));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(lock.path()), 0o600);
    let pid = std::process::id();
    assert_eq!(fs::read_to_string(lock.path()).unwrap(), format!("{pid}\n"));

    // flock belongs to the open file, so a second open in this same process
    // is refused as another server's would be.
    let err = StateLock::acquire(&dir).unwrap_err();
    assert!(
        matches!(err, StoreError::Locked { pid: Some(p), .. } if p == pid),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("(PID {pid}, holding {})", dir.join(LOCK_FILE).display())),
        "{text}"
    );
    // Refusing does not erase the holder's PID.
    assert_eq!(fs::read_to_string(lock.path()).unwrap(), format!("{pid}\n"));
    // Reading the store beside the holder is fine.
    Store::open(&dir).unwrap();

    drop(lock);
    let again = StateLock::acquire(&dir).unwrap();
    drop(again);
}

#[test]
fn migration_list_is_contiguous_from_one() {
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version as usize, i + 1);
    }
    assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
}

#[test]
fn failed_migration_rolls_back_and_later_one_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.db");
    let mut conn = Connection::open(&path).unwrap();
    let broken = [
        Migration {
            version: 1,
            sql: "CREATE TABLE a (x INTEGER);",
        },
        Migration {
            version: 2,
            sql: "CREATE TABLE b (x INTEGER); INSERT INTO no_such_table VALUES (1);",
        },
    ];
    let err = migrations::migrate(&mut conn, &path, &broken).unwrap_err();
    assert!(matches!(err, StoreError::Migration { version: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("m.db"), "{err}");
    assert_eq!(migrations::user_version(&conn).unwrap(), 1);
    let b_exists: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'b'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(b_exists, 0, "half-applied migration 2 must be rolled back");

    let fixed = [
        broken[0],
        Migration {
            version: 2,
            sql: "CREATE TABLE b (x INTEGER);",
        },
    ];
    assert_eq!(migrations::migrate(&mut conn, &path, &fixed).unwrap(), 2);
    assert_eq!(migrations::migrate(&mut conn, &path, &fixed).unwrap(), 2);
    assert_eq!(migrations::user_version(&conn).unwrap(), 2);
}

#[test]
fn migration_4_keeps_the_replica_and_its_upserts_work() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(DB_FILE);
    {
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(migrations::migrate(&mut conn, &path, &MIGRATIONS[..3]).unwrap(), 3);
        conn.execute(
            "INSERT INTO replica_objects (object_id, kind, data, updated_at) VALUES ('u1', 'user', x'0102', 7), ('d1', 'device', x'03', 8)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let mut conn = store.connect().unwrap();
    let mut seen = Vec::new();
    objects::load_all(&mut conn, |id, kind, data| {
        seen.push((id.to_string(), kind.to_string(), data.to_vec()))
    })
    .unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("d1".into(), "device".into(), vec![3]),
            ("u1".into(), "user".into(), vec![1, 2])
        ]
    );
    // The upsert keys on the object id as before: no duplicate row.
    objects::apply(
        &mut conn,
        &[objects::ObjectOp::Put {
            object_id: "u1",
            kind: "user",
            data: &[9],
        }],
        &[],
        9,
    )
    .unwrap();
    assert_eq!(
        objects::count_by_kind(&conn).unwrap(),
        vec![("device".into(), 1), ("user".into(), 1)]
    );
    assert_eq!(
        objects::ids_written_before(&conn, "user", 9).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        objects::ids_written_before(&conn, "device", 9).unwrap(),
        vec!["d1".to_string()]
    );
}

// ---- accounting semantics ----

#[test]
fn acct_status_codes() {
    for (code, status) in [
        (1, AcctStatus::Start),
        (2, AcctStatus::Stop),
        (3, AcctStatus::InterimUpdate),
        (7, AcctStatus::AccountingOn),
        (8, AcctStatus::AccountingOff),
        (9, AcctStatus::Other(9)),
        (0, AcctStatus::Other(0)),
    ] {
        assert_eq!(AcctStatus::from_code(code), status);
        assert_eq!(status.code(), code);
    }
    assert_eq!(AcctStatus::default(), AcctStatus::Other(0));
}

#[test]
fn start_interim_stop_lifecycle() {
    let (_tmp, store) = temp_store();
    let nas = "10.0.0.1";

    let mut start = rec(nas, "s1", AcctStatus::Start, 1000);
    start.calling_station_id = Some("aa-bb-cc-dd-ee-ff".into());
    start.called_station_id = Some("11-22-33-44-55-66:corp".into());
    start.nas_port = Some(7);
    start.nas_port_id = Some("Gi1/0/7".into());
    apply_all(&store, &[start]);
    let row = get(&store, nas, "s1");
    assert_eq!(row.started_at, Some(1000));
    assert_eq!(row.updated_at, 1000);
    assert_eq!(row.stopped_at, None);
    assert_eq!(row.interim_count, 0);
    assert_eq!(row.session_time, None);
    assert_eq!(row.client_name, "switch-1");
    assert_eq!(row.user_name.as_deref(), Some("alice@example.com"));
    assert_eq!(row.nas_port, Some(7));
    assert_eq!(store.open_sessions(nas).unwrap(), vec![row]);

    let mut interim = with_counters(rec(nas, "s1", AcctStatus::InterimUpdate, 1600), 600, 5_000);
    interim.framed_ip = Some("192.0.2.10".into());
    interim.user_name = None; // absent attribute keeps the stored one
    apply_all(&store, &[interim]);
    let row = get(&store, nas, "s1");
    assert_eq!(row.interim_count, 1);
    assert_eq!(row.session_time, Some(600));
    assert_eq!(row.input_octets, Some(5_000));
    assert_eq!(row.output_octets, Some(10_000));
    assert_eq!(row.input_packets, Some(6_000));
    assert_eq!(row.output_packets, Some(12_000));
    assert_eq!(row.framed_ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(row.user_name.as_deref(), Some("alice@example.com"));
    assert_eq!(row.updated_at, 1600);
    assert_eq!(row.stopped_at, None);

    // Gigaword-sized totals survive the round trip.
    let big = 5 * (1u64 << 32) + 17;
    let mut stop = with_counters(rec(nas, "s1", AcctStatus::Stop, 1900), 900, big);
    stop.terminate_cause = Some(1);
    apply_all(&store, &[stop]);
    let row = get(&store, nas, "s1");
    assert_eq!(row.started_at, Some(1000));
    assert_eq!(row.stopped_at, Some(1900));
    assert_eq!(row.updated_at, 1900);
    assert_eq!(row.session_time, Some(900));
    assert_eq!(row.input_octets, Some(big));
    assert_eq!(row.output_octets, Some(big * 2));
    assert_eq!(row.terminate_cause, Some(1));
    assert_eq!(row.interim_count, 1);
    assert_eq!(row.calling_station_id.as_deref(), Some("aa-bb-cc-dd-ee-ff"));
    assert!(store.open_sessions(nas).unwrap().is_empty());
    assert_eq!(store.count_sessions().unwrap(), 1);
}

#[test]
fn replays_are_idempotent() {
    let (_tmp, store) = temp_store();
    let nas = "10.0.0.1";
    let start = rec(nas, "s1", AcctStatus::Start, 1000);
    let interim = with_counters(rec(nas, "s1", AcctStatus::InterimUpdate, 1300), 300, 100);
    let mut stop = with_counters(rec(nas, "s1", AcctStatus::Stop, 1500), 500, 200);
    stop.terminate_cause = Some(1);

    apply_all(&store, &[start.clone(), start.clone()]);
    assert_eq!(get(&store, nas, "s1").started_at, Some(1000));
    // A retransmitted Start timestamped on arrival keeps the first start.
    apply_all(&store, &[rec(nas, "s1", AcctStatus::Start, 1005)]);
    assert_eq!(get(&store, nas, "s1").started_at, Some(1000));

    apply_all(&store, &[interim.clone(), interim.clone(), interim.clone()]);
    let after_interims = get(&store, nas, "s1");
    assert_eq!(
        after_interims.interim_count, 1,
        "replayed interim (same Acct-Session-Time) counts once"
    );
    assert_eq!(after_interims.input_octets, Some(100));

    apply_all(&store, &[stop.clone()]);
    let after_stop = get(&store, nas, "s1");
    apply_all(&store, &[stop.clone(), stop.clone(), start, interim]);
    assert_eq!(get(&store, nas, "s1"), after_stop);
    assert_eq!(after_stop.stopped_at, Some(1500));
    assert_eq!(after_stop.input_octets, Some(200));
    assert_eq!(after_stop.interim_count, 1);
    assert_eq!(store.count_sessions().unwrap(), 1);
}

#[test]
fn stop_before_start_is_not_reopened() {
    let (_tmp, store) = temp_store();
    let nas = "10.0.0.1";
    let mut stop = with_counters(rec(nas, "s1", AcctStatus::Stop, 2000), 300, 42);
    stop.terminate_cause = Some(4);
    apply_all(&store, &[stop]);
    let row = get(&store, nas, "s1");
    assert_eq!(row.started_at, None);
    assert_eq!(row.stopped_at, Some(2000));

    apply_all(&store, &[rec(nas, "s1", AcctStatus::Start, 1700)]);
    let row = get(&store, nas, "s1");
    assert_eq!(row.started_at, Some(1700));
    assert_eq!(row.stopped_at, Some(2000), "late Start must not reopen");
    assert_eq!(row.terminate_cause, Some(4));
    assert_eq!(row.session_time, Some(300));
    assert_eq!(row.input_octets, Some(42));
    assert_eq!(row.updated_at, 2000);
    assert!(store.open_sessions(nas).unwrap().is_empty());
}

#[test]
fn old_interim_does_not_regress_counters() {
    let (_tmp, store) = temp_store();
    let nas = "10.0.0.1";
    let newer = with_counters(rec(nas, "s1", AcctStatus::InterimUpdate, 1600), 600, 6_000);
    let older = with_counters(rec(nas, "s1", AcctStatus::InterimUpdate, 1300), 300, 3_000);

    // Start was lost: the interim creates the row.
    apply_all(&store, &[newer]);
    let row = get(&store, nas, "s1");
    assert_eq!(row.started_at, None);
    assert_eq!(row.interim_count, 1);
    assert_eq!(row.session_time, Some(600));

    apply_all(&store, &[older]);
    let row = get(&store, nas, "s1");
    assert_eq!(row.session_time, Some(600));
    assert_eq!(row.input_octets, Some(6_000));
    assert_eq!(row.output_octets, Some(12_000));
    assert_eq!(row.input_packets, Some(6_000));
    assert_eq!(row.updated_at, 1600);
    assert_eq!(row.interim_count, 1, "a delayed old interim is not counted");

    // And a stale interim after the Stop changes nothing either.
    let stop = with_counters(rec(nas, "s1", AcctStatus::Stop, 1900), 900, 9_000);
    apply_all(&store, &[stop]);
    let closed = get(&store, nas, "s1");
    apply_all(
        &store,
        &[with_counters(
            rec(nas, "s1", AcctStatus::InterimUpdate, 1800),
            800,
            8_000,
        )],
    );
    assert_eq!(get(&store, nas, "s1"), closed);
}

#[test]
fn accounting_on_closes_only_that_nas() {
    let (_tmp, store) = temp_store();
    let (a, b) = ("10.0.0.1", "10.0.0.2");
    let mut stopped = rec(a, "a-stopped", AcctStatus::Stop, 1200);
    stopped.terminate_cause = Some(1);
    apply_all(
        &store,
        &[
            rec(a, "a1", AcctStatus::Start, 1000),
            with_counters(rec(a, "a2", AcctStatus::InterimUpdate, 1100), 100, 1),
            rec(a, "a-stopped", AcctStatus::Start, 1000),
            stopped,
            rec(b, "b1", AcctStatus::Start, 1000),
            // Started after the reboot below: belongs to the new boot.
            rec(a, "a-new", AcctStatus::Start, 3000),
        ],
    );

    let on = AcctRecord {
        nas: a.into(),
        client_name: "switch-1".into(),
        status: AcctStatus::AccountingOn,
        event_time: 2000,
        ..AcctRecord::default()
    };
    apply_all(&store, std::slice::from_ref(&on));

    for sid in ["a1", "a2"] {
        let row = get(&store, a, sid);
        assert_eq!(row.stopped_at, Some(2000), "{sid}");
        assert_eq!(row.terminate_cause, Some(TERMINATE_CAUSE_NAS_REBOOT), "{sid}");
        assert_eq!(row.updated_at, 2000, "{sid}");
    }
    let row = get(&store, a, "a-stopped");
    assert_eq!(row.stopped_at, Some(1200));
    assert_eq!(row.terminate_cause, Some(1));
    let open_a: Vec<String> = store
        .open_sessions(a)
        .unwrap()
        .into_iter()
        .map(|r| r.session_id)
        .collect();
    assert_eq!(open_a, ["a-new"]);
    let open_b = store.open_sessions(b).unwrap();
    assert_eq!(open_b.len(), 1);
    assert_eq!(open_b[0].stopped_at, None);
    assert_eq!(open_b[0].terminate_cause, None);

    // Replayed Accounting-On: nothing more to close. Off closes the rest.
    apply_all(&store, &[on]);
    assert_eq!(get(&store, a, "a1").stopped_at, Some(2000));
    let off = AcctRecord {
        nas: a.into(),
        status: AcctStatus::AccountingOff,
        event_time: 4000,
        ..AcctRecord::default()
    };
    apply_all(&store, &[off]);
    assert!(store.open_sessions(a).unwrap().is_empty());
    assert_eq!(get(&store, a, "a-new").stopped_at, Some(4000));
    assert_eq!(store.open_sessions(b).unwrap().len(), 1);
    // No session rows were created for the On/Off records themselves.
    assert_eq!(store.count_sessions().unwrap(), 5);

    // The real Stop of a session the reboot closed, arriving late, is
    // authoritative for its cause and counters and moves stopped_at earlier.
    let mut late_stop = with_counters(rec(a, "a1", AcctStatus::Stop, 1900), 900, 77);
    late_stop.terminate_cause = Some(2);
    apply_all(&store, &[late_stop]);
    let row = get(&store, a, "a1");
    assert_eq!(row.stopped_at, Some(1900));
    assert_eq!(row.terminate_cause, Some(2));
    assert_eq!(row.input_octets, Some(77));
}

#[test]
fn other_status_is_accepted_and_not_stored() {
    let (_tmp, store) = temp_store();
    let mut conn = store.connect().unwrap();
    let failed = rec("10.0.0.1", "s1", AcctStatus::from_code(15), 1000);
    let unset = AcctRecord::default();
    let results = write_batch(&mut conn, &[&failed, &unset]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(store.count_sessions().unwrap(), 0);
}

#[test]
fn octets_beyond_i64_saturate() {
    let (_tmp, store) = temp_store();
    let mut r = rec("10.0.0.1", "s1", AcctStatus::InterimUpdate, 1);
    r.session_time = Some(1);
    r.input_octets = Some(u64::MAX);
    apply_all(&store, &[r]);
    assert_eq!(
        get(&store, "10.0.0.1", "s1").input_octets,
        Some(i64::MAX.unsigned_abs())
    );
}

#[test]
fn batch_falls_back_to_per_record_writes() {
    let (_tmp, store) = temp_store();
    let mut conn = store.connect().unwrap();
    let good1 = rec("10.0.0.1", "s1", AcctStatus::Start, 1000);
    // RFC 2866 requires Acct-Session-Id in a Start; the schema rejects it.
    let bad = rec("10.0.0.1", "", AcctStatus::Start, 1000);
    let good2 = with_counters(rec("10.0.0.2", "s2", AcctStatus::InterimUpdate, 1100), 10, 5);

    let results = write_batch(&mut conn, &[&good1, &bad, &good2]);
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(matches!(results[1], Err(StoreError::Sqlite(_))), "{:?}", results[1]);
    assert!(results[2].is_ok(), "{:?}", results[2]);
    assert_eq!(store.count_sessions().unwrap(), 2);
    // Redone once, not applied twice: the failed batch was rolled back.
    assert_eq!(get(&store, "10.0.0.2", "s2").interim_count, 1);
}

// ---- the async writer ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_commits_1000_concurrent_records() {
    let (_tmp, store) = temp_store();
    let (writer, handle) = AcctWriter::spawn(&store, 64).unwrap();

    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let nas = format!("10.0.{}.{}", i / 250, i % 250);
                writer
                    .record(rec(&nas, &format!("s{i}"), AcctStatus::Start, 1000 + i))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // Every future resolved Ok, so every record is already committed.
    assert_eq!(store.count_sessions().unwrap(), 1000);
    assert_eq!(get(&store, "10.0.3.249", "s999").started_at, Some(1999));

    drop(writer);
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .expect("writer thread exits cleanly once all handles are dropped");
}

/// `record_then` calls back exactly once: on the writer thread once the
/// record is committed, or at once, on the caller's thread, when the queue
/// is full. The writer is held inside a callback so that the queue's state
/// is known, not raced.
#[test]
fn record_then_calls_back_once_committed_or_at_once_when_the_queue_is_full() {
    let (_tmp, store) = temp_store();
    let (writer, handle) = AcctWriter::spawn(&store, 1).unwrap();
    let (started, writer_busy) = std::sync::mpsc::channel();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (results, result) = std::sync::mpsc::channel();
    let first = results.clone();
    writer.record_then(rec("10.0.0.1", "s0", AcctStatus::Start, 1000), move |r| {
        started.send(std::thread::current().name().map(str::to_string)).unwrap();
        held.recv().unwrap();
        first.send((0, r.map(|_| ()).map_err(|e| e.to_string()))).unwrap();
    });
    // The writer committed s0 and is inside its callback, on its own thread.
    assert_eq!(writer_busy.recv().unwrap().as_deref(), Some("acct-writer"));
    for i in 1..=2 {
        let results = results.clone();
        writer.record_then(rec("10.0.0.1", &format!("s{i}"), AcctStatus::Start, 1000), move |r| {
            results.send((i, r.map(|_| ()).map_err(|e| e.to_string()))).unwrap();
        });
    }
    // s1 fills the queue of one; s2 is refused at once, before anything
    // else is answered.
    assert_eq!(
        result.try_recv().unwrap(),
        (2, Err("the accounting writer's queue is full".to_string()))
    );
    release.send(()).unwrap();
    assert_eq!(result.recv().unwrap(), (0, Ok(())));
    assert_eq!(result.recv().unwrap(), (1, Ok(())));
    drop(writer);
    handle.join().unwrap();
    drop(results);
    assert!(result.recv().is_err(), "a callback was called twice");
    assert_eq!(store.count_sessions().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_returns_each_record_its_own_result() {
    let (_tmp, store) = temp_store();
    let (writer, handle) = AcctWriter::spawn(&store, 8).unwrap();

    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let writer = writer.clone();
            // Every tenth record lacks its Acct-Session-Id.
            let sid = if i % 10 == 0 { String::new() } else { format!("s{i}") };
            tokio::spawn(async move { writer.record(rec("10.0.0.1", &sid, AcctStatus::Start, 1000)).await })
        })
        .collect();
    let mut failed = 0;
    for task in tasks {
        if task.await.unwrap().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 5);
    assert_eq!(store.count_sessions().unwrap(), 45);

    let clone = writer.clone();
    drop(writer);
    // A remaining clone keeps the thread alive and usable.
    clone
        .record(rec("10.0.0.1", "late", AcctStatus::Start, 1000))
        .await
        .unwrap();
    drop(clone);
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.count_sessions().unwrap(), 46);
}

#[test]
fn writer_spawn_fails_when_database_is_gone() {
    let (tmp, store) = temp_store();
    fs::remove_file(store.path()).unwrap();
    let err = AcctWriter::spawn(&store, 1).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    drop(tmp);
}
