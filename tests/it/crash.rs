//! A process killed (SIGKILL) in the middle of writing a large replica
//! leaves a store from which the next start loads a consistent replica:
//! every object from one and the same completed write, with the checkpoint
//! that write recorded.
//!
//! The writer is this test binary itself, started again with
//! `CRASH_WRITER_STATE` set, so that it can be killed without killing the
//! test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use entra_radius::directory::persist;
use entra_radius::directory::{AccountData, AccountKind, DirectoryKind, EntraReplica};
use entra_radius::store::Store;

use crate::harness::*;

const ENV: &str = "CRASH_WRITER_STATE";
const OBJECTS: u32 = 100_000;

fn generation_of(store: &Store) -> Option<u32> {
    store.checkpoint("generation").ok()?.and_then(|v| v.parse().ok())
}

/// One full resync's worth of accounts, all stamped with `generation`.
fn write_generation(store: &Store, generation: u32, count: u32) {
    let accounts: Vec<AccountData> = (0..count)
        .map(|i| {
            let mut a = AccountData::new(DirectoryKind::Entra, AccountKind::User, format!("obj-{i:07}"));
            a.upn = Some(format!("user{i}@contoso.com"));
            a.enabled = true;
            a.attributes.insert("generation".into(), generation.to_string());
            a
        })
        .collect();
    let mut conn = store.conn().unwrap();
    let g = generation.to_string();
    persist::replace_all(&mut conn, &accounts, &[("generation", &g)], i64::from(generation)).unwrap();
}

/// Loads the store and checks that it holds exactly one generation, the one
/// its checkpoint names. Returns that generation.
fn assert_consistent(state: &Path, count: u32) -> u32 {
    let store = Store::open(state).unwrap();
    let generation = generation_of(&store).expect("a checkpoint");
    let replica = EntraReplica::new();
    let report = persist::load_replica(&store, &replica).unwrap();
    assert_eq!(report.loaded, u64::from(count));
    assert_eq!(report.skipped, 0);
    for account in replica.snapshot_accounts() {
        assert_eq!(
            account.attributes().get("generation").map(String::as_str),
            Some(generation.to_string().as_str()),
            "mixed generations"
        );
    }
    generation
}

/// In the child: rewrite the replica forever until killed. In a normal test
/// run: the same writes, small, and the check that they load back whole.
#[test]
fn writer_process() {
    match std::env::var(ENV) {
        Ok(state) => {
            let store = Store::open(Path::new(&state)).unwrap();
            for generation in 1.. {
                write_generation(&store, generation, OBJECTS);
            }
        }
        Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            for generation in 1..=3 {
                write_generation(&store, generation, 500);
            }
            assert_eq!(assert_consistent(dir.path(), 500), 3);
        }
    }
}

#[test]
fn sigkill_during_a_large_write_leaves_a_consistent_replica() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    Store::open(&state).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash::writer_process", "--exact", "--test-threads=1"])
        .env(ENV, &state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store = Store::open(&state).unwrap();
    let wal = state.join("entra-radius.db-wal");
    let mtime = || std::fs::metadata(&wal).and_then(|m| m.modified()).ok();
    // Wait until a generation is committed and the next one has started
    // writing pages to the WAL (a 100k-object transaction spills out of
    // SQLite's page cache long before its commit), then kill: the kill lands
    // inside an open write transaction.
    let deadline = Instant::now() + Duration::from_secs(300);
    let committed = loop {
        assert!(Instant::now() < deadline, "the writer made no progress");
        assert!(child.try_wait().unwrap().is_none(), "the writer died on its own");
        let g = generation_of(&store).unwrap_or(0);
        if g >= 1 {
            let before = mtime();
            while mtime() == before && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if generation_of(&store) == Some(g) {
                child.kill().unwrap(); // SIGKILL
                break g;
            }
            // It committed in between; try with the next one.
            continue;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    child.wait().unwrap();

    // Exactly the last committed generation: the one being written is gone
    // without a trace.
    assert_eq!(assert_consistent(&state, OBJECTS), committed);

    // And the real server starts on it and answers from it.
    crate::directory::enable(&Store::open(&state).unwrap());
    let config = format!("{}{}", base_config(&state), localhost_client(""));
    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    s.wait_for_log(&format!("loaded the Entra ID replica from the store objects={OBJECTS}"));
    let o = s.cli(&["accounts", "lookup", "USER99999@contoso.com"]);
    let out = stdout(&o);
    assert!(
        out.contains("decided by: entra (user99999@contoso.com: enabled, user"),
        "{out}"
    );
}
