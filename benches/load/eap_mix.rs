//! The fast path under EAP load (`eapmix`): PAP and MAB accepts at a fixed
//! offered load, first alone, then while EAP-TLS full handshakes keep the
//! server's CPU busy. What a switch's PAP or MAB request waits for when the
//! server is also doing the milliseconds of CPU of a TLS handshake.
//!
//! The handshakes come from the crate's own supplicant (`test_auth::eap_tls`,
//! the one behind `test-auth --eap-tls`: rustls as the peer, the MS-MPPE keys
//! checked against its own MSK), not from `eapol_test`: 4 `eapol_test`
//! processes give about 80 handshakes a second, a twentieth of the server's
//! CPU. `LOAD_EAPMIX_PARALLEL` [12] conversations run at once on the
//! generator's CPU under `SCHED_IDLE`, so that they never delay the PAP/MAB
//! generator (which sleeps between its sends here instead of spinning).
//! They all come from one NAS, which may hold at most half of the
//! `eap_tls` places (32 per TLS thread, one thread on one CPU): more than
//! 16 at once would be shed, as the server should.
//! The PAP/MAB rate is `LOAD_EAPMIX_LOAD` [0.25] of the server's PAP
//! saturation, measured first, or `LOAD_EAPMIX_RATE` requests/s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use entra_radius::proto::{ClientSecret, Code};
use entra_radius::test_auth::{Credentials, Request, eap_tls};

use super::eap::Pki;
use super::generator::{self, LoadConfig, Outcome, Scenario};
use super::peers::{self, Peer, env_or, pin_self};
use super::us;

