//! A process that read a watched secret and then sends to an untrusted address is reported,
//! once per (process, secret, destination), whatever the transport or address family.

use std::net::SocketAddr;

use anyhow::Result;
use integration_tests::{actor_exe, alert, Lab, RemoteHost, ALERT_TIMEOUT};
use serde_json::Value;

fn assert_names(alert: &Value, pid: u32, lab: &Lab, dest: SocketAddr, transport: &str) {
    assert_eq!(alert::process_pid(alert), Some(pid), "{alert:#}");
    assert_eq!(alert::file_path(alert), lab.secret().to_str(), "the configured secret path: {alert:#}");
    assert_eq!(alert::destination(alert), Some(dest), "{alert:#}");
    assert_eq!(alert::transport(alert), Some(transport), "{alert:#}");
}

/// Reads the secret, sends once to the remote over `transport`, expects the full alert.
fn assert_read_then_send_is_reported(
    transport: &str,
    destination: fn(&RemoteHost) -> SocketAddr,
) -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let dest = destination(lab.remote());
    let reader = lab.actor().read(lab.secret());
    let actor = if transport == "udp" { reader.udp(dest) } else { reader.tcp(dest) };

    let run = actor.run()?;

    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_names(&alert, run.pid, &lab, dest, transport);
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn read_then_tcp_connect_raises_exactly_one_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let dest = lab.remote().tcp_v4();

    let run = lab.actor().read(lab.secret()).tcp(dest).tcp(dest).run()?;

    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_names(&alert, run.pid, &lab, dest, "tcp");
    lab.barrier(&sensor)?;
    let alerts = sensor.lines_matching(alert::is_exfiltration_by(run.pid));
    assert_eq!(alerts.len(), 1, "one alert for two connects: {alerts:#?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn read_then_udp_datagram_raises_a_udp_alert() -> Result<()> {
    assert_read_then_send_is_reported("udp", RemoteHost::tcp_v4)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn read_then_tcp_connect_over_ipv6_raises_an_alert() -> Result<()> {
    assert_read_then_send_is_reported("tcp", RemoteHost::tcp_v6)
}
