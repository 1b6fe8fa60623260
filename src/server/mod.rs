//! The transport: UDP listeners for authentication and accounting, the
//! client table, the RFC 5080 response cache, bounded concurrency and
//! shutdown. Everything that can be decided from the packet alone (client,
//! framing, authenticators, BlastRADIUS rules, duplicates) is decided in the
//! thread reading the socket. Only verified, new requests that need slow
//! work become tasks; an Accounting-Request goes to the handler, which
//! calls back once it is stored.

pub mod clients;
pub mod counters;
pub mod dedup;
pub mod handler;
pub mod limits;
mod udp;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use moka::sync::Cache;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::clock::now_unix;
use crate::config::{ClientConfig, ServerConfig};
use crate::proto::crypto::{
    MaBatch, MessageAuth, ResponseBatch, Unsigned, check_message_authenticator, verify_hashed_request,
};
use crate::proto::dictionary::Dictionary;
use crate::proto::packet::MAX_PACKET_LEN;
use crate::proto::{AttrType, Builder, Code, Packet};
use clients::{Client, ClientTable, MaVerdict};
use counters::{CounterRegistry, DropReason, inc};
use dedup::{DedupKey, ResponseCache, Seen};
use handler::{Handler, Outcome, Reply, Slow};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Which service a socket offers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Port {
    Auth,
    Acct,
}

struct Listener {
    socket: Arc<UdpSocket>,
    port: Port,
    /// Part of the duplicate-detection key (RFC 5080 keys on the receiving socket).
    index: u16,
    /// The kernel's count of datagrams it dropped for a full receive queue
    /// on this socket, as last reported; the registry gets the increments.
    dropped: std::sync::atomic::AtomicU32,
}

