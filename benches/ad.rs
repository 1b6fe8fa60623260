//! Active Directory benchmark (issue 13, "Performance"): a Samba AD DC of
//! its own on loopback with `AD_USERS` accounts (`user00000`/`pw-00000` …,
//! the load generator's), then
//!
//! 1. AD lookups in-process through `AdDirectory`: uncached (each one an
//!    LDAP search on the DC, sequential) and cached (`Directory::lookup`
//!    answered from the cache, timed over a million calls), and password
//!    checks (simple binds as the user) from 16 concurrent tasks;
//! 2. PAP over RADIUS with every password checked by an LDAP bind as the
//!    user: entra-radius (the release binary, `[ad]` only, no local users)
//!    and FreeRADIUS 3.2 with `rlm_ldap` on the same DC and users, driven
//!    in turn by the load generator (benches/load/generator.rs).
//!
//! Both servers use plain LDAP to the loopback DC. Run with
//! `cargo bench --bench ad`. Environment (defaults in brackets):
//! `AD_USERS` [200], `AD_SECS` seconds measured per server [5],
//! `AD_WARMUP` [2], `AD_SOCKETS` [4], `AD_WINDOW` requests in flight per
//! socket [4], `AD_FR_THREADS` FreeRADIUS threads and LDAP connections [16],
//! `AD_SERVERS` [entra,freeradius].

#[path = "load/generator.rs"]
#[allow(dead_code)]
mod generator;
#[path = "load/peers.rs"]
#[allow(dead_code)]
mod peers;
#[path = "../tests/it/samba.rs"]
mod samba;
#[path = "ad/samba_dc.rs"]
mod samba_dc;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use entra_radius::directory::ad::AdDirectory;
use entra_radius::directory::ad::client::PasswordVerdict;
use entra_radius::directory::{Directory, Identity, Lookup};

