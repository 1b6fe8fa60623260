//! Starting the three servers with the same accounts: entra-radius (the
//! real binary), FreeRADIUS 3.2 from Debian's package in a private config
//! directory, and a minimal server on the `radius` crate (this bench
//! binary itself, re-executed with `LOAD_PEER=radius-rs`).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::generator::{mac, user_name, user_password};

pub const SECRET: &str = "load-bench-shared-secret";
pub const MAB_VLAN: &str = "30";

/// A server process under load.
pub struct Peer {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// The accounting address, where the bench knows it (entra-radius).
    pub acct: Option<SocketAddr>,
    /// From spawning the process to its ready line: startup with the
    /// accounts it was given.
    pub ready_after: Duration,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Peer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file an entra-radius peer was started with (for its admin commands).
    pub fn config_path(&self) -> PathBuf {
        self._dir.path().join("entra-radius.toml")
    }

    /// utime + stime of every thread of the process.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name, which is in parentheses.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_nanos(ticks * 1_000_000_000 / hz)
    }

    /// Time on CPU of the threads alive now, in nanoseconds from
    /// /proc/PID/task/*/schedstat: finer than `cpu` (clock ticks), for
    /// scenarios whose CPU per run is tens of milliseconds. Threads that
    /// ended are not counted, so use it across a run, not a restart.
    pub fn cpu_precise(&self) -> Duration {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return self.cpu();
        };
        let ns: u64 = tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(ns)
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` pinned to `cpus`, and waits (bounded) for a stdout line
/// containing `ready`; returns the child, that line and the time from
/// spawning to it.
pub fn spawn_pinned(
    cpus: &str,
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    ready: &str,
    log: &Path,
) -> Result<(Child, String, Duration)> {
    // LOAD_CONFINE: start on every CPU (so that each server sizes its
    // threads for all of them), then confine every thread to `cpus` once
    // ready, as an administrator's `taskset -a` or a cpuset change does.
    let confine = std::env::var("LOAD_CONFINE").is_ok_and(|v| v != "0");
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(if confine { "0-1023" } else { cpus })
        .arg(program)
        .args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let err = std::fs::File::create(log)?;
    let spawned = std::time::Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(err)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = ready.to_string();
    let log_path = log.to_path_buf();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut lines_kept = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(&needle) {
                let _ = tx.send((line.clone(), spawned.elapsed()));
                sent = true;
            }
            // Keep the start of the output for diagnosis; drain the rest.
            if lines_kept < 200 {
                lines_kept += 1;
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&log_path) {
                    let _ = writeln!(f, "{line}");
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok((line, ready_after)) => {
            if confine {
                let o = Command::new("taskset")
                    .args(["-a", "-p", "-c", cpus, &child.id().to_string()])
                    .output()?;
                if !o.status.success() {
                    bail!("taskset -a -p -c {cpus}: {}", String::from_utf8_lossy(&o.stderr));
                }
                // entra-radius notices within a second.
                std::thread::sleep(Duration::from_millis(1500));
            }
            Ok((child, line, ready_after))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{} did not become ready; its output:\n{log}", program.display())
        }
    }
}

fn free_udp_port() -> Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

/// `threads` is `[server] threads`; `None` leaves the server's default (one
/// per CPU it may run on).
pub fn start_entra(cpus: &str, users: usize, macs: usize, threads: Option<usize>) -> Result<Peer> {
    start_entra_binary(
        Path::new(env!("CARGO_BIN_EXE_entra-radius")),
        "entra-radius",
        cpus,
        users,
        macs,
        threads,
        "",
    )
}

/// `start_entra` with another build of the server (an earlier commit, to
/// measure a change side by side).
pub fn start_entra_binary(
    bin: &Path,
    name: &'static str,
    cpus: &str,
    users: usize,
    macs: usize,
    threads: Option<usize>,
    extra_config: &str,
) -> Result<Peer> {
    let dir = tempfile::tempdir()?;
    let mut cfg = String::with_capacity(users * 60 + macs * 40 + 1024);
    let threads = threads.map(|n| format!("threads = {n}\n")).unwrap_or_default();
    writeln!(
        cfg,
        "[server]\nauth_listen = [\"127.0.0.1:0\"]\nacct_listen = [\"127.0.0.1:0\"]\nstate_dir = {:?}\n{threads}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        dir.path().join("state").display().to_string()
    )?;
    writeln!(
        cfg,
        "[[clients]]\nname = \"bench\"\naddress = \"127.0.0.1\"\nsecret = \"{SECRET}\"\n"
    )?;
    writeln!(cfg, "[[policy]]\nkind = \"device\"\nvlan = \"{MAB_VLAN}\"\n")?;
    for i in 0..users {
        writeln!(
            cfg,
            "[[local.users]]\nname = \"{}\"\npassword = \"{}\"",
            user_name(i),
            user_password(i)
        )?;
    }
    for i in 0..macs {
        writeln!(cfg, "[[local.macs]]\nmac = \"{}\"", mac(i))?;
    }
    cfg.push_str(extra_config);
    let path = dir.path().join("entra-radius.toml");
    std::fs::write(&path, cfg)?;
    let path_s = path.display().to_string();
    // Per-request decisions are logged at info; like FreeRADIUS's `auth = no`,
    // the benchmark keeps only warnings.
    let (child, line, ready_after) = spawn_pinned(
        cpus,
        bin,
        &["serve", "--config", &path_s],
        &[("RUST_LOG", "warn")],
        "entra-radius ready:",
        &dir.path().join("stderr.log"),
    )?;
    // "entra-radius ready: auth ADDR acct ADDR admin ADDR"
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1));
    let addr = after("auth").context("ready line")?.trim_end_matches(',').parse()?;
    let acct = after("acct").and_then(|a| a.trim_end_matches(',').parse().ok());
    Ok(Peer {
        name,
        addr,
        acct,
        ready_after,
        child,
        _dir: dir,
    })
}

/// Where Debian's FreeRADIUS is, if installed.
pub fn freeradius_binary() -> Option<PathBuf> {
    ["/usr/sbin/freeradius", "/usr/sbin/radiusd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .filter(|_| Path::new("/etc/freeradius/3.0/radiusd.conf").exists())
}

pub fn start_freeradius(cpus: &str, users: usize, macs: usize) -> Result<Peer> {
    let dir = tempfile::tempdir()?;
    let (conf, port) = private_raddb(dir.path())?;
    std::fs::write(
        conf.join("sites-enabled/bench"),
        format!(
            "server default {{\n listen {{\n  type = auth\n  ipaddr = 127.0.0.1\n  port = {port}\n }}\n authorize {{\n  files\n  pap\n }}\n authenticate {{\n  Auth-Type PAP {{\n   pap\n  }}\n }}\n post-auth {{\n }}\n}}\n"
        ),
    )?;
    let mut users_file = String::with_capacity(users * 50 + macs * 200);
    for i in 0..users {
        writeln!(
            users_file,
            "{} Cleartext-Password := \"{}\"",
            user_name(i),
            user_password(i)
        )?;
    }
    for i in 0..macs {
        let m = mac(i);
        writeln!(
            users_file,
            "{m} Cleartext-Password := \"{m}\", Calling-Station-Id == \"{m}\"\n\tTunnel-Type:1 = VLAN,\n\tTunnel-Medium-Type:1 = IEEE-802,\n\tTunnel-Private-Group-Id:1 = \"{MAB_VLAN}\""
        )?;
    }
    std::fs::write(conf.join("mods-config/files/authorize"), users_file)?;
    run_freeradius(cpus, dir, &conf, port)
}

/// FreeRADIUS answering EAP-TLS only, with this server certificate and CA
/// (`pki` holds `server.pem`, `server.key`, `ca.pem`), TLS `version` at
/// both ends and its TLS session cache on (for resumption).
pub fn start_freeradius_eap(cpus: &str, pki: &Path, version: &str) -> Result<Peer> {
    let dir = tempfile::tempdir()?;
    let (conf, port) = private_raddb(dir.path())?;
    let p = |f: &str| pki.join(f).display().to_string();
    std::fs::write(
        conf.join("mods-enabled/eap"),
        format!(
            "eap {{\n default_eap_type = tls\n timer_expire = 60\n max_sessions = 4096\n tls-config tls-common {{\n  private_key_file = {}\n  certificate_file = {}\n  ca_file = {}\n  fragment_size = 1024\n  tls_min_version = \"{version}\"\n  tls_max_version = \"{version}\"\n  cache {{\n   enable = yes\n   lifetime = 24\n   max_entries = 4096\n  }}\n }}\n tls {{\n  tls = tls-common\n }}\n}}\n",
            p("server.key"),
            p("server.pem"),
            p("ca.pem")
        ),
    )?;
    std::fs::write(
        conf.join("sites-enabled/bench"),
        format!(
            "server default {{\n listen {{\n  type = auth\n  ipaddr = 127.0.0.1\n  port = {port}\n }}\n authorize {{\n  eap\n }}\n authenticate {{\n  eap\n }}\n post-auth {{\n }}\n}}\n"
        ),
    )?;
    run_freeradius(cpus, dir, &conf, port)
}

/// A private copy of Debian's raddb in `dir`: paths into the copy, run as
/// ourselves, no reject delay, two threads, no logging of each request, our
/// client only, and no site or EAP module of Debian's. Returns the raddb
/// path and the port the caller's site listens on.
pub fn private_raddb(dir: &Path) -> Result<(PathBuf, u16)> {
    let conf = dir.join("raddb");
    let status = Command::new("cp")
        .arg("-a")
        .arg("/etc/freeradius/3.0")
        .arg(&conf)
        .status()?;
    if !status.success() {
        bail!("copying /etc/freeradius/3.0 failed");
    }
    std::fs::create_dir_all(dir.join("log"))?;
    std::fs::create_dir_all(dir.join("run"))?;
    let port = free_udp_port()?;
    // radiusd.conf: paths into the copy, run as ourselves, no reject delay,
    // a fixed pool of two threads (the fastest on two cores).
    let main = std::fs::read_to_string(conf.join("radiusd.conf"))?;
    let mut out = String::with_capacity(main.len());
    for line in main.lines() {
        let t = line.trim_start();
        let replaced = if t.starts_with("raddbdir =") {
            format!("raddbdir = {}", conf.display())
        } else if t.starts_with("logdir =") {
            format!("logdir = {}", dir.join("log").display())
        } else if t.starts_with("run_dir =") {
            format!("run_dir = {}", dir.join("run").display())
        } else if t.starts_with("user =") || t.starts_with("group =") {
            format!("#{line}")
        } else if t.starts_with("reject_delay =") {
            "\treject_delay = 0".into()
        } else if t.starts_with("start_servers =") || t.starts_with("max_servers =") {
            format!("\t{} = 2", t.split_whitespace().next().unwrap_or(""))
        } else if t.starts_with("min_spare_servers =") {
            "\tmin_spare_servers = 1".into()
        } else if t.starts_with("max_spare_servers =") {
            "\tmax_spare_servers = 2".into()
        } else if t.starts_with("auth =") {
            "\tauth = no".into()
        } else {
            line.to_string()
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    std::fs::write(conf.join("radiusd.conf"), out)?;
    // Only our lean site; no inner-tunnel (it binds 127.0.0.1:18120), no EAP.
    for f in [
        "sites-enabled/default",
        "sites-enabled/inner-tunnel",
        "mods-enabled/eap",
    ] {
        let _ = std::fs::remove_file(conf.join(f));
    }
    std::fs::write(
        conf.join("clients.conf"),
        format!("client bench {{\n ipaddr = 127.0.0.1\n secret = {SECRET}\n}}\n"),
    )?;
    Ok((conf, port))
}

pub fn run_freeradius(cpus: &str, dir: tempfile::TempDir, conf: &Path, port: u16) -> Result<Peer> {
    let bin = freeradius_binary().context("freeradius is not installed")?;
    let conf_s = conf.display().to_string();
    let (child, _, ready_after) = spawn_pinned(
        cpus,
        &bin,
        &["-f", "-l", "stdout", "-d", &conf_s],
        &[],
        "Ready to process requests",
        &dir.path().join("stderr.log"),
    )?;
    Ok(Peer {
        name: "FreeRADIUS",
        acct: None,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        ready_after,
        child,
        _dir: dir,
    })
}

pub fn start_radius_rs(cpus: &str, users: usize, macs: usize) -> Result<Peer> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let (u, m) = (users.to_string(), macs.to_string());
    let (child, line, ready_after) = spawn_pinned(
        cpus,
        &exe,
        &[],
        &[("LOAD_PEER", "radius-rs"), ("LOAD_USERS", &u), ("LOAD_MACS", &m)],
        "radius-rs ready:",
        &dir.path().join("stderr.log"),
    )?;
    let addr = line.split_whitespace().nth(2).context("ready line")?.parse()?;
    Ok(Peer {
        name: "radius-rs",
        addr,
        acct: None,
        ready_after,
        child,
        _dir: dir,
    })
}

/// The `radius` crate's server, written the way its README shows: a
/// `RequestHandler`, a `SecretProvider`, `Server::listen` and `run`.
pub mod radius_rs {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use radius::core::code::Code;
    use radius::core::request::Request;
    use radius::core::{rfc2865, rfc2868, rfc3580, tag::Tag};
    use radius::server::{RequestHandler, SecretProvider, SecretProviderError, Server};
    use tokio::net::UdpSocket;

    use super::super::generator::{mac, user_name, user_password};
    use super::{MAB_VLAN, SECRET};

    struct Accounts {
        users: HashMap<String, String>,
        macs: HashMap<String, ()>,
    }

    #[async_trait::async_trait]
    impl RequestHandler<(), std::io::Error> for Accounts {
        async fn handle_radius_request(&self, conn: &UdpSocket, req: &Request) -> Result<(), std::io::Error> {
            let p = req.get_packet();
            let name = rfc2865::lookup_user_name(p).and_then(|r| r.ok()).unwrap_or_default();
            let pw = rfc2865::lookup_user_password(p)
                .and_then(|r| r.ok())
                .unwrap_or_default();
            let (code, vlan) = if self.macs.contains_key(&name) && pw == name.as_bytes() {
                (Code::AccessAccept, true)
            } else if self.users.get(&name).is_some_and(|want| want.as_bytes() == pw) {
                (Code::AccessAccept, false)
            } else {
                (Code::AccessReject, false)
            };
            let mut resp = p.make_response_packet(code);
            if vlan {
                let tag = Tag::new(1);
                rfc2868::add_tunnel_type(&mut resp, Some(&tag), rfc3580::TUNNEL_TYPE_VLAN);
                rfc2868::add_tunnel_medium_type(&mut resp, Some(&tag), rfc2868::TUNNEL_MEDIUM_TYPE_IEEE_802);
                rfc2868::add_tunnel_private_group_id(&mut resp, Some(&tag), MAB_VLAN);
            }
            let bytes = resp.encode().map_err(|e| std::io::Error::other(e.to_string()))?;
            conn.send_to(&bytes, req.get_remote_addr()).await?;
            Ok(())
        }
    }

    struct Secret;

    impl SecretProvider for Secret {
        fn fetch_secret(&self, _remote: SocketAddr) -> Result<Vec<u8>, SecretProviderError> {
            Ok(SECRET.as_bytes().to_vec())
        }
    }

    pub fn main(users: usize, macs: usize) {
        let accounts = Accounts {
            users: (0..users).map(|i| (user_name(i), user_password(i))).collect(),
            macs: (0..macs).map(|i| (mac(i), ())).collect(),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut server = Server::listen("127.0.0.1", 0, accounts, Secret).await.expect("listen");
            println!("radius-rs ready: {}", server.get_listen_address().expect("address"));
            server.run(std::future::pending::<()>()).await.expect("run");
        });
    }
}

/// The authentication history of an entra-radius peer after its runs: its
/// writer's counters from `/metrics` (through the admin API, with the token
/// of its state directory) and the size of its `history.db`, per million decisions.
pub fn history_report(p: &Peer) -> Result<String> {
    use std::io::{Read, Write};
    let state = p._dir.path().join("state");
    let token = std::fs::read_to_string(state.join("admin.token"))?;
    let addr = std::fs::read_to_string(state.join("admin.addr"))?;
    let mut conn = std::net::TcpStream::connect(addr.trim())?;
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    )?;
    let mut body = String::new();
    conn.read_to_string(&mut body)?;
    let sample = |outcome: &str| -> u64 {
        let key = format!("entra_radius_history_records_total{{outcome=\"{outcome}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let (written, dropped, failed) = (sample("written"), sample("dropped"), sample("failed"));
    let size: u64 = ["history.db", "history.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(state.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let decisions = (written + dropped + failed).max(1);
    Ok(format!(
        "### Authentication history of {} after the runs\n\n{written} decisions written, {dropped} dropped ({:.3} %), {failed} failed; history database + WAL {:.1} MiB, {:.0} MiB per million decisions written",
        p.name,
        dropped as f64 * 100.0 / decisions as f64,
        size as f64 / 1048576.0,
        size as f64 / 1048576.0 * 1e6 / written.max(1) as f64,
    ))
}

/// An environment variable's value, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Pins the calling thread (the generator) to `cpu`.
pub fn pin_self(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("bench: could not pin the generator to CPU {cpu}");
        }
    }
}
