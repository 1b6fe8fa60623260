//! The EAP-TLS scenario: full handshakes and resumptions per second and
//! server CPU per handshake, entra-radius and FreeRADIUS 3.2 with the same
//! CA, server certificate, client certificate and TLS version, driven by
//! `eapol_test` (wpa_supplicant's test client: an independent, real
//! supplicant) processes in parallel on the generator's CPU.
//!
//! A full handshake is one `eapol_test` run; resumptions are its `-r N`
//! re-authentications (TLS 1.2 session id, TLS 1.3 ticket). Server CPU is
//! read from /proc (each thread's schedstat, in nanoseconds) before and
//! after, so what the supplicants cost is not counted. `LOAD_EAP_PARALLEL` [4] runs at once, `LOAD_EAP_VERSIONS`
//! [1.2,1.3], `LOAD_EAP_RESUME` re-authentications per run [9].

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::generator::user_name;
use super::peers::{self, Peer};

/// What one run of one mode on one server gave.
#[derive(Clone, Debug)]
pub struct EapRow {
    pub auths_per_s: f64,
    /// Server CPU per authentication of this mode.
    pub cpu_per_auth: Duration,
    pub failures: u64,
}

/// The supplicants' files and the certificates, made with `certs`.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new(bin: &Path) -> Result<Pki> {
        let dir = tempfile::tempdir()?;
        let run = |args: &[&str]| -> Result<()> {
            let o = Command::new(bin).args(args).current_dir(dir.path()).output()?;
            if !o.status.success() {
                bail!("{args:?}: {}", String::from_utf8_lossy(&o.stderr));
            }
            Ok(())
        };
        run(&["certs", "init", "--dir", "pki", "--server-name", "radius.bench"])?;
        run(&[
            "certs",
            "issue",
            "--dir",
            "pki",
            "--cn",
            &user_name(0),
            "--out",
            "client",
        ])?;
        Ok(Pki { dir })
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("pki")
    }

    pub fn entra_section(&self) -> String {
        let p = |f: &str| self.path().join(f).display().to_string();
        format!(
            "\n[eap]\ncertificate = {:?}\nprivate_key = {:?}\nca_file = {:?}\nmethods = [\"tls\"]\n",
            p("server.pem"),
            p("server.key"),
            p("ca.pem")
        )
    }

    fn network(&self, version: &str) -> Result<std::path::PathBuf> {
        let phase1 = if version == "1.3" {
            "tls_disable_tlsv1_0=1 tls_disable_tlsv1_1=1 tls_disable_tlsv1_2=1 tls_disable_tlsv1_3=0"
        } else {
            "tls_disable_tlsv1_3=1"
        };
        let p = |f: &str| self.path().join(f).display().to_string();
        let path = self.dir.path().join(format!("tls{version}.conf"));
        std::fs::write(
            &path,
            format!(
                "network={{\n key_mgmt=WPA-EAP\n eap=TLS\n identity=\"anonymous\"\n ca_cert=\"{}\"\n client_cert=\"{}\"\n private_key=\"{}\"\n phase1=\"{phase1}\"\n}}\n",
                p("ca.pem"),
                p("client.pem"),
                p("client.key")
            ),
        )?;
        Ok(path)
    }
}

/// Runs `eapol_test` with `resume` re-authentications, `parallel` at a
/// time, for `secs`; returns (authentications accepted, failures, elapsed).
fn drive(
    peer: &Peer,
    conf: &Path,
    gen_cpu: usize,
    parallel: usize,
    resume: u32,
    secs: Duration,
) -> (u64, u64, Duration) {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..parallel {
            let (ok, bad) = (ok.clone(), bad.clone());
            s.spawn(move || {
                while start.elapsed() < secs {
                    let out = Command::new("taskset")
                        .args(["-c", &gen_cpu.to_string(), "eapol_test", "-c"])
                        .arg(conf)
                        .args(["-a", "127.0.0.1", "-p", &peer.addr.port().to_string()])
                        .args(["-s", peers::SECRET, "-t", "5", "-r", &resume.to_string()])
                        .output();
                    let text = out
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    let accepts = text.matches("(Access-Accept)").count() as u64;
                    ok.fetch_add(accepts, Ordering::Relaxed);
                    bad.fetch_add(
                        u64::from(resume) + 1 - accepts.min(u64::from(resume) + 1),
                        Ordering::Relaxed,
                    );
                }
            });
        }
    });
    (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed), start.elapsed())
}

