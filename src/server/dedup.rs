//! RFC 5080 §2.2.2 duplicate detection. A request is keyed by the socket it
//! arrived on, its source address and port, and its identifier; the entry
//! remembers the Request Authenticator and, once answered, the reply bytes.
//! A retransmission (same key, same authenticator) gets the identical reply;
//! one that arrives while the first is still being worked on is ignored; a
//! new authenticator under the same key is a new request and replaces the
//! entry. Only packets that passed every check reach this cache.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DedupKey {
    pub listener: u16,
    pub source: SocketAddr,
    pub identifier: u8,
}

#[derive(Debug)]
pub struct Entry {
    authenticator: [u8; 16],
    /// Unset while in progress; `Some(bytes)` once answered; `None` when the
    /// request produced no reply (a failed accounting write), so that the
    /// NAS's retransmission is worked on again.
    reply: OnceLock<Option<Arc<[u8]>>>,
}

impl Entry {
    fn new(authenticator: &[u8; 16]) -> Entry {
        Entry {
            authenticator: *authenticator,
            reply: OnceLock::new(),
        }
    }

    pub fn finish(&self, reply: Option<Arc<[u8]>>) {
        let _ = self.reply.set(reply);
    }
}

/// What to do with an incoming request.
#[derive(Debug)]
pub enum Seen {
    /// A new request: work on it and call `Entry::finish` with the reply.
    New(Arc<Entry>),
    /// A retransmission of an answered request: send these bytes again.
    Answered(Arc<[u8]>),
    /// A retransmission of a request still in progress: ignore it.
    InProgress,
}

/// Shards keep the lock of one short: a lookup and an insert, no I/O.
const SHARDS: usize = 32;

struct Slot {
    entry: Arc<Entry>,
    born: Instant,
}

#[derive(Default)]
struct Shard {
    // Seeded per process; only requests that passed the client and
    // Message-Authenticator checks get here.
    map: HashMap<DedupKey, Slot, foldhash::fast::RandomState>,
    /// One record per key in `map`, oldest first as far as it matters:
    /// expiry and the capacity bound both take from the front, so neither
    /// needs a scan or a background task. A key's next request replaces its
    /// slot in place (a NAS reuses its 256 identifiers over and over)
    /// without a second record, so memory follows the keys in use (sources
    /// × identifiers), not the request rate times the TTL.
    order: VecDeque<(Instant, DedupKey)>,
}

impl Shard {
    fn evict(&mut self, now: Instant, ttl: Duration, capacity: usize) {
        while let Some(&(recorded, key)) = self.order.front() {
            let over = self.order.len() > capacity;
            if !over && now.saturating_duration_since(recorded) < ttl {
                break;
            }
            self.order.pop_front();
            match self.map.get(&key).map(|s| s.born) {
                // Replaced since it was recorded and still live: its record
                // goes to the back with the slot's time.
                Some(born) if !over && born > recorded && now.saturating_duration_since(born) < ttl => {
                    self.order.push_back((born, key));
                }
                _ => {
                    self.map.remove(&key);
                }
            }
        }
        // After a burst from many sources, give the memory back.
        if self.order.capacity() > 64 && self.order.len() < self.order.capacity() / 8 {
            self.order.shrink_to(self.order.len() * 2);
            self.map.shrink_to(self.map.len() * 2);
        }
    }
}

/// The RFC 5080 response cache: a map per shard with its entries in
/// insertion order. Entries live `ttl`; past `capacity` the oldest go,
/// which costs only duplicate detection for them.
pub struct ResponseCache {
    shards: Box<[Mutex<Shard>]>,
    ttl: Duration,
    shard_capacity: usize,
}

