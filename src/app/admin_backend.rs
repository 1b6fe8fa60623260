//! What the admin API asks of the running server: account explanations,
//! status, Prometheus metrics, reload, and the Entra ID integration's
//! operations. It reads the parts the composition root built; none of it
//! is on the RADIUS path.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Running;
use crate::admin::{
    AdminBackend, ApiError, AuthLogQuery, BoxError, DisconnectSelection, IntegrationRequest, SessionsQuery,
};
use crate::integration::{Integration, render_sync_metrics};
use crate::prometheus::{Kind, family};
use crate::server::Port;
use crate::store::{HistoryFilter, SessionRow};
use std::sync::atomic::Ordering;

/// The admin API's view of the running server and its integration.
pub struct Backend {
    running: Arc<Running>,
    integration: Arc<Integration>,
}

impl Backend {
    pub fn new(running: Arc<Running>, integration: Arc<Integration>) -> Backend {
        Backend { running, integration }
    }

    /// The replica's size and how fresh it is: the sync checkpoints with
    /// their age. Reads the store (admin path, never the RADIUS path).
    fn entra(&self) -> Value {
        let entra = &self.running.entra;
        let counts = entra.replica().counts();
        let now = crate::clock::now_unix();
        let checkpoints: Vec<Value> = match self.running.store.checkpoints() {
            Ok(list) => list
                .into_iter()
                .map(|(name, _value, updated_at)| json!({ "name": name, "updated_at": updated_at, "age_seconds": now - updated_at }))
                .collect(),
            Err(e) => vec![json!({ "error": e.to_string() })],
        };
        let load = &self.running.replica_load;
        json!({
            "enabled": entra.is_enabled(),
            "users": counts.users,
            "devices": counts.devices,
            "soft_deleted": counts.soft_deleted,
            "loaded_at_startup": load.loaded,
            "skipped_at_startup": load.skipped,
            "load_ms": load.elapsed.as_millis() as u64,
            "checkpoints": checkpoints,
        })
    }
}

impl AdminBackend for Backend {
    fn lookup(&self, identity: &str) -> Value {
        // Called on a blocking thread of the runtime: AD may be asked.
        let e = tokio::runtime::Handle::current().block_on(self.running.authenticator.explain_str(identity));
        let mut v = serde_json::to_value(&e).unwrap_or_else(|err| json!({ "error": err.to_string() }));
        v["text"] = Value::String(e.to_string());
        v["entra"] = self.entra();
        // The last decisions for it, from the history (when kept).
        if self.running.history.is_some() {
            let filter = HistoryFilter {
                identity: Some(identity.to_string()),
                mac: super::history::normalise_mac(identity),
                limit: RECENT,
                // Quick on any size of history: the newest million rows.
                scan: Some(1_000_000),
                ..HistoryFilter::default()
            };
            // A MAC is looked up by its MAC column, in any notation.
            let filter = if filter.mac.is_some() {
                HistoryFilter {
                    identity: None,
                    ..filter
                }
            } else {
                filter
            };
            v["recent"] = match self.running.store.auth_history(&filter) {
                Ok(rows) => serde_json::to_value(rows).unwrap_or_default(),
                Err(err) => json!({ "error": err.to_string() }),
            };
        }
        v
    }

