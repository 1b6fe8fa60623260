//! What the authentication history's writer thread costs per decision
//! written: records handed to `HistoryWriter` as the RADIUS path does, then
//! waited for until written (a batch a row, `store/history/chunk.rs`), on
//! a history that already holds a realistic number of decisions.
//!
//! `cargo bench --bench history`

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use entra_radius::store::history::QUEUE;
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
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// CPU time (user + system) of this process's thread named `name`, from
/// `/proc` (clock ticks of 10 ms: measure long enough).
fn thread_cpu(name: &str) -> Duration {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // The fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        return Duration::from_millis(ticks * 10);
    }
    panic!("no thread named {name}");
}

/// Hands `n` records over as fast as the queue takes them (waiting for room
/// instead of dropping, to measure the writer and not the drop path).
fn feed(w: &HistoryWriter, from: u64, n: u64) {
    for i in from..from + n {
        w.record(record(i));
        // A full queue drops: wait for the writer each time it could be.
        if (i + 1) % QUEUE as u64 == 0 {
            wait_written(w, i + 1);
        }
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
    let (w, handle) = HistoryWriter::spawn(&store, retention).unwrap();
    feed(&w, 0, PRELOAD);
    let cpu0 = thread_cpu("history-writer");
    feed(&w, PRELOAD, MEASURED);
    let cpu = thread_cpu("history-writer") - cpu0;
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
