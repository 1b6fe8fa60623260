//! RFC 5080 §2.2.2 duplicate detection. A request is keyed by the socket it
//! arrived on, its source address and port, and its identifier; the entry
//! remembers the Request Authenticator and, once answered, the reply bytes.
//! A retransmission (same key, same authenticator) gets the identical reply;
//! one that arrives while the first is still being worked on is ignored; a
//! new authenticator under the same key is a new request and replaces the
//! entry. Only packets that passed every check reach this cache.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use moka::sync::Cache;

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

pub struct ResponseCache {
    cache: Cache<DedupKey, Arc<Entry>>,
}

impl ResponseCache {
    /// `capacity` bounds memory under a flood; past it the oldest entries
    /// go, which costs only duplicate detection for them.
    pub fn new(ttl: Duration, capacity: u64) -> ResponseCache {
        ResponseCache {
            cache: Cache::builder().max_capacity(capacity).time_to_live(ttl).build(),
        }
    }

    /// Callers must not look up one key from two tasks at once; the server
    /// guarantees this by calling it from the one task reading the socket
    /// the key names.
    pub fn check(&self, key: DedupKey, authenticator: &[u8; 16]) -> Seen {
        if let Some(e) = self.cache.get(&key)
            && e.authenticator == *authenticator
        {
            match e.reply.get() {
                None => return Seen::InProgress,
                Some(Some(bytes)) => return Seen::Answered(bytes.clone()),
                Some(None) => {}
            }
        }
        let e = Arc::new(Entry {
            authenticator: *authenticator,
            reply: OnceLock::new(),
        });
        self.cache.insert(key, e.clone());
        Seen::New(e)
    }

    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
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
        match c.check(key(1), &[1; 16]) {
            Seen::Answered(b) => assert_eq!(&b[..], b"reply"),
            other => panic!("{other:?}"),
        }
        // Same key, new authenticator: a new request.
        assert!(matches!(c.check(key(1), &[2; 16]), Seen::New(_)));
        // Another identifier is another key.
        assert!(matches!(c.check(key(2), &[1; 16]), Seen::New(_)));
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
    fn entries_expire() {
        let c = ResponseCache::new(Duration::from_millis(50), 100);
        let Seen::New(e) = c.check(key(1), &[1; 16]) else {
            panic!()
        };
        e.finish(Some(Arc::from(&b"r"[..])));
        std::thread::sleep(Duration::from_millis(120));
        assert!(matches!(c.check(key(1), &[1; 16]), Seen::New(_)));
    }
}
