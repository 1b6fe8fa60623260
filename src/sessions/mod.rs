//! Sessions from accounting, and Disconnect (RFC 5176) when an account
//! changes.
//!
//! * [`record_from_packet`]: a verified Accounting-Request becomes the record
//!   the store merges into its `sessions` table (`store::acct`).
//! * [`table`]: the in-memory index of the open sessions, kept in step with
//!   every committed record.
//! * [`disconnect`]: the Disconnect-Request client, its own socket.
//! * [`Sessions`]: the three together: after a sync round commits (a signal
//!   on a watch channel, so the sync never waits), the sessions whose account
//!   was disabled, deleted or moved to another `[[policy]]` rule are sent a
//!   Disconnect-Request; `sessions disconnect` sends them by hand.

pub mod disconnect;
pub mod table;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::proto::ClientSecret;
use crate::proto::attr::{as_ipv4, as_u32};
use crate::proto::dynauth::{DisconnectRequest, NasId};
use crate::proto::{AttrType, Packet};
use crate::store::{AcctRecord, AcctStatus, DisconnectOutcome, SessionAccount, SessionRow, Store};
use disconnect::{Disconnector, Outcome, Target};
use table::SessionTable;

/// `now` is the receive time in unix seconds; the caller reads the clock.
pub fn record_from_packet(packet: &Packet<'_>, source: IpAddr, client_name: &str, now: i64) -> AcctRecord {
    let text = |t: AttrType| packet.get(t).map(|v| String::from_utf8_lossy(v).into_owned());
    let u32_of = |t: AttrType| packet.get(t).and_then(as_u32);
    // RFC 2866 §5.3: the NAS's identity is NAS-IP-Address or NAS-Identifier;
    // the source address is the last resort (it changes behind NAT).
    let nas = packet
        .get(AttrType::NAS_IP_ADDRESS)
        .and_then(as_ipv4)
        .map(|ip| ip.to_string())
        .or_else(|| {
            packet
                .get(AttrType::NAS_IPV6_ADDRESS)
                .and_then(|v| <[u8; 16]>::try_from(v).ok())
                .map(|b| std::net::Ipv6Addr::from(b).to_string())
        })
        .or_else(|| text(AttrType::NAS_IDENTIFIER))
        .unwrap_or_else(|| source.to_string());
    let octets = |low: AttrType, giga: AttrType| {
        u32_of(low).map(|l| (u64::from(u32_of(giga).unwrap_or(0)) << 32) | u64::from(l))
    };
    // Event-Timestamp says when it happened; otherwise receive time minus
    // Acct-Delay-Time (RFC 2866 §5.2).
    let event_time = u32_of(AttrType::EVENT_TIMESTAMP)
        .map(i64::from)
        .unwrap_or_else(|| now - i64::from(u32_of(AttrType::ACCT_DELAY_TIME).unwrap_or(0)));
    AcctRecord {
        nas,
        client_name: client_name.to_string(),
        status: AcctStatus::from_code(u32_of(AttrType::ACCT_STATUS_TYPE).unwrap_or(0)),
        session_id: text(AttrType::ACCT_SESSION_ID).unwrap_or_default(),
        user_name: text(AttrType::USER_NAME),
        calling_station_id: text(AttrType::CALLING_STATION_ID),
        called_station_id: text(AttrType::CALLED_STATION_ID),
        framed_ip: packet
            .get(AttrType::FRAMED_IP_ADDRESS)
            .and_then(as_ipv4)
            .map(|i| i.to_string()),
        nas_port: u32_of(AttrType::NAS_PORT),
        nas_port_id: text(AttrType::NAS_PORT_ID),
        session_time: u32_of(AttrType::ACCT_SESSION_TIME),
        input_octets: octets(AttrType::ACCT_INPUT_OCTETS, AttrType::ACCT_INPUT_GIGAWORDS),
        output_octets: octets(AttrType::ACCT_OUTPUT_OCTETS, AttrType::ACCT_OUTPUT_GIGAWORDS),
        input_packets: u32_of(AttrType::ACCT_INPUT_PACKETS),
        output_packets: u32_of(AttrType::ACCT_OUTPUT_PACKETS),
        terminate_cause: u32_of(AttrType::ACCT_TERMINATE_CAUSE),
        event_time,
        nas_addr: Some(source.to_string()),
        // The caller resolves the User-Name (it owns the directories).
        account: None,
    }
}

