//! The Disconnect-Request client (RFC 5176): its own UDP socket, identifiers
//! per NAS address, three tries with backoff, answers matched by identifier
//! and source and verified before they count. What does not match or verify
//! is dropped and counted; it never ends a wait.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::proto::ClientSecret;
use crate::proto::dynauth::{DisconnectReply, DisconnectRequest, error_cause_name, verify_reply};

/// How long to wait for an answer after each try: three tries, 7 s in all.
pub const BACKOFF: [Duration; 3] = [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];

/// Where a NAS takes Disconnect-Requests, and the secret it shares for them.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub secret: ClientSecret,
}

/// How one Disconnect-Request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ack,
    Nak(Option<u32>),
    /// No verified answer after every try.
    Timeout,
    /// The NAS's client has no `coa_port`: nothing was sent.
    NoCoaPort,
    /// The request could not be built or sent.
    Failed(String),
}

impl Outcome {
    /// As recorded on the session and shown by `sessions list`.
    pub fn text(&self) -> String {
        match self {
            Outcome::Ack => "ack".into(),
            Outcome::Nak(Some(c)) => format!("nak: Error-Cause {c} ({})", error_cause_name(*c)),
            Outcome::Nak(None) => "nak: no Error-Cause".into(),
            Outcome::Timeout => format!("timeout: no answer to {} tries", BACKOFF.len()),
            Outcome::NoCoaPort => "not sent: the NAS's client has no coa_port".into(),
            Outcome::Failed(e) => format!("not sent: {e}"),
        }
    }

    /// The label in `/metrics`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ack => "ack",
            Outcome::Nak(_) => "nak",
            Outcome::Timeout => "timeout",
            Outcome::NoCoaPort => "no_coa_port",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Counters {
    /// Datagrams sent, first tries and retransmissions.
    pub sent: AtomicU64,
    pub retransmitted: AtomicU64,
    /// Answers dropped: from an address no request went to.
    pub unknown_source: AtomicU64,
    /// Answers dropped: authenticators do not verify, or not an ACK/NAK.
    pub unverified: AtomicU64,
    /// Answers dropped: for a request already answered or given up.
    pub late_or_duplicate: AtomicU64,
}

struct Waiting {
    request_auth: [u8; 16],
    secret: ClientSecret,
    /// Taken by the first verified answer.
    answer: Option<oneshot::Sender<DisconnectReply>>,
}

#[derive(Default)]
struct Book {
    /// Requests in flight by (NAS address, identifier).
    waiting: HashMap<(SocketAddr, u8), Waiting>,
    /// The next identifier to try, per NAS address.
    next_id: HashMap<SocketAddr, u8>,
    /// Requests in flight per NAS address (at most [`MAX_IN_FLIGHT`]).
    in_flight: HashMap<SocketAddr, usize>,
    /// Addresses sent a request (bounded by [`MAX_CONTACTED`]): an answer
    /// from one of them that matches nothing in flight is late or a
    /// duplicate, from anywhere else it is from an unknown source.
    contacted: std::collections::HashSet<SocketAddr>,
}

/// Requests in flight to one NAS address at a time. A switch's CPU and
/// socket buffer take a few dozen at once, not 256: past that, requests
/// would be dropped there and cost a retransmission each.
pub const MAX_IN_FLIGHT: usize = 32;

/// Past this many NAS addresses, `contacted` starts over.
const MAX_CONTACTED: usize = 65_536;

/// Sends Disconnect-Requests and waits for their answers. One per server;
/// its receive task runs until the token it was started with is cancelled.
pub struct Disconnector {
    v4: Arc<UdpSocket>,
    v6: Option<Arc<UdpSocket>>,
    book: Mutex<Book>,
    /// Wakes senders waiting for a free identifier of a busy NAS.
    freed: Notify,
    pub counters: Counters,
    backoff: Vec<Duration>,
}

impl Disconnector {
    /// Binds its own sockets (any address, an ephemeral port) and starts
    /// the task that reads answers. Must be called inside the runtime.
    pub async fn start(shutdown: CancellationToken) -> std::io::Result<Arc<Disconnector>> {
        Disconnector::start_with(shutdown, BACKOFF.to_vec()).await
    }

