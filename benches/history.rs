//! What the authentication history's writer thread costs per decision
//! written: records handed to `HistoryWriter` all at once (the RADIUS path
//! hands them one by one, through the same call), then waited for until
//! written (a batch a row, `store/history/chunk.rs`), on
//! a history that already holds a realistic number of decisions.
//!
//! `cargo bench --bench history`

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use entra_radius::store::{HistoryFilter, HistoryRecord, HistoryWriter, Retention, Store};

/// Records measured.
const MEASURED: u64 = 500_000;
/// Rows in the table before measuring (a busy day of a small site).
const PRELOAD: u64 = 200_000;

fn record(i: u64) -> HistoryRecord {
    HistoryRecord {
        time_ms: 1_800_000_000_000 + i as i64,
        client: format!("switch-{}", i % 50),
        nas_addr: format!("10.0.{}.{}", (i / 250) % 250, i % 250),
        nas_port: Some(format!("GigabitEthernet1/0/{}", i % 48)),
        called_station_id: Some("00-11-22-33-44-55".into()),
        calling_station_id: Some(format!(
            "02-00-00-{:02X}-{:02X}-{:02X}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        )),
        mac: Some(format!(
            "02:00:00:{:02x}:{:02x}:{:02x}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        )),
        identity: format!("user{}@contoso.example", i % 100_000),
        method: "pap".into(),
        directory: Some("entra".into()),
        accept: !i.is_multiple_of(10),
        reason: "password checked by Entra ID".into(),
        vlan: Some("20".into()),
        account: Some(format!("8f0c2b1e-0000-4000-8000-{:012x}", i % 100_000)),
        policy_rule: Some(2),
    }
}

fn wait_written(w: &HistoryWriter, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while w.stats().written.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "the writer did not keep up");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `/proc/self/task/<tid>` of this process's thread named `name`.
fn thread_dir(name: &str) -> std::path::PathBuf {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return task;
        }
    }
    panic!("no thread named {name}");
}

/// CPU time of this process's thread named `name`: the scheduler's count
/// of the time it ran (`schedstat`, in nanoseconds; `stat`'s ticks of
/// 10 ms were too coarse for a thread that wakes for short spells).
fn thread_cpu(name: &str) -> Duration {
    let stat = std::fs::read_to_string(thread_dir(name).join("schedstat")).unwrap();
    Duration::from_nanos(stat.split(' ').next().unwrap().parse().unwrap())
}

/// A thread's I/O counters, from `/proc/.../io`.
#[derive(Clone, Copy)]
struct ThreadIo {
    read_bytes: u64,
    written_bytes: u64,
    read_calls: u64,
    write_calls: u64,
}

/// The I/O counters of this process's thread named `name`.
fn thread_io(name: &str) -> ThreadIo {
    let io = std::fs::read_to_string(thread_dir(name).join("io")).unwrap();
    let get = |k: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(": ")?.parse().ok())
            .unwrap_or(0)
    };
    ThreadIo {
        read_bytes: get("rchar"),
        written_bytes: get("wchar"),
        read_calls: get("syscr"),
        write_calls: get("syscw"),
    }
}

/// Hands `n` records over at once (the queue holds them all, so none is
/// dropped), then waits until they are written: the writer works flat out,
/// in full batches, little disturbed by the waiting (which polls every
/// 5 ms; polling every 200 µs preempts the writer, which runs under
/// `SCHED_IDLE`, and inflates its CPU time).
fn feed(w: &HistoryWriter, from: u64, n: u64) {
    for i in from..from + n {
        w.record(record(i));
    }
    wait_written(w, from + n);
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    let retention = Retention {
        keep: Duration::from_secs(3650 * 86_400),
        max_rows: u64::MAX,
    };
    let (w, handle) = HistoryWriter::spawn_with_queue(&store, retention, MEASURED.max(PRELOAD) as usize).unwrap();
    feed(&w, 0, PRELOAD);
    let cpu0 = thread_cpu("history-writer");
    let io0 = thread_io("history-writer");
    feed(&w, PRELOAD, MEASURED);
    let cpu = thread_cpu("history-writer") - cpu0;
    let io1 = thread_io("history-writer");
    let per_row = |f: fn(ThreadIo) -> u64| (f(io1) - f(io0)) as f64 / MEASURED as f64;
    println!(
        "writer I/O per decision: {:.0} bytes read in {:.3} calls, {:.0} bytes written in {:.3} calls",
        per_row(|t| t.read_bytes),
        per_row(|t| t.read_calls),
        per_row(|t| t.written_bytes),
        per_row(|t| t.write_calls)
    );
    let size: u64 = ["history.db", "history.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join("state").join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "history writer: {MEASURED} records after {PRELOAD}: writer CPU {:.2} µs per row \
         (one CPU writes at most {:.0} rows/s), history.db {:.0} MiB for {} rows ({:.0} MiB per million)",
        cpu.as_secs_f64() * 1e6 / MEASURED as f64,
        MEASURED as f64 / cpu.as_secs_f64(),
        size as f64 / 1048576.0,
        PRELOAD + MEASURED,
        size as f64 / 1048576.0 / ((PRELOAD + MEASURED) as f64 / 1e6),
    );
    let (chunks, rows): (i64, i64) = rusqlite::Connection::open(store.history_path())
        .unwrap()
        .query_row(
            "SELECT count(*), coalesce(sum(rows), 0) FROM auth_history_chunk",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    println!(
        "{chunks} chunks, {:.0} decisions a chunk",
        rows as f64 / chunks.max(1) as f64
    );
    // What `auth log --user` and `--mac` cost on that table: the newest
    // 50 decisions of one identity, and of one MAC.
    for (what, filter) in [
        (
            "--user (a user with ~7 decisions)",
            HistoryFilter {
                identity: Some("user42@contoso.example".into()),
                limit: 50,
                ..Default::default()
            },
        ),
        (
            "--user (nobody)",
            HistoryFilter {
                identity: Some("nobody@contoso.example".into()),
                limit: 50,
                ..Default::default()
            },
        ),
        (
            "--mac",
            HistoryFilter {
                mac: Some("02:00:00:00:a0:2a".into()),
                limit: 50,
                ..Default::default()
            },
        ),
        (
            "newest 50",
            HistoryFilter {
                limit: 50,
                ..Default::default()
            },
        ),
    ] {
        let t = Instant::now();
        let rows = store.auth_history(&filter).unwrap();
        println!(
            "auth log {what}: {} rows in {:.1} ms",
            rows.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    drop(w);
    handle.join().unwrap();
}
