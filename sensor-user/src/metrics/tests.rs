use super::*;
use crate::format::ecs::{self, Host, Loss, Vigie};

/// The value of the series `series` (name and labels, as written) in `text`.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn document(event: ecs::Event, epoch_ns: u64) -> Document {
    Document::new(epoch_ns, event, "e-0".to_owned(), Host { name: "test".to_owned() })
}

/// An alert whose kernel event was `ago_ns` before now, stamped as the pipeline stamps it.
fn alert(metrics: &Metrics, ago_ns: u64) -> Document {
    let kernel_ns = system::monotonic_ns() - ago_ns;
    Document {
        rule: Some(ecs::EXFILTRATION_RULE),
        ..document(ecs::CREDENTIAL_EXFILTRATION, metrics.families.boot_wall_ns + kernel_ns)
    }
}

#[test]
fn documents_are_counted_by_kind_and_action_and_alerts_by_rule() {
    let metrics = Metrics::default();
    let text = metrics.exposition();
    assert_eq!(value(&text, r#"vigie_alerts_total{rule="secret-read-then-egress"}"#), Some(0.0), "{text}");
    metrics.observe(&document(ecs::SENSOR_STARTED, 0));
    metrics.observe(&alert(&metrics, 0));
    metrics.observe(&alert(&metrics, 0));
    let text = metrics.exposition();
    assert_eq!(
        value(&text, r#"vigie_documents_total{kind="state",action="sensor-started"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"vigie_documents_total{kind="alert",action="credential-exfiltration"}"#),
        Some(2.0),
        "{text}"
    );
    assert_eq!(value(&text, r#"vigie_alerts_total{rule="secret-read-then-egress"}"#), Some(2.0), "{text}");
    assert!(text.contains("# TYPE vigie_alerts_total counter"), "{text}");
}

#[test]
fn every_loss_reason_is_a_series_from_the_start_and_grows_by_what_events_lost_reports() {
    let metrics = Metrics::default();
    let text = metrics.exposition();
    for reason in LOSS_REASONS {
        assert_eq!(
            value(&text, &format!(r#"vigie_events_lost_total{{reason="{reason}"}}"#)),
            Some(0.0),
            "{text}"
        );
    }
    for (new, total) in [(3, 3), (2, 5)] {
        let loss = Loss { reason: "taint-map-full", new, total };
        let vigie = Vigie { events_lost: Some(loss), ..Vigie::default() };
        metrics.observe(&Document { vigie: Some(vigie), ..document(ecs::EVENTS_LOST, 0) });
    }
    let text = metrics.exposition();
    assert_eq!(value(&text, r#"vigie_events_lost_total{reason="taint-map-full"}"#), Some(5.0), "{text}");
    assert_eq!(value(&text, r#"vigie_events_lost_total{reason="ring-buffer-full"}"#), Some(0.0), "{text}");
}

#[test]
fn alert_latency_runs_from_the_kernel_event_to_the_write() {
    let metrics = Metrics::default();
    metrics.observe(&alert(&metrics, 2_000_000));
    // Not an alert: no latency.
    metrics.observe(&document(ecs::SECRET_READ, 0));
    let text = metrics.exposition();
    assert_eq!(value(&text, "vigie_alert_latency_seconds_count"), Some(1.0), "{text}");
    let sum = value(&text, "vigie_alert_latency_seconds_sum").unwrap();
    assert!((0.002..1.0).contains(&sum), "latency {sum}: {text}");
    assert_eq!(value(&text, r#"vigie_alert_latency_seconds_bucket{le="0.0016"}"#), Some(0.0), "{text}");
    assert_eq!(value(&text, r#"vigie_alert_latency_seconds_bucket{le="+Inf"}"#), Some(1.0), "{text}");
}

#[test]
fn sinks_report_their_queue_and_their_growing_totals() {
    let metrics = Metrics::default();
    metrics.sink(&SinkStats {
        name: "stdout".to_owned(),
        queued: 7,
        dropped: 1,
        retries: 4,
        ..SinkStats::default()
    });
    metrics.sink(&SinkStats {
        name: "stdout".to_owned(),
        queued: 0,
        dropped: 5,
        retries: 4,
        ..SinkStats::default()
    });
    let text = metrics.exposition();
    assert_eq!(value(&text, r#"vigie_sink_queue_depth{sink="stdout"}"#), Some(0.0), "{text}");
    assert_eq!(value(&text, r#"vigie_sink_dropped_total{sink="stdout"}"#), Some(5.0), "{text}");
    assert_eq!(value(&text, r#"vigie_sink_retries_total{sink="stdout"}"#), Some(4.0), "{text}");
}