/// An account as it stands now, compared with a session's baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountNow {
    /// Not an account a sync round changes (local accounts).
    Untracked,
    /// Deleted (or soft-deleted) since.
    Gone,
    Is(SessionAccount),
}

/// What the sessions need to know of the directories; the composition root
/// implements it over the Entra replica and the `[[policy]]` rules.
pub trait Accounts: Send + Sync {
    /// Off, a round changes nothing here: turning the whole integration off
    /// is the administrator's switch, not an account change.
    fn entra_enabled(&self) -> bool;
    /// The replica holds a complete enumeration of users, devices and
    /// groups (each has a delta link). Not so after `entra disable --purge`
    /// until the next full rounds end: an account not synced back yet is not
    /// deleted, nor is an account whose groups are not back moved to another
    /// rule. May read the store.
    fn settled(&self) -> bool;
    fn now(&self, was: &SessionAccount) -> AccountNow;
}

/// Why a session must be disconnected, comparing its baseline with the
/// account now; `None`: it keeps its session.
pub fn change_reason(was: &SessionAccount, now: &AccountNow) -> Option<&'static str> {
    match now {
        AccountNow::Untracked => None,
        AccountNow::Gone if was.enabled => Some("account deleted"),
        AccountNow::Gone => None,
        AccountNow::Is(a) if was.enabled && !a.enabled => Some("account disabled"),
        AccountNow::Is(a) if a.enabled && a.policy_rule != was.policy_rule => Some("[[policy]] rule changed"),
        AccountNow::Is(_) => None,
    }
}

/// Where a client (by name) takes Disconnect-Requests: its port and secret;
/// `None`: no `coa_port`.
pub type CoaClients = HashMap<String, Option<(u16, ClientSecret)>>;

/// Outcome labels, in the order of the counters.
const OUTCOMES: [&str; 5] = ["ack", "nak", "timeout", "no_coa_port", "failed"];

/// One session's Disconnect, as the admin API reports it.
#[derive(Debug, Clone)]
pub struct Disconnected {
    pub session: SessionRow,
    pub outcome: Outcome,
}

/// The session table, the Disconnect client and what ties them to the sync.
pub struct Sessions {
    pub table: SessionTable,
    store: Store,
    disconnector: Arc<Disconnector>,
    /// By client name; replaced whole on reload.
    coa: ArcSwap<CoaClients>,
    accounts: Arc<dyn Accounts>,
    /// NASes already named in the log for having no `coa_port`.
    no_coa_logged: Mutex<HashSet<String>>,
    /// Outcomes by [`OUTCOMES`] index and by origin (0: sync, 1: admin).
    outcomes: [[AtomicU64; 5]; 2],
    /// The admin API's calls arrive on blocking threads.
    runtime: tokio::runtime::Handle,
}