    fn status(&self) -> Value {
        let server = &self.running.server;
        let listeners: Vec<Value> = server
            .listeners()
            .iter()
            .map(|(port, addr)| json!({ "service": match port { Port::Auth => "auth", Port::Acct => "acct" }, "address": addr.to_string() }))
            .collect();
        let (users, macs) = self.running.local_counts();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": server.started().elapsed().as_secs(),
            "listeners": listeners,
            "clients": server.client_count(),
            "local": { "users": users, "macs": macs },
            "entra": self.entra(),
            "sync": serde_json::to_value(self.integration.sync_status()).unwrap_or_default(),
        })
    }

    fn metrics(&self) -> String {
        let mut out = String::new();
        self.running.server.counters().render_prometheus(&mut out);
        if let Some(eap) = self.running.authenticator.eap() {
            eap.render_prometheus(&mut out);
        }
        if let Some(ad) = &self.running.ad {
            ad.render_prometheus(&mut out);
        }
        let counts = self.running.entra.replica().counts();
        family(
            &mut out,
            "entra_radius_replica_objects",
            Kind::Gauge,
            "Objects in the Entra ID replica.",
        )
        .sample(&[("kind", "user")], counts.users)
        .sample(&[("kind", "device")], counts.devices)
        .sample(&[("kind", "soft_deleted")], counts.soft_deleted);
        let (users, macs) = self.running.local_counts();
        family(
            &mut out,
            "entra_radius_local_accounts",
            Kind::Gauge,
            "Local accounts from the config file.",
        )
        .sample(&[("kind", "user")], users)
        .sample(&[("kind", "mac")], macs);
        render_sync_metrics(&self.integration.sync_status(), &mut out);
        if let Some(h) = &self.running.history {
            let st = h.stats();
            family(
                &mut out,
                "entra_radius_history_records_total",
                Kind::Counter,
                "Decisions given to the authentication history, by outcome: written, dropped (the writer fell behind), failed (a transaction failed).",
            )
            .sample(&[("outcome", "written")], st.written.load(Ordering::Relaxed))
            .sample(&[("outcome", "dropped")], st.dropped.load(Ordering::Relaxed))
            .sample(&[("outcome", "failed")], st.failed.load(Ordering::Relaxed));
            family(
                &mut out,
                "entra_radius_history_pruned_total",
                Kind::Counter,
                "Rows removed from the authentication history by retention.",
            )
            .sample(&[], st.pruned.load(Ordering::Relaxed));
        }
        self.running.sessions.render_prometheus(&mut out);
        out
    }

    fn reload(&self) -> Result<Value, BoxError> {
        self.running
            .reload_from_file()
            .map(|summary| json!({ "summary": summary }))
            .map_err(Into::into)
    }

    fn integration(&self, request: IntegrationRequest) -> Result<Value, ApiError> {
        self.integration.handle(request)
    }

    fn sessions(&self, q: SessionsQuery) -> Result<Value, ApiError> {
        self.sessions_list(q)
    }

    fn disconnect(&self, selection: DisconnectSelection) -> Result<Value, ApiError> {
        self.sessions_disconnect(selection)
    }

    fn auth_log(&self, q: AuthLogQuery) -> Result<Value, ApiError> {
        if self.running.history.is_none() {
            return Err(ApiError {
                status: 404,
                message: "the authentication history is off ([history] enabled = false)".into(),
            });
        }
        let mac = match q.mac.as_deref() {
            None => None,
            Some(m) => Some(
                super::history::normalise_mac(m)
                    .ok_or_else(|| ApiError::bad_request(format!("{m:?} is not a MAC address")))?,
            ),
        };
        let accept = match q.result.as_deref() {
            None => None,
            Some("accept") => Some(true),
            Some("reject") => Some(false),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "result {other:?}: expected accept or reject"
                )));
            }
        };
        let filter = HistoryFilter {
            identity: q.identity,
            mac,
            client: q.client,
            accept,
            since_ms: q.since_ms,
            after_id: q.after_id,
            limit: q.limit.unwrap_or(DEFAULT_LIMIT),
            scan: None,
        };
        let rows = self.running.store.auth_history(&filter).map_err(|e| ApiError {
            status: 500,
            message: e.to_string(),
        })?;
        Ok(serde_json::to_value(rows).unwrap_or_default())
    }
}

impl Backend {
    /// Which sessions belong to `identity`: its User-Name (no case), the
    /// account it resolves to now, or, for a MAC, the Calling-Station-Id.
    fn user_filter(&self, identity: &str) -> impl Fn(&SessionRow) -> bool + use<> {
        let identity = identity.to_string();
        let mac = super::history::normalise_mac(&identity);
        let account = self
            .running
            .authenticator
            .resolve_session_user(&identity)
            .map(|(d, a)| (d.as_str().to_string(), a.object_id().to_string()));
        move |r: &SessionRow| {
            r.user_name
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(&identity))
                || account.as_ref().is_some_and(|(d, id)| {
                    r.account
                        .as_ref()
                        .is_some_and(|a| a.directory == *d && a.object_id == *id)
                })
                || mac.as_ref().is_some_and(|m| mac_of(r).as_ref() == Some(m))
        }
    }
}

/// The session's station MAC, normalised: Calling-Station-Id, else a
/// User-Name that is a MAC (MAB).
fn mac_of(r: &SessionRow) -> Option<String> {
    r.calling_station_id
        .as_deref()
        .and_then(super::history::normalise_mac)
        .or_else(|| r.user_name.as_deref().and_then(super::history::normalise_mac))
}

impl Backend {
    fn sessions_list(&self, q: SessionsQuery) -> Result<Value, ApiError> {
        let now = crate::clock::now_unix();
        let rows = match q.user.as_deref() {
            Some(u) => self.running.sessions.table.select(self.user_filter(u)),
            None => self.running.sessions.table.select(|_| true),
        };
        Ok(Value::Array(
            rows.iter().map(|r| crate::sessions::session_json(r, now)).collect(),
        ))
    }

    fn sessions_disconnect(&self, sel: DisconnectSelection) -> Result<Value, ApiError> {
        let table = &self.running.sessions.table;
        let rows = match (sel.session_id, sel.user, sel.mac) {
            (Some(id), None, None) => table.select(|r| r.session_id == id),
            (None, Some(u), None) => table.select(self.user_filter(&u)),
            (None, None, Some(m)) => {
                let mac = super::history::normalise_mac(&m)
                    .ok_or_else(|| ApiError::bad_request(format!("{m:?} is not a MAC address")))?;
                table.select(|r| mac_of(r).as_deref() == Some(mac.as_str()))
            }
            _ => {
                return Err(ApiError::bad_request("give exactly one of session_id, user and mac"));
            }
        };
        let now = crate::clock::now_unix();
        let done = self.running.sessions.disconnect_blocking(rows);
        Ok(Value::Array(
            done.iter()
                .map(|d| {
                    let mut v = crate::sessions::session_json(&d.session, now);
                    v["outcome"] = Value::String(d.outcome.text());
                    v["acked"] = Value::Bool(d.outcome == crate::sessions::disconnect::Outcome::Ack);
                    v
                })
                .collect(),
        ))
    }
}

/// Decisions `accounts lookup` shows.
const RECENT: usize = 5;
/// Decisions `auth log` shows without `--limit`.
const DEFAULT_LIMIT: usize = 50;