/// What the reader threads, the request tasks and the accounting
/// callbacks share.
struct Shared<H> {
    /// Swapped whole on SIGHUP; a packet in progress keeps the table it began with.
    clients: ArcSwap<ClientTable>,
    counters: Arc<CounterRegistry>,
    handler: H,
    responses: ResponseCache,
    /// Bounds on slow work, one per kind; memory-only decisions take none.
    limits: Limits,
    /// One warning per source (address and port) and reason per minute, so
    /// a misconfigured or hostile sender cannot flood the log while two
    /// NASes behind one address are both heard.
    log_limit: Cache<(SocketAddr, &'static str), ()>,
    dictionary: Arc<Dictionary>,
    started: std::time::Instant,
    listen_addrs: Vec<(Port, SocketAddr)>,
    /// How many of the reader threads read: the readers, but no more
    /// than the CPUs the process may run on now. Two readers sharing one CPU
    /// (a server started on two CPUs and then confined to one) preempt each
    /// other in the middle of a batch, and the replies already decided in
    /// it wait a whole scheduler slice (milliseconds) to be sent.
    active_readers: std::sync::atomic::AtomicUsize,
}

/// How much slow work of each kind may be in progress at once. A request
/// beyond its kind's bound is shed and counted under that kind's reason.
struct Limits {
    /// The handler's slow kinds, by [`Slow::kind`].
    slow: Vec<(Arc<limits::Bound>, &'static str)>,
    /// Accounting records waiting for the handler (`max_in_flight`).
    accounting: Arc<limits::Bound>,
}

/// A bound server, ready to run.
pub struct Server<H> {
    shared: Arc<Shared<H>>,
    listeners: Vec<Listener>,
    /// Reader threads, each reading every socket.
    readers: usize,
}

/// A handle for reloading the client table and reading counters while the
/// server runs.
pub struct ServerHandle<H> {
    shared: Arc<Shared<H>>,
}

impl<H> Clone for ServerHandle<H> {
    fn clone(&self) -> Self {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<H> ServerHandle<H> {
    /// Replaces the client table; a packet in progress keeps the old one.
    pub fn reload_clients(&self, clients: &[ClientConfig]) {
        let table = ClientTable::new(clients, &self.shared.counters);
        self.shared.clients.store(Arc::new(table));
    }

    pub fn started(&self) -> std::time::Instant {
        self.shared.started
    }

    pub fn client_count(&self) -> usize {
        self.shared.clients.load().len()
    }

    pub fn listeners(&self) -> &[(Port, SocketAddr)] {
        &self.shared.listen_addrs
    }

    pub fn counters(&self) -> Arc<CounterRegistry> {
        self.shared.counters.clone()
    }
}

/// What the server needs besides its sockets: the handler, the clients and
/// the transport's settings.
pub struct ServerParts<H> {
    pub handler: H,
    pub clients: Vec<ClientConfig>,
    pub dictionary: Arc<Dictionary>,
    pub response_cache_ttl: Duration,
    /// Accounting records waiting for the handler at once.
    pub max_in_flight: usize,
    /// Reader threads, each reading every socket; `None` is one per CPU.
    pub readers: Option<usize>,
}

/// A socket bound for one service.
pub struct BoundSocket {
    socket: UdpSocket,
    port: Port,
}

impl BoundSocket {
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn port(&self) -> Port {
        self.port
    }
}

/// Binds every listening socket of `cfg`, authentication first.
pub fn bind_sockets(cfg: &ServerConfig) -> Result<Vec<BoundSocket>, ServerError> {
    let all = cfg
        .auth_listen
        .iter()
        .map(|a| (*a, Port::Auth))
        .chain(cfg.acct_listen.iter().map(|a| (*a, Port::Acct)));
    all.map(|(addr, port)| {
        let socket = bind_udp(addr).map_err(|source| ServerError::Bind { addr, source })?;
        Ok(BoundSocket { socket, port })
    })
    .collect()
}

/// Binds a UDP socket. IPv6 sockets are v6-only so that `0.0.0.0` and `[::]`
/// can both be listed; the receive buffer is raised to ride out bursts
/// (the kernel caps it at net.core.rmem_max).
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(8 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

impl<H: Handler> Server<H> {
    /// A server on sockets already bound (see [`bind_sockets`]).
    pub fn new(sockets: Vec<BoundSocket>, parts: ServerParts<H>) -> Server<H> {
        let kinds = parts.handler.slow_kinds();
        assert!(
            kinds.len() <= counters::MAX_SLOW_KINDS,
            "a handler has at most {} slow kinds",
            counters::MAX_SLOW_KINDS
        );
        let counters = Arc::new(CounterRegistry::with_busy_reasons(
            kinds.iter().map(|k| k.reason).collect(),
        ));
        let listeners: Vec<Listener> = sockets
            .into_iter()
            .enumerate()
            .map(|(i, b)| Listener {
                socket: Arc::new(b.socket),
                port: b.port,
                index: i as u16,
                dropped: Default::default(),
            })
            .collect();
        let listen_addrs = listeners
            .iter()
            .filter_map(|l| l.socket.local_addr().ok().map(|a| (l.port, a)))
            .collect();
        let limits = Limits {
            slow: kinds
                .iter()
                .map(|k| (limits::Bound::new(k.capacity), k.reason))
                .collect(),
            accounting: limits::Bound::new(parts.max_in_flight),
        };
        let shared = Arc::new(Shared {
            clients: ArcSwap::from_pointee(ClientTable::new(&parts.clients, &counters)),
            counters,
            handler: parts.handler,
            responses: ResponseCache::new(parts.response_cache_ttl, 1 << 18),
            limits,
            log_limit: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            dictionary: parts.dictionary,
            started: std::time::Instant::now(),
            listen_addrs,
            active_readers: std::sync::atomic::AtomicUsize::new(usize::MAX),
        });
        let readers = parts
            .readers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let cpus = crate::sys::allowed_cpus();
        let active = active_readers(readers, cpus);
        shared.active_readers.store(active, Ordering::Relaxed);
        if active < readers {
            info!(
                active,
                readers,
                "the server may run on {} CPUs: {active} of {readers} readers per socket read",
                cpus.unwrap_or(0)
            );
        }
        Server {
            shared,
            listeners,
            readers,
        }
    }

    pub fn local_addrs(&self, port: Port) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|l| l.port == port)
            .filter_map(|l| l.socket.local_addr().ok())
            .collect()
    }

    pub fn handle(&self) -> ServerHandle<H> {
        ServerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` is cancelled, then stops reading, lets every
    /// request in progress finish (up to `drain`), and returns. Must be
    /// called inside a tokio runtime: the requests that take slow work
    /// become tasks on it.
    pub async fn run(self, shutdown: CancellationToken, drain: Duration) {
        let tracker = TaskTracker::new();
        // Each reader is a thread of its own that reads every socket, so
        // that every CPU can answer requests; the response cache keeps two
        // of them from both taking a retransmission for new. A thread, not
        // a task: a reader standing by (see `active_readers`) then really
        // sleeps, and a busy one is never passed between worker threads.
        let listeners: Arc<[Listener]> = self.listeners.into();
        let stop = match std::os::unix::net::UnixDatagram::pair() {
            Ok((wake, stop)) => Some((wake, Arc::new(stop))),
            Err(e) => {
                warn!(error = %e, "no descriptor to wake the readers at shutdown; they notice it within {STAND_BY:?}");
                None
            }
        };
        let mut readers = Vec::with_capacity(self.readers);
        for index in 0..self.readers {
            let (done, finished) = tokio::sync::oneshot::channel::<()>();
            let reader = Reader {
                shared: self.shared.clone(),
                listeners: listeners.clone(),
                index,
                tracker: tracker.clone(),
                shutdown: shutdown.clone(),
                stop: stop.as_ref().map(|(_, r)| r.clone()),
            };
            let runtime = tokio::runtime::Handle::current();
            let started = std::thread::Builder::new()
                .name(format!("radius-reader-{index}"))
                .spawn(move || {
                    let _runtime = runtime.enter();
                    reader.run();
                    drop(done);
                });
            match started {
                Ok(_) => readers.push(finished),
                Err(e) => error!(index, error = %e, "cannot start a reader thread; serving with the others"),
            }
        }
        if readers.is_empty() {
            error!("no reader thread could be started: no RADIUS request will be read");
        }
        tokio::spawn(every_second(self.shared.clone(), self.readers, shutdown.clone()));
        shutdown.cancelled().await;
        if let Some((wake, _)) = &stop {
            // Never read: the other end stays readable for every reader.
            let _ = wake.send(&[1]);
        }
        for r in readers {
            let _ = r.await;
        }
        tracker.close();
        info!(
            in_flight = tracker.len(),
            "stopped reading; finishing requests in progress"
        );
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            warn!(
                abandoned = tracker.len(),
                "requests still in progress after {drain:?}; exiting without them"
            );
        }
        for (name, c) in self.shared.counters.snapshot() {
            info!(client = %name, "counters: {c}");
        }
        let unknown = self
            .shared
            .counters
            .unknown_client
            .load(std::sync::atomic::Ordering::Relaxed);
        let overflow = self
            .shared
            .counters
            .receive_queue_dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        info!(
            unknown_client = unknown,
            receive_queue_dropped = overflow,
            "server stopped"
        );
    }
}

/// How many of `readers` read when the process may run on `cpus` CPUs.
fn active_readers(readers: usize, cpus: Option<usize>) -> usize {
    cpus.map_or(readers, |c| readers.min(c)).max(1)
}

/// Tells when a burst of traffic is over, from the response cache's live
/// entries once a second: they are the requests of the last TTL (one per
/// NAS source and identifier), so they fall once the traffic falls.
#[derive(Debug, Default)]
struct BurstEnd {
    /// Most live entries since the burst's end was last seen.
    peak: u64,
}

/// Live entries below which a fall is no burst's end worth acting on
/// (a few NASes coming and going).
const BURST_PEAK: u64 = 1024;

impl BurstEnd {
    /// True once the live entries have fallen to a quarter of their peak
    /// (itself at least [`BURST_PEAK`]); the peak then starts again from
    /// here, so a steady load never says so and one burst says so once.
    fn over(&mut self, live: u64) -> bool {
        self.peak = self.peak.max(live);
        if self.peak >= BURST_PEAK && live <= self.peak / 4 {
            self.peak = live;
            return true;
        }
        false
    }
}

/// Once a second: follows the CPUs the process may run on (an affinity
/// mask is narrowed by hand or by a cgroup, rarely) and sets how many
/// readers read; lets the response cache drop what has outlived its TTL
/// even when no request comes to do it; and once a burst is over, hands
/// the heap pages it freed back to the kernel (glibc would keep them, and
/// they would count as resident memory until the next burst).
async fn every_second<H: Handler>(shared: Arc<Shared<H>>, readers: usize, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut burst = BurstEnd::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let live = shared.responses.sweep();
        if burst.over(live) {
            // About 0.8 ms with a 45 MiB heap, on this worker, once per
            // burst, when the load has just fallen.
            let started = std::time::Instant::now();
            crate::sys::release_freed_memory();
            debug!(
                live,
                took_us = started.elapsed().as_micros() as u64,
                "a burst is over: freed heap pages given back"
            );
        }
        // With one reader this finds nothing to change.
        let cpus = crate::sys::allowed_cpus();
        let active = active_readers(readers, cpus);
        let before = shared.active_readers.swap(active, Ordering::Relaxed);
        if before != active {
            info!(
                active,
                readers,
                cpus = cpus.unwrap_or(0),
                "the CPUs the server may run on changed: {active} of {readers} readers per socket read"
            );
        }
    }
}

/// How long a reader waits in one `poll(2)`, and a standing-by reader
/// sleeps, before it looks again at whether it should read.
const STAND_BY: Duration = Duration::from_millis(250);

/// One reader thread: reads every socket, answers what memory decides and
/// hands slow work to the runtime as tasks.
struct Reader<H> {
    shared: Arc<Shared<H>>,
    listeners: Arc<[Listener]>,
    index: usize,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Readable once the server shuts down; held here so that it stays
    /// open for as long as any reader polls it.
    stop: Option<Arc<std::os::unix::net::UnixDatagram>>,
}

impl<H: Handler> Reader<H> {
    /// Until shutdown. Must run inside the runtime's context (the tasks of
    /// slow work are spawned on it).
    fn run(self) {
        let shared = &self.shared;
        let mut rx = udp::RecvBatch::default();
        // The batch's `Handler::warm_key`s.
        let mut warm: Vec<H::Warm> = Vec::with_capacity(udp::BATCH);
        let mut out = Outbox {
            tracker: self.tracker.clone(),
            ..Outbox::default()
        };
        let mut poller = udp::Poller::new(
            self.listeners.iter().map(|l| l.socket.as_raw_fd()),
            self.stop.as_ref().map(|s| s.as_raw_fd()),
        );
        while !self.shutdown.is_cancelled() {
            if self.index >= shared.active_readers.load(Ordering::Relaxed) {
                // A reader beyond the CPUs there are: stand by.
                poller.sleep(STAND_BY);
                continue;
            }
            if let Err(e) = poller.wait(STAND_BY) {
                // Not expected (poll(2) fails for bad arguments or no
                // memory); said, and tried again after a pause.
                warn!(reader = self.index, error = %e, "waiting for the sockets failed");
                poller.sleep(STAND_BY);
                continue;
            }
            for (i, l) in self.listeners.iter().enumerate() {
                if poller.ready(i) {
                    shared.drain(l, &mut rx, &mut warm, &mut out);
                }
            }
        }
    }
}

/// What a reader keeps between packets: the replies to send
/// together, those still to be signed, the batch's Message-Authenticator
/// checks, buffers to build replies in, and the tracker of the tasks it
/// spawns for slow work (drained on shutdown).
#[derive(Default)]
struct Outbox {
    tracker: TaskTracker,
    replies: udp::SendBatch,
    checks: MaBatch,
    /// Per datagram of the batch: its index in `checks`, if it has one.
    checked: Vec<Option<usize>>,
    unsigned: Vec<UnsignedReply>,
    signer: ResponseBatch,
    /// Buffers of replies already sent, to build the next ones in: at most
    /// a batch of them.
    spare: Vec<Vec<u8>>,
}

/// A reply decided from memory, waiting for the batch to be signed.
struct UnsignedReply {
    bytes: Vec<u8>,
    client: Arc<Client>,
    entry: Arc<dedup::Entry>,
    to: SocketAddr,
}

impl Unsigned for UnsignedReply {
    fn bytes_and_secret(&mut self) -> (&mut [u8], &crate::proto::ClientSecret) {
        (&mut self.bytes, &self.client.secret)
    }
}

impl Outbox {
    /// Signs the replies waiting for it, answers their duplicates from now
    /// on (the response cache) and queues them to be sent.
    fn finish_replies(&mut self) {
        if self.unsigned.is_empty() {
            return;
        }
        self.signer.finish(&mut self.unsigned);
        for r in self.unsigned.drain(..) {
            let bytes: Arc<[u8]> = Arc::from(&r.bytes[..]);
            r.entry.finish(Some(bytes.clone()));
            self.replies.push(bytes, r.to);
            self.spare.push(r.bytes);
        }
    }
}

impl<H: Handler> Shared<H> {
    /// Empties `l`'s socket a batch at a time, answering what can be
    /// decided from memory right here and sending those replies together.
    /// Bounded, so that the other sockets get their turn.
    fn drain(self: &Arc<Self>, l: &Listener, rx: &mut udp::RecvBatch, warm: &mut Vec<H::Warm>, out: &mut Outbox) {
        for _ in 0..64 {
            let n = match rx.recv(&l.socket) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on some
                    // systems; they say nothing about the next packet.
                    debug!(error = %e, "receiving failed");
                    continue;
                }
            };
            if let Some(d) = rx.dropped() {
                let before = l.dropped.fetch_max(d, std::sync::atomic::Ordering::Relaxed);
                if d > before {
                    self.counters
                        .receive_queue_dropped
                        .fetch_add(u64::from(d - before), std::sync::atomic::Ordering::Relaxed);
                }
            }
            // The batch's Message-Authenticators are checked together, and
            // the replies decided from memory signed together before they
            // go: independent digests advance side by side (`proto::md5x`).
            // Before that, the batch's lookups are loaded ahead one link at
            // a time across the batch (`Handler::warm`), so that their cache
            // misses overlap. One client table serves the whole batch: the
            // Message-Authenticators are checked with the secrets its
            // decisions use.
            {
                let table = self.clients.load();
                out.checks.clear();
                out.checked.clear();
                warm.clear();
                for i in 0..n {
                    let (data, src) = rx.get(i);
                    let check = self.queue_check(l, &table, data, src, &mut out.checks, warm);
                    out.checked.push(check);
                }
                self.handler.warm(warm);
                out.checks.run();
                for i in 0..n {
                    let (data, src) = rx.get(i);
                    let ma = out.checked[i].map(|k| out.checks.verdict(k));
                    self.on_datagram(l, &table, data, src, ma, out);
                }
            }
            out.finish_replies();
            out.replies.flush(&l.socket);
        }
    }

    fn log_allowed(&self, source: SocketAddr, what: &'static str) -> bool {
        let key = (source, what);
        if self.log_limit.contains_key(&key) {
            return false;
        }
        self.log_limit.insert(key, ());
        true
    }

    fn drop_packet(&self, client: &Client, src: SocketAddr, reason: DropReason, detail: &dyn std::fmt::Display) {
        client.counters.count_drop(reason);
        if self.log_allowed(src, reason.as_str()) {
            warn!(client = %client.name, source = %src, reason = reason.as_str(), "dropped packet: {detail} (further drops for this reason from this source are not logged for 60s)");
        }
    }

    /// Queues the Message-Authenticator check of an Access-Request from a
    /// known client (in `table`, the batch's) into `checks`, and its
    /// `Handler::warm_key` into `warm`; its index in `checks`.
    /// Anything else is left to `on_datagram` as it comes.
    fn queue_check(
        &self,
        l: &Listener,
        table: &ClientTable,
        data: &[u8],
        src: SocketAddr,
        checks: &mut MaBatch,
        warm: &mut Vec<H::Warm>,
    ) -> Option<usize> {
        if l.port != Port::Auth || data.len() > MAX_PACKET_LEN {
            return None;
        }
        let client = table.lookup(src.ip())?;
        let packet = Packet::decode(data).ok()?;
        if packet.code() != Code::ACCESS_REQUEST {
            return None;
        }
        warm.extend(self.handler.warm_key(&packet));
        Some(checks.push(&packet, &client.secret, None))
    }

    /// `ma`: the packet's Message-Authenticator, if already checked (with
    /// `table`'s secret).
    fn on_datagram(
        self: &Arc<Self>,
        l: &Listener,
        table: &ClientTable,
        data: &[u8],
        src: SocketAddr,
        ma: Option<MessageAuth>,
        out: &mut Outbox,
    ) {
        let Some(client) = table.lookup(src.ip()) else {
            inc(&self.counters.unknown_client);
            if self.log_allowed(src, "unknown_client") {
                warn!(source = %src, "dropped packet from unknown client (no [[clients]] entry covers this address; not logged again for 60s)");
            }
            return;
        };
        if data.len() > MAX_PACKET_LEN {
            self.drop_packet(
                client,
                src,
                DropReason::Oversize,
                &format_args!("datagram larger than {MAX_PACKET_LEN} bytes"),
            );
            return;
        }
        let packet = match Packet::decode(data) {
            Ok(p) => p,
            Err(e) => {
                self.drop_packet(client, src, DropReason::Malformed, &e);
                return;
            }
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            debug!(client = %client.name, source = %src, code = %packet.code(), id = packet.identifier(), "received: {}", crate::proto::dictionary::describe(&self.dictionary, &packet).join(", "));
        }
        match (l.port, packet.code()) {
            (Port::Auth, Code::ACCESS_REQUEST) => self.on_access_request(l, client, &packet, src, ma, out),
            (_, Code::STATUS_SERVER) => self.on_status_server(l, client, &packet, src),
            (Port::Acct, Code::ACCOUNTING_REQUEST) => self.on_accounting_request(l, client, &packet, src, out),
            (port, code) => self.drop_packet(
                client,
                src,
                DropReason::UnexpectedCode,
                &format_args!("{code} is not served on the {port:?} port"),
            ),
        }
    }

    /// The duplicate check; `None` when the packet is already dealt with.
    fn admit(
        &self,
        l: &Listener,
        client: &Client,
        packet: &Packet<'_>,
        src: SocketAddr,
        out: &mut Outbox,
    ) -> Option<Arc<dedup::Entry>> {
        let key = DedupKey {
            listener: l.index,
            source: src,
            identifier: packet.identifier(),
        };
        let entry = match self.responses.check(key, packet.authenticator()) {
            Seen::New(e) => e,
            Seen::Answered(bytes) => {
                inc(&client.counters.duplicates_resent);
                out.replies.push(bytes, src);
                return None;
            }
            Seen::InProgress => {
                inc(&client.counters.duplicates_in_progress);
                return None;
            }
        };
        Some(entry)
    }

    /// A place under `bound` for this client's request, or the request is
    /// shed: counted (by `count`), logged at a limited rate under `reason`,
    /// and forgotten by the response cache so that the NAS's retransmission
    /// is taken as new.
    fn place(
        &self,
        bound: &Arc<limits::Bound>,
        reason: &'static str,
        count: impl FnOnce(&Client),
        client: &Client,
        src: SocketAddr,
        entry: &dedup::Entry,
    ) -> Option<limits::Permit> {
        match bound.try_acquire(&client.name) {
            Ok(p) => Some(p),
            Err(shed) => {
                entry.finish(None);
                count(client);
                if self.log_allowed(src, reason) {
                    let detail = shed.describe(reason, bound.capacity(), bound.per_client());
                    warn!(client = %client.name, source = %src, reason, "dropped packet: {detail} (further drops for this reason from this source are not logged for 60s)");
                }
                None
            }
        }
    }

    fn on_access_request(
        self: &Arc<Self>,
        l: &Listener,
        client: &Arc<Client>,
        packet: &Packet<'_>,
        src: SocketAddr,
        ma: Option<MessageAuth>,
        out: &mut Outbox,
    ) {
        inc(&client.counters.access_requests);
        let ma = ma.unwrap_or_else(|| check_message_authenticator(packet, &client.secret, None));
        let has_ma = match ma {
            MessageAuth::Valid => true,
            MessageAuth::Absent => false,
            MessageAuth::Invalid => {
                self.drop_packet(
                    client,
                    src,
                    DropReason::BadMessageAuthenticator,
                    &"Message-Authenticator does not verify (wrong shared secret?)",
                );
                return;
            }
        };
        if !has_ma && packet.has(AttrType::EAP_MESSAGE) {
            self.drop_packet(
                client,
                src,
                DropReason::MissingMessageAuthenticator,
                &"EAP-Message without Message-Authenticator (RFC 3579 §3.2)",
            );
            return;
        }
        let (verdict, learned) = client.check_blast_radius(has_ma, packet.has(AttrType::PROXY_STATE));
        if learned {
            info!(client = %client.name, "auto: client {}", client.learned_description());
        }
        match verdict {
            MaVerdict::Allow => {}
            MaVerdict::MissingMessageAuthenticator => {
                self.drop_packet(
                    client,
                    src,
                    DropReason::MissingMessageAuthenticator,
                    &"Access-Request without Message-Authenticator (require_message_authenticator)",
                );
                return;
            }
            MaVerdict::ProxyStateWithoutMessageAuthenticator => {
                self.drop_packet(
                    client,
                    src,
                    DropReason::ProxyStateWithoutMessageAuthenticator,
                    &"Proxy-State without Message-Authenticator (limit_proxy_state)",
                );
                return;
            }
        }
        let Some(entry) = self.admit(l, client, packet, src, out) else {
            return;
        };
        // Memory-only decisions (nearly all) are answered here, with no
        // task and no place to take.
        let deferred = match self.handler.access_request(packet, &client.secret, &client.name) {
            Ok(d) => {
                let buf = out.spare.pop().unwrap_or_default();
                match self.decided(packet, client, src, &d, buf) {
                    Some(reply) => out.unsigned.push(UnsignedReply {
                        bytes: reply.finish_unsigned(),
                        client: client.clone(),
                        entry,
                        to: src,
                    }),
                    None => self.encode_failed(client, &entry),
                }
                return;
            }
            Err(deferred) => deferred,
        };
        let kind = deferred.kind();
        let Some((bound, reason)) = self.limits.slow.get(kind) else {
            // A handler bug; never let it through unbounded.
            entry.finish(None);
            error!(kind, "slow work of an unknown kind; request dropped");
            return;
        };
        let Some(permit) = self.place(bound, reason, |c| c.counters.count_busy(kind), client, src, &entry) else {
            return;
        };
        let shared = self.clone();
        let client = client.clone();
        let socket = l.socket.clone();
        let bytes = packet.bytes().to_vec();
        out.tracker.spawn(async move {
            let _permit = permit;
            let packet = Packet::decode(&bytes).expect("decoded before");
            let d = deferred.finish().await;
            let reply = shared
                .decided(&packet, &client, src, &d, Vec::new())
                .map(|b| b.finish_response(&client.secret));
            shared.send_reply(&socket, &client, src, &entry, reply).await;
        });
    }

    /// Logs and counts a decision and builds its reply in `buf`, to be
    /// signed by the caller.
    fn decided(
        &self,
        packet: &Packet<'_>,
        client: &Client,
        src: SocketAddr,
        d: &H::Outcome,
        buf: Vec<u8>,
    ) -> Option<Builder> {
        let (code, counter) = match d.reply() {
            Reply::Accept => (Code::ACCESS_ACCEPT, &client.counters.accepts),
            Reply::Reject => (Code::ACCESS_REJECT, &client.counters.rejects),
            Reply::Challenge => (Code::ACCESS_CHALLENGE, &client.counters.challenges),
        };
        let reply = build_reply_with(buf, code, packet, true, Some(d));
        d.log(&client.name);
        self.handler.decided(d, packet, &client.name, src.ip());
        inc(counter);
        reply
    }

    fn encode_failed(&self, client: &Client, entry: &dedup::Entry) {
        entry.finish(None);
        client.counters.count_drop(DropReason::EncodeFailed);
        error!(client = %client.name, "reply too large to encode; none sent");
    }

    fn on_status_server(&self, l: &Listener, client: &Client, packet: &Packet<'_>, src: SocketAddr) {
        inc(&client.counters.status_server);
        // RFC 5997 §3: Status-Server must carry a valid Message-Authenticator.
        match check_message_authenticator(packet, &client.secret, None) {
            MessageAuth::Valid => {}
            MessageAuth::Absent => {
                self.drop_packet(
                    client,
                    src,
                    DropReason::MissingMessageAuthenticator,
                    &"Status-Server without Message-Authenticator (RFC 5997)",
                );
                return;
            }
            MessageAuth::Invalid => {
                self.drop_packet(
                    client,
                    src,
                    DropReason::BadMessageAuthenticator,
                    &"Status-Server Message-Authenticator does not verify",
                );
                return;
            }
        }
        let code = match l.port {
            Port::Auth => Code::ACCESS_ACCEPT,
            Port::Acct => Code::ACCOUNTING_RESPONSE,
        };
        // Status-Server is answered directly, not through the response cache:
        // it is idempotent and cheap (RFC 5997 §3).
        if let Some(bytes) = build_reply(code, packet, client, true) {
            let _ = l.socket.send_to(&bytes, src);
        } else {
            client.counters.count_drop(DropReason::EncodeFailed);
        }
    }

    fn on_accounting_request(
        self: &Arc<Self>,
        l: &Listener,
        client: &Arc<Client>,
        packet: &Packet<'_>,
        src: SocketAddr,
        out: &mut Outbox,
    ) {
        inc(&client.counters.accounting_requests);
        if !verify_hashed_request(packet, &client.secret) {
            self.drop_packet(
                client,
                src,
                DropReason::BadAuthenticator,
                &"Accounting-Request authenticator does not verify (wrong shared secret?)",
            );
            return;
        }
        if check_message_authenticator(packet, &client.secret, Some(&[0; 16])) == MessageAuth::Invalid {
            self.drop_packet(
                client,
                src,
                DropReason::BadMessageAuthenticator,
                &"Message-Authenticator does not verify",
            );
            return;
        }
        let Some(entry) = self.admit(l, client, packet, src, out) else {
            return;
        };
        let Some(permit) = self.place(
            &self.limits.accounting,
            DropReason::AccountingBusy.as_str(),
            |c| c.counters.count_drop(DropReason::AccountingBusy),
            client,
            src,
            &entry,
        ) else {
            return;
        };
        let status = packet.get_u32(AttrType::ACCT_STATUS_TYPE);
        let session = packet
            .get(AttrType::ACCT_SESSION_ID)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let shared = self.clone();
        let answer_to = client.clone();
        let socket = l.socket.clone();
        let bytes = packet.bytes().to_vec();
        let stored: handler::Stored = Box::new(move |r| {
            let _permit = permit;
            let client = answer_to;
            // RFC 2866 §4.1: answer only once the record is safely stored.
            match r {
                Ok(()) => {
                    debug!(client = %client.name, ?status, session = ?session, "accounting stored");
                    let packet = Packet::decode(&bytes).expect("decoded before");
                    let reply = build_reply(Code::ACCOUNTING_RESPONSE, &packet, &client, false);
                    inc(&client.counters.accounting_responses);
                    if let Some(reply) = shared.finish_entry(&client, &entry, reply)
                        && let Err(e) = socket.send_to(&reply, src)
                    {
                        // A full send buffer too: the NAS retransmits and
                        // the response cache answers.
                        warn!(client = %client.name, destination = %src, error = %e, "sending reply failed");
                    }
                }
                Err(e) => {
                    entry.finish(None);
                    client.counters.count_drop(DropReason::StoreFailed);
                    error!(client = %client.name, session = ?session, error = %e, "accounting record not stored; no response sent, the NAS will retry");
                }
            }
        });
        self.handler
            .accounting_request(packet, src.ip(), &client.name, now_unix(), stored);
    }

    /// Keeps `reply` in the response cache for retransmissions; the bytes
    /// to send, or `None` when it could not be encoded (counted).
    fn finish_entry(&self, client: &Client, entry: &dedup::Entry, reply: Option<Vec<u8>>) -> Option<Arc<[u8]>> {
        let Some(reply) = reply else {
            self.encode_failed(client, entry);
            return None;
        };
        let reply: Arc<[u8]> = reply.into();
        entry.finish(Some(reply.clone()));
        Some(reply)
    }

    async fn send_reply(
        &self,
        socket: &UdpSocket,
        client: &Client,
        src: SocketAddr,
        entry: &dedup::Entry,
        reply: Option<Vec<u8>>,
    ) {
        let Some(reply) = self.finish_entry(client, entry, reply) else {
            return;
        };
        if let Err(e) = udp::send_to(socket, &reply, src).await {
            warn!(client = %client.name, destination = %src, error = %e, "sending reply failed");
        }
    }
}

/// A reply with Proxy-State copied in order (RFC 2865 §5.33) and, where
/// asked, Message-Authenticator first.
fn build_reply(code: Code, request: &Packet<'_>, client: &Client, with_ma: bool) -> Option<Vec<u8>> {
    build_reply_with(Vec::new(), code, request, with_ma, None::<&NoAttributes>)
        .map(|b| b.finish_response(&client.secret))
}

/// The attributes of a reply that carries none of its own.
struct NoAttributes;

impl Outcome for NoAttributes {
    fn reply(&self) -> Reply {
        Reply::Reject
    }

    fn write_attributes(&self, _: &mut Builder) -> Result<(), crate::proto::EncodeError> {
        Ok(())
    }

    fn log(&self, _: &str) {}
}

/// `build_reply` plus the decision's own attributes, between
/// Message-Authenticator and the copied Proxy-State; not yet signed.
fn build_reply_with(
    buf: Vec<u8>,
    code: Code,
    request: &Packet<'_>,
    with_ma: bool,
    outcome: Option<&impl Outcome>,
) -> Option<Builder> {
    let mut b = Builder::reply_into(buf, code, request, with_ma);
    if let Some(o) = outcome {
        o.write_attributes(&mut b).ok()?;
    }
    for ps in request.get_all(AttrType::PROXY_STATE) {
        b.push(AttrType::PROXY_STATE, ps).ok()?;
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::{BURST_PEAK, BurstEnd, active_readers};

    #[test]
    fn a_burst_is_over_once_when_its_entries_fall_to_a_quarter() {
        let mut b = BurstEnd::default();
        // A steady load, however large, never ends a burst.
        for live in [0, 500, 4000, 4096, 3900, 4096] {
            assert!(!b.over(live), "{live}");
        }
        assert!(!b.over(1025), "not yet a quarter of 4096");
        assert!(b.over(1024));
        // Said once: the peak starts again from there.
        assert!(!b.over(1024));
        // What was left of it ends too (1024 is still a burst), then quiet.
        assert!(b.over(0));
        assert!(!b.over(0));
        // Small fleets coming and going say nothing.
        let mut b = BurstEnd::default();
        for live in [BURST_PEAK - 1, 0, BURST_PEAK - 1, 0] {
            assert!(!b.over(live), "{live}");
        }
        // The next burst is seen on its own.
        let mut b = BurstEnd::default();
        assert!(!b.over(8000));
        assert!(b.over(10));
        assert!(!b.over(2000));
        assert!(!b.over(600));
        assert!(b.over(400), "2000 / 4 = 500");
    }

    #[test]
    fn readers_beyond_the_allowed_cpus_stand_by() {
        // Started with two readers, then confined to one CPU.
        assert_eq!(active_readers(2, Some(1)), 1);
        assert_eq!(active_readers(2, Some(2)), 2);
        // More CPUs than readers: every reader reads, no more.
        assert_eq!(active_readers(2, Some(8)), 2);
        // The mask cannot be read: every reader reads.
        assert_eq!(active_readers(3, None), 3);
        assert_eq!(active_readers(1, Some(1)), 1);
    }
}
