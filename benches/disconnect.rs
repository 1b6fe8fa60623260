//! From a sync commit to the Disconnect-Request on the wire: the session
//! table, the scan after a commit and the RFC 5176 client of `sessions`,
//! with a NAS on loopback that verifies nothing and ACKs everything.
//!
//! The "commit" is the signal `integration` sends right after a sync page's
//! transaction commits (a `watch` channel); the directory behind it is a
//! stand-in that says which accounts are now disabled, so that the numbers
//! are those of the sessions code and not of Graph or the emulator. The
//! table holds 10,000 idle sessions besides the ones that change, so each
//! scan walks 11,050 sessions.
//!
//! `cargo bench --bench disconnect` (one run; prints a table).

use std::collections::{HashMap, HashSet};
use std::net::UdpSocket;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use entra_radius::proto::ClientSecret;
use entra_radius::sessions::disconnect::Disconnector;
use entra_radius::sessions::{AccountNow, Accounts, CoaClients, Sessions};
use entra_radius::store::{AcctRecord, AcctStatus, AcctWriter, SessionAccount, Store};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"bench-coa-secret";
const IDLE: usize = 10_000;
const SINGLE: usize = 50;
const BATCH: usize = 1_000;

/// Which accounts the "directory" now has disabled.
#[derive(Default)]
struct Directory {
    disabled: RwLock<HashSet<String>>,
}

impl Accounts for Directory {
    fn entra_enabled(&self) -> bool {
        true
    }
    fn settled(&self) -> bool {
        true
    }
    fn now(&self, was: &SessionAccount) -> AccountNow {
        let disabled = self.disabled.read().expect("lock").contains(&was.object_id);
        AccountNow::Is(SessionAccount {
            enabled: !disabled,
            ..was.clone()
        })
    }
}

/// When each session's first Disconnect-Request arrived.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// A NAS on loopback: records the arrival of each request (by
/// Acct-Session-Id) and answers Disconnect-ACK.
fn nas() -> (u16, Arrivals) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = socket.local_addr().expect("addr").port();
    let arrivals: Arrivals = Arc::default();
    let a = arrivals.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            let now = Instant::now();
            let p = &buf[..n];
            if let Some(sid) = session_id(p) {
                a.lock().expect("lock").entry(sid).or_insert(now);
            }
            let _ = socket.send_to(&ack(p), from);
        }
    });
    (port, arrivals)
}

fn session_id(p: &[u8]) -> Option<String> {
    let mut i = 20;
    while i + 2 <= p.len() {
        let (t, l) = (p[i], p[i + 1] as usize);
        if l < 2 || i + l > p.len() {
            return None;
        }
        if t == 44 {
            return Some(String::from_utf8_lossy(&p[i + 2..i + l]).into_owned());
        }
        i += l;
    }
    None
}

/// Disconnect-ACK with Message-Authenticator (RFC 5176, RFC 3579).
fn ack(req: &[u8]) -> Vec<u8> {
    let mut p = vec![41, req[1], 0, 0];
    p.extend_from_slice(&req[4..20]);
    p.extend_from_slice(&[80, 18]);
    p.extend_from_slice(&[0; 16]);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    let mut m = Hmac::<Md5>::new_from_slice(SECRET).expect("key");
    m.update(&p);
    let mac = m.finalize().into_bytes();
    p[22..38].copy_from_slice(&mac);
    let mut h = Md5::new();
    h.update(&p);
    h.update(SECRET);
    let auth: [u8; 16] = h.finalize().into();
    p[4..20].copy_from_slice(&auth);
    p
}

