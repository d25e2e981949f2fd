//! Prometheus metrics: Debian's Prometheus, started by the test on loopback, scrapes the
//! agent's `/metrics` while a real exfiltration is alerted, and its query API returns the
//! agent's series: the alert counted by rule, every loss reason, the kernel maps' fill.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Result;
use integration_tests::cli::run_vigie;
use integration_tests::prometheus::{free_loopback_port, get, sample_value, Prometheus};
use integration_tests::{actor_exe, alert, Lab, ALERT_TIMEOUT};
use serde_json::Value;

/// How long Prometheus may take to scrape what the agent counted (it scrapes every second).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);

fn metrics_address() -> Result<SocketAddr> {
    Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_loopback_port()?))
}

/// The one sample of `result`'s value (a query that names one series).
fn only_value(result: &[Value]) -> Option<f64> {
    match result {
        [sample] => sample_value(sample),
        _ => None,
    }
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn prometheus_scrapes_the_alert_counted_by_rule_and_the_loss_and_map_series() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let listen = metrics_address()?;
    let sensor = lab.sensor_with(&["--metrics", &listen.to_string()])?;
    let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;
    sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;

    let dir = lab.dir().join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let prometheus = Prometheus::start(&dir, listen)?;
    let alerts = prometheus.query_until(
        r#"vigie_alerts_total{rule="secret-read-then-egress"}"#,
        SCRAPE_TIMEOUT,
        |r| only_value(r).is_some_and(|v| v >= 1.0),
    )?;
    assert!(only_value(&alerts).is_some_and(|v| v >= 1.0), "the alert is counted: {alerts:#?}");

    let up = prometheus.query(r#"up{job="vigie"}"#)?;
    assert_eq!(only_value(&up), Some(1.0), "the scrape succeeds: {up:#?}");
    let documents =
        prometheus.query(r#"vigie_documents_total{kind="alert",action="credential-exfiltration"}"#)?;
    assert!(only_value(&documents).is_some_and(|v| v >= 1.0), "{documents:#?}");
    let latency = prometheus.query("vigie_alert_latency_seconds_count")?;
    assert!(only_value(&latency).is_some_and(|v| v >= 1.0), "the alert's latency is observed: {latency:#?}");

    // Every reason `events-lost` names (README) is a series before any loss.
    let lost = prometheus.query("vigie_events_lost_total")?;
    let reasons: Vec<&str> = lost.iter().filter_map(|s| s["metric"]["reason"].as_str()).collect();
    assert_eq!(reasons.len(), 6, "{lost:#?}");
    for reason in ["ring-buffer-full", "taint-map-full", "record-malformed"] {
        assert!(reasons.contains(&reason), "{reason} is a series: {lost:#?}");
    }

    let capacity = prometheus.query(r#"vigie_map_capacity{map="TAINTED"}"#)?;
    assert_eq!(only_value(&capacity), Some(65_536.0), "{capacity:#?}");
    let entries = prometheus.query("vigie_map_entries")?;
    assert_eq!(entries.len(), 3, "taint, channel and send-total maps: {entries:#?}");
    let ring = prometheus.query("vigie_ring_buffer_bytes")?;
    assert_eq!(only_value(&ring), Some(f64::from(1u32 << 20)), "the default ring size: {ring:#?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn only_get_metrics_is_answered() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let listen = metrics_address()?;
    let _sensor = lab.sensor_with(&["--metrics", &listen.to_string()])?;
    let body = get(&format!("http://{listen}/metrics"))?;
    assert!(body.contains("# TYPE vigie_alerts_total counter"), "{body}");
    for other in ["/", "/metrics/x", "/api/v1/query"] {
        let error = get(&format!("http://{listen}{other}")).unwrap_err().to_string();
        assert!(error.contains("404"), "{other}: {error}");
    }
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_metrics_address_in_use_is_refused_with_exit_code_2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("credentials");
    std::fs::write(&secret, "not a real key\n")?;
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let address = taken.local_addr()?.to_string();
    let secret = secret.to_string_lossy();
    let exit = run_vigie(&["run", "--profile", "none", "--secret", &secret, "--metrics", &address], None)?;
    assert_eq!(exit.code, Some(2), "{exit:#?}");
    assert!(!exit.panicked(), "{exit:#?}");
    assert!(exit.stderr.contains(&format!("metrics listen address {address}")), "{exit:#?}");
    assert!(exit.stderr.contains("in use"), "{exit:#?}");
    Ok(())
}