impl Sessions {
    /// Must be called inside the runtime. `store`'s most recently updated
    /// open sessions are indexed (up to `cap`).
    pub fn new(
        store: Store,
        disconnector: Arc<Disconnector>,
        coa: CoaClients,
        accounts: Arc<dyn Accounts>,
        cap: usize,
    ) -> Result<Arc<Sessions>, crate::store::StoreError> {
        let table = SessionTable::new(cap);
        table.load(store.newest_open_sessions(cap)?);
        Ok(Arc::new(Sessions {
            table,
            store,
            disconnector,
            coa: ArcSwap::from_pointee(coa),
            accounts,
            no_coa_logged: Mutex::new(HashSet::new()),
            outcomes: Default::default(),
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// A reload's clients.
    pub fn set_coa_clients(&self, coa: CoaClients) {
        self.coa.store(Arc::new(coa));
    }

    /// Waits for sync commits (`commits` is bumped after every committed
    /// page and round) and sends Disconnect-Requests for the sessions whose
    /// account changed. Never blocks the sync: the channel only keeps the
    /// latest value, and the sends run in their own task.
    ///
    /// The sends it starts are its own (a `JoinSet`): at shutdown those
    /// still waiting for an answer are dropped, their outcome not recorded.
    pub async fn run_auto(self: Arc<Self>, mut commits: watch::Receiver<u64>, shutdown: CancellationToken) {
        let mut sending = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = commits.changed() => if changed.is_err() { return },
                Some(_) = sending.join_next(), if !sending.is_empty() => continue,
            }
            if !self.accounts.entra_enabled() {
                continue;
            }
            let me = Arc::clone(&self);
            if !tokio::task::spawn_blocking(move || me.accounts.settled())
                .await
                .unwrap_or(false)
            {
                // Compared later, once the enumerations are complete.
                continue;
            }
            let (targets, mut baselines) = self.scan();
            if !targets.is_empty() {
                tracing::info!(
                    sessions = targets.len(),
                    "a sync round disabled, deleted or moved accounts with active sessions; sending Disconnect-Requests"
                );
                // The new baselines are stored too (below), so that an
                // Interim-Update merged before the outcomes are written
                // does not bring the old state back.
                baselines.extend(
                    targets
                        .iter()
                        .filter_map(|(r, b)| Some((r.nas.clone(), r.session_id.clone(), b.clone()?))),
                );
                let me = Arc::clone(&self);
                sending.spawn(async move {
                    me.disconnect_all(targets, 0).await;
                });
            }
            if !baselines.is_empty() {
                self.store_baselines(baselines).await;
            }
        }
    }

    async fn store_baselines(&self, baselines: Vec<(String, String, SessionAccount)>) {
        let store = self.store.clone();
        let n = baselines.len();
        let written = tokio::task::spawn_blocking(move || store.set_session_baselines(&baselines)).await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(
                sessions = n,
                "could not store the account state of sessions; a restart may act on it again"
            );
        }
    }

    /// After a reload: the `[[policy]]` rules may be other ones (or
    /// numbered otherwise), which is the administrator's change, not a sync
    /// round's. Every session takes its account's state now as its
    /// baseline, without a Disconnect-Request.
    pub fn rebaseline_after_reload(self: &Arc<Self>) {
        let mut moved = Vec::new();
        self.table.visit(|row| {
            let Some(was) = row.account.as_mut() else { return };
            let (rule, vlan) = match self.accounts.now(was) {
                AccountNow::Untracked | AccountNow::Gone => return,
                AccountNow::Is(a) => (a.policy_rule, a.vlan),
            };
            if rule != was.policy_rule || vlan != was.vlan {
                // Only the rule moves: an account disabled by the last round
                // is still the sync's to act on.
                was.policy_rule = rule;
                was.vlan = vlan;
                let new = was.clone();
                moved.push((row.nas.clone(), row.session_id.clone(), new));
            }
        });
        if moved.is_empty() {
            return;
        }
        tracing::info!(
            sessions = moved.len(),
            "the reload changed the [[policy]] rule of active sessions; they keep their sessions"
        );
        let me = Arc::clone(self);
        self.runtime.spawn(async move { me.store_baselines(moved).await });
    }

    /// The sessions a round changed, with the reason and the state to take
    /// as the new baseline; and the sessions whose baseline moved without
    /// calling for a Disconnect (re-enabled, …). Moves the baselines in the
    /// table at once, so that the next commit does not pick them again.
    ///
    /// Walks the index in place under its lock (memory-only lookups), so
    /// that only the changed sessions are copied, never the whole table.
    #[allow(clippy::type_complexity)]
    fn scan(
        &self,
    ) -> (
        Vec<(SessionRow, Option<SessionAccount>)>,
        Vec<(String, String, SessionAccount)>,
    ) {
        let mut targets = Vec::new();
        let mut rebaselined = Vec::new();
        self.table.visit(|row| {
            let Some(was) = row.account.as_ref() else { return };
            let now = self.accounts.now(was);
            let new = match &now {
                AccountNow::Untracked => return,
                AccountNow::Gone => SessionAccount {
                    enabled: false,
                    ..was.clone()
                },
                AccountNow::Is(a) => a.clone(),
            };
            if new == *was {
                return;
            }
            let reason = change_reason(was, &now);
            row.account = Some(new.clone());
            match reason {
                Some(reason) => targets.push((row.clone(), Some(new), reason)),
                None => rebaselined.push((row.nas.clone(), row.session_id.clone(), new)),
            }
        });
        let targets = targets
            .into_iter()
            .map(|(row, new, reason)| {
                tracing::info!(
                    nas = %row.nas,
                    session_id = %row.session_id,
                    user_name = row.user_name.as_deref().unwrap_or("-"),
                    reason,
                    "disconnecting a session"
                );
                (row, new)
            })
            .collect();
        (targets, rebaselined)
    }

    /// Sends every Disconnect concurrently; records each outcome on its
    /// session (memory at once, the store once all are done). `origin`:
    /// 0 the sync, 1 the admin API.
    pub async fn disconnect_all(
        self: &Arc<Self>,
        rows: Vec<(SessionRow, Option<SessionAccount>)>,
        origin: usize,
    ) -> Vec<Disconnected> {
        let mut set = tokio::task::JoinSet::new();
        for (i, (row, baseline)) in rows.into_iter().enumerate() {
            let me = Arc::clone(self);
            set.spawn(async move {
                let outcome = me.disconnect_one(&row, origin).await;
                (i, row, baseline, outcome)
            });
        }
        let mut done = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                done.push(r);
            }
        }
        done.sort_by_key(|d| d.0);
        let now = crate::clock::now_unix();
        let records: Vec<DisconnectOutcome> = done
            .iter()
            .map(|(_, row, baseline, outcome)| DisconnectOutcome {
                nas: row.nas.clone(),
                session_id: row.session_id.clone(),
                outcome: outcome.text(),
                at: now,
                ended: *outcome == Outcome::Ack,
                account: baseline.clone(),
            })
            .collect();
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.record_disconnects(&records)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not store Disconnect outcomes"),
            Err(e) => tracing::warn!(error = %e, "storing Disconnect outcomes failed"),
        }
        done.into_iter()
            .map(|(_, session, _, outcome)| Disconnected { session, outcome })
            .collect()
    }

    async fn disconnect_one(&self, row: &SessionRow, origin: usize) -> Outcome {
        let outcome = match self.target_of(row) {
            Ok(target) => {
                let request = DisconnectRequest {
                    user_name: row.user_name.clone(),
                    acct_session_id: Some(row.session_id.clone()),
                    calling_station_id: row.calling_station_id.clone(),
                    nas: Some(NasId::from_key(&row.nas)),
                    event_timestamp: u32::try_from(crate::clock::now_unix()).unwrap_or(u32::MAX),
                };
                self.disconnector.send(&target, &request).await
            }
            Err(o) => o,
        };
        let now = crate::clock::now_unix();
        match &outcome {
            Outcome::Ack => self.table.end(&row.nas, &row.session_id),
            other => self.table.note_outcome(&row.nas, &row.session_id, &other.text(), now),
        }
        let i = OUTCOMES.iter().position(|l| *l == outcome.label()).unwrap_or(4);
        self.outcomes[origin.min(1)][i].fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            nas = %row.nas,
            session_id = %row.session_id,
            outcome = %outcome.text(),
            "Disconnect-Request"
        );
        outcome
    }

    /// The NAS's Disconnect address and secret, or why there is none.
    fn target_of(&self, row: &SessionRow) -> Result<Target, Outcome> {
        let coa = self.coa.load();
        let port_secret = coa.get(&row.client_name).cloned().flatten();
        let Some((port, secret)) = port_secret else {
            let first = self
                .no_coa_logged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(row.client_name.clone());
            if first {
                tracing::warn!(
                    client = %row.client_name,
                    nas = %row.nas,
                    "cannot disconnect sessions of this NAS: its [[clients]] entry has no coa_port (logged once per NAS)"
                );
            }
            return Err(Outcome::NoCoaPort);
        };
        let ip: IpAddr = row
            .nas_addr
            .as_deref()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| Outcome::Failed(format!("the address of NAS {} is not known", row.nas)))?;
        Ok(Target {
            addr: (ip, port).into(),
            secret,
        })
    }

    /// `sessions disconnect`, from a blocking thread of the admin API.
    pub fn disconnect_blocking(self: &Arc<Self>, rows: Vec<SessionRow>) -> Vec<Disconnected> {
        let rows = rows.into_iter().map(|r| (r, None)).collect();
        let me = Arc::clone(self);
        self.runtime.block_on(async move { me.disconnect_all(rows, 1).await })
    }

    /// Counters and gauges for `/metrics`.
    pub fn render_prometheus(&self, out: &mut String) {
        use crate::prometheus::{Kind, family};
        let now = crate::clock::now_unix();
        family(
            out,
            "entra_radius_sessions_active",
            Kind::Gauge,
            "Open accounting sessions in the index.",
        )
        .sample(&[], self.table.len());
        family(
            out,
            "entra_radius_sessions_stale",
            Kind::Gauge,
            "Open sessions with no accounting for twice their interim interval (24 h without interim).",
        )
        .sample(&[], self.table.stale_count(now));
        family(
            out,
            "entra_radius_sessions_shed_total",
            Kind::Counter,
            "Sessions not indexed because the index was at its cap (they are stored).",
        )
        .sample(&[], self.table.shed());
        family(
            out,
            "entra_radius_sessions_evicted_total",
            Kind::Counter,
            "Stale sessions dropped from the full index to make room (they are stored).",
        )
        .sample(&[], self.table.evicted());
        let mut f = family(
            out,
            "entra_radius_disconnect_total",
            Kind::Counter,
            "Disconnect-Requests by outcome and origin (sync: an account change; admin: sessions disconnect).",
        );
        for (o, origin) in ["sync", "admin"].iter().enumerate() {
            for (i, label) in OUTCOMES.iter().enumerate() {
                f.sample(
                    &[("origin", origin), ("outcome", label)],
                    self.outcomes[o][i].load(Ordering::Relaxed),
                );
            }
        }
        let c = &self.disconnector.counters;
        family(
            out,
            "entra_radius_disconnect_packets_sent_total",
            Kind::Counter,
            "Disconnect-Request datagrams sent, retransmissions included.",
        )
        .sample(&[], c.sent.load(Ordering::Relaxed));
        family(
            out,
            "entra_radius_disconnect_retransmissions_total",
            Kind::Counter,
            "Disconnect-Requests sent again after no answer.",
        )
        .sample(&[], c.retransmitted.load(Ordering::Relaxed));
        family(
            out,
            "entra_radius_disconnect_answers_dropped_total",
            Kind::Counter,
            "Answers to Disconnect-Requests dropped, by reason.",
        )
        .sample(
            &[("reason", "unknown_source")],
            c.unknown_source.load(Ordering::Relaxed),
        )
        .sample(&[("reason", "unverified")], c.unverified.load(Ordering::Relaxed))
        .sample(
            &[("reason", "late_or_duplicate")],
            c.late_or_duplicate.load(Ordering::Relaxed),
        );
    }
}

