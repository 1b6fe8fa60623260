//! Active Directory as a [`Directory`] in the precedence chain: answers
//! from a cache when it can (found accounts for `cache_ttl`, not-found for
//! 30 s), and otherwise says [`Lookup::Pending`], so that the request is
//! deferred as slow work and [`Directory::lookup_slow`] runs the LDAP
//! search off the receive loop. Password checks (a bind as the user) are
//! never cached. Counters for `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::client::{AdClient, AdError, PasswordVerdict};
use crate::config::AdConfig;
use crate::directory::resolver::SlowLookup;
use crate::directory::{Account, Directory, DirectoryKind, Identity, Lookup};
use crate::prometheus::{Kind, family};

/// How long AD's "no such account" is believed.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(30);

/// Entries of each cache.
const CACHE_CAPACITY: u64 = 100_000;

/// What `/metrics` shows of AD.
#[derive(Default)]
struct Stats {
    cache_found: AtomicU64,
    cache_not_found: AtomicU64,
    search_found: AtomicU64,
    search_not_found: AtomicU64,
    search_error: AtomicU64,
    search_micros: AtomicU64,
    bind_accepted: AtomicU64,
    bind_refused: [AtomicU64; 7],
    bind_empty: AtomicU64,
    bind_error: AtomicU64,
    bind_micros: AtomicU64,
}

/// The refusal labels, in the order of `Stats::bind_refused`.
const REFUSALS: [&str; 7] = [
    "wrong_password",
    "disabled",
    "locked",
    "password_expired",
    "account_expired",
    "refused",
    "must_change_password",
];

pub struct AdDirectory {
    client: AdClient,
    found: Cache<String, Arc<Account>>,
    not_found: Cache<String, ()>,
    /// Searches in progress by cache key: requests for the same identity
    /// that miss the cache together wait for one search (a burst of
    /// retries or of one user's devices is one LDAP search).
    in_flight: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::OnceCell<Lookup>>>>,
    stats: Stats,
}

/// The cache key: the identity's form and its case-folded text.
fn key(id: &Identity) -> String {
    format!("{}:{id}", id.form())
}

impl AdDirectory {
    /// Connects to nothing: the first lookup does.
    pub fn new(cfg: &AdConfig) -> Result<AdDirectory, AdError> {
        Ok(AdDirectory {
            client: AdClient::new(cfg)?,
            found: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(cfg.cache_ttl)
                .build(),
            not_found: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(NOT_FOUND_TTL)
                .build(),
            in_flight: std::sync::Mutex::default(),
            stats: Stats::default(),
        })
    }

    pub fn client(&self) -> &AdClient {
        &self.client
    }

    /// Binds once and reads the domain's names (logged by the client), so
    /// that a wrong `[ad]` shows in the log at startup, not at the first
    /// request.
    pub async fn warm_up(&self) {
        if let Err(e) = self.client.domain_info().await {
            tracing::warn!(error = %e, "AD: not usable yet (users of AD are rejected until it is)");
        }
    }