    /// `start` with another retransmission schedule (tests, benches).
    pub async fn start_with(shutdown: CancellationToken, backoff: Vec<Duration>) -> std::io::Result<Arc<Disconnector>> {
        let v4 = Arc::new(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?);
        let v6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).await.ok().map(Arc::new);
        let d = Arc::new(Disconnector {
            v4: v4.clone(),
            v6: v6.clone(),
            book: Mutex::new(Book::default()),
            freed: Notify::new(),
            counters: Counters::default(),
            backoff,
        });
        for socket in std::iter::once(v4).chain(v6) {
            let d = Arc::downgrade(&d);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let got = tokio::select! {
                        () = shutdown.cancelled() => return,
                        got = socket.recv_from(&mut buf) => got,
                    };
                    let Some(d) = d.upgrade() else { return };
                    match got {
                        Ok((n, from)) => d.on_answer(&buf[..n], from),
                        Err(e) => tracing::debug!(error = %e, "disconnect socket: receive failed"),
                    }
                }
            });
        }
        Ok(d)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_answer(&self, datagram: &[u8], from: SocketAddr) {
        let from = canonical(from);
        let Some(&id) = datagram.get(1) else {
            self.counters.unverified.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut book = self.book();
        let Some(w) = book.waiting.get_mut(&(from, id)) else {
            let known = book.contacted.contains(&from);
            drop(book);
            let c = if known {
                &self.counters.late_or_duplicate
            } else {
                &self.counters.unknown_source
            };
            c.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, id, known, "dropped an answer that matches no Disconnect-Request in flight");
            return;
        };
        match verify_reply(datagram, &w.request_auth, &w.secret) {
            Ok(reply) => match w.answer.take() {
                Some(tx) => {
                    let _ = tx.send(reply);
                }
                None => {
                    self.counters.late_or_duplicate.fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(e) => {
                drop(book);
                self.counters.unverified.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%from, id, error = %e, "dropped an answer to a Disconnect-Request that does not verify");
            }
        }
    }

    /// Takes a free identifier for `addr`, waiting while [`MAX_IN_FLIGHT`]
    /// requests to it are in flight (or all 256 identifiers are taken).
    async fn reserve(&self, addr: SocketAddr, w: Waiting) -> u8 {
        let mut w = Some(w);
        loop {
            let notified = self.freed.notified();
            {
                let mut book = self.book();
                if book.contacted.len() >= MAX_CONTACTED {
                    book.contacted.clear();
                }
                book.contacted.insert(addr);
                let busy = book.in_flight.get(&addr).copied().unwrap_or(0) >= MAX_IN_FLIGHT;
                let start = *book.next_id.get(&addr).unwrap_or(&0);
                for step in 0..=255u8 {
                    if busy {
                        break;
                    }
                    let id = start.wrapping_add(step);
                    if let std::collections::hash_map::Entry::Vacant(slot) = book.waiting.entry((addr, id)) {
                        slot.insert(w.take().expect("inserted once"));
                        book.next_id.insert(addr, id.wrapping_add(1));
                        *book.in_flight.entry(addr).or_insert(0) += 1;
                        return id;
                    }
                }
            }
            notified.await;
        }
    }

    fn release(&self, addr: SocketAddr, id: u8) {
        let mut book = self.book();
        book.waiting.remove(&(addr, id));
        let left = book.in_flight.get_mut(&addr).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            book.in_flight.remove(&addr);
            book.next_id.remove(&addr);
        }
        drop(book);
        self.freed.notify_waiters();
    }

    /// Sends `request` to `target` and waits for a verified answer, trying
    /// again (same identifier and bytes, RFC 5080 §2.2.1) after each wait
    /// of the backoff.
    pub async fn send(&self, target: &Target, request: &DisconnectRequest) -> Outcome {
        let addr = canonical(target.addr);
        let socket = match (addr, &self.v6) {
            (SocketAddr::V4(_), _) => &self.v4,
            (SocketAddr::V6(_), Some(s)) => s,
            (SocketAddr::V6(_), None) => return Outcome::Failed("no IPv6 socket for Disconnect".into()),
        };
        let (tx, mut rx) = oneshot::channel();
        // The authenticator depends on the identifier: reserved with a
        // placeholder, filled in once the packet is built.
        let id = self
            .reserve(
                addr,
                Waiting {
                    request_auth: [0; 16],
                    secret: target.secret.clone(),
                    answer: Some(tx),
                },
            )
            .await;
        let bytes = match request.encode(id, &target.secret) {
            Ok(b) => b,
            Err(e) => {
                self.release(addr, id);
                return Outcome::Failed(e.to_string());
            }
        };
        if let Some(w) = self.book().waiting.get_mut(&(addr, id)) {
            w.request_auth.copy_from_slice(&bytes[4..20]);
        }
        let mut outcome = Outcome::Timeout;
        for (try_no, wait) in self.backoff.iter().enumerate() {
            if let Err(e) = socket.send_to(&bytes, addr).await {
                tracing::warn!(nas = %addr, error = %e, "sending a Disconnect-Request failed");
            }
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            if try_no > 0 {
                self.counters.retransmitted.fetch_add(1, Ordering::Relaxed);
            }
            match tokio::time::timeout(*wait, &mut rx).await {
                Ok(Ok(DisconnectReply::Ack)) => {
                    outcome = Outcome::Ack;
                    break;
                }
                Ok(Ok(DisconnectReply::Nak(cause))) => {
                    outcome = Outcome::Nak(cause);
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
        self.release(addr, id);
        outcome
    }
}

/// IPv4-mapped IPv6 addresses as IPv4, so that a NAS is one key.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Code;
    use crate::proto::dynauth::testing::reply;

    fn request() -> DisconnectRequest {
        DisconnectRequest {
            user_name: Some("u".into()),
            acct_session_id: Some("s".into()),
            ..DisconnectRequest::default()
        }
    }

    /// A NAS that answers the first request with a forged ACK (wrong
    /// secret), then the real answer twice (a duplicate), while a stranger
    /// sends an ACK from another address: only the real answer counts.
    #[tokio::test]
    async fn answers_are_matched_verified_and_drops_counted() {
        let shutdown = CancellationToken::new();
        let d = Disconnector::start_with(shutdown.clone(), vec![Duration::from_millis(500); 3])
            .await
            .unwrap();
        let nas = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let secret = ClientSecret::new(b"coa");
        let target = Target {
            addr: nas.local_addr().unwrap(),
            secret: secret.clone(),
        };
        let wrong = ClientSecret::new(b"not-the-secret");
        let nas_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let (n, from) = nas.recv_from(&mut buf).await.unwrap();
            let req = buf[..n].to_vec();
            stranger
                .send_to(&reply(Code::DISCONNECT_ACK, &req, &secret, None), from)
                .await
                .unwrap();
            nas.send_to(&reply(Code::DISCONNECT_ACK, &req, &wrong, None), from)
                .await
                .unwrap();
            let nak = reply(Code::DISCONNECT_NAK, &req, &secret, Some(503));
            nas.send_to(&nak, from).await.unwrap();
            nas.send_to(&nak, from).await.unwrap();
            nas
        });
        let outcome = d.send(&target, &request()).await;
        assert_eq!(outcome, Outcome::Nak(Some(503)));
        assert!(outcome.text().contains("Session Context Not Found"));
        let nas = nas_task.await.unwrap();
        // The duplicate arrives after the request is done.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = &d.counters;
        assert_eq!(c.sent.load(Ordering::Relaxed), 1);
        assert_eq!(c.unknown_source.load(Ordering::Relaxed), 1);
        assert_eq!(c.unverified.load(Ordering::Relaxed), 1);
        assert_eq!(c.late_or_duplicate.load(Ordering::Relaxed), 1);

        // No answer at all: three tries, then a timeout.
        let silent = Target {
            addr: nas.local_addr().unwrap(),
            secret: ClientSecret::new(b"coa"),
        };
        let d = Disconnector::start_with(shutdown.clone(), vec![Duration::from_millis(50); 3])
            .await
            .unwrap();
        assert_eq!(d.send(&silent, &request()).await, Outcome::Timeout);
        assert_eq!(d.counters.sent.load(Ordering::Relaxed), 3);
        assert_eq!(d.counters.retransmitted.load(Ordering::Relaxed), 2);
        shutdown.cancel();
    }

    /// One NAS is never sent more than MAX_IN_FLIGHT requests at once.
    #[tokio::test]
    async fn requests_in_flight_to_one_nas_are_bounded() {
        let shutdown = CancellationToken::new();
        let d = Disconnector::start_with(shutdown.clone(), vec![Duration::from_secs(2)])
            .await
            .unwrap();
        let nas = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = Target {
            addr: nas.local_addr().unwrap(),
            secret: ClientSecret::new(b"coa"),
        };
        let mut sends = tokio::task::JoinSet::new();
        for _ in 0..MAX_IN_FLIGHT + 8 {
            let (d, t) = (d.clone(), target.clone());
            sends.spawn(async move { d.send(&t, &request()).await });
        }
        // The first ones are sent at once; the others wait for a place,
        // which frees only when one gives up (2 s).
        while d.counters.sent.load(Ordering::Relaxed) < MAX_IN_FLIGHT as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(d.counters.sent.load(Ordering::Relaxed), MAX_IN_FLIGHT as u64);
        while let Some(o) = sends.join_next().await {
            assert_eq!(o.unwrap(), Outcome::Timeout);
        }
        // The others went once the first ones gave up.
        assert_eq!(d.counters.sent.load(Ordering::Relaxed), MAX_IN_FLIGHT as u64 + 8);
        shutdown.cancel();
    }
}
