//! The load generator: many connected UDP sockets on 127.0.0.1, a window of
//! outstanding requests on each, batched with sendmmsg/recvmmsg, driven by
//! one thread. Every reply is checked with MD5 and HMAC-MD5 computed here,
//! independently of the server's own codec.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};

type HmacMd5 = Hmac<Md5>;

const ACCESS_REQUEST: u8 = 1;
const ACCESS_ACCEPT: u8 = 2;
const ACCESS_REJECT: u8 = 3;
const ACCOUNTING_REQUEST: u8 = 4;
const ACCOUNTING_RESPONSE: u8 = 5;
const MESSAGE_AUTHENTICATOR: u8 = 80;
const TUNNEL_PRIVATE_GROUP_ID: u8 = 81;
/// Replies larger than this are counted as bad (ours are ~60 bytes).
const RECV_BUF: usize = 1024;
const BATCH: usize = 32;

/// What traffic to send.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Scenario {
    PapAccept,
    PapReject,
    MabAccept,
    /// PAP accepts, a tenth of them retransmitted once the reply is in.
    DuplicateMix,
    /// MAB for the MACs of `LoadConfig::intune_macs`: Intune devices that
    /// entra-radius synced from the Graph emulator.
    IntuneMab,
    /// PAP accepts from one socket with [`ONE_SOURCE_WINDOW`] in flight, as
    /// a wireless LAN controller or a RADIUS proxy sends.
    PapOneSource,
    /// MAB accepts the same way.
    MabOneSource,
    /// The soak's mix: 55 % PAP accepts, 20 % MAB accepts, 10 % PAP
    /// rejects, 15 % PAP accepts retransmitted once the reply is in; with
    /// `LoadConfig::acct`, besides, `acct_share` of the rate as
    /// Accounting-Requests ([`Scenario::Accounting`]) to the accounting port.
    Mixed,
    /// Accounting Start (20 %), Interim-Update (60 %) and Stop (20 %) for
    /// sessions of the first 20,000 users; only inside the mix.
    Accounting,
}

/// Accounting-Requests in flight on each accounting socket of the mix.
const ACCT_WINDOW: usize = 32;

/// Requests in flight on the single socket of the one-source scenarios.
pub const ONE_SOURCE_WINDOW: usize = 64;

impl Scenario {
    /// The requests it sends (a one-source scenario sends those of its
    /// many-socket twin).
    fn traffic(self) -> Scenario {
        match self {
            Scenario::PapOneSource => Scenario::PapAccept,
            Scenario::MabOneSource => Scenario::MabAccept,
            s => s,
        }
    }

    fn one_source(self) -> bool {
        self != self.traffic()
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Mixed => "mixed PAP, MAB, rejects, duplicates",
            Scenario::PapOneSource => "PAP accept, one source",
            Scenario::MabOneSource => "MAB accept, one source",
            Scenario::PapAccept => "PAP accept",
            Scenario::PapReject => "PAP reject",
            Scenario::MabAccept => "MAB accept",
            Scenario::DuplicateMix => "PAP + 10% duplicates",
            Scenario::IntuneMab => "MAB, Intune (synced)",
            Scenario::Accounting => "accounting",
        }
    }
}

/// How hard and how long to drive one server.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub sockets: usize,
    pub window: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Requests per second; `None` sends as fast as replies come back.
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// Poll the sockets without sleeping: no wake-ups for the server to pay
    /// when it sends a reply (a NAS across the network costs it none either).
    pub spin: bool,
    pub users: usize,
    pub macs: usize,
    /// The VLAN a MAB accept must carry.
    pub mab_vlan: &'static str,
    /// The MACs of `Scenario::IntuneMab`, as a switch sends them.
    pub intune_macs: std::sync::Arc<Vec<String>>,
    /// The server's accounting address: the mix then also sends
    /// accounting, `acct_share` of the rate, from sockets of its own.
    pub acct: Option<SocketAddr>,
    pub acct_share: f64,
}

