//! Counters per client (requests, decisions, duplicates, drops by reason),
//! kept in memory for the admin API and logged at shutdown. They survive a
//! reload of the client table: they are kept by client name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::prometheus::{Kind, family};

/// Why a packet got no answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DropReason {
    /// Not a well-formed RADIUS packet.
    Malformed,
    /// Larger than RFC 2865's 4096 bytes.
    Oversize,
    /// A code this port does not serve.
    UnexpectedCode,
    /// Accounting-Request whose Request Authenticator does not verify.
    BadAuthenticator,
    /// Message-Authenticator present but wrong.
    BadMessageAuthenticator,
    /// Required (by config, by `auto`, by EAP or by Status-Server) and absent.
    MissingMessageAuthenticator,
    /// `limit_proxy_state`: Proxy-State without Message-Authenticator.
    ProxyStateWithoutMessageAuthenticator,
    /// Accounting records waiting for the store at `max_in_flight`, or
    /// this NAS at its share. (Slow kinds of the handler have reasons of
    /// their own: see [`Counters::count_busy`].)
    AccountingBusy,
    /// The accounting record could not be stored; the NAS will retry.
    StoreFailed,
    /// The reply could not be encoded (too large).
    EncodeFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        DropReason::Malformed,
        DropReason::Oversize,
        DropReason::UnexpectedCode,
        DropReason::BadAuthenticator,
        DropReason::BadMessageAuthenticator,
        DropReason::MissingMessageAuthenticator,
        DropReason::ProxyStateWithoutMessageAuthenticator,
        DropReason::AccountingBusy,
        DropReason::StoreFailed,
        DropReason::EncodeFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Oversize => "oversize",
            DropReason::UnexpectedCode => "unexpected_code",
            DropReason::BadAuthenticator => "bad_authenticator",
            DropReason::BadMessageAuthenticator => "bad_message_authenticator",
            DropReason::MissingMessageAuthenticator => "missing_message_authenticator",
            DropReason::ProxyStateWithoutMessageAuthenticator => "proxy_state_without_message_authenticator",
            DropReason::AccountingBusy => "accounting_busy",
            DropReason::StoreFailed => "store_failed",
            DropReason::EncodeFailed => "encode_failed",
        }
    }
}

/// One client's counters. Relaxed atomics: these are statistics, nothing
/// synchronises on them.
#[derive(Debug, Default)]
pub struct Counters {
    pub access_requests: AtomicU64,
    pub accepts: AtomicU64,
    pub rejects: AtomicU64,
    /// Access-Challenges (EAP rounds).
    pub challenges: AtomicU64,
    pub accounting_requests: AtomicU64,
    pub accounting_responses: AtomicU64,
    pub status_server: AtomicU64,
    /// Retransmissions answered from the response cache.
    pub duplicates_resent: AtomicU64,
    /// Retransmissions of a request still being worked on: ignored.
    pub duplicates_in_progress: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Requests shed because a kind of slow work was at its bound, by the
    /// index of the kind (the registry knows their names).
    busy: [AtomicU64; MAX_SLOW_KINDS],
}

/// Kinds of slow work a handler may have.
pub const MAX_SLOW_KINDS: usize = 8;

impl Counters {
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }

    /// A request shed by the bound of slow kind `kind`.
    pub fn count_busy(&self, kind: usize) {
        if let Some(c) = self.busy.get(kind) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters, with the slow kinds' drops under `busy_reasons`.
    pub fn snapshot(&self, busy_reasons: &[&'static str]) -> CounterSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CounterSnapshot {
            access_requests: l(&self.access_requests),
            accepts: l(&self.accepts),
            rejects: l(&self.rejects),
            challenges: l(&self.challenges),
            accounting_requests: l(&self.accounting_requests),
            accounting_responses: l(&self.accounting_responses),
            status_server: l(&self.status_server),
            duplicates_resent: l(&self.duplicates_resent),
            duplicates_in_progress: l(&self.duplicates_in_progress),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), self.drops(*r)))
                .chain(
                    busy_reasons
                        .iter()
                        .zip(&self.busy)
                        .map(|(r, n)| (*r, n.load(Ordering::Relaxed))),
                )
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }
}

pub fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CounterSnapshot {
    pub access_requests: u64,
    pub accepts: u64,
    pub rejects: u64,
    pub challenges: u64,
    pub accounting_requests: u64,
    pub accounting_responses: u64,
    pub status_server: u64,
    pub duplicates_resent: u64,
    pub duplicates_in_progress: u64,
    pub drops: BTreeMap<&'static str, u64>,
}

impl fmt::Display for CounterSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access_requests={} accepts={} rejects={} accounting_requests={} accounting_responses={} status_server={} duplicates_resent={} duplicates_in_progress={}",
            self.access_requests,
            self.accepts,
            self.rejects,
            self.accounting_requests,
            self.accounting_responses,
            self.status_server,
            self.duplicates_resent,
            self.duplicates_in_progress
        )?;
        for (k, v) in &self.drops {
            write!(f, " drop.{k}={v}")?;
        }
        Ok(())
    }
}

