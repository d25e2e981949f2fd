//! Ways out beyond a fresh connect: sends on a connection opened before the read, sendfile
//! and splice straight from the secret, DNS queries, `io_uring` connects, and the byte count
//! that grows while a transfer runs (in progress lines, never in a second alert).

use std::net::SocketAddr;

use anyhow::Result;
use integration_tests::{actor_exe, alert, Actor, Lab, ALERT_TIMEOUT};
use serde_json::Value;

/// Starts a sensor, runs `actor` and expects its alert, to `dest` over `transport`, naming
/// the secret.
fn expect_alert(lab: &Lab, actor: Actor, dest: SocketAddr, transport: &str) -> Result<Value> {
    let sensor = lab.sensor()?;
    let run = actor.run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    assert_eq!(alert::destination(&alert), Some(dest), "{alert:#}");
    assert_eq!(alert::transport(&alert), Some(transport), "{alert:#}");
    Ok(alert)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn send_on_a_connection_opened_before_the_read_is_reported_with_its_bytes() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let dest = lab.remote().tcp_v4();
    let actor = lab.actor().open_tcp(dest).read(lab.secret()).send(4096);

    let alert = expect_alert(&lab, actor, dest, "tcp")?;
    assert!(alert::source_bytes(&alert).is_some_and(|bytes| bytes > 0), "bytes sent: {alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn sendfile_from_the_secret_into_an_open_connection_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let dest = lab.remote().tcp_v4();
    let actor = lab.actor().open_tcp(dest).sendfile(lab.secret());
    expect_alert(&lab, actor, dest, "tcp").map(drop)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn splice_from_the_secret_into_an_open_connection_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let dest = lab.remote().tcp_v4();
    let actor = lab.actor().open_tcp(dest).splice(lab.secret());
    expect_alert(&lab, actor, dest, "tcp").map(drop)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn dns_query_to_an_untrusted_resolver_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let resolver = lab.remote().dns_v4();
    assert_eq!(resolver.port(), 53);
    let actor = lab.actor().read(lab.secret()).dns(resolver);
    expect_alert(&lab, actor, resolver, "udp").map(drop)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn io_uring_connect_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let dest = lab.remote().tcp_v4();
    let actor = lab.actor().read(lab.secret()).uring_tcp(dest);
    expect_alert(&lab, actor, dest, "tcp").map(drop)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn long_transfer_updates_its_byte_count_in_one_alert() -> Result<()> {
    const TRANSFER: u64 = 8 << 20;
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let dest = lab.remote().tcp_v4();

    let run = lab.actor().read(lab.secret()).open_tcp(dest).send(TRANSFER).run()?;

    let about_run = |line: &Value| {
        (alert::is_exfiltration_by(run.pid)(line) || alert::is_progress_by(run.pid)(line))
            && alert::destination(line) == Some(dest)
    };
    let complete = |line: &Value| about_run(line) && alert::source_bytes(line).is_some_and(|b| b >= TRANSFER);
    let line = sensor.expect(complete, ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&line), lab.secret().to_str(), "{line:#}");
    lab.barrier(&sensor)?;
    let alerts = sensor.lines_matching(alert::is_exfiltration_by(run.pid));
    assert_eq!(alerts.len(), 1, "one alert, then progress lines: {alerts:#?}");
    let counts: Vec<u64> = sensor.lines_matching(about_run).iter().filter_map(alert::source_bytes).collect();
    assert!(counts.is_sorted(), "the byte count only grows: {counts:?}");
    Ok(())
}