/// What one measurement saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub sent: u64,
    pub answered: u64,
    /// Requests that got no reply within the timeout.
    pub lost: u64,
    /// Replies that failed a check: code, authenticators, truncation, VLAN.
    pub bad: u64,
    pub with_message_authenticator: u64,
    pub duplicates_sent: u64,
    /// A retransmission answered with other bytes than the first reply.
    pub duplicate_mismatch: u64,
    pub duplicate_unanswered: u64,
    /// Accounting-Responses among `answered`.
    pub accounting_answered: u64,
    pub elapsed: Duration,
    /// Round-trip times in nanoseconds, sorted (Access-Requests only).
    pub latencies: Vec<u32>,
    /// Those of the Accounting-Requests, sorted: answered only once stored,
    /// so they measure the store, not the fast path.
    pub accounting_latencies: Vec<u32>,
    /// CPU time of the generator thread during the measurement.
    pub generator_cpu: Duration,
    pub server_cpu: Duration,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    pub fn accounting_percentile(&self, p: f64) -> Duration {
        percentile(&self.accounting_latencies, p)
    }

    /// Server CPU time per 100,000 answered requests.
    pub fn cpu_per_100k(&self) -> Duration {
        if self.answered == 0 {
            return Duration::ZERO;
        }
        self.server_cpu.mul_f64(100_000.0 / self.answered as f64)
    }
}

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Duration::from_nanos(sorted[i] as u64)
}

/// Tiny xorshift: request authenticators need to differ, not to be secret.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The shared secret with its MD5 prefix and HMAC key schedule done once.
struct Keys {
    secret: Vec<u8>,
    md5: Md5,
    hmac: HmacMd5,
}

impl Keys {
    fn new(secret: &[u8]) -> Keys {
        let mut md5 = Md5::new();
        md5.update(secret);
        Keys {
            secret: secret.to_vec(),
            md5,
            hmac: HmacMd5::new_from_slice(secret).expect("any key length"),
        }
    }
}

pub fn user_name(i: usize) -> String {
    format!("user{i:05}")
}

pub fn user_password(i: usize) -> String {
    format!("pw-{i:05}")
}

pub fn mac(i: usize) -> String {
    format!(
        "02-00-00-{:02X}-{:02X}-{:02X}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn push_attr(buf: &mut Vec<u8>, t: u8, v: &[u8]) {
    buf.push(t);
    buf.push(v.len() as u8 + 2);
    buf.extend_from_slice(v);
}

/// An Access-Request as a switch sends it: Message-Authenticator first,
/// User-Name, hidden User-Password, NAS and station attributes.
fn access_request(buf: &mut Vec<u8>, keys: &Keys, id: u8, ra: &[u8; 16], user: &[u8], pw: &[u8], station: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&[ACCESS_REQUEST, id, 0, 0]);
    buf.extend_from_slice(ra);
    push_attr(buf, MESSAGE_AUTHENTICATOR, &[0; 16]);
    push_attr(buf, 1, user);
    // RFC 2865 §5.2: c(1) = p(1) xor MD5(S + RA), c(i) = p(i) xor MD5(S + c(i-1)).
    let mut hidden = [0u8; 128];
    let n = pw.len().div_ceil(16).max(1) * 16;
    hidden[..pw.len()].copy_from_slice(pw);
    let mut prev: [u8; 16] = *ra;
    for chunk in hidden[..n].chunks_mut(16) {
        let mut h = keys.md5.clone();
        h.update(prev);
        let b = h.finalize();
        for (c, k) in chunk.iter_mut().zip(b.iter()) {
            *c ^= k;
        }
        prev.copy_from_slice(chunk);
    }
    push_attr(buf, 2, &hidden[..n]);
    push_attr(buf, 4, &[127, 0, 0, 1]);
    push_attr(buf, 5, &u32::from(id).to_be_bytes());
    push_attr(buf, 61, &15u32.to_be_bytes());
    push_attr(buf, 31, station);
    push_attr(buf, 30, b"AA-BB-CC-DD-EE-FF:bench");
    push_attr(buf, 32, b"bench-switch");
    let len = buf.len() as u16;
    buf[2..4].copy_from_slice(&len.to_be_bytes());
    let mut m = keys.hmac.clone();
    m.update(buf);
    let tag = m.finalize().into_bytes();
    buf[22..38].copy_from_slice(&tag);
}

