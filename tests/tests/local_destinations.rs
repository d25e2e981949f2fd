//! This host's own addresses are not off the host: a secret reader connecting to an address
//! of one of its interfaces (not loopback) raises no alert, whether the address was there when
//! the sensor started or was added while it ran. Each case proves the sensor saw the process
//! (its `secret-read`) and its traffic: the same process's later connect to the remote host
//! alerts, and it is its only alert. Being local, such a connection is a channel: a relay
//! behind the address is tainted, and its upload is the alert.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

use anyhow::{ensure, Result};
use integration_tests::local_interface::LocalInterface;
use integration_tests::{actor_exe, alert, host_tools, Lab, Sensor, ALERT_TIMEOUT};

/// The actor reads the secret, connects and sends to `local` over TCP (v4 and v4-mapped) and
/// UDP (v6), then connects to the remote host: one alert, for the remote host only.
fn assert_only_the_remote_alerts(lab: &Lab, sensor: &Sensor, interface: &LocalInterface) -> Result<()> {
    let tcp = TcpListener::bind((interface.ipv4(), 0))?;
    let v4 = tcp.local_addr()?;
    let IpAddr::V4(ipv4) = interface.ipv4() else { unreachable!("ipv4() is IPv4") };
    let mapped = SocketAddr::new(IpAddr::V6(ipv4.to_ipv6_mapped()), v4.port());
    let udp = UdpSocket::bind((interface.ipv6(), 0))?;
    let remote = lab.remote().tcp_v4();

    let run = lab.actor().read(lab.secret()).tcp(v4).tcp(mapped).udp(udp.local_addr()?).tcp(remote).run()?;

    sensor.expect(alert::is_secret_read_by(run.pid), ALERT_TIMEOUT)?;
    sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    lab.barrier(sensor)?;
    let alerts = sensor.lines_matching(alert::is_exfiltration_by(run.pid));
    let destinations: Vec<_> = alerts.iter().map(alert::destination).collect();
    ensure!(destinations == [Some(remote)], "only the remote host alerts: {alerts:#?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_address_of_this_host_at_start_is_not_off_the_host() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let interface = LocalInterface::create()?;
    interface.add(interface.ipv4())?;
    interface.add(interface.ipv6())?;
    let sensor = lab.sensor()?;
    let started = sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;
    let known = started.pointer("/vigie/local_addresses").and_then(serde_json::Value::as_u64);
    // Loopback's two, the remote host's veth end's two, and the two added here at least.
    ensure!(known.is_some_and(|n| n >= 6), "sensor-started counts local addresses: {started}");

    assert_only_the_remote_alerts(&lab, &sensor, &interface)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_address_added_while_the_sensor_runs_is_not_off_the_host() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let interface = LocalInterface::create()?;
    let sensor = lab.sensor()?;

    interface.add(interface.ipv4())?;
    interface.add(interface.ipv6())?;

    assert_only_the_remote_alerts(&lab, &sensor, &interface)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_relay_behind_an_address_of_this_host_is_tainted_and_its_upload_is_the_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let interface = LocalInterface::create()?;
    interface.add(interface.ipv4())?;
    let sensor = lab.sensor()?;
    let remote = lab.remote().tcp_v4();
    let (mut relay, local) = host_tools::python_relay(interface.ipv4(), remote)?;

    let sender = lab.actor().read(lab.secret()).tcp(local).run()?;

    ensure!(relay.wait()?.success(), "the relay failed");
    let alert = sensor.expect(alert::is_exfiltration_by(relay.id()), ALERT_TIMEOUT)?;
    assert_eq!(alert::origin_pid(&alert), Some(sender.pid), "{alert:#}");
    assert_eq!(alert::via_kind(&alert), Some("loopback-socket"), "{alert:#}");
    let sender_alerts = sensor.lines_matching(alert::is_exfiltration_by(sender.pid));
    ensure!(sender_alerts.is_empty(), "the host's own address is not off the host: {sender_alerts:#?}");
    Ok(())
}
