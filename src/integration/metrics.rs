//! The sync's gauges and counters for `/metrics`, in Prometheus' text format.

use std::fmt::Write;

/// Sync gauges and counters in Prometheus' text format.
pub fn render_sync_metrics(st: &super::SyncStatus, out: &mut String) {
    let objects = st.objects();
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&super::ObjectStatus) -> Option<f64>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (object, s) in objects {
            if let Some(v) = value(s) {
                let _ = writeln!(out, "{name}{{object=\"{object}\"}} {v}");
            }
        }
    };
    family(
        "entra_radius_sync_last_success_timestamp_seconds",
        "gauge",
        "When the last successful sync round of this object type ended (unix seconds).",
        &|s| s.last_success.map(|t| t as f64),
    );
    family(
        "entra_radius_sync_last_duration_seconds",
        "gauge",
        "How long the last sync round of this object type took.",
        &|s| Some(s.last_duration_ms as f64 / 1000.0),
    );
    family(
        "entra_radius_sync_last_items",
        "gauge",
        "Items the last successful sync round of this object type read.",
        &|s| Some(s.items as f64),
    );
    family(
        "entra_radius_sync_failures_total",
        "counter",
        "Failed sync rounds of this object type since the server started.",
        &|s| Some(s.failures as f64),
    );
    let _ = writeln!(
        out,
        "# HELP entra_radius_sync_running Whether a sync round is running.\n# TYPE entra_radius_sync_running gauge\nentra_radius_sync_running {}",
        u8::from(st.running)
    );
    let _ = writeln!(
        out,
        "# HELP entra_radius_sync_rounds_total Sync rounds finished since the server started.\n# TYPE entra_radius_sync_rounds_total counter\nentra_radius_sync_rounds_total {}",
        st.rounds_finished
    );
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