/// An Accounting-Request as a switch sends it (RFC 2866): the Request
/// Authenticator is MD5(Code + Identifier + Length + 16 zero octets +
/// attributes + secret).
fn accounting_request(buf: &mut Vec<u8>, keys: &Keys, id: u8, status: u32, session: usize, elapsed: u32) {
    buf.clear();
    buf.extend_from_slice(&[ACCOUNTING_REQUEST, id, 0, 0]);
    buf.extend_from_slice(&[0; 16]);
    push_attr(buf, 40, &status.to_be_bytes());
    push_attr(buf, 1, user_name(session).as_bytes());
    push_attr(buf, 44, format!("bench-{session:08x}").as_bytes());
    push_attr(buf, 4, &[127, 0, 0, 1]);
    push_attr(buf, 5, &(session as u32 % 48).to_be_bytes());
    push_attr(buf, 61, &15u32.to_be_bytes());
    push_attr(buf, 31, mac(session).as_bytes());
    push_attr(buf, 32, b"bench-switch");
    push_attr(buf, 41, &0u32.to_be_bytes());
    if status != 1 {
        push_attr(buf, 46, &elapsed.to_be_bytes());
        push_attr(buf, 42, &(elapsed.wrapping_mul(1500)).to_be_bytes());
        push_attr(buf, 43, &(elapsed.wrapping_mul(9000)).to_be_bytes());
    }
    let len = buf.len() as u16;
    buf[2..4].copy_from_slice(&len.to_be_bytes());
    // The secret goes last here (keys.md5 has it first).
    let mut h = Md5::new();
    h.update(&buf[..]);
    h.update(&keys.secret);
    let ra = h.finalize();
    buf[4..20].copy_from_slice(&ra);
}

/// Checks a reply against the request it answers: length, code,
/// Response Authenticator, Message-Authenticator if present, and the VLAN
/// when one is expected. Returns whether Message-Authenticator was present.
fn check_reply(reply: &[u8], request: &[u8], keys: &Keys, expect_code: u8, vlan: Option<&str>) -> Result<bool, ()> {
    if reply.len() < 20 {
        return Err(());
    }
    let len = u16::from_be_bytes([reply[2], reply[3]]) as usize;
    if len < 20 || len > reply.len() || reply[0] != expect_code || reply[1] != request[1] {
        return Err(());
    }
    let reply = &reply[..len];
    let mut h = Md5::new();
    h.update(&reply[..4]);
    h.update(&request[4..20]);
    h.update(&reply[20..]);
    h.update(&keys.secret);
    if h.finalize()[..] != reply[4..20] {
        return Err(());
    }
    let mut has_ma = false;
    let mut vlan_ok = vlan.is_none();
    let mut at = 20;
    while at < len {
        if at + 2 > len {
            return Err(());
        }
        let (t, l) = (reply[at], reply[at + 1] as usize);
        if l < 2 || at + l > len {
            return Err(());
        }
        let v = &reply[at + 2..at + l];
        if t == MESSAGE_AUTHENTICATOR {
            if l != 18 {
                return Err(());
            }
            let mut copy = [0u8; RECV_BUF];
            copy[..len].copy_from_slice(reply);
            copy[4..20].copy_from_slice(&request[4..20]);
            copy[at + 2..at + 18].fill(0);
            let mut m = keys.hmac.clone();
            m.update(&copy[..len]);
            if m.finalize().into_bytes()[..] != *v {
                return Err(());
            }
            has_ma = true;
        }
        if t == TUNNEL_PRIVATE_GROUP_ID
            && let Some(want) = vlan
        {
            // An optional tag byte (0x01..0x1f) precedes the VLAN.
            let s = if !v.is_empty() && v[0] < 0x20 { &v[1..] } else { v };
            vlan_ok |= s == want.as_bytes();
        }
        at += l;
    }
    if vlan_ok { Ok(has_ma) } else { Err(()) }
}