    /// A simple bind as the account's DN; an empty password is refused
    /// before any bind. Counted by outcome; never cached.
    pub async fn check_password(&self, account: &Account, password: &[u8]) -> Result<PasswordVerdict, AdError> {
        let dn = account.attributes().get("dn").map(String::as_str).unwrap_or("");
        let started = Instant::now();
        let r = self.client.check_password(dn, password).await;
        let s = &self.stats;
        s.bind_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let counter = match &r {
            Ok(PasswordVerdict::Accepted) => &s.bind_accepted,
            Ok(PasswordVerdict::Empty) => &s.bind_empty,
            Ok(PasswordVerdict::Refused(why)) => {
                let label = match why {
                    super::wire::BindRefusal::MustChangePassword => "must_change_password",
                    other => other.as_label(),
                };
                let i = REFUSALS.iter().position(|l| *l == label).unwrap_or(5);
                &s.bind_refused[i]
            }
            Err(_) => &s.bind_error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        r
    }

    /// AD's counters in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            out,
            "entra_radius_ad_cache_hits_total",
            Kind::Counter,
            "AD lookups answered from the cache, by what the cache held.",
        )
        .sample(&[("result", "found")], get(&s.cache_found))
        .sample(&[("result", "not_found")], get(&s.cache_not_found));
        family(
            out,
            "entra_radius_ad_lookups_total",
            Kind::Counter,
            "AD lookups that went to a domain controller (LDAP searches), by outcome.",
        )
        .sample(&[("outcome", "found")], get(&s.search_found))
        .sample(&[("outcome", "not_found")], get(&s.search_not_found))
        .sample(&[("outcome", "error")], get(&s.search_error));
        family(
            out,
            "entra_radius_ad_lookup_seconds_total",
            Kind::Counter,
            "Time spent in AD lookups that went to a domain controller.",
        )
        .sample(&[], get(&s.search_micros) as f64 / 1e6);
        let mut f = family(
            out,
            "entra_radius_ad_binds_total",
            Kind::Counter,
            "Password checks against AD (binds as the user), by outcome; empty passwords are never sent.",
        );
        f.sample(&[("outcome", "accepted")], get(&s.bind_accepted))
            .sample(&[("outcome", "empty")], get(&s.bind_empty))
            .sample(&[("outcome", "error")], get(&s.bind_error));
        for (label, c) in REFUSALS.iter().zip(&s.bind_refused) {
            f.sample(&[("outcome", label)], get(c));
        }
        family(
            out,
            "entra_radius_ad_bind_seconds_total",
            Kind::Counter,
            "Time spent in password binds against AD.",
        )
        .sample(&[], get(&s.bind_micros) as f64 / 1e6);
        family(
            out,
            "entra_radius_ad_dc_failovers_total",
            Kind::Counter,
            "Domain controllers set aside after a failure (the next URL was tried).",
        )
        .sample(&[], self.client.failovers());
        family(
            out,
            "entra_radius_ad_service_bind_refusals_total",
            Kind::Counter,
            "Binds of the service account a DC refused (a refusal stands 30 s before the next try).",
        )
        .sample(&[], self.client.service_refusals());
    }

    /// One search per identity at a time: later callers share its answer.
    async fn search(&self, id: &Identity) -> Lookup {
        let k = key(id);
        let cell = self
            .in_flight
            .lock()
            .expect("poisoned")
            .entry(k.clone())
            .or_default()
            .clone();
        let l = cell.get_or_init(|| self.search_now(id)).await.clone();
        let mut m = self.in_flight.lock().expect("poisoned");
        if m.get(&k).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            m.remove(&k);
        }
        l
    }

    async fn search_now(&self, id: &Identity) -> Lookup {
        let started = Instant::now();
        let r = self.client.find(id).await;
        let s = &self.stats;
        s.search_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match r {
            Ok(Some(data)) => {
                s.search_found.fetch_add(1, Ordering::Relaxed);
                let account = Arc::new(Account::from(data));
                self.found.insert(key(id), account.clone());
                Lookup::Found(account)
            }
            Ok(None) => {
                s.search_not_found.fetch_add(1, Ordering::Relaxed);
                self.not_found.insert(key(id), ());
                Lookup::NotFound
            }
            Err(e) => {
                s.search_error.fetch_add(1, Ordering::Relaxed);
                Lookup::Unavailable(format!("AD: {e}"))
            }
        }
    }
}

impl Directory for AdDirectory {
    fn kind(&self) -> DirectoryKind {
        DirectoryKind::ActiveDirectory
    }

    fn lookup(&self, id: &Identity) -> Lookup {
        match id {
            // AD is not asked for MACs or object ids: MAB and device ids
            // are Entra's and local's.
            Identity::Mac(_) | Identity::Guid(_) => return Lookup::NotFound,
            Identity::Name(n) if n.is_empty() => return Lookup::NotFound,
            _ => {}
        }
        let k = key(id);
        if let Some(a) = self.found.get(&k) {
            self.stats.cache_found.fetch_add(1, Ordering::Relaxed);
            return Lookup::Found(a);
        }
        if self.not_found.contains_key(&k) {
            self.stats.cache_not_found.fetch_add(1, Ordering::Relaxed);
            return Lookup::NotFound;
        }
        Lookup::Pending
    }

    fn lookup_slow<'a>(&'a self, id: &'a Identity) -> SlowLookup<'a> {
        Box::pin(async move {
            match self.lookup(id) {
                Lookup::Pending => self.search(id).await,
                l => l,
            }
        })
    }

    fn source(&self) -> Option<String> {
        self.client.last_dc()
    }
}
