//! Load benchmark: entra-radius, FreeRADIUS 3.2 and a minimal server on the
//! `radius` crate, each given the same 100k users and 10k MACs, driven in
//! turn by the same generator in the same run, over several rounds.
//!
//! Run with `cargo bench --bench load` (`scripts/bench-load` installs
//! FreeRADIUS first). Environment variables (defaults in brackets):
//! `LOAD_ROUNDS` [3], `LOAD_SECS` seconds measured per run [5, at most 60],
//! `LOAD_WARMUP` [1], `LOAD_USERS` [100000], `LOAD_MACS` [10000],
//! `LOAD_SOCKETS` [16], `LOAD_WINDOW` requests in flight per socket [4],
//! `LOAD_TIMEOUT_MS` [1000], `LOAD_SERVER_CPUS` [0], `LOAD_GEN_CPU` [1],
//! `LOAD_SERVERS` [entra,freeradius,radius-rs; `entra-nohistory` adds entra-radius with `[history] enabled = false`, to measure what the authentication history costs; `baseline` adds the entra-radius binary at `LOAD_BASELINE_BIN`, e.g. an earlier commit's build], `LOAD_SPIN` generator polls without sleeping [1], `LOAD_SAME_LOAD` fraction of
//! FreeRADIUS's PAP capacity for the latency comparison [0.7; 0 skips it],
//! `LOAD_RATE` requests/s for it instead, `LOAD_ENTRA_THREADS` entra-radius's `[server] threads` [unset: its default, one per CPU it may run on, so 1 when pinned to one; 2 holds up better when other processes compete for that CPU; pinned to one CPU, the second reader stands by (it used to preempt the first mid-batch, costing the full-load p99 a scheduler slice, about 4 ms)], `LOAD_SCENARIOS` [pap,pap1,reject,mab,mab1,dup,intune,eap,eapmix; `eapmix` is PAP and MAB at a fixed rate, alone and while EAP-TLS handshakes keep entra-radius busy (entra-radius only; see load/eap_mix.rs for its variables); `pap1` and `mab1` send PAP and MAB accepts from a single socket with 64 requests in flight, as a wireless LAN controller or a RADIUS proxy does (`LOAD_SOCKETS`/`LOAD_WINDOW` do not apply to them); `eap` is EAP-TLS full handshakes and resumptions through `eapol_test`, entra-radius and FreeRADIUS with the same certificates (see load/eap.rs for its variables); `intune` is MAB for the Intune devices of a synthetic tenant of `LOAD_INTUNE_DEVICES` [125000] devices that entra-radius syncs from the Graph emulator through its admin CLI first, entra-radius only], `LOAD_CONFINE=1` starts every server on all CPUs and then confines all its threads to `LOAD_SERVER_CPUS` with `taskset -a` (each sized its threads for all CPUs, as after an administrator's `taskset` or a cpuset change). `LOAD_DEBUG_BAD` prints the first bad replies. `LOAD_SOAK` seconds [0: off] runs the soak instead of the scenarios: the mix of PAP accepts, MAB accepts, rejects and duplicates at `LOAD_SOAK_LOAD` [0.8] of each server's saturation with that same mix (measured first, accounting included; PAP's saturation is printed beside it), and `LOAD_SOAK_ACCT` [0.01] of the rate as Accounting-Requests (Start, Interim-Update, Stop) from sockets of their own to the accounting port (entra-radius only: the bench knows no other server's accounting port), reported per `LOAD_SOAK_WINDOW` seconds [60] with the RSS slope (e.g. `LOAD_SERVERS=entra LOAD_SOAK=600`).

#[path = "load/eap.rs"]
mod eap;
#[path = "load/eap_mix.rs"]
mod eap_mix;
#[path = "load/generator.rs"]
mod generator;
#[path = "load/intune.rs"]
mod intune;
#[path = "load/peers.rs"]
mod peers;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;

use generator::{LoadConfig, Outcome, Scenario};
use peers::{Peer, env_or, pin_self};