impl ResponseCache {
    /// `capacity` bounds memory under a flood.
    pub fn new(ttl: Duration, capacity: u64) -> ResponseCache {
        ResponseCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            ttl,
            shard_capacity: (capacity as usize).div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &DedupKey) -> std::sync::MutexGuard<'_, Shard> {
        // Retransmissions of one request share source and identifier; any
        // spread of the rest over the shards will do.
        let h = (key.source.port() as usize) ^ ((key.identifier as usize) << 3) ^ (key.listener as usize);
        let m = &self.shards[h % SHARDS];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks up and, for a new request, inserts in one step under the
    /// shard's lock, so two tasks reading the same socket cannot both take
    /// a retransmission for new.
    pub fn check(&self, key: DedupKey, authenticator: &[u8; 16]) -> Seen {
        let now = Instant::now();
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        let entry = match shard.map.entry(key) {
            MapEntry::Occupied(mut o) => {
                let s = o.get_mut();
                if s.entry.authenticator == *authenticator && now.saturating_duration_since(s.born) < self.ttl {
                    match s.entry.reply.get() {
                        None => return Seen::InProgress,
                        Some(Some(bytes)) => return Seen::Answered(bytes.clone()),
                        Some(None) => {}
                    }
                }
                s.born = now;
                // By the key's next request the entry is nearly always the
                // cache's alone (its reply sent): reset in place rather
                // than freed and allocated again.
                match Arc::get_mut(&mut s.entry) {
                    Some(e) => *e = Entry::new(authenticator),
                    None => s.entry = Arc::new(Entry::new(authenticator)),
                }
                s.entry.clone()
            }
            MapEntry::Vacant(v) => {
                let entry = Arc::new(Entry::new(authenticator));
                v.insert(Slot {
                    entry: entry.clone(),
                    born: now,
                });
                shard.order.push_back((now, key));
                entry
            }
        };
        shard.evict(now, self.ttl, self.shard_capacity);
        Seen::New(entry)
    }

