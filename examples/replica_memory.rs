//! Builds a replica of 1M synthetic accounts with `load` and prints the
//! time it took and the process's memory before and after.
//!
//! `cargo run --release --example replica_memory [COUNT]`
//!
//! With `STORE=DIR`, it first writes the accounts into a store under DIR
//! (unless one is already there) in a separate run, then measures what
//! `serve` does at startup: `persist::load_replica` from SQLite (read, JSON
//! decode, index build). Run it twice with the same DIR: the first run
//! writes, the second measures a fresh process.

use std::time::Instant;

#[path = "../benches/support/synthetic.rs"]
mod synthetic;

use entra_radius::directory::{Account, AccountData, EntraReplica, Identity};
use synthetic::synthetic;

fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    if let Some(dir) = std::env::var_os("STORE") {
        from_store(std::path::Path::new(&dir), n);
        return;
    }
    let (rss0, hwm0) = (status("VmRSS:"), status("VmHWM:"));
    println!("before: VmRSS {rss0} kB, VmHWM {hwm0} kB");
    // Generating the accounts up front measures `load` alone but leaves the
    // heap fragmented by the per-account strings `load` re-interns; the
    // store streams accounts into `load` instead, which is the default.
    let upfront = std::env::var_os("UPFRONT").is_some();
    let replica = EntraReplica::new();
    let load = if upfront {
        let t = Instant::now();
        let accounts: Vec<Account> = synthetic(n).map(Into::into).collect();
        println!("generating {n} accounts: {:.2?}", t.elapsed());
        let t = Instant::now();
        replica.load(accounts);
        t.elapsed()
    } else {
        let t = Instant::now();
        replica.load(synthetic(n).map(Account::from));
        t.elapsed()
    };
    // As `serve` does after loading.
    entra_radius::sys::release_freed_memory();
    let (rss1, hwm1) = (status("VmRSS:"), status("VmHWM:"));
    println!(
        "load of {n} accounts{}: {load:.2?}",
        if upfront {
            ""
        } else {
            " (generation streamed in, included)"
        }
    );
    println!("size_of::<Account>() = {}", std::mem::size_of::<Account>());
    println!("after:  VmRSS {rss1} kB, VmHWM {hwm1} kB");
    println!(
        "bytes per account: {:.0} (RSS growth), {:.0} (HWM growth)",
        (rss1 - rss0) as f64 * 1024.0 / n as f64,
        (hwm1.saturating_sub(hwm0)) as f64 * 1024.0 / n as f64
    );
    println!("counts: {:?}", replica.counts());
    assert!(replica.lookup(&Identity::parse("user7@contoso.com")).is_some());
}

fn from_store(dir: &std::path::Path, n: usize) {
    use entra_radius::directory::persist;
    use entra_radius::store::Store;
    let fresh = !dir.join(entra_radius::store::DB_FILE).exists();
    let store = Store::open(dir).expect("open store");
    if fresh {
        let t = Instant::now();
        let mut conn = store.conn().expect("connect");
        let all: Vec<AccountData> = synthetic(n).collect();
        for chunk in all.chunks(50_000) {
            persist::save(&mut conn, chunk, &[], &[("users.delta", "synthetic")], 1).expect("save");
        }
        println!(
            "wrote {n} accounts to {} in {:.2?}; run again to measure the load",
            dir.display(),
            t.elapsed()
        );
        return;
    }
    let (rss0, hwm0) = (status("VmRSS:"), status("VmHWM:"));
    let replica = EntraReplica::new();
    let report = persist::load_replica(&store, &replica).expect("load");
    // What `serve` does after loading: hand freed heap back to the kernel.
    entra_radius::sys::release_freed_memory();
    let (rss1, hwm1) = (status("VmRSS:"), status("VmHWM:"));
    println!(
        "startup load from SQLite: {} accounts ({} skipped) in {:.2?}",
        report.loaded, report.skipped, report.elapsed
    );
    println!("before: VmRSS {rss0} kB, VmHWM {hwm0} kB; after: VmRSS {rss1} kB, VmHWM {hwm1} kB");
    println!("counts: {:?}", replica.counts());
    assert!(replica.lookup(&Identity::parse("user7@contoso.com")).is_some());
}