/// Counters by client name, plus the ones for packets from no known client.
#[derive(Debug, Default)]
pub struct CounterRegistry {
    clients: Mutex<BTreeMap<String, Arc<Counters>>>,
    /// The drop reasons of the handler's slow kinds, by index.
    busy_reasons: Vec<&'static str>,
    /// Packets from addresses no client covers.
    pub unknown_client: AtomicU64,
    /// Datagrams the kernel dropped because a listening socket's receive
    /// queue was full: the load beyond what the server can answer.
    pub receive_queue_dropped: AtomicU64,
}

impl CounterRegistry {
    /// A registry whose slow kinds shed under these reasons (by index).
    pub fn with_busy_reasons(busy_reasons: Vec<&'static str>) -> CounterRegistry {
        CounterRegistry {
            busy_reasons,
            ..CounterRegistry::default()
        }
    }

    pub fn for_client(&self, name: &str) -> Arc<Counters> {
        let mut m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(name.to_string()).or_default().clone()
    }

    pub fn snapshot(&self) -> Vec<(String, CounterSnapshot)> {
        let m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .map(|(k, v)| (k.clone(), v.snapshot(&self.busy_reasons)))
            .collect()
    }
}

/// A counter series: metric name, help text, and how to read it.
type Series = (&'static str, &'static str, fn(&CounterSnapshot) -> u64);

impl CounterRegistry {
    /// The counters in the Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self, out: &mut String) {
        let snap = self.snapshot();
        let series: [Series; 9] = [
            (
                "entra_radius_access_requests_total",
                "Access-Requests received from the client.",
                |c| c.access_requests,
            ),
            ("entra_radius_access_accepts_total", "Access-Accepts sent.", |c| {
                c.accepts
            }),
            ("entra_radius_access_rejects_total", "Access-Rejects sent.", |c| {
                c.rejects
            }),
            (
                "entra_radius_access_challenges_total",
                "Access-Challenges sent (EAP rounds).",
                |c| c.challenges,
            ),
            (
                "entra_radius_accounting_requests_total",
                "Accounting-Requests received.",
                |c| c.accounting_requests,
            ),
            (
                "entra_radius_accounting_responses_total",
                "Accounting-Responses sent.",
                |c| c.accounting_responses,
            ),
            (
                "entra_radius_status_server_total",
                "Status-Server requests received.",
                |c| c.status_server,
            ),
            (
                "entra_radius_duplicates_resent_total",
                "Retransmissions answered from the response cache.",
                |c| c.duplicates_resent,
            ),
            (
                "entra_radius_duplicates_in_progress_total",
                "Retransmissions ignored while the original was in progress.",
                |c| c.duplicates_in_progress,
            ),
        ];
        for (name, help, get) in series {
            let mut f = family(out, name, Kind::Counter, help);
            for (client, c) in &snap {
                f.sample(&[("client", client)], get(c));
            }
        }
        let reasons: Vec<&str> = DropReason::ALL
            .iter()
            .map(|r| r.as_str())
            .chain(self.busy_reasons.iter().copied())
            .collect();
        let mut f = family(
            out,
            "entra_radius_dropped_total",
            Kind::Counter,
            "Packets dropped without a reply, by reason.",
        );
        for (client, c) in &snap {
            for r in &reasons {
                f.sample(
                    &[("client", client), ("reason", r)],
                    c.drops.get(r).copied().unwrap_or(0),
                );
            }
        }
        family(
            out,
            "entra_radius_unknown_client_total",
            Kind::Counter,
            "Packets from addresses no client covers.",
        )
        .sample(&[], self.unknown_client.load(Ordering::Relaxed));
        family(
            out,
            "entra_radius_receive_queue_dropped_total",
            Kind::Counter,
            "Datagrams dropped by the kernel because a receive queue was full (overload).",
        )
        .sample(&[], self.receive_queue_dropped.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prometheus_text() {
        let r = CounterRegistry::default();
        inc(&r.for_client("core \"sw\"").accepts);
        r.for_client("core \"sw\"").count_drop(DropReason::Malformed);
        let mut out = String::new();
        r.render_prometheus(&mut out);
        assert!(
            out.contains("# TYPE entra_radius_access_accepts_total counter"),
            "{out}"
        );
        assert!(
            out.contains("entra_radius_access_accepts_total{client=\"core \\\"sw\\\"\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("entra_radius_dropped_total{client=\"core \\\"sw\\\"\",reason=\"malformed\"} 1"),
            "{out}"
        );
        assert!(out.contains("entra_radius_unknown_client_total 0"), "{out}");
    }

    use super::*;

    #[test]
    fn counters_survive_by_name() {
        let r = CounterRegistry::with_busy_reasons(vec!["argon2_busy"]);
        inc(&r.for_client("a").accepts);
        r.for_client("a").count_drop(DropReason::AccountingBusy);
        r.for_client("a").count_busy(0);
        let s = r.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1.accepts, 1);
        assert_eq!(s[0].1.drops.get("accounting_busy"), Some(&1));
        assert!(s[0].1.to_string().contains("drop.argon2_busy=1"));
    }
}
