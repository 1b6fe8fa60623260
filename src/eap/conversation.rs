//! The table of EAP conversations in progress, keyed by the RADIUS State
//! attribute (RFC 2865 §5.24): every Access-Challenge carries one, the NAS
//! echoes it in the next Access-Request.
//!
//! A State is 16 random bytes (chosen by the caller, so tests are
//! deterministic) and is bound to the NAS that received it and the station
//! (Calling-Station-Id) it was for: the same value presented by another
//! client or station is refused, so a leaked State cannot be used to step
//! into someone else's TLS handshake. Conversations expire after
//! [`IDLE_TIMEOUT`] without a round (FreeRADIUS `timer_expire`), and their
//! number is capped so a flood of Identity Responses cannot grow memory
//! without bound.
//!
//! Thread safety: one `Mutex` around a `HashMap`. It is held only for a map
//! operation, never while a method runs: [`Conversations::take`] lends the
//! method state `T` out (the entry stays, marked busy, still counted against
//! the cap) and [`Conversations::restore`] puts it back. TLS work therefore
//! happens outside the lock, and a second request with the same State
//! meanwhile gets [`EapError::Busy`] instead of feeding the TLS engine the
//! same bytes twice (retransmits are the RFC 5080 cache's job). Sharding is
//! not worth it at RADIUS request rates with such short critical sections.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::EapError;

/// FreeRADIUS `timer_expire` default (EAP-NOTES §1).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default cap on live conversations.
pub const DEFAULT_MAX_CONVERSATIONS: usize = 4096;

/// A State attribute value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct StateId(pub [u8; 16]);

impl StateId {
    /// The State from an Access-Request; `None` unless exactly 16 bytes,
    /// which every State we issue is.
    pub fn from_attr(value: &[u8]) -> Option<StateId> {
        value.try_into().ok().map(StateId)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// Who a conversation belongs to: the client (NAS) name from the client table
/// and the Calling-Station-Id (empty when the NAS sent none).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Peer {
    pub nas: String,
    pub calling_station_id: Vec<u8>,
}

#[derive(Debug)]
struct Entry<T> {
    peer: Peer,
    last_seen: Instant,
    /// `None` while lent out by `take`.
    method: Option<T>,
}

#[derive(Debug)]
struct Inner<T> {
    map: HashMap<StateId, Entry<T>>,
    refused: u64,
}

/// Live EAP conversations; `T` is the method's state (TLS, later).
#[derive(Debug)]
pub struct Conversations<T> {
    inner: Mutex<Inner<T>>,
    max: usize,
    idle: Duration,
}

impl<T> Conversations<T> {
    pub fn new(max: usize, idle: Duration) -> Self {
        Conversations {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                refused: 0,
            }),
            max,
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // No code panics while holding the lock; if one ever did, the map
        // itself is still consistent (every operation is a single insert or
        // remove), so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expired(&self, e: &Entry<T>, now: Instant) -> bool {
        now.saturating_duration_since(e.last_seen) >= self.idle
    }

    /// Starts a conversation under `state` (16 fresh random bytes). When the
    /// table is full, expired entries are swept first; if it is still full
    /// the conversation is refused and counted.
    pub fn insert(&self, state: [u8; 16], peer: Peer, now: Instant, method: T) -> Result<StateId, EapError> {
        let id = StateId(state);
        let mut inner = self.lock();
        if inner.map.len() >= self.max {
            inner.map.retain(|_, e| !self.expired(e, now));
        }
        if inner.map.len() >= self.max {
            inner.refused += 1;
            return Err(EapError::TooManyConversations(self.max));
        }
        if inner.map.contains_key(&id) {
            return Err(EapError::StateCollision);
        }
        inner.map.insert(
            id,
            Entry {
                peer,
                last_seen: now,
                method: Some(method),
            },
        );
        Ok(id)
    }

    /// Lends out the method state of the conversation `state`, if `peer` is
    /// the one it was started for and it has not expired. A wrong peer
    /// leaves the conversation untouched (it must not be able to end it).
    pub fn take(&self, state: &StateId, peer: &Peer, now: Instant) -> Result<T, EapError> {
        let mut inner = self.lock();
        let entry = inner.map.get_mut(state).ok_or(EapError::UnknownState)?;
        if entry.peer != *peer {
            return Err(EapError::WrongPeer);
        }
        if self.expired(entry, now) {
            inner.map.remove(state);
            return Err(EapError::Expired);
        }
        let method = entry.method.take().ok_or(EapError::Busy)?;
        entry.last_seen = now;
        Ok(method)
    }

