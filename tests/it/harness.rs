//! Starting the server binary, talking to it over UDP, running radclient.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SECRET: &str = "testing123";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_entra-radius")
}

/// A running server with its own state directory.
pub struct TestServer {
    child: Option<Child>,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    logs: Arc<Mutex<String>>,
}

impl TestServer {
    /// Starts the server with `body` appended to a config that listens on
    /// 127.0.0.1 port 0 and keeps state in a temporary directory.
    pub fn start(body: &str) -> TestServer {
        TestServer::start_logging(body, "info")
    }

    /// `start` with another RUST_LOG filter.
    pub fn start_logging(body: &str, filter: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        TestServer::spawn(&format!("{}{body}", base_config(&state)), dir, filter)
    }

    /// `start`, after `seed` has prepared the state directory (for example
    /// written Entra accounts into the store, as a sync would have).
    pub fn start_seeded(body: &str, seed: impl FnOnce(&Path)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        seed(&state);
        TestServer::spawn(&format!("{}{body}", base_config(&state)), dir, "info")
    }

    /// Starts the server on exactly this config text, kept in `dir`.
    pub fn start_raw(config: &str, dir: tempfile::TempDir) -> TestServer {
        TestServer::spawn(config, dir, "info")
    }

    /// `start` with these environment variables; an empty `filter` leaves
    /// RUST_LOG unset, so that `[log] level` decides.
    pub fn start_env(body: &str, filter: &str, env: &[(&str, &std::ffi::OsStr)]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        TestServer::spawn_env(&format!("{}{body}", base_config(&state)), dir, filter, env)
    }

    fn spawn(config: &str, dir: tempfile::TempDir, filter: &str) -> TestServer {
        TestServer::spawn_env(config, dir, filter, &[])
    }