fn start(sid: &str, account: &str) -> AcctRecord {
    AcctRecord {
        nas: "127.0.0.1".into(),
        client_name: "nas".into(),
        status: AcctStatus::Start,
        session_id: sid.into(),
        user_name: Some(format!("{account}@bench.example")),
        calling_station_id: Some("02-00-00-00-00-01".into()),
        event_time: entra_radius::clock::now_unix(),
        nas_addr: Some("127.0.0.1".into()),
        account: Some(SessionAccount {
            directory: "entra".into(),
            kind: "user".into(),
            object_id: account.into(),
            enabled: true,
            policy_rule: Some(0),
            vlan: Some("20".into()),
        }),
        ..AcctRecord::default()
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let (port, arrivals) = nas();
    rt.block_on(async move {
        // The sessions, written as accounting would write them.
        let (writer, thread) = AcctWriter::spawn(&store, 1024).expect("writer");
        let mut pending = Vec::new();
        let names = (0..IDLE)
            .map(|i| (format!("idle-{i}"), format!("idle-acct-{i}")))
            .chain((0..SINGLE).map(|i| (format!("one-{i}"), format!("one-acct-{i}"))))
            .chain((0..BATCH).map(|i| (format!("batch-{i}"), format!("batch-acct-{i}"))));
        for (sid, account) in names {
            let w = writer.clone();
            pending.push(tokio::spawn(async move { w.record(start(&sid, &account)).await }));
        }
        for p in pending {
            p.await.expect("task").expect("stored");
        }
        drop(writer);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;

        let shutdown = CancellationToken::new();
        let disconnector = Disconnector::start(shutdown.clone()).await.expect("socket");
        let directory = Arc::new(Directory::default());
        let coa: CoaClients = [("nas".to_string(), Some((port, ClientSecret::new(SECRET))))].into();
        let sessions = Sessions::new(
            store.clone(),
            disconnector,
            coa,
            directory.clone(),
            entra_radius::sessions::table::DEFAULT_CAP,
        )
        .expect("sessions");
        let loaded = sessions.table.len();
        let (commits, rx) = tokio::sync::watch::channel(0u64);
        tokio::spawn(Arc::clone(&sessions).run_auto(rx, shutdown.clone()));

        // One account disabled per commit.
        let mut single = Vec::new();
        for i in 0..SINGLE {
            directory.disabled.write().expect("lock").insert(format!("one-acct-{i}"));
            let t0 = Instant::now();
            commits.send_modify(|n| *n += 1);
            let sid = format!("one-{i}");
            let at = loop {
                if let Some(t) = arrivals.lock().expect("lock").get(&sid) {
                    break *t;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            };
            single.push(at.duration_since(t0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        single.sort();

        // 1,000 accounts disabled by one commit.
        {
            let mut d = directory.disabled.write().expect("lock");
            for i in 0..BATCH {
                d.insert(format!("batch-acct-{i}"));
            }
        }
        let before = sessions.table.len();
        let t0 = Instant::now();
        commits.send_modify(|n| *n += 1);
        let batch: Vec<String> = (0..BATCH).map(|i| format!("batch-{i}")).collect();
        let last = loop {
            {
                let a = arrivals.lock().expect("lock");
                if batch.iter().all(|s| a.contains_key(s)) {
                    break batch.iter().map(|s| a[s]).max().expect("some");
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "the batch never arrived");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let first = {
            let a = arrivals.lock().expect("lock");
            batch.iter().map(|s| a[s]).min().expect("some")
        };
        while sessions.table.len() > before - BATCH {
            assert!(t0.elapsed() < Duration::from_secs(60), "the ACKs never ended the sessions");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let acked = t0.elapsed();
        shutdown.cancel();
        let mut metrics = String::new();
        sessions.render_prometheus(&mut metrics);
        let retransmitted = metrics
            .lines()
            .find(|l| l.starts_with("entra_radius_disconnect_retransmissions_total "))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("?")
            .to_string();

        println!("sessions in the table: {loaded} ({IDLE} idle)");
        println!("| measure | value |");
        println!("| --- | --- |");
        println!(
            "| one account disabled per commit ({SINGLE} commits): commit → Disconnect-Request received, median / p90 / max | {:.2?} / {:.2?} / {:.2?} |",
            pct(&single, 0.5),
            pct(&single, 0.9),
            single[single.len() - 1]
        );
        println!(
            "| {BATCH} accounts disabled by one commit: first / last request received | {:.2?} / {:.2?} |",
            first.duration_since(t0),
            last.duration_since(t0)
        );
        println!("| {BATCH} accounts disabled by one commit: every session ended by its ACK | {acked:.2?} |");
        println!("| retransmissions (no answer within 1 s), whole run | {retransmitted} |");
    });
}