/// One measurement, reduced to what the tables show.
#[derive(Clone, Debug)]
struct Row {
    rate: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    cpu_100k: Duration,
    lost: u64,
    bad: u64,
    dup_sent: u64,
    dup_mismatch: u64,
    dup_unanswered: u64,
    ma: u64,
    answered: u64,
    gen_cpu_share: f64,
}

impl From<&Outcome> for Row {
    fn from(o: &Outcome) -> Row {
        Row {
            rate: o.rate(),
            p50: o.percentile(0.5),
            p99: o.percentile(0.99),
            p999: o.percentile(0.999),
            cpu_100k: o.cpu_per_100k(),
            lost: o.lost,
            bad: o.bad,
            dup_sent: o.duplicates_sent,
            dup_mismatch: o.duplicate_mismatch,
            dup_unanswered: o.duplicate_unanswered,
            ma: o.with_message_authenticator,
            answered: o.answered,
            gen_cpu_share: o.generator_cpu.as_secs_f64() / o.elapsed.as_secs_f64().max(1e-9),
        }
    }
}

fn median<T: Clone, K: PartialOrd>(rows: &[T], key: impl Fn(&T) -> K) -> T {
    let mut v: Vec<T> = rows.to_vec();
    v.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2].clone()
}

fn us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 { "-".into() } else { format!("{:.2}", a / b) }
}

/// Paired by round, entra-radius's p99 against another server's: in how
/// many of the rounds both ran it was at most theirs, of how many, and the
/// geometric mean of its per-round ratio (`None` without a round to
/// compare). The servers take turns within a
/// round, so each pair met the same machine; the medians of separate runs
/// move with the machine's noise by more than the differences asked about.
fn paired_p99(e: &[Row], other: &[Row]) -> (usize, usize, Option<f64>) {
    let pairs: Vec<(f64, f64)> = e
        .iter()
        .zip(other)
        .map(|(a, b)| (a.p99.as_secs_f64(), b.p99.as_secs_f64()))
        .filter(|&(a, b)| a > 0.0 && b > 0.0)
        .collect();
    if pairs.is_empty() {
        return (0, 0, None);
    }
    let at_most = pairs.iter().filter(|(a, b)| a <= b).count();
    let log_mean = pairs.iter().map(|(a, b)| (a / b).ln()).sum::<f64>() / pairs.len() as f64;
    (at_most, pairs.len(), Some(log_mean.exp()))
}

/// Median over the rounds of each column on its own.
fn summarise(rows: &[Row]) -> Row {
    let mut m = median(rows, |r| r.rate);
    m.p50 = median(rows, |r| r.p50).p50;
    m.p99 = median(rows, |r| r.p99).p99;
    m.p999 = median(rows, |r| r.p999).p999;
    m.cpu_100k = median(rows, |r| r.cpu_100k).cpu_100k;
    m.gen_cpu_share = median(rows, |r| r.gen_cpu_share).gen_cpu_share;
    m.lost = rows.iter().map(|r| r.lost).sum();
    m.bad = rows.iter().map(|r| r.bad).sum();
    m.dup_sent = rows.iter().map(|r| r.dup_sent).sum();
    m.dup_mismatch = rows.iter().map(|r| r.dup_mismatch).sum();
    m.dup_unanswered = rows.iter().map(|r| r.dup_unanswered).sum();
    m.ma = rows.iter().map(|r| r.ma).sum();
    m.answered = rows.iter().map(|r| r.answered).sum();
    m
}

/// Resident memory of each server in KiB: once ready, and after the runs.
struct Rss {
    start: BTreeMap<&'static str, u64>,
    end: BTreeMap<&'static str, u64>,
}

