//! The sync's gauges and counters for `/metrics`, in Prometheus' text format.

use crate::prometheus::{Kind, family};

/// Sync gauges and counters in Prometheus' text format.
pub fn render_sync_metrics(st: &super::SyncStatus, out: &mut String) {
    let objects = st.objects();
    let mut per_object = |name: &str, kind: Kind, help: &str, value: &dyn Fn(&super::ObjectStatus) -> Option<f64>| {
        let mut f = family(out, name, kind, help);
        for (object, s) in objects {
            if let Some(v) = value(s) {
                f.sample(&[("object", object)], v);
            }
        }
    };
    per_object(
        "entra_radius_sync_last_success_timestamp_seconds",
        Kind::Gauge,
        "When the last successful sync round of this object type ended (unix seconds).",
        &|s| s.last_success.map(|t| t as f64),
    );
    per_object(
        "entra_radius_sync_last_duration_seconds",
        Kind::Gauge,
        "How long the last sync round of this object type took.",
        &|s| Some(s.last_duration_ms as f64 / 1000.0),
    );
    per_object(
        "entra_radius_sync_last_items",
        Kind::Gauge,
        "Items the last successful sync round of this object type read.",
        &|s| Some(s.items as f64),
    );
    per_object(
        "entra_radius_sync_failures_total",
        Kind::Counter,
        "Failed sync rounds of this object type since the server started.",
        &|s| Some(s.failures as f64),
    );
    family(
        out,
        "entra_radius_sync_running",
        Kind::Gauge,
        "Whether a sync round is running.",
    )
    .sample(&[], u8::from(st.running));
    family(
        out,
        "entra_radius_sync_rounds_total",
        Kind::Counter,
        "Sync rounds finished since the server started.",
    )
    .sample(&[], st.rounds_finished);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_metrics_have_help_type_and_samples() {
        let mut st = super::super::SyncStatus::default();
        st.users.last_success = Some(1_700_000_000);
        st.users.items = 42;
        st.groups.failures = 3;
        st.rounds_finished = 2;
        let mut out = String::new();
        render_sync_metrics(&st, &mut out);
        assert!(out.contains("entra_radius_sync_last_success_timestamp_seconds{object=\"users\"} 1700000000"));
        assert!(!out.contains("entra_radius_sync_last_success_timestamp_seconds{object=\"devices\"}"));
        assert!(out.contains("entra_radius_sync_last_items{object=\"users\"} 42"));
        assert!(out.contains("entra_radius_sync_failures_total{object=\"groups\"} 3"));
        assert!(out.contains("# TYPE entra_radius_sync_rounds_total counter\nentra_radius_sync_rounds_total 2"));
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap();
        }
    }
}