/// EAP-TLS conversations held in a loop until stopped.
struct Driver {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    fn start(server: SocketAddr, pki: &Pki, cpu: usize, parallel: usize) -> Driver {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let opts = eap_tls::Options {
            identity: "anonymous".into(),
            cert: pki.path().join("client.pem"),
            key: pki.path().join("client.key"),
            ca: Some(pki.path().join("ca.pem")),
            server_name: None,
            fragment_size: 1024,
            tls_version: None,
        };
        let (s, a, f) = (stop.clone(), accepted.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            pin_self(cpu);
            // SAFETY: sched_setscheduler on the calling thread (pid 0) with a
            // valid sched_param.
            let idle = unsafe {
                let param = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
            };
            if !idle {
                eprintln!("load: eapmix: SCHED_IDLE refused; the supplicants may delay the generator");
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            // The supplicant's future is not Send: one thread, local tasks.
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let secret = Arc::new(ClientSecret::new(peers::SECRET.as_bytes()));
                let opts = Arc::new(opts);
                let mut tasks = Vec::new();
                for i in 0..parallel {
                    let (s, a, f, secret, opts) = (s.clone(), a.clone(), f.clone(), secret.clone(), opts.clone());
                    tasks.push(tokio::task::spawn_local(async move {
                        let base = Request {
                            calling_station_id: Some(format!("02-EA-00-00-{:02X}-{:02X}", i >> 8, i & 0xff)),
                            nas_identifier: Some("bench-eap".into()),
                            timeout: Duration::from_secs(2),
                            attempts: 3,
                            ..Request::new(server, "anonymous".into(), Credentials::Eap)
                        };
                        while !s.load(Ordering::Relaxed) {
                            match eap_tls::run(&base, &secret, &opts).await {
                                Ok(o)
                                    if o.reply.packet().code() == Code::ACCESS_ACCEPT && o.keys_match == Some(true) =>
                                {
                                    a.fetch_add(1, Ordering::Relaxed);
                                }
                                other => {
                                    // The first few failures, for diagnosis.
                                    if f.fetch_add(1, Ordering::Relaxed) < 3 {
                                        match other {
                                            Ok(o) => eprintln!(
                                                "load: eapmix: not accepted: {:?} after {} rounds (TLS error {:?})",
                                                o.reply.packet().code(),
                                                o.rounds,
                                                o.tls_error
                                            ),
                                            Err(e) => eprintln!("load: eapmix: {e}"),
                                        }
                                    }
                                }
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Driver {
            stop,
            accepted,
            failed,
            thread: Some(thread),
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One measured run of PAP or MAB at the fixed rate, with what the EAP
/// driver did meanwhile.
#[derive(Clone, Debug)]
struct MixRow {
    p50: Duration,
    p99: Duration,
    p999: Duration,
    answered: u64,
    lost: u64,
    bad: u64,
    /// Server CPU busy, as a share of one CPU.
    server_busy: f64,
    eap_per_s: f64,
    eap_failed: u64,
}

fn row(o: &Outcome, eap: (u64, u64), elapsed: Duration) -> MixRow {
    MixRow {
        p50: o.percentile(0.5),
        p99: o.percentile(0.99),
        p999: o.percentile(0.999),
        answered: o.answered,
        lost: o.lost,
        bad: o.bad,
        server_busy: o.server_cpu.as_secs_f64() / o.elapsed.as_secs_f64().max(1e-9),
        eap_per_s: eap.0 as f64 / elapsed.as_secs_f64().max(1e-9),
        eap_failed: eap.1,
    }
}

fn median(rows: &[MixRow], f: impl Fn(&MixRow) -> f64) -> f64 {
    let mut v: Vec<f64> = rows.iter().map(f).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Starts entra-radius with `[eap]` and the load's accounts, and measures
/// each round: PAP and MAB alone, EAP alone, PAP and MAB under EAP.
pub fn run(server_cpus: &str, gen_cpu: usize, cfg: &LoadConfig, rounds: usize, seed: &mut u64) -> Result<()> {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_entra-radius"));
    let pki = Pki::new(bin)?;
    let threads = Some(env_or("LOAD_ENTRA_THREADS", 0)).filter(|n| *n > 0);
    let peer: Peer = peers::start_entra_binary(
        bin,
        "entra-radius",
        server_cpus,
        cfg.users,
        cfg.macs,
        threads,
        &pki.entra_section(),
    )
    .context("entra-radius with [eap]")?;
    let parallel: usize = env_or("LOAD_EAPMIX_PARALLEL", 12).clamp(1, 1024);
    let saturation = super::pap_saturation(&peer, cfg, Duration::from_secs(3), seed);
    let rate: f64 = std::env::var("LOAD_EAPMIX_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(saturation * env_or("LOAD_EAPMIX_LOAD", 0.25f64).clamp(0.01, 1.0));
    let fixed = LoadConfig {
        rate: Some(rate),
        spin: false,
        ..cfg.clone()
    };
    println!(
        "\nload: eapmix: {} saturates at {saturation:.0} PAP accepts/s; PAP and MAB at {rate:.0}/s, {parallel} EAP-TLS conversations at once",
        peer.name
    );
    // Proves that the supplicant gets in before anything is measured.
    {
        let d = Driver::start(peer.addr, &pki, gen_cpu, 1);
        let until = Instant::now() + Duration::from_secs(10);
        while d.counts().0 == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (ok, failed) = d.counts();
        if ok == 0 {
            bail!("eapmix: no EAP-TLS handshake was accepted ({failed} failed); see the server's log");
        }
    }
    let kinds = [("PAP", Scenario::PapAccept), ("MAB", Scenario::MabAccept)];
    let mut alone: Vec<Vec<MixRow>> = vec![Vec::new(); kinds.len()];
    let mut loaded: Vec<Vec<MixRow>> = vec![Vec::new(); kinds.len()];
    let mut eap_alone: Vec<(f64, f64, u64)> = Vec::new();
    // One run of PAP or MAB at the fixed rate, with what the driver (if
    // running) did meanwhile; printed as it comes.
    let mut measure = |round: usize, name: &str, sc: Scenario, driver: Option<&Driver>| -> MixRow {
        *seed += 1;
        let (e0, t0) = (driver.map_or((0, 0), Driver::counts), Instant::now());
        let o = generator::run(peer.addr, peers::SECRET.as_bytes(), sc, &fixed, *seed, &|| peer.cpu());
        let e1 = driver.map_or((0, 0), Driver::counts);
        let r = row(&o, (e1.0 - e0.0, e1.1 - e0.1), t0.elapsed());
        println!(
            "round {} {name} at {rate:.0}/s {}: p50 {} p99 {} p99.9 {} µs, server busy {:.0} %, lost {} bad {}; {:.0} handshakes/s, {} failed",
            round + 1,
            if driver.is_some() { "under EAP-TLS" } else { "alone" },
            us(r.p50),
            us(r.p99),
            us(r.p999),
            r.server_busy * 100.0,
            r.lost,
            r.bad,
            r.eap_per_s,
            r.eap_failed
        );
        r
    };
    for round in 0..rounds {
        for (k, (name, sc)) in kinds.iter().enumerate() {
            alone[k].push(measure(round, name, *sc, None));
        }
        let driver = Driver::start(peer.addr, &pki, gen_cpu, parallel);
        std::thread::sleep(Duration::from_secs(2));
        let (c0, (a0, f0), t0) = (peer.cpu(), driver.counts(), Instant::now());
        std::thread::sleep(cfg.measure);
        let (c1, (a1, f1), t1) = (peer.cpu(), driver.counts(), Instant::now());
        let secs = (t1 - t0).as_secs_f64();
        let busy = (c1 - c0).as_secs_f64() / secs;
        eap_alone.push(((a1 - a0) as f64 / secs, busy, f1 - f0));
        println!(
            "round {} EAP-TLS alone: {:.0} handshakes/s, server busy {:.0} %, {} failed",
            round + 1,
            (a1 - a0) as f64 / secs,
            busy * 100.0,
            f1 - f0
        );
        for (k, (name, sc)) in kinds.iter().enumerate() {
            loaded[k].push(measure(round, name, *sc, Some(&driver)));
        }
        drop(driver);
    }
    println!(
        "\n#### Fast path under EAP load: PAP and MAB at {rate:.0}/s ({:.0} % of PAP saturation), {parallel} EAP-TLS conversations (median of {rounds} rounds)\n",
        rate / saturation * 100.0
    );
    let med3 = |f: &dyn Fn(&(f64, f64, u64)) -> f64| {
        let mut v: Vec<f64> = eap_alone.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "EAP-TLS alone: {:.0} full handshakes/s, server CPU busy {:.0} % of one CPU, {} failed\n",
        med3(&|x| x.0),
        med3(&|x| x.1) * 100.0,
        eap_alone.iter().map(|x| x.2).sum::<u64>()
    );
    println!(
        "| traffic | EAP-TLS | p50 µs | p99 µs | p99.9 µs | server CPU busy | EAP-TLS handshakes/s | lost | bad | EAP failed |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (k, (name, _)) in kinds.iter().enumerate() {
        for (label, rows) in [("none", &alone[k]), ("running", &loaded[k])] {
            println!(
                "| {name} | {label} | {:.0} | {:.0} | {:.0} | {:.0} % | {:.0} | {} | {} | {} |",
                median(rows, |r| r.p50.as_secs_f64() * 1e6),
                median(rows, |r| r.p99.as_secs_f64() * 1e6),
                median(rows, |r| r.p999.as_secs_f64() * 1e6),
                median(rows, |r| r.server_busy) * 100.0,
                median(rows, |r| r.eap_per_s),
                rows.iter().map(|r| r.lost).sum::<u64>(),
                rows.iter().map(|r| r.bad).sum::<u64>(),
                rows.iter().map(|r| r.eap_failed).sum::<u64>()
            );
        }
    }
    let answered: u64 = loaded.iter().flatten().map(|r| r.answered).sum();
    println!("\n({answered} PAP/MAB requests answered under EAP-TLS load in all)");
    Ok(())
}