struct Slot {
    sent_at: Instant,
    request: Vec<u8>,
    expect: u8,
    /// The VLAN the reply must carry (MAB accepts).
    vlan: Option<&'static str>,
    /// Chosen to be retransmitted once the first reply is in.
    duplicate: bool,
    /// The first reply, kept while the retransmission is out.
    first_reply: Option<Vec<u8>>,
    busy: bool,
}

struct Sock {
    socket: UdpSocket,
    /// Sends accounting to the accounting port (the mix's second lane).
    acct: bool,
    slots: Vec<Slot>,
    outstanding: usize,
    next_id: u8,
}

/// Batches for sendmmsg/recvmmsg; the pointers inside are set right before
/// each call.
struct Mmsg {
    bufs: Vec<[u8; RECV_BUF]>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Mmsg {
    fn new() -> Mmsg {
        Mmsg {
            bufs: vec![[0u8; RECV_BUF]; BATCH],
            iov: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
            hdrs: vec![unsafe { std::mem::zeroed() }; BATCH],
        }
    }

    /// Receives up to BATCH datagrams without waiting; returns how many.
    fn recv(&mut self, fd: i32) -> usize {
        for i in 0..BATCH {
            self.iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            self.iov[i].iov_len = RECV_BUF;
            // SAFETY: zeroing a plain C struct.
            self.hdrs[i] = unsafe { std::mem::zeroed() };
            self.hdrs[i].msg_hdr.msg_iov = &mut self.iov[i];
            self.hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the headers point at iovecs and buffers that live in self
        // for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 { 0 } else { n as usize }
    }

    fn len(&self, i: usize) -> usize {
        self.hdrs[i].msg_len as usize
    }

    fn truncated(&self, i: usize) -> bool {
        self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }
}

/// Sends the datagrams on a connected socket in one sendmmsg; returns how many went.
fn send_batch(fd: i32, datagrams: &[&[u8]]) -> usize {
    if datagrams.is_empty() {
        return 0;
    }
    let mut iov: Vec<libc::iovec> = datagrams
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut _,
            iov_len: d.len(),
        })
        .collect();
    // SAFETY: plain C structs, pointing into `iov` and `datagrams`, which
    // outlive the call.
    let mut hdrs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as u32, 0) };
    if n < 0 { 0 } else { n as usize }
}

pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Drives `server` with `scenario` for warmup + measure; `server_cpu` reads
/// the server's CPU time and is called when the measurement starts and ends.
pub fn run(
    server: SocketAddr,
    secret: &[u8],
    scenario: Scenario,
    cfg: &LoadConfig,
    seed: u64,
    server_cpu: &dyn Fn() -> Duration,
) -> Outcome {
    let keys = Keys::new(secret);
    let mut rng = Rng(seed | 1);
    let (sockets, window) = if scenario.one_source() {
        (1, ONE_SOURCE_WINDOW)
    } else {
        (cfg.sockets.max(1), cfg.window.clamp(1, 255))
    };
    let scenario = scenario.traffic();
    // The mix's accounting lane: a quarter as many sockets, to the
    // accounting port, with `acct_share` of the rate.
    let acct = cfg
        .acct
        .filter(|_| scenario == Scenario::Mixed && cfg.acct_share > 0.0)
        .map(|a| (a, sockets.div_ceil(4)));
    let share = match acct {
        Some(_) => [1.0 - cfg.acct_share.min(1.0), cfg.acct_share.min(1.0)],
        None => [1.0, 0.0],
    };
    let targets = std::iter::repeat_n((server, false), sockets)
        .chain(acct.into_iter().flat_map(|(a, n)| std::iter::repeat_n((a, true), n)));
    let mut socks: Vec<Sock> = targets
        .map(|(to, is_acct)| {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
            let _ = s.set_recv_buffer_size(4 << 20);
            let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
            s.bind(&any.into()).expect("bind");
            let s: UdpSocket = s.into();
            s.connect(to).expect("connect");
            s.set_nonblocking(true).expect("nonblocking");
            Sock {
                socket: s,
                acct: is_acct,
                slots: (0..256)
                    .map(|_| Slot {
                        sent_at: Instant::now(),
                        request: Vec::with_capacity(200),
                        expect: 0,
                        duplicate: false,
                        first_reply: None,
                        busy: false,
                        vlan: None,
                    })
                    .collect(),
                outstanding: 0,
                next_id: (rng.next() & 0xff) as u8,
            }
        })
        .collect();
    let mut out = Outcome {
        latencies: Vec::with_capacity(1 << 20),
        ..Outcome::default()
    };
    let mut mm = Mmsg::new();
    let mut pollfds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let vlan = matches!(scenario, Scenario::MabAccept | Scenario::IntuneMab | Scenario::Mixed).then_some(cfg.mab_vlan);
    let started = Instant::now();
    let measure_from = started + cfg.warmup;
    let stop_sending = measure_from + cfg.measure;
    let give_up = stop_sending + cfg.timeout;
    let mut measuring = false;
    let (mut cpu0, mut gen0) = (Duration::ZERO, Duration::ZERO);
    let mut ended = false;
    let mut last_sweep = started;
    let max_samples = 50_000_000;
    let mut names = Vec::new();
    let mut pws = Vec::new();
    // Per lane: Access-Requests, Accounting-Requests.
    let mut rate_sent = [0u64; 2];
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH * 200);
    let mut offsets: Vec<(usize, usize)> = Vec::with_capacity(BATCH);
    loop {
        let now = Instant::now();
        if !measuring && now >= measure_from {
            measuring = true;
            cpu0 = server_cpu();
            gen0 = thread_cpu();
            out = Outcome {
                latencies: std::mem::take(&mut out.latencies),
                accounting_latencies: std::mem::take(&mut out.accounting_latencies),
                ..Outcome::default()
            };
            out.latencies.clear();
            out.accounting_latencies.clear();
        }
        if measuring && !ended && now >= stop_sending {
            ended = true;
            out.server_cpu = server_cpu() - cpu0;
            out.generator_cpu = thread_cpu() - gen0;
            out.elapsed = now - measure_from;
        }
        let outstanding: usize = socks.iter().map(|s| s.outstanding).sum();
        if (ended && outstanding == 0) || now >= give_up {
            break;
        }
        let mut progressed = false;
        for s in socks.iter_mut() {
            let fd = s.socket.as_raw_fd();
            // Replies.
            loop {
                let n = mm.recv(fd);
                for i in 0..n {
                    progressed = true;
                    let data = &mm.bufs[i][..mm.len(i).min(RECV_BUF)];
                    if data.len() < 2 {
                        out.bad += 1;
                        continue;
                    }
                    let slot = &mut s.slots[data[1] as usize];
                    if !slot.busy {
                        // A late reply to a request already counted as lost.
                        continue;
                    }
                    if let Some(first) = &slot.first_reply {
                        if first[..] != *data {
                            out.duplicate_mismatch += 1;
                        }
                        slot.first_reply = None;
                        slot.busy = false;
                        s.outstanding -= 1;
                        continue;
                    }
                    let recv_at = Instant::now();
                    match check_reply(data, &slot.request, &keys, slot.expect, slot.vlan) {
                        _ if mm.truncated(i) => out.bad += 1,
                        Ok(ma) => {
                            out.answered += 1;
                            out.accounting_answered += u64::from(slot.expect == ACCOUNTING_RESPONSE);
                            out.with_message_authenticator += ma as u64;
                            let ns = (recv_at - slot.sent_at).as_nanos().min(u32::MAX as u128) as u32;
                            let samples = if s.acct {
                                &mut out.accounting_latencies
                            } else {
                                &mut out.latencies
                            };
                            if samples.len() < max_samples {
                                samples.push(ns);
                            }
                        }
                        Err(()) => {
                            out.bad += 1;
                            if out.bad <= 3 && std::env::var_os("LOAD_DEBUG_BAD").is_some() {
                                eprintln!("bad reply (code {}) to request {:02x?}", data[0], &slot.request);
                            }
                        }
                    }
                    if slot.duplicate {
                        slot.first_reply = Some(data.to_vec());
                        out.duplicates_sent += 1;
                        let _ = s.socket.send(&slot.request);
                    } else {
                        slot.busy = false;
                        s.outstanding -= 1;
                    }
                }
                if n < BATCH {
                    break;
                }
            }
            if ended {
                continue;
            }
            // New requests, up to the window and the rate.
            batch.clear();
            offsets.clear();
            // Accounting is answered once stored (milliseconds): a NAS keeps
            // more of it in flight.
            let window = if s.acct { ACCT_WINDOW } else { window };
            while s.outstanding + offsets.len() < window && offsets.len() < BATCH {
                let lane = s.acct as usize;
                // At full load accounting still keeps to its share of what
                // is sent, so that a saturation measured with the mix is
                // that of the mix.
                if cfg.rate.is_none() && s.acct && rate_sent[1] as f64 * share[0] >= rate_sent[0] as f64 * share[1] {
                    break;
                }
                if let Some(rate) = cfg.rate {
                    let rate = rate * share[lane];
                    let allowed = (now.saturating_duration_since(started).as_secs_f64() * rate) as u64;
                    // After a stall (the generator descheduled) catch up by at
                    // most a millisecond's worth, not with one huge burst.
                    let slack = (rate / 1000.0) as u64 + 1;
                    if allowed > rate_sent[lane] + slack {
                        rate_sent[lane] = allowed - slack;
                    }
                    if rate_sent[lane] >= allowed {
                        break;
                    }
                }
                // Find a free identifier.
                let mut id = s.next_id;
                let mut tries = 0;
                while s.slots[id as usize].busy && tries < 256 {
                    id = id.wrapping_add(1);
                    tries += 1;
                }
                if tries == 256 {
                    break;
                }
                s.next_id = id.wrapping_add(1);
                let mut ra = [0u8; 16];
                ra[..8].copy_from_slice(&rng.next().to_le_bytes());
                ra[8..].copy_from_slice(&rng.next().to_le_bytes());
                let slot = &mut s.slots[id as usize];
                names.clear();
                pws.clear();
                let (expect, station);
                // The mix picks one of the plain kinds per request.
                let kind = match scenario {
                    _ if s.acct => Scenario::Accounting,
                    Scenario::Mixed => match rng.below(100) {
                        0..55 => Scenario::PapAccept,
                        55..75 => Scenario::MabAccept,
                        75..85 => Scenario::PapReject,
                        _ => Scenario::DuplicateMix,
                    },
                    s => s,
                };
                match kind {
                    Scenario::PapAccept | Scenario::DuplicateMix | Scenario::PapReject => {
                        let u = rng.below(cfg.users);
                        names.extend_from_slice(user_name(u).as_bytes());
                        if kind == Scenario::PapReject {
                            pws.extend_from_slice(b"not-the-password");
                            expect = ACCESS_REJECT;
                        } else {
                            pws.extend_from_slice(user_password(u).as_bytes());
                            expect = ACCESS_ACCEPT;
                        }
                        station = mac(rng.below(1 << 24));
                    }
                    // `scenario` is already its traffic (see `Scenario::traffic`).
                    Scenario::PapOneSource | Scenario::MabOneSource | Scenario::Mixed => {
                        unreachable!("a one-source scenario's or the mix's traffic")
                    }
                    Scenario::Accounting => {
                        expect = ACCOUNTING_RESPONSE;
                        station = String::new();
                    }
                    Scenario::MabAccept | Scenario::IntuneMab => {
                        let m = if kind == Scenario::IntuneMab {
                            cfg.intune_macs[rng.below(cfg.intune_macs.len())].clone()
                        } else {
                            mac(rng.below(cfg.macs))
                        };
                        names.extend_from_slice(m.as_bytes());
                        pws.extend_from_slice(m.as_bytes());
                        expect = ACCESS_ACCEPT;
                        station = m;
                    }
                }
                if kind == Scenario::Accounting {
                    let status = match rng.below(10) {
                        0 | 1 => 1,
                        2 | 3 => 2,
                        _ => 3,
                    };
                    let session = rng.below(cfg.users.min(20_000));
                    let elapsed = now.saturating_duration_since(started).as_secs() as u32;
                    accounting_request(&mut slot.request, &keys, id, status, session, elapsed);
                } else {
                    access_request(&mut slot.request, &keys, id, &ra, &names, &pws, station.as_bytes());
                }
                slot.expect = expect;
                slot.vlan = vlan.filter(|_| matches!(kind, Scenario::MabAccept | Scenario::IntuneMab));
                slot.duplicate = match scenario {
                    Scenario::Mixed => kind == Scenario::DuplicateMix,
                    _ => kind == Scenario::DuplicateMix && rng.below(10) == 0,
                };
                slot.first_reply = None;
                let start = batch.len();
                batch.extend_from_slice(&slot.request);
                offsets.push((start, batch.len()));
                slot.busy = true;
                rate_sent[lane] += 1;
            }
            if !offsets.is_empty() {
                let grams: Vec<&[u8]> = offsets.iter().map(|&(a, b)| &batch[a..b]).collect();
                let went = send_batch(fd, &grams);
                let at = Instant::now();
                for (k, &(a, _)) in offsets.iter().enumerate() {
                    let id = batch[a + 1] as usize;
                    if k < went {
                        s.slots[id].sent_at = at;
                    } else {
                        // The socket buffer was full: not sent, not counted.
                        s.slots[id].busy = false;
                        rate_sent[s.acct as usize] -= 1;
                    }
                }
                s.outstanding += went;
                if measuring && !ended {
                    out.sent += went as u64;
                }
                progressed |= went > 0;
            }
        }
        // Lost requests: no reply within the timeout frees the slot.
        let now = Instant::now();
        if now - last_sweep > Duration::from_millis(10) {
            last_sweep = now;
            for s in socks.iter_mut() {
                for slot in s.slots.iter_mut() {
                    if slot.busy && now - slot.sent_at > cfg.timeout {
                        slot.busy = false;
                        s.outstanding -= 1;
                        if slot.first_reply.take().is_some() {
                            out.duplicate_unanswered += 1;
                        } else if measuring {
                            out.lost += 1;
                        }
                    }
                }
            }
        }
        if !progressed && !cfg.spin {
            // At a fixed rate, wake up at least every 100 µs to send the next
            // requests (at most a handful at a time); otherwise a reply wakes us.
            let timeout = libc::timespec {
                tv_sec: 0,
                tv_nsec: if cfg.rate.is_some() { 100_000 } else { 1_000_000 },
            };
            // SAFETY: pollfds is a valid array of its length; timeout lives
            // across the call; no signal mask.
            unsafe {
                libc::ppoll(
                    pollfds.as_mut_ptr(),
                    pollfds.len() as libc::nfds_t,
                    &timeout,
                    std::ptr::null(),
                )
            };
        }
    }
    if !ended {
        out.elapsed = cfg.measure;
    }
    // Whatever is still out when we give up is lost.
    for s in socks.iter() {
        for slot in s.slots.iter().filter(|s| s.busy) {
            if slot.first_reply.is_some() {
                out.duplicate_unanswered += 1;
            } else {
                out.lost += 1;
            }
        }
    }
    out.latencies.sort_unstable();
    out.accounting_latencies.sort_unstable();
    out
}