    /// Drops what has outlived the TTL in every shard, as `check` does in
    /// the one it locks, so that the entries of a burst do not outstay it
    /// when no more requests come (the server calls this once a second);
    /// the entries still live.
    pub fn sweep(&self) -> u64 {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|m| {
                let mut s = m.lock().unwrap_or_else(|p| p.into_inner());
                s.evict(now, self.ttl, self.shard_capacity);
                s.map.len() as u64
            })
            .sum()
    }

    /// Entries still live.
    pub fn len(&self) -> u64 {
        self.sweep()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> DedupKey {
        DedupKey {
            listener: 0,
            source: "127.0.0.1:5000".parse().unwrap(),
            identifier: id,
        }
    }

    #[test]
    fn lifecycle() {
        let c = ResponseCache::new(Duration::from_secs(10), 100);
        let Seen::New(e) = c.check(key(1), &[1; 16]) else {
            panic!()
        };
        assert!(matches!(c.check(key(1), &[1; 16]), Seen::InProgress));
        e.finish(Some(Arc::from(&b"reply"[..])));
        assert_answered(&c, 1, &[1; 16], b"reply");
        // Same key, new authenticator: a new request.
        assert!(matches!(c.check(key(1), &[2; 16]), Seen::New(_)));
        // Another identifier is another key.
        assert!(matches!(c.check(key(2), &[1; 16]), Seen::New(_)));
    }

    #[test]
    fn a_slot_reused_in_place_never_touches_an_entry_still_held() {
        let c = ResponseCache::new(Duration::from_secs(10), 100);
        let Seen::New(first) = c.check(key(1), &[1; 16]) else {
            panic!()
        };
        // Still being worked on when the NAS moves on to a new request.
        let Seen::New(second) = c.check(key(1), &[2; 16]) else {
            panic!()
        };
        assert!(!Arc::ptr_eq(&first, &second));
        first.finish(Some(Arc::from(&b"late"[..])));
        assert!(matches!(c.check(key(1), &[2; 16]), Seen::InProgress));
        second.finish(Some(Arc::from(&b"second"[..])));
        let second_at = Arc::as_ptr(&second);
        drop((first, second));
        // The cache's alone now: the next request gets the same allocation,
        // reset.
        let Seen::New(third) = c.check(key(1), &[3; 16]) else {
            panic!()
        };
        assert!(std::ptr::eq(Arc::as_ptr(&third), second_at));
        assert!(matches!(c.check(key(1), &[3; 16]), Seen::InProgress));
        third.finish(Some(Arc::from(&b"third"[..])));
        assert_answered(&c, 1, &[3; 16], b"third");
    }

    fn assert_answered(c: &ResponseCache, id: u8, authenticator: &[u8; 16], reply: &[u8]) {
        match c.check(key(id), authenticator) {
            Seen::Answered(b) => assert_eq!(&b[..], reply),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unanswered_requests_are_worked_on_again() {
        let c = ResponseCache::new(Duration::from_secs(10), 100);
        let Seen::New(e) = c.check(key(1), &[1; 16]) else {
            panic!()
        };
        e.finish(None);
        assert!(matches!(c.check(key(1), &[1; 16]), Seen::New(_)));
    }

    #[test]
    fn capacity_bounds_the_entries() {
        let c = ResponseCache::new(Duration::from_secs(10), 64);
        for port in 0..10_000u16 {
            let k = DedupKey {
                listener: 0,
                source: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                identifier: (port % 256) as u8,
            };
            assert!(matches!(c.check(k, &[1; 16]), Seen::New(_)));
        }
        assert!(c.len() <= 64 + SHARDS as u64, "{}", c.len());
    }

    #[test]
    fn a_reused_identifier_costs_no_more_memory() {
        // A NAS cycling through its identifiers: 100,000 requests over 256
        // keys keep 256 slots and 256 records, however fast they come.
        let c = ResponseCache::new(Duration::from_secs(30), 1 << 18);
        for i in 0..100_000u32 {
            let Seen::New(e) = c.check(key(i as u8), &(i as u128).to_le_bytes()) else {
                panic!("request {i} taken for a duplicate")
            };
            e.finish(Some(Arc::from(&b"r"[..])));
        }
        let (slots, records): (usize, usize) = c
            .shards
            .iter()
            .map(|m| {
                let s = m.lock().unwrap();
                (s.map.len(), s.order.len())
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!((slots, records), (256, 256));
    }

    #[test]
    fn a_replaced_entry_outlives_the_record_of_the_one_it_replaced() {
        let c = ResponseCache::new(Duration::from_millis(200), 100);
        let Seen::New(e) = c.check(key(1), &[1; 16]) else {
            panic!()
        };
        e.finish(Some(Arc::from(&b"first"[..])));
        std::thread::sleep(Duration::from_millis(120));
        let Seen::New(e) = c.check(key(1), &[2; 16]) else {
            panic!()
        };
        e.finish(Some(Arc::from(&b"second"[..])));
        // The first request's time is past the TTL; the second's is not.
        std::thread::sleep(Duration::from_millis(120));
        assert!(matches!(c.check(key(2), &[9; 16]), Seen::New(_)));
        match c.check(key(1), &[2; 16]) {
            Seen::Answered(b) => assert_eq!(&b[..], b"second"),
            other => panic!("{other:?}"),
        }
        // And it expires in its turn.
        std::thread::sleep(Duration::from_millis(220));
        assert!(matches!(c.check(key(1), &[2; 16]), Seen::New(_)));
    }

    #[test]
    fn entries_expire() {
        let c = ResponseCache::new(Duration::from_millis(50), 100);
        let Seen::New(e) = c.check(key(1), &[1; 16]) else {
            panic!()
        };
        e.finish(Some(Arc::from(&b"r"[..])));
        std::thread::sleep(Duration::from_millis(120));
        assert!(matches!(c.check(key(1), &[1; 16]), Seen::New(_)));
    }

    #[test]
    fn a_sweep_gives_back_a_burst_when_no_request_follows() {
        let c = ResponseCache::new(Duration::from_millis(50), 1 << 18);
        for port in 0..20_000u16 {
            let k = DedupKey {
                listener: 0,
                source: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                identifier: 7,
            };
            let Seen::New(e) = c.check(k, &[1; 16]) else { panic!() };
            e.finish(Some(Arc::from(&b"reply"[..])));
        }
        let held = |c: &ResponseCache| -> (usize, usize) {
            c.shards
                .iter()
                .map(|m| {
                    let s = m.lock().unwrap();
                    (s.map.capacity(), s.order.capacity())
                })
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        assert!(held(&c).1 >= 20_000);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(c.sweep(), 0);
        let (map, order) = held(&c);
        assert!(
            map < 2_000 && order < 2_000,
            "{map} map slots, {order} records held after the sweep"
        );
    }
}
