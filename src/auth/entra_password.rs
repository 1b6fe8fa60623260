//! PAP for Entra ID users. Entra ID exposes no password hashes, so a
//! password is checked live with the resource-owner password grant — a
//! network round trip that lands in the tenant's sign-in log and counts
//! towards smart lockout. Two things keep that bounded:
//!
//! - a cache of successful checks that keeps only an argon2 hash of the
//!   password, valid while the account stays enabled and its
//!   `lastPasswordChangeDateTime` is unchanged;
//! - a local limit on failures per user, so that a switch retrying a wrong
//!   password cannot lock the account in Entra ID.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use moka::sync::Cache;

use super::pool::CpuPool;

/// What the tenant said about a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordVerdict {
    Accepted,
    /// The tenant refused: wrong password, disabled, MFA required, locked,
    /// expired... with the reason for the log and Reply-Message.
    Rejected(String),
    /// The tenant could not be asked (network, timeout, throttling).
    Unavailable(String),
}

/// Asks the tenant. Implemented over Microsoft Graph's token endpoint.
pub trait PasswordChecker: Send + Sync {
    fn check<'a>(
        &'a self,
        upn: &'a str,
        password: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = PasswordVerdict> + Send + 'a>>;
}

struct Cached {
    phc: String,
    last_password_change: Option<String>,
}

/// Successful checks, as argon2 hashes.
pub struct PasswordCache {
    entries: Cache<String, Arc<Cached>>,
}

impl PasswordCache {
    pub fn new(ttl: Duration, capacity: u64) -> PasswordCache {
        PasswordCache {
            entries: Cache::builder().time_to_live(ttl).max_capacity(capacity).build(),
        }
    }

    /// True when `password` matches the cached hash for this account and
    /// the password has not changed since. Runs argon2 on `pool`.
    pub async fn matches(
        &self,
        pool: &CpuPool,
        object_id: &str,
        last_password_change: Option<&str>,
        password: &[u8],
    ) -> bool {
        let Some(c) = self.entries.get(object_id) else {
            return false;
        };
        if c.last_password_change.as_deref() != last_password_change {
            self.entries.invalidate(object_id);
            return false;
        }
        let pw = password.to_vec();
        pool.run(move || {
            let ok = super::argon2_mem::verify(&c.phc, &pw);
            let mut pw = pw;
            zeroize::Zeroize::zeroize(&mut pw);
            ok
        })
        .await
        .unwrap_or(false)
    }

    /// Remembers a password the tenant accepted.
    pub async fn remember(&self, pool: &CpuPool, object_id: &str, last_password_change: Option<&str>, password: &[u8]) {
        let pw = password.to_vec();
        let phc = pool
            .run(move || {
                let h = super::argon2_mem::hash(&pw);
                let mut pw = pw;
                zeroize::Zeroize::zeroize(&mut pw);
                h
            })
            .await
            .flatten();
        if let Some(phc) = phc {
            self.entries.insert(
                object_id.to_string(),
                Arc::new(Cached {
                    phc,
                    last_password_change: last_password_change.map(String::from),
                }),
            );
        }
    }

    /// Forgets an account (disabled, deleted, password changed).
    pub fn forget(&self, object_id: &str) {
        self.entries.invalidate(object_id);
    }

    /// Forgets every account `keep` refuses; returns how many.
    pub fn forget_unless(&self, keep: &dyn Fn(&str) -> bool) -> usize {
        let gone: Vec<Arc<String>> = self
            .entries
            .iter()
            .filter(|(id, _)| !keep(id))
            .map(|(id, _)| id)
            .collect();
        for id in &gone {
            self.entries.invalidate(id.as_str());
        }
        gone.len()
    }

    /// Accounts remembered.
    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failures per user within a window; beyond `max`, the server stops
/// asking the tenant until the window passes.
pub struct FailureLimiter {
    failures: Cache<String, Arc<AtomicU32>>,
    max: u32,
}

impl FailureLimiter {
    pub fn new(max: u32, window: Duration) -> FailureLimiter {
        FailureLimiter {
            failures: Cache::builder().time_to_live(window).max_capacity(100_000).build(),
            max,
        }
    }

    pub fn allowed(&self, user: &str) -> bool {
        self.failures
            .get(user)
            .is_none_or(|n| n.load(Ordering::Relaxed) < self.max)
    }

    pub fn record_failure(&self, user: &str) {
        // The window starts at the first failure (time to live from insert).
        self.failures
            .get_with(user.to_string(), || Arc::new(AtomicU32::new(0)))
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn clear(&self, user: &str) {
        self.failures.invalidate(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cache_holds_while_the_password_is_unchanged() {
        let c = PasswordCache::new(Duration::from_secs(60), 100);
        let p = CpuPool::new("test", 1);
        assert!(!c.matches(&p, "u1", Some("t1"), b"pw").await);
        c.remember(&p, "u1", Some("t1"), b"pw").await;
        assert!(c.matches(&p, "u1", Some("t1"), b"pw").await);
        assert!(
            !c.matches(&p, "u1", Some("t1"), b"px").await,
            "a different password is not a hit"
        );
        // The password changed in Entra ID: the entry is dropped.
        assert!(!c.matches(&p, "u1", Some("t2"), b"pw").await);
        assert!(!c.matches(&p, "u1", Some("t1"), b"pw").await);
        c.remember(&p, "u1", None, b"pw").await;
        c.forget("u1");
        assert!(!c.matches(&p, "u1", None, b"pw").await);
    }

    #[test]
    fn the_limiter_stops_after_max_failures() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(l.allowed("alice"));
            l.record_failure("alice");
        }
        assert!(!l.allowed("alice"));
        assert!(l.allowed("bob"));
        l.clear("alice");
        assert!(l.allowed("alice"));
    }

    #[test]
    fn the_limiter_window_passes() {
        let l = FailureLimiter::new(1, Duration::from_millis(50));
        l.record_failure("alice");
        assert!(!l.allowed("alice"));
        std::thread::sleep(Duration::from_millis(120));
        assert!(l.allowed("alice"));
    }
}
