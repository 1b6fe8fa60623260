//! What the admin API asks of the running server: account explanations,
//! status, Prometheus metrics and reload.

use serde_json::{Value, json};

use super::{Port, ServerHandle};
use crate::admin::AdminBackend;
use crate::store::replica as stored;

/// The admin API's view of the server.
pub struct Backend {
    handle: ServerHandle,
    /// The sync's status as JSON, supplied by whoever runs the sync.
    sync_status: Box<dyn Fn() -> Value + Send + Sync>,
}

impl Backend {
    pub fn new(handle: ServerHandle, sync_status: Box<dyn Fn() -> Value + Send + Sync>) -> Backend {
        Backend { handle, sync_status }
    }

    /// The replica's size and how fresh it is: the sync checkpoints with
    /// their age. Reads the store (admin path, never the RADIUS path).
    fn entra(&self) -> Value {
        let entra = self.handle.entra();
        let counts = entra.replica().counts();
        let now = super::now_unix();
        let checkpoints: Vec<Value> = match self.handle.store().connect().and_then(|c| stored::checkpoints(&c)) {
            Ok(list) => list
                .into_iter()
                .map(|(name, _value, updated_at)| json!({ "name": name, "updated_at": updated_at, "age_seconds": now - updated_at }))
                .collect(),
            Err(e) => vec![json!({ "error": e.to_string() })],
        };
        let load = self.handle.replica_load();
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

/// One line on how fresh the Entra replica is, for the CLI.
pub fn freshness_line(entra: &Value) -> String {
    let users = entra["users"].as_u64().unwrap_or(0);
    let devices = entra["devices"].as_u64().unwrap_or(0);
    let newest = entra["checkpoints"]
        .as_array()
        .and_then(|c| c.iter().filter_map(|c| c["age_seconds"].as_i64()).min());
    let enabled = if entra["enabled"].as_bool().unwrap_or(false) {
        "enabled"
    } else {
        "disabled"
    };
    match newest {
        Some(age) => {
            format!("entra replica: {enabled}, {users} users, {devices} devices, last sync checkpoint {age} s ago")
        }
        None => format!("entra replica: {enabled}, {users} users, {devices} devices, never synced"),
    }
}

impl AdminBackend for Backend {
    fn lookup(&self, identity: &str) -> Value {
        let e = self.handle.explain(identity);
        let mut v = serde_json::to_value(&e).unwrap_or_else(|err| json!({ "error": err.to_string() }));
        v["text"] = Value::String(e.to_string());
        v["entra"] = self.entra();
        v
    }

    fn status(&self) -> Value {
        let listeners: Vec<Value> = self
            .handle
            .listeners()
            .iter()
            .map(|(port, addr)| json!({ "service": match port { Port::Auth => "auth", Port::Acct => "acct" }, "address": addr.to_string() }))
            .collect();
        let (users, macs) = self.handle.local_counts();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.handle.started().elapsed().as_secs(),
            "listeners": listeners,
            "clients": self.handle.client_count(),
            "local": { "users": users, "macs": macs },
            "entra": self.entra(),
            "sync": (self.sync_status)(),
        })
    }

    fn metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        self.handle.counters().render_prometheus(&mut out);
        let counts = self.handle.entra().replica().counts();
        let _ = writeln!(
            out,
            "# HELP entra_radius_replica_objects Objects in the Entra ID replica.\n# TYPE entra_radius_replica_objects gauge"
        );
        for (kind, n) in [
            ("user", counts.users),
            ("device", counts.devices),
            ("soft_deleted", counts.soft_deleted),
        ] {
            let _ = writeln!(out, "entra_radius_replica_objects{{kind=\"{kind}\"}} {n}");
        }
        let (users, macs) = self.handle.local_counts();
        let _ = writeln!(
            out,
            "# HELP entra_radius_local_accounts Local accounts from the config file.\n# TYPE entra_radius_local_accounts gauge\nentra_radius_local_accounts{{kind=\"user\"}} {users}\nentra_radius_local_accounts{{kind=\"mac\"}} {macs}"
        );
        out
    }

    fn reload(&self) -> Result<Value, String> {
        self.handle
            .reload_from_file()
            .map(|summary| json!({ "summary": summary }))
    }
}