    /// Returns the method state after a round. Fails (dropping `method`) if
    /// the conversation was removed or expired meanwhile.
    pub fn restore(&self, state: &StateId, now: Instant, method: T) -> Result<(), EapError> {
        let mut inner = self.lock();
        let entry = inner.map.get_mut(state).ok_or(EapError::UnknownState)?;
        if entry.method.is_some() {
            return Err(EapError::StateCollision);
        }
        entry.method = Some(method);
        entry.last_seen = now;
        Ok(())
    }

    /// Ends a conversation (after Success or Failure).
    pub fn remove(&self, state: &StateId) -> Option<T> {
        self.lock().map.remove(state).and_then(|e| e.method)
    }

    /// Drops every expired conversation; returns how many. For a periodic
    /// sweep; `insert` also sweeps when the table is full.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let before = inner.map.len();
        inner.map.retain(|_, e| !self.expired(e, now));
        before - inner.map.len()
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Conversations refused because the table was full, since start.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }
}

impl<T> Default for Conversations<T> {
    fn default() -> Self {
        Conversations::new(DEFAULT_MAX_CONVERSATIONS, IDLE_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(nas: &str, station: &str) -> Peer {
        Peer {
            nas: nas.into(),
            calling_station_id: station.as_bytes().to_vec(),
        }
    }

    #[test]
    fn take_restore_remove() {
        let t0 = Instant::now();
        let c = Conversations::<u32>::default();
        let ap = peer("ap1", "02-00-00-00-00-01");
        let s = c.insert([1; 16], ap.clone(), t0, 7).unwrap();
        assert_eq!(StateId::from_attr(&[1; 16]), Some(s));
        assert_eq!(StateId::from_attr(&[1; 15]), None);
        assert_eq!(c.take(&s, &ap, t0), Ok(7));
        assert_eq!(c.take(&s, &ap, t0), Err(EapError::Busy));
        assert_eq!(c.len(), 1, "busy entries still count");
        c.restore(&s, t0, 8).unwrap();
        assert_eq!(c.restore(&s, t0, 9), Err(EapError::StateCollision));
        assert_eq!(c.remove(&s), Some(8));
        assert_eq!(c.take(&s, &ap, t0), Err(EapError::UnknownState));
        assert!(c.is_empty());
    }

    #[test]
    fn bound_to_nas_and_station() {
        let t0 = Instant::now();
        let c = Conversations::<()>::default();
        let ap = peer("ap1", "02-00-00-00-00-01");
        let s = c.insert([2; 16], ap.clone(), t0, ()).unwrap();
        assert_eq!(
            c.take(&s, &peer("ap2", "02-00-00-00-00-01"), t0),
            Err(EapError::WrongPeer)
        );
        assert_eq!(
            c.take(&s, &peer("ap1", "02-00-00-00-00-02"), t0),
            Err(EapError::WrongPeer)
        );
        assert_eq!(c.take(&s, &peer("ap1", ""), t0), Err(EapError::WrongPeer));
        assert_eq!(c.take(&s, &ap, t0), Ok(()), "refusals left it alone");
        assert_eq!(c.insert([2; 16], ap, t0, ()), Err(EapError::StateCollision));
    }

    #[test]
    fn expires_after_idle() {
        let t0 = Instant::now();
        let c = Conversations::<()>::default();
        let ap = peer("ap1", "s");
        let s = c.insert([3; 16], ap.clone(), t0, ()).unwrap();
        // Each round pushes expiry out.
        c.take(&s, &ap, t0 + Duration::from_secs(59)).unwrap();
        c.restore(&s, t0 + Duration::from_secs(59), ()).unwrap();
        assert_eq!(c.take(&s, &ap, t0 + Duration::from_secs(118)), Ok(()));
        c.restore(&s, t0 + Duration::from_secs(118), ()).unwrap();
        assert_eq!(c.take(&s, &ap, t0 + Duration::from_secs(178)), Err(EapError::Expired));
        assert!(c.is_empty());
        assert_eq!(c.restore(&s, t0, ()), Err(EapError::UnknownState));

        c.insert([4; 16], ap.clone(), t0, ()).unwrap();
        c.insert([5; 16], ap, t0 + Duration::from_secs(30), ()).unwrap();
        assert_eq!(c.purge_expired(t0 + Duration::from_secs(60)), 1);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn cap_refuses_and_counts() {
        let t0 = Instant::now();
        let c = Conversations::<()>::new(2, IDLE_TIMEOUT);
        let ap = peer("ap1", "s");
        c.insert([1; 16], ap.clone(), t0, ()).unwrap();
        c.insert([2; 16], ap.clone(), t0 + Duration::from_secs(10), ()).unwrap();
        assert_eq!(
            c.insert([3; 16], ap.clone(), t0, ()),
            Err(EapError::TooManyConversations(2))
        );
        assert_eq!(c.refused(), 1);
        // Once the first has expired, a full table makes room.
        c.insert([3; 16], ap, t0 + Duration::from_secs(60), ()).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.refused(), 1);
    }
}