/// One session as the admin API shows it (`sessions list --json`).
pub fn session_json(row: &SessionRow, now: i64) -> serde_json::Value {
    serde_json::json!({
        "session_id": row.session_id,
        "nas": row.nas,
        "nas_addr": row.nas_addr,
        "client": row.client_name,
        "nas_port": row.nas_port,
        "nas_port_id": row.nas_port_id,
        "user_name": row.user_name,
        "account": row.account.as_ref().map(|a| serde_json::json!({
            "directory": a.directory,
            "kind": a.kind,
            "id": a.object_id,
            "enabled": a.enabled,
        })),
        "mac": row.calling_station_id,
        "framed_ip": row.framed_ip,
        "started_at": row.started_at,
        "updated_at": row.updated_at,
        "policy_rule": row.account.as_ref().and_then(|a| a.policy_rule),
        "vlan": row.account.as_ref().and_then(|a| a.vlan.clone()),
        "stale": table::is_stale(row, now),
        "disconnect": row.disconnect_outcome.as_ref().map(|o| serde_json::json!({
            "outcome": o,
            "at": row.disconnect_at,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Builder, ClientSecret, Code};

    #[test]
    fn fields_are_taken_from_the_packet() {
        let mut b = Builder::new(Code::ACCOUNTING_REQUEST, 1, [0; 16]);
        b.push_u32(AttrType::ACCT_STATUS_TYPE, 3).unwrap();
        b.push(AttrType::ACCT_SESSION_ID, b"sess-1").unwrap();
        b.push(AttrType::NAS_IDENTIFIER, b"sw1").unwrap();
        b.push_u32(AttrType::ACCT_INPUT_OCTETS, 5).unwrap();
        b.push_u32(AttrType::ACCT_INPUT_GIGAWORDS, 2).unwrap();
        b.push_u32(AttrType::ACCT_DELAY_TIME, 10).unwrap();
        let bytes = b.finish_hashed_request(&ClientSecret::new(b"s"));
        let r = record_from_packet(&Packet::decode(&bytes).unwrap(), "10.0.0.1".parse().unwrap(), "c", 1000);
        assert_eq!(r.nas, "sw1");
        assert_eq!(r.status, AcctStatus::InterimUpdate);
        assert_eq!(r.session_id, "sess-1");
        assert_eq!(r.input_octets, Some((2u64 << 32) + 5));
        assert_eq!(r.output_octets, None);
        assert_eq!(r.event_time, 990);
    }
}