/// Full handshakes (`-r 0`) and then runs with `resume` resumptions each;
/// the resumptions' CPU is what the second mode cost beyond its one full
/// handshake per run.
pub fn measure(peer: &Peer, pki: &Pki, version: &str, gen_cpu: usize, secs: Duration) -> Result<(EapRow, EapRow)> {
    let parallel: usize = std::env::var("LOAD_EAP_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let resume: u32 = std::env::var("LOAD_EAP_RESUME")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
        .max(1);
    let conf = pki.network(version)?;
    // Warm-up: one run, which also proves the configuration works.
    let (ok, _, _) = drive(peer, &conf, gen_cpu, 1, 0, Duration::from_millis(1));
    if ok == 0 {
        bail!("{}: EAP-TLS {version} warm-up was not accepted", peer.name);
    }
    let cpu0 = peer.cpu_precise();
    let (full, full_bad, t) = drive(peer, &conf, gen_cpu, parallel, 0, secs);
    let cpu_full = peer.cpu_precise() - cpu0;
    let per_full = cpu_full.checked_div(full.max(1) as u32).unwrap_or_default();
    let cpu1 = peer.cpu_precise();
    let (auths, bad, t2) = drive(peer, &conf, gen_cpu, parallel, resume, secs);
    let cpu_mixed = peer.cpu_precise() - cpu1;
    let runs = auths / (u64::from(resume) + 1);
    let resumed = auths.saturating_sub(runs).max(1);
    let per_resumed = cpu_mixed
        .saturating_sub(per_full * runs as u32)
        .checked_div(resumed as u32)
        .unwrap_or_default();
    Ok((
        EapRow {
            auths_per_s: full as f64 / t.as_secs_f64(),
            cpu_per_auth: per_full,
            failures: full_bad,
        },
        EapRow {
            auths_per_s: auths as f64 / t2.as_secs_f64(),
            cpu_per_auth: per_resumed,
            failures: bad,
        },
    ))
}

/// Starts both servers for `version` and measures each `rounds` times;
/// prints one line per run and a table of medians.
pub fn run(bin: &Path, server_cpus: &str, gen_cpu: usize, rounds: usize, secs: Duration) -> Result<()> {
    if Command::new("eapol_test").arg("-h").output().is_err() {
        println!("load: eapol_test is not installed (Debian package eapoltest); skipping the EAP-TLS scenario");
        return Ok(());
    }
    let versions: String = std::env::var("LOAD_EAP_VERSIONS").unwrap_or_else(|_| "1.2,1.3".into());
    let pki = Pki::new(bin)?;
    for version in versions.split(',').map(str::trim) {
        let mut servers: Vec<Peer> = vec![
            peers::start_entra_binary(bin, "entra-radius", server_cpus, 1, 0, None, &pki.entra_section())
                .context("entra-radius with [eap]")?,
        ];
        if peers::freeradius_binary().is_some() {
            servers.push(peers::start_freeradius_eap(server_cpus, &pki.path(), version).context("FreeRADIUS eap")?);
        }
        let mut rows: Vec<(&'static str, Vec<(EapRow, EapRow)>)> =
            servers.iter().map(|p| (p.name, Vec::new())).collect();
        for round in 0..rounds {
            for (k, p) in servers.iter().enumerate() {
                let (full, resumed) = measure(p, &pki, version, gen_cpu, secs)?;
                println!(
                    "round {} EAP-TLS {version} {:<13} full {:>6.0}/s {:>6.2} ms CPU each (failed {}); resumed {:>6.0}/s {:>6.2} ms CPU each (failed {})",
                    round + 1,
                    p.name,
                    full.auths_per_s,
                    full.cpu_per_auth.as_secs_f64() * 1e3,
                    full.failures,
                    resumed.auths_per_s,
                    resumed.cpu_per_auth.as_secs_f64() * 1e3,
                    resumed.failures,
                );
                rows[k].1.push((full, resumed));
            }
        }
        println!(
            "\n#### EAP-TLS, TLS {version} (medians of {rounds} rounds, {:?} each)\n",
            secs
        );
        println!(
            "| server | full handshakes/s | server CPU per full handshake | authentications/s with resumption | server CPU per resumption | full ÷ resumption |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for (name, r) in &rows {
            let med = |f: &dyn Fn(&(EapRow, EapRow)) -> f64| {
                let mut v: Vec<f64> = r.iter().map(f).collect();
                v.sort_by(|a, b| a.total_cmp(b));
                v[v.len() / 2]
            };
            let full_cpu = med(&|x| x.0.cpu_per_auth.as_secs_f64() * 1e3);
            let res_cpu = med(&|x| x.1.cpu_per_auth.as_secs_f64() * 1e3);
            println!(
                "| {name} | {:.0} | {:.2} ms | {:.0} | {:.2} ms | ×{:.1} |",
                med(&|x| x.0.auths_per_s),
                full_cpu,
                med(&|x| x.1.auths_per_s),
                res_cpu,
                full_cpu / res_cpu.max(1e-6)
            );
        }
        println!();
    }
    Ok(())
}