use generator::{LoadConfig, Scenario, user_name, user_password};
use peers::{Peer, env_or, pin_self};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Part 1: the directory in-process.
fn directory_bench(dc: &samba_dc::Dc, users: usize) {
    let cfg = entra_radius::config::from_toml(&samba_dc::ad_section(dc))
        .expect("[ad] config")
        .ad
        .expect("[ad]");
    let dir = Arc::new(AdDirectory::new(&cfg).expect("AdDirectory"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ids: Vec<Identity> = (0..users).map(|i| Identity::parse(&user_name(i))).collect();
    // Uncached: one LDAP search (with transitive groups) per identity, one
    // at a time. The first opens the connection.
    let mut lat = Vec::with_capacity(users);
    let accounts = rt.block_on(async {
        let _ = dir.lookup_slow(&Identity::parse("nobody-here")).await;
        let mut accounts = Vec::with_capacity(users);
        for id in &ids {
            let t = Instant::now();
            match dir.lookup_slow(id).await {
                Lookup::Found(a) => accounts.push(a),
                other => panic!("{id}: {other:?}"),
            }
            lat.push(t.elapsed());
        }
        accounts
    });
    let total: Duration = lat.iter().sum();
    println!(
        "AD lookup, uncached (LDAP search, sequential): {} lookups, {:.0}/s, mean {}, p50 {}, p99 {}",
        users,
        users as f64 / total.as_secs_f64(),
        us(total / users as u32),
        us(pct(&mut lat, 0.5)),
        us(pct(&mut lat, 0.99))
    );
    // Cached: the same identities, now in the cache.
    let n = 1_000_000;
    for id in ids.iter().take(1000) {
        black_box(dir.lookup(id));
    }
    let t = Instant::now();
    for i in 0..n {
        let l = dir.lookup(black_box(&ids[i % users]));
        assert!(matches!(l, Lookup::Found(_)));
        black_box(l);
    }
    let per = t.elapsed() / n as u32;
    println!(
        "AD lookup, cached (Directory::lookup, {} identities, {n} calls): {:.0} ns per lookup",
        users,
        per.as_secs_f64() * 1e9
    );
    // Password checks: binds as the user, 16 tasks at once.
    let secs = 3;
    let (count, mut lat) = rt.block_on(async {
        let stop = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for t in 0..16 {
            let dir = dir.clone();
            let accounts = accounts.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = t;
                while Instant::now() < stop {
                    let k = i % accounts.len();
                    let s = Instant::now();
                    let v = dir.check_password(&accounts[k], user_password(k).as_bytes()).await;
                    assert!(matches!(v, Ok(PasswordVerdict::Accepted)), "{}: {v:?}", user_name(k));
                    lat.push(s.elapsed());
                    i += 16;
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("task"));
        }
        (all.len(), all)
    });
    println!(
        "AD password check (bind as the user, 16 concurrent): {:.0} binds/s, p50 {}, p99 {}",
        count as f64 / secs as f64,
        us(pct(&mut lat, 0.5)),
        us(pct(&mut lat, 0.99))
    );
}

/// FreeRADIUS 3.2 with rlm_ldap: users found by sAMAccountName, PAP by a
/// bind as the user (`Auth-Type LDAP`).
fn start_freeradius_ldap(dc: &samba_dc::Dc, threads: usize) -> Result<Peer> {
    let dir = tempfile::tempdir()?;
    let (conf, port) = peers::private_raddb(dir.path())?;
    let main = std::fs::read_to_string(conf.join("radiusd.conf"))?;
    let main = main
        .replace("\tstart_servers = 2", &format!("\tstart_servers = {threads}"))
        .replace("\tmax_servers = 2", &format!("\tmax_servers = {threads}"))
        .replace("\tmax_spare_servers = 2", &format!("\tmax_spare_servers = {threads}"));
    std::fs::write(conf.join("radiusd.conf"), main)?;
    std::fs::write(
        conf.join("mods-enabled/ldap"),
        format!(
            "ldap {{\n server = 'ldap://{}'\n port = 389\n identity = '{}'\n password = '{}'\n base_dn = '{}'\n\
             \n user {{\n  base_dn = \"${{..base_dn}}\"\n  filter = \"(sAMAccountName=%{{%{{Stripped-User-Name}}:-%{{User-Name}}}})\"\n  scope = 'sub'\n }}\n\
             \n options {{\n  chase_referrals = no\n  rebind = no\n  res_timeout = 2\n  srv_timelimit = 2\n  net_timeout = 1\n }}\n\
             \n pool {{\n  start = {threads}\n  min = {threads}\n  max = {threads}\n  spare = {threads}\n  uses = 0\n  retry_delay = 1\n  lifetime = 0\n  idle_timeout = 0\n }}\n}}\n",
            dc.addr,
            samba_dc::SVC_DN,
            samba_dc::SVC_PASSWORD,
            samba_dc::BASE_DN
        ),
    )?;
    std::fs::write(
        conf.join("sites-enabled/bench"),
        format!(
            "server default {{\n listen {{\n  type = auth\n  ipaddr = 127.0.0.1\n  port = {port}\n }}\n authorize {{\n  ldap\n  if ((ok || updated) && User-Password) {{\n   update control {{\n    Auth-Type := ldap\n   }}\n  }}\n }}\n authenticate {{\n  Auth-Type LDAP {{\n   ldap\n  }}\n }}\n post-auth {{\n }}\n}}\n"
        ),
    )?;
    peers::run_freeradius("0", dir, &conf, port)
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    if !samba_dc::available() {
        println!("ad bench: samba is not installed (apt-get install samba samba-ad-dc ldb-tools ldap-utils); skipped");
        return Ok(());
    }
    let users: usize = env_or("AD_USERS", 200);
    let t = Instant::now();
    let dc = samba_dc::start(users);
    println!(
        "Samba AD DC on ldap://{} with {users} users, ready in {:.1} s",
        dc.addr,
        t.elapsed().as_secs_f64()
    );
    directory_bench(&dc, users);

    let servers = std::env::var("AD_SERVERS").unwrap_or_else(|_| "entra,freeradius".into());
    let cfg = LoadConfig {
        sockets: env_or("AD_SOCKETS", 4),
        window: env_or("AD_WINDOW", 4),
        warmup: Duration::from_secs(env_or("AD_WARMUP", 2)),
        measure: Duration::from_secs(env_or::<u64>("AD_SECS", 5).clamp(1, 60)),
        rate: None,
        timeout: Duration::from_secs(2),
        // The DC needs the CPU the generator would spin on.
        spin: false,
        users,
        macs: 0,
        mab_vlan: peers::MAB_VLAN,
        intune_macs: Arc::new(Vec::new()),
        acct: None,
        acct_share: 0.0,
    };
    pin_self(1);
    println!(
        "\nPAP over RADIUS, each password checked by an LDAP bind as the user; server on CPU 0, generator on CPU 1, \
         DC unpinned; {} sockets x {} in flight; {} s measured after {} s warm-up",
        cfg.sockets,
        cfg.window,
        cfg.measure.as_secs(),
        cfg.warmup.as_secs()
    );
    println!(
        "{:<14} {:>10} {:>9} {:>9} {:>16} {:>13} {:>6} {:>6}",
        "server", "accepts/s", "p50", "p99", "server CPU/req", "DC CPU/req", "lost", "bad"
    );
    for name in servers.split(',') {
        let peer = match name.trim() {
            "entra" => peers::start_entra_binary(
                Path::new(env!("CARGO_BIN_EXE_entra-radius")),
                "entra-radius",
                "0",
                0,
                0,
                None,
                &samba_dc::ad_section(&dc),
            ),
            "freeradius" => {
                if peers::freeradius_binary().is_none() {
                    println!("FreeRADIUS is not installed (apt-get install freeradius freeradius-ldap); skipped");
                    continue;
                }
                if !Path::new("/usr/lib/freeradius/rlm_ldap.so").exists() {
                    println!("FreeRADIUS's LDAP module is not installed (apt-get install freeradius-ldap); skipped");
                    continue;
                }
                start_freeradius_ldap(&dc, env_or("AD_FR_THREADS", 16))
            }
            other => {
                println!("unknown server {other}");
                continue;
            }
        };
        let peer = match peer {
            Ok(p) => p,
            Err(e) => {
                println!("{name}: {e:#}");
                continue;
            }
        };
        // The DC's CPU over the whole run (warm-up included), per answer.
        let dc0 = samba_dc::cpu();
        let o = generator::run(
            peer.addr,
            peers::SECRET.as_bytes(),
            Scenario::PapAccept,
            &cfg,
            7,
            &|| peer.cpu_precise(),
        );
        let dc_cpu = samba_dc::cpu().saturating_sub(dc0);
        let answered_all = o.answered as f64 * (cfg.warmup + cfg.measure).as_secs_f64() / cfg.measure.as_secs_f64();
        println!(
            "{:<14} {:>10.0} {:>9} {:>9} {:>16} {:>13} {:>6} {:>6}",
            peer.name,
            o.rate(),
            us(o.percentile(0.5)),
            us(o.percentile(0.99)),
            format!("{:.1} µs", o.cpu_per_100k().as_secs_f64() * 10.0),
            format!("~{:.0} µs", dc_cpu.as_secs_f64() * 1e6 / answered_all.max(1.0)),
            o.lost,
            o.bad
        );
    }
    Ok(())
}
