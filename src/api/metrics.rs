//! `GET /metrics`: the service's state in Prometheus text format.

use crate::store::metrics::Snapshot;
use std::fmt::Write;

/// Renders a snapshot as Prometheus text exposition.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP ckan_webhooks_{name} {help}");
        let _ = writeln!(out, "# TYPE ckan_webhooks_{name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "ckan_webhooks_{name}{labels} {value}");
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    let labelled = |label: &str, values: &[(String, i64)]| -> Vec<(String, f64)> {
        values
            .iter()
            .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), *v as f64))
            .collect()
    };

    gauge(
        "change_backlog",
        "Captured row changes not yet derived.",
        &one(s.change_backlog as f64),
    );
    gauge(
        "change_lag_seconds",
        "Age of the oldest captured change not yet derived.",
        &one(s.change_lag_seconds),
    );
    gauge(
        "deliveries",
        "Delivery records by status.",
        &labelled("status", &s.deliveries),
    );
    gauge(
        "deliveries_due",
        "Pending deliveries whose next attempt is due.",
        &one(s.deliveries_due as f64),
    );
    let latency: Vec<(String, f64)> = s
        .latency_ms
        .map(|(p50, p99)| {
            vec![
                ("{quantile=\"0.5\"}".to_string(), p50),
                ("{quantile=\"0.99\"}".to_string(), p99),
            ]
        })
        .unwrap_or_default();
    gauge(
        "delivery_latency_ms",
        "Latency of delivery attempts in the last five minutes.",
        &latency,
    );
    gauge(
        "subscriptions",
        "Webhooks by state.",
        &labelled("state", &s.subscriptions),
    );
    gauge(
        "notify_queue_usage",
        "Fraction of PostgreSQL's NOTIFY queue in use.",
        &one(s.notify_queue_usage),
    );
    gauge(
        "capture_triggers",
        "Capture triggers on CKAN's tables; 0 means changes are not being captured.",
        &one(s.capture_triggers as f64),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let text = render(&Snapshot {
            change_backlog: 3,
            deliveries: vec![("dead".into(), 1), ("pending".into(), 2)],
            latency_ms: Some((4.5, 20.0)),
            capture_triggers: 12,
            ..Snapshot::default()
        });
        assert!(text.contains(
            "# TYPE ckan_webhooks_change_backlog gauge\nckan_webhooks_change_backlog 3\n"
        ));
        assert!(text.contains("ckan_webhooks_deliveries{status=\"dead\"} 1\n"));
        assert!(text.contains("ckan_webhooks_delivery_latency_ms{quantile=\"0.99\"} 20\n"));
        assert!(text.contains("ckan_webhooks_capture_triggers 12\n"));
    }
}