fn print_table(title: &str, names: &[&'static str], results: &BTreeMap<&'static str, Vec<Row>>, rss: &Rss) {
    println!("\n### {title}\n");
    println!(
        "| server | req/s | p50 µs | p99 µs | p99.9 µs | server CPU s / 100k req | RSS MiB ready / after | lost | bad replies | dup mismatches | generator CPU |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mib = |m: &BTreeMap<&'static str, u64>, n: &str| m.get(n).copied().unwrap_or(0) as f64 / 1024.0;
    let mut sums = BTreeMap::new();
    for name in names {
        let Some(rows) = results.get(name) else { continue };
        let s = summarise(rows);
        println!(
            "| {name} | {:.0} | {} | {} | {} | {:.2} | {:.1} / {:.1} | {} | {} | {}{} | {:.0}% |",
            s.rate,
            us(s.p50),
            us(s.p99),
            us(s.p999),
            s.cpu_100k.as_secs_f64(),
            mib(&rss.start, name),
            mib(&rss.end, name),
            s.lost,
            s.bad,
            s.dup_mismatch,
            if s.dup_sent > 0 {
                format!(" of {} ({} unanswered)", s.dup_sent, s.dup_unanswered)
            } else {
                String::new()
            },
            s.gen_cpu_share * 100.0
        );
        sums.insert(*name, s);
    }
    if let Some(e) = sums.get("entra-radius") {
        for (name, p) in &sums {
            if *name == "entra-radius" {
                continue;
            }
            let (at_most, rounds, mean) = paired_p99(&results["entra-radius"], &results[name]);
            let mean = mean.map_or_else(|| "-".to_string(), |m| format!("{m:.2}"));
            println!(
                "\nentra-radius / {name}: req/s ×{}, p99 ×{} (by round: at most theirs in {at_most} of {rounds}, ratio's geometric mean ×{mean}), CPU per request ×{}, RSS ready ×{}, after ×{}",
                ratio(e.rate, p.rate),
                ratio(e.p99.as_secs_f64(), p.p99.as_secs_f64()),
                ratio(e.cpu_100k.as_secs_f64(), p.cpu_100k.as_secs_f64()),
                ratio(mib(&rss.start, "entra-radius"), mib(&rss.start, name)),
                ratio(mib(&rss.end, "entra-radius"), mib(&rss.end, name))
            );
        }
    }
}

fn main() -> Result<()> {
    if std::env::var("LOAD_PEER").as_deref() == Ok("radius-rs") {
        peers::radius_rs::main(env_or("LOAD_USERS", 100_000), env_or("LOAD_MACS", 10_000));
        return Ok(());
    }
    let rounds: usize = env_or("LOAD_ROUNDS", 3).clamp(1, 20);
    let users: usize = env_or("LOAD_USERS", 100_000).max(1);
    let macs: usize = env_or("LOAD_MACS", 10_000).max(1);
    let server_cpus: String = env_or("LOAD_SERVER_CPUS", "0".to_string());
    let gen_cpu: usize = env_or("LOAD_GEN_CPU", 1);
    let wanted: String = env_or("LOAD_SERVERS", "entra,freeradius,radius-rs".to_string());
    let cfg = LoadConfig {
        sockets: env_or("LOAD_SOCKETS", 16).clamp(1, 1024),
        window: env_or("LOAD_WINDOW", 4).clamp(1, 255),
        warmup: Duration::from_secs_f64(env_or("LOAD_WARMUP", 1.0f64).clamp(0.0, 30.0)),
        measure: Duration::from_secs_f64(env_or("LOAD_SECS", 5.0f64).clamp(0.1, 60.0)),
        rate: None,
        timeout: Duration::from_millis(env_or("LOAD_TIMEOUT_MS", 1000).clamp(10, 10_000)),
        spin: env_or("LOAD_SPIN", 1) != 0,
        users,
        macs,
        mab_vlan: peers::MAB_VLAN,
        intune_macs: Default::default(),
        acct: None,
        acct_share: 0.0,
    };
    println!(
        "load: {users} users, {macs} MACs; servers on CPU {server_cpus}, generator on CPU {gen_cpu}; {} sockets × {} in flight; {rounds} rounds of {:?} (+{:?} warm-up) per server and scenario",
        cfg.sockets, cfg.window, cfg.measure, cfg.warmup
    );

    let mut peers: Vec<Peer> = Vec::new();
    for w in wanted.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        let started = std::time::Instant::now();
        let p = match w {
            "entra" | "entra-radius" => peers::start_entra(
                &server_cpus,
                users,
                macs,
                Some(env_or("LOAD_ENTRA_THREADS", 0)).filter(|n| *n > 0),
            ),
            "entra-nohistory" => peers::start_entra_binary(
                std::path::Path::new(env!("CARGO_BIN_EXE_entra-radius")),
                "entra (no history)",
                &server_cpus,
                users,
                macs,
                Some(env_or("LOAD_ENTRA_THREADS", 0)).filter(|n| *n > 0),
                "\n[history]\nenabled = false\n",
            ),
            "freeradius" => {
                if peers::freeradius_binary().is_none() {
                    println!(
                        "load: FreeRADIUS is not installed; skipping it. Install it with `apt-get install -y freeradius` (or run scripts/bench-load)."
                    );
                    continue;
                }
                peers::start_freeradius(&server_cpus, users, macs)
            }
            "radius-rs" => peers::start_radius_rs(&server_cpus, users, macs),
            "baseline" => {
                // An earlier build of entra-radius, for a before/after of a change.
                let Ok(bin) = std::env::var("LOAD_BASELINE_BIN") else {
                    anyhow::bail!("LOAD_SERVERS names baseline: set LOAD_BASELINE_BIN to its binary");
                };
                peers::start_entra_binary(
                    std::path::Path::new(&bin),
                    "baseline",
                    &server_cpus,
                    users,
                    macs,
                    None,
                    "",
                )
            }
            other => anyhow::bail!("unknown server {other:?} in LOAD_SERVERS"),
        }?;
        println!(
            "load: {} ready on {} in {:.1} s, pid {}, RSS {} MiB",
            p.name,
            p.addr,
            started.elapsed().as_secs_f64(),
            p.pid(),
            p.rss_kib() / 1024
        );
        peers.push(p);
    }
    let rss_start: BTreeMap<&'static str, u64> = peers.iter().map(|p| (p.name, p.rss_kib())).collect();
    // Startup: spawn to ready line, with the accounts above (issue 16).
    println!(
        "\nload: startup with {users} local users and {macs} local MACs\n\n| server | s to ready |\n| --- | --- |"
    );
    for p in &peers {
        println!("| {} | {:.3} |", p.name, p.ready_after.as_secs_f64());
    }
    let mut seed = 0x5eed_u64;
    pin_self(gen_cpu);
    let names: Vec<&'static str> = peers.iter().map(|p| p.name).collect();
    let soak: u64 = env_or("LOAD_SOAK", 0);
    if soak > 0 {
        for p in &peers {
            soak_one(p, &cfg, soak, &mut seed);
        }
        return Ok(());
    }
    let only: String = env_or(
        "LOAD_SCENARIOS",
        "pap,pap1,reject,mab,mab1,dup,intune,eap,eapmix".to_string(),
    );
    let scenarios: Vec<Scenario> = [
        ("pap", Scenario::PapAccept),
        ("pap1", Scenario::PapOneSource),
        ("mab1", Scenario::MabOneSource),
        ("reject", Scenario::PapReject),
        ("mab", Scenario::MabAccept),
        ("dup", Scenario::DuplicateMix),
    ]
    .into_iter()
    .filter(|(k, _)| only.split(',').any(|o| o.trim() == *k))
    .map(|(_, s)| s)
    .collect();
    let mut results: BTreeMap<Scenario, BTreeMap<&'static str, Vec<Row>>> = BTreeMap::new();
    for round in 0..rounds {
        for &sc in &scenarios {
            // Alternate which server goes first, so drift in the machine's
            // load does not always favour the same one.
            for k in 0..peers.len() {
                let p = &peers[(k + round) % peers.len()];
                seed += 1;
                let o = generator::run(p.addr, peers::SECRET.as_bytes(), sc, &cfg, seed, &|| p.cpu());
                let row = Row::from(&o);
                println!(
                    "round {} {:<22} {:<13} {:>8.0} req/s  p99 {:>6} µs  CPU {:>5.2} s/100k  lost {} bad {} dup-mismatch {}",
                    round + 1,
                    sc.name(),
                    p.name,
                    row.rate,
                    us(row.p99),
                    row.cpu_100k.as_secs_f64(),
                    row.lost,
                    row.bad,
                    row.dup_mismatch
                );
                results.entry(sc).or_default().entry(p.name).or_default().push(row);
            }
        }
    }
    // Same offered load: a fraction of FreeRADIUS's PAP capacity (or of the
    // slowest server's when FreeRADIUS is not there).
    let pap = results.get(&Scenario::PapAccept);
    let capacity = pap
        .and_then(|m| m.get("FreeRADIUS"))
        .map(|r| summarise(r).rate)
        .or_else(|| pap.and_then(|m| m.values().map(|r| summarise(r).rate).min_by(|a, b| a.total_cmp(b))))
        .unwrap_or(10_000.0);
    let rate = std::env::var("LOAD_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(capacity * env_or("LOAD_SAME_LOAD", 0.7f64));
    let mut same_load: BTreeMap<&'static str, Vec<Row>> = BTreeMap::new();
    let limited = LoadConfig {
        rate: Some(rate),
        ..cfg.clone()
    };
    // Only with the PAP scenario, whose capacity sets the rate, and not
    // at a rate of 0 (`LOAD_SAME_LOAD=0` turns it off).
    let same_load_rounds = if scenarios.contains(&Scenario::PapAccept) && rate >= 1.0 {
        rounds
    } else {
        0
    };
    for round in 0..same_load_rounds {
        for k in 0..peers.len() {
            let p = &peers[(k + round) % peers.len()];
            seed += 1;
            let o = generator::run(
                p.addr,
                peers::SECRET.as_bytes(),
                Scenario::PapAccept,
                &limited,
                seed,
                &|| p.cpu(),
            );
            let row = Row::from(&o);
            println!(
                "round {} PAP accept at {:.0}/s   {:<13} {:>8.0} req/s  p50 {} µs p99 {} µs p99.9 {} µs  lost {}",
                round + 1,
                rate,
                p.name,
                row.rate,
                us(row.p50),
                us(row.p99),
                us(row.p999),
                row.lost
            );
            same_load.entry(p.name).or_default().push(row);
        }
    }
    let rss = Rss {
        start: rss_start,
        end: peers.iter().map(|p| (p.name, p.rss_kib())).collect(),
    };
    println!(
        "\n## Results (median of {rounds} rounds; CPU per 100k requests is utime+stime of the server process; RSS after the runs)"
    );
    for (sc, by_server) in &results {
        print_table(sc.name(), &names, by_server, &rss);
    }
    if !same_load.is_empty() {
        print_table(
            &format!("PAP accept at the same offered load: {rate:.0} requests/s"),
            &names,
            &same_load,
            &rss,
        );
    }
    // Past entra-radius's response cache TTL (10 s by default): what it
    // keeps once a burst is over, not what the last seconds still need.
    if !peers.is_empty() {
        std::thread::sleep(Duration::from_secs(12));
        println!("\nRSS 12 s after the runs, idle (MiB, and ×RSS once ready):");
    }
    for p in &peers {
        let ready = rss.start.get(p.name).copied().unwrap_or(0) as f64;
        let idle = p.rss_kib() as f64;
        println!("- {}: {:.1} (×{:.3})", p.name, idle / 1024.0, idle / ready.max(1.0));
    }
    for p in peers.iter().filter(|p| p.name == "entra-radius") {
        match peers::history_report(p) {
            Ok(r) => println!("\n{r}"),
            Err(e) => println!("\nload: no history report for {}: {e:#}", p.name),
        }
    }
    // EAP-TLS: servers of their own (the certificates and [eap] differ).
    if only.split(',').any(|o| o.trim() == "eap") {
        drop(std::mem::take(&mut peers));
        eap::run(
            std::path::Path::new(env!("CARGO_BIN_EXE_entra-radius")),
            &server_cpus,
            gen_cpu,
            rounds,
            cfg.measure,
        )?;
    }
    // The fast path under EAP load: entra-radius only, with [eap].
    if only.split(',').any(|o| o.trim() == "eapmix") {
        drop(std::mem::take(&mut peers));
        eap_mix::run(&server_cpus, gen_cpu, &cfg, rounds, &mut seed)?;
    }
    // MAB for Intune devices synced from the Graph emulator: entra-radius
    // only (the peers have no directory sync); the local-MAC MAB table above
    // is the comparison.
    if only.split(',').any(|o| o.trim() == "intune") {
        let devices: usize = env_or("LOAD_INTUNE_DEVICES", 125_000).max(1);
        let started = std::time::Instant::now();
        let (peer, macs, _graph) = intune::start(&server_cpus, devices)?;
        println!(
            "\nload: {} synced {} Intune MACs of {devices} devices from the Graph emulator in {:.1} s, RSS {} MiB",
            peer.name,
            macs.len(),
            started.elapsed().as_secs_f64(),
            peer.rss_kib() / 1024
        );
        let rss_ready = peer.rss_kib();
        let with_macs = LoadConfig {
            intune_macs: std::sync::Arc::new(macs),
            ..cfg.clone()
        };
        let mut rows = Vec::new();
        for round in 0..rounds {
            seed += 1;
            let o = generator::run(
                peer.addr,
                peers::SECRET.as_bytes(),
                Scenario::IntuneMab,
                &with_macs,
                seed,
                &|| peer.cpu(),
            );
            let row = Row::from(&o);
            println!(
                "round {} {:<22} {:<13} {:>8.0} req/s  p99 {:>6} µs  CPU {:>5.2} s/100k  lost {} bad {}",
                round + 1,
                Scenario::IntuneMab.name(),
                peer.name,
                row.rate,
                us(row.p99),
                row.cpu_100k.as_secs_f64(),
                row.lost,
                row.bad
            );
            rows.push(row);
        }
        let rss = Rss {
            start: [(peer.name, rss_ready)].into_iter().collect(),
            end: [(peer.name, peer.rss_kib())].into_iter().collect(),
        };
        print_table(
            Scenario::IntuneMab.name(),
            &[peer.name],
            &[(peer.name, rows)].into_iter().collect(),
            &rss,
        );
    }
    Ok(())
}

/// PAP accepts per second `p` answers at full load, measured for `secs`
/// (after `cfg`'s warm-up): what a fixed offered load is set from.
fn pap_saturation(p: &peers::Peer, cfg: &LoadConfig, secs: Duration, seed: &mut u64) -> f64 {
    saturation(p, cfg, Scenario::PapAccept, secs, seed)
}

/// Requests of `scenario` per second `p` answers at full load.
fn saturation(p: &peers::Peer, cfg: &LoadConfig, scenario: Scenario, secs: Duration, seed: &mut u64) -> f64 {
    let full = LoadConfig {
        measure: secs,
        rate: None,
        ..cfg.clone()
    };
    *seed += 1;
    generator::run(p.addr, peers::SECRET.as_bytes(), scenario, &full, *seed, &|| p.cpu()).rate()
}

/// The soak: `secs` seconds of the mixed traffic at `LOAD_SOAK_LOAD` [0.8]
/// of the server's saturation with that same mix, accounting included at
/// its share (measured first, 5 s), reported per window of
/// `LOAD_SOAK_WINDOW` seconds [60]: rate, lost, bad, p50/p99/p99.9 and RSS;
/// then the RSS slope (least squares over the windows). The mix costs more
/// per request than PAP alone (accounting is stored before it is
/// answered): 80 % of PAP's saturation was all of the mix's.
fn soak_one(p: &peers::Peer, cfg: &LoadConfig, secs: u64, seed: &mut u64) {
    let load: f64 = env_or("LOAD_SOAK_LOAD", 0.8f64).clamp(0.05, 1.0);
    let window = Duration::from_secs(env_or("LOAD_SOAK_WINDOW", 60u64).clamp(5, 600));
    let windows = secs.div_ceil(window.as_secs()).max(1);
    let acct_share: f64 = env_or("LOAD_SOAK_ACCT", 0.01f64).clamp(0.0, 0.5);
    let mix = LoadConfig {
        acct: p.acct,
        acct_share,
        ..cfg.clone()
    };
    let pap = pap_saturation(p, cfg, Duration::from_secs(5), seed);
    let saturation = saturation(p, &mix, Scenario::Mixed, Duration::from_secs(5), seed);
    let soak = LoadConfig {
        rate: Some(saturation * load),
        warmup: Duration::ZERO,
        measure: window,
        ..mix
    };
    println!(
        "\n### Soak of {}: {} × {} s of {} at {:.0} requests/s ({:.0} % of its saturation with this mix, {saturation:.0}/s; PAP alone {pap:.0}/s)\n",
        p.name,
        windows,
        window.as_secs(),
        Scenario::Mixed.name(),
        saturation * load,
        load * 100.0
    );
    match p.acct {
        Some(a) if acct_share > 0.0 => println!(
            "{:.0} % of the requests are Accounting-Requests (Start, Interim-Update, Stop) to {a}, from sockets of their own\n",
            acct_share * 100.0
        ),
        _ => println!(
            "no accounting in the mix (the bench knows no accounting port of {})\n",
            p.name
        ),
    }
    println!(
        "| window | req/s | of which accounting | lost | bad | dup mismatches | p50 µs | p99 µs | p99.9 µs | accounting p50 / p99 µs | server CPU s / 100k | RSS MiB |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let rss0 = p.rss_kib();
    let mut points = Vec::new();
    let (mut lost, mut bad, mut mismatch, mut answered, mut accounting) = (0, 0, 0, 0, 0);
    for w in 0..windows {
        *seed += 1;
        let o = generator::run(p.addr, peers::SECRET.as_bytes(), Scenario::Mixed, &soak, *seed, &|| {
            p.cpu()
        });
        let rss = p.rss_kib();
        points.push(((w + 1) as f64 * window.as_secs_f64() / 60.0, rss as f64 / 1024.0));
        lost += o.lost;
        bad += o.bad;
        mismatch += o.duplicate_mismatch + o.duplicate_unanswered;
        answered += o.answered;
        accounting += o.accounting_answered;
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} / {} | {:.2} | {} |",
            w + 1,
            o.rate(),
            o.accounting_answered as f64 / o.elapsed.as_secs_f64().max(1e-9),
            o.lost,
            o.bad,
            o.duplicate_mismatch + o.duplicate_unanswered,
            us(o.percentile(0.5)),
            us(o.percentile(0.99)),
            us(o.percentile(0.999)),
            us(o.accounting_percentile(0.5)),
            us(o.accounting_percentile(0.99)),
            o.cpu_per_100k().as_secs_f64(),
            rss / 1024
        );
    }
    // Least squares: MiB per minute.
    let n = points.len() as f64;
    let (sx, sy) = points.iter().fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |a, p| {
        (a.0 + (p.0 - mx) * (p.1 - my), a.1 + (p.0 - mx) * (p.0 - mx))
    });
    let slope = if den > 0.0 { num / den } else { 0.0 };
    println!(
        "\n{}: {answered} answered ({accounting} of them Accounting-Requests), {lost} lost, {bad} bad, {mismatch} duplicate mismatches or unanswered; RSS {} MiB before the soak, {} MiB after, slope {slope:+.3} MiB per minute",
        p.name,
        rss0 / 1024,
        p.rss_kib() / 1024
    );
}
