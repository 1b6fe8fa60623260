//! Where the transport meets the logic behind it. The server verifies a
//! packet (client, framing, authenticators, BlastRADIUS rules, duplicates)
//! and hands it to a [`Handler`]; it knows nothing of directories, policy
//! or the store. `auth` decides Access-Requests; the composition root puts
//! that together with where accounting goes.

use std::future::Future;
use std::net::IpAddr;

use crate::proto::packet::EncodeError;
use crate::proto::{Builder, ClientSecret, Packet};

/// One kind of slow work and how much of it may be in progress at once.
/// Beyond `capacity` (or a NAS's half of it) requests are shed and counted
/// under `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowKind {
    /// The drop reason in counters and logs, for example `argon2_busy`.
    pub reason: &'static str,
    pub capacity: usize,
}

/// Which reply an Access-Request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Accept,
    Reject,
    /// Another round is needed (EAP): Access-Challenge.
    Challenge,
}

/// The decision on one Access-Request, as the server needs it: which code
/// to answer with, the attributes to put in the reply, and the log line.
pub trait Outcome: Send {
    fn reply(&self) -> Reply;
    /// Writes the reply's own attributes: after Message-Authenticator, before
    /// the copied Proxy-State.
    fn write_attributes(&self, reply: &mut Builder) -> Result<(), EncodeError>;
    /// Logs the decision for the client named.
    fn log(&self, client: &str);
}

/// A decision that has to wait for slow work (argon2, a network check).
pub trait Slow: Send + 'static {
    type Outcome: Outcome;
    /// Index into [`Handler::slow_kinds`]: the bound it is admitted under.
    fn kind(&self) -> usize;
    fn finish(self) -> impl Future<Output = Self::Outcome> + Send;
}

/// Why an accounting record was not kept; the NAS gets no answer and
/// retransmits.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccountingFailed(pub String);

/// How an accounting record's write went: called once, where the write
/// finished ([`Handler::accounting_request`]).
pub type Stored = Box<dyn FnOnce(Result<(), AccountingFailed>) + Send>;

/// The logic behind the server.
pub trait Handler: Send + Sync + 'static {
    type Outcome: Outcome;
    type Slow: Slow<Outcome = Self::Outcome>;
    /// What `warm_key` gives and `warm` takes for one request.
    type Warm: Copy + Send + 'static;

    /// The kinds of slow work [`Slow::kind`] indexes, with their bounds.
    fn slow_kinds(&self) -> Vec<SlowKind>;

    /// Decides from memory when it can; otherwise hands back the slow part,
    /// which the server runs in a task under its kind's bound. `client` is
    /// the NAS's name in the client table (EAP binds its State to it).
    fn access_request(
        &self,
        packet: &Packet<'_>,
        secret: &ClientSecret,
        client: &str,
    ) -> Result<Self::Outcome, Self::Slow>;

    /// Before any request of a receive batch is decided: what `warm` will
    /// take to load what deciding `packet` reads (`None`: nothing). May
    /// start loading already; must not wait or allocate.
    fn warm_key(&self, packet: &Packet<'_>) -> Option<Self::Warm> {
        let _ = packet;
        None
    }

    /// Loads what deciding the batch whose `warm_key`s these are will
    /// read, so that its lookups' cache misses overlap instead of coming
    /// one after the other. A hint: deciding never depends on it.
    fn warm(&self, keys: &[Self::Warm]) {
        let _ = keys;
    }

    /// Called once per decided Access-Request, after its reply is encoded
    /// and before it is sent (never for a retransmission answered from the
    /// response cache). Must not wait: the authentication history only
    /// queues a record here.
    fn decided(&self, outcome: &Self::Outcome, packet: &Packet<'_>, client: &str, source: IpAddr) {
        let _ = (outcome, packet, client, source);
    }

    /// Keeps a verified Accounting-Request and calls `stored` once it is
    /// safely stored, or could not be (RFC 2866 §4.1: answer only then).
    /// `now` is the receive time. Called on a reader thread, so it must not
    /// wait; `stored` is called exactly once, on whatever thread finished
    /// the write, and does not wait either.
    fn accounting_request(&self, packet: &Packet<'_>, source: IpAddr, client: &str, now: i64, stored: Stored);
}