    fn spawn_env(config: &str, dir: tempfile::TempDir, filter: &str, env: &[(&str, &std::ffi::OsStr)]) -> TestServer {
        let config_path = dir.path().join("entra-radius.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut command = Command::new(bin());
        if filter.is_empty() {
            command.env_remove("RUST_LOG");
        } else {
            command.env("RUST_LOG", filter);
        }
        command.envs(env.iter().copied());
        let mut child = command
            .args(["serve", "--config"])
            .arg(&config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start entra-radius");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let l = logs.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                l.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("entra-radius ready: ") {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not become ready; its log:\n{}", logs.lock().unwrap());
            }
        };
        // "auth 127.0.0.1:port acct 127.0.0.1:port admin 127.0.0.1:port"
        let words: Vec<&str> = ready.split_whitespace().collect();
        let auth = words[1].trim_end_matches(',').parse().expect("auth addr");
        let acct = words[3].trim_end_matches(',').parse().expect("acct addr");
        let admin = words[5].parse().expect("admin addr");
        TestServer {
            child: Some(child),
            auth,
            acct,
            admin,
            dir,
            config_path,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A line of `/proc/PID/status` as a number (`VmRSS`, `VmHWM` in KiB,
    /// `Threads`).
    pub fn proc_status(&self, key: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in /proc status"))
    }

    /// The Prometheus text of the admin API's `/metrics`.
    pub fn metrics(&self) -> String {
        let token = std::fs::read_to_string(self.state_dir().join("admin.token")).expect("admin token");
        let mut s = std::net::TcpStream::connect(self.admin).expect("admin API");
        std::io::Write::write_all(
            &mut s,
            format!(
                "GET /metrics HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                self.admin,
                token.trim()
            )
            .as_bytes(),
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        self.wait_for_log_count(needle, 1);
    }

    /// Waits until the log contains `needle` at least `n` times.
    pub fn wait_for_log_count(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.logs().matches(needle).count() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("log never showed {needle:?} {n} times:\n{}", self.logs());
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                // Let the stderr reader drain.
                std::thread::sleep(Duration::from_millis(50));
                return (st, self.logs());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server did not exit after SIGTERM:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `[server]` and `[admin]` sections every test server uses: loopback,
/// port 0 everywhere (so tests run in parallel), state in `state`.
pub fn base_config(state: &Path) -> String {
    format!(
        "[server]\nauth_listen = [\"127.0.0.1:0\"]\nacct_listen = [\"127.0.0.1:0\"]\nstate_dir = {:?}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n",
        state.display().to_string()
    )
}

/// Writes a file readable by its owner only, as the server's state files are.
pub fn write_private(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
}

/// The `[[clients]]` entry for 127.0.0.1 that most tests use.
pub fn localhost_client(extra: &str) -> String {
    format!("[[clients]]\nname = \"lo\"\naddress = \"127.0.0.1\"\nsecret = \"{SECRET}\"\n{extra}\n")
}

pub const USERS: &str = r#"
[[local.users]]
name = "alice"
password = "wonderland"

[[local.macs]]
mac = "02-00-00-00-00-01"
"#;

/// Sends one datagram from `from` and waits for one reply.
pub fn exchange_from(from: &str, to: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = UdpSocket::bind(from).expect("bind");
    s.set_read_timeout(Some(wait)).unwrap();
    s.send_to(bytes, to).expect("send");
    let mut buf = [0u8; 8192];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

pub fn exchange(to: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    exchange_from("127.0.0.1:0", to, bytes, Duration::from_secs(2))
}

/// Runs radclient with the given attribute list on stdin.
pub fn radclient(server: SocketAddr, kind: &str, secret: &str, attrs: &str) -> Output {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "2"])
        .arg(server.to_string())
        .args([kind, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient not found: run ./scripts/test, which installs freeradius-utils");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(attrs.as_bytes()).unwrap();
    child.wait_with_output().expect("radclient")
}

pub fn stdout(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that radclient got the named reply.
pub fn assert_reply(o: &Output, code: &str) {
    let out = stdout(o);
    assert!(out.contains(&format!("Received {code}")), "expected {code}:\n{out}");
}

pub fn assert_no_reply(o: &Output) {
    let out = stdout(o);
    assert!(!out.contains("Received"), "expected no reply:\n{out}");
    assert!(out.contains("No reply"), "expected radclient to time out:\n{out}");
}

/// Runs an admin command against this server's config.
impl TestServer {
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        let cfg = self.config_path.to_str().expect("utf-8 path");
        all.extend_from_slice(&["--config", cfg]);
        Command::new(bin()).args(&all).output().expect("run entra-radius")
    }
}

/// Runs `serve --config config` where it is expected to refuse to start:
/// returns its exit code and output, or `None` for the code when it was
/// still running after `wait` (then it is killed), so that a server that
/// wrongly starts fails the test instead of hanging it.
pub fn serve_expecting_exit(config: &Path, wait: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start entra-radius");
    let deadline = Instant::now() + wait;
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = child.wait_with_output().expect("output");
    (code, stdout(&o))
}

pub fn run_cli(args: &[&str], cwd: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run entra-radius")
}

/// The project's Graph emulator serving `tenant` on a loopback port, with
/// the runtime it runs on (keep both alive for the test's length).
pub fn start_emulator(tenant: graph_emulator::Tenant) -> (tokio::runtime::Runtime, graph_emulator::Emulator) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = rt
        .block_on(graph_emulator::Emulator::start("127.0.0.1:0".parse().unwrap(), tenant))
        .unwrap();
    (rt, emu)
}

/// The integration state `entra provision`, `domains select` and
/// `entra enable` leave behind, for the emulator's demo application.
pub fn provision(state: &Path, tenant_id: &str, domains: &[&str]) {
    use graph_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET};
    provision_app(state, tenant_id, domains, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET);
}

/// `provision` for another application.
pub fn provision_app(state: &Path, tenant_id: &str, domains: &[&str], client_id: &str, secret: &str) {
    use entra_radius::store::integration::keys;
    let store = entra_radius::store::Store::open(state).unwrap();
    let c = store.conn().unwrap();
    c.set_setting(keys::TENANT_ID, Some(tenant_id), 1).unwrap();
    c.set_setting(keys::CLIENT_ID, Some(client_id), 1).unwrap();
    c.set_setting(
        keys::SELECTED_DOMAINS,
        Some(&serde_json::to_string(domains).unwrap()),
        1,
    )
    .unwrap();
    c.set_setting(keys::ENABLED, Some("true"), 1).unwrap();
    write_private(&state.join("entra-client-secret"), secret.as_bytes());
}

/// The `[entra]` section pointing at an emulator, with rounds every
/// `interval` (`"1h"`: only the rounds a test asks for).
pub fn entra_section(url: &str, interval: &str) -> String {
    format!("\n[entra]\nauthority_host = \"{url}\"\ngraph_endpoint = \"{url}\"\nsync_interval = \"{interval}\"\n")
}

/// A state directory provisioned for the emulator's synthetic application
/// with every domain of `tenant` selected, and the config of a server on it
/// that syncs only when asked. Keep the returned directory for the test's
/// length; the config lists `localhost_client`.
pub fn synthetic_setup(emu: &graph_emulator::Emulator, domains: &[String]) -> (tempfile::TempDir, PathBuf, String) {
    use graph_emulator::{SYNTHETIC_CLIENT_ID, SYNTHETIC_CLIENT_SECRET};
    let keep = tempfile::tempdir().unwrap();
    let state = keep.path().join("state");
    let refs: Vec<&str> = domains.iter().map(String::as_str).collect();
    provision_app(
        &state,
        &emu.tenant_id(),
        &refs,
        SYNTHETIC_CLIENT_ID,
        SYNTHETIC_CLIENT_SECRET,
    );
    let config = format!(
        "{}{}{}",
        base_config(&state),
        localhost_client(""),
        entra_section(&emu.base_url(), "1h")
    );
    (keep, state, config)
}

/// Waits until the store holds a next-page link for users: a round is in
/// the middle of its enumeration.
pub fn wait_for_users_next(store: &entra_radius::store::Store) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.checkpoint("users.next").unwrap().is_none() {
        assert!(Instant::now() < deadline, "no page was stored");
        std::thread::sleep(Duration::from_millis(5));
    }
}
