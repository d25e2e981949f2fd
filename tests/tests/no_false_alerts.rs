//! What must stay quiet: sending without having read a secret, sending to a trusted address
//! (loopback by default), and an allowed reader. Each check ends with the lab's barrier, so
//! "no alert" means "none by the time a later alert had come", never "none after a sleep".

use std::net::TcpListener;

use anyhow::{ensure, Result};
use integration_tests::host_tools::{self, quoted};
use integration_tests::{actor_exe, alert, Lab, ALERT_TIMEOUT};

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn connect_without_reading_a_secret_raises_no_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;

    let run = lab.actor().tcp(lab.remote().tcp_v4()).run()?;

    lab.assert_no_alert_for(&sensor, run.pid)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn read_then_connect_to_loopback_raises_no_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let loopback = TcpListener::bind("127.0.0.1:0")?;

    let run = lab.actor().read(lab.secret()).tcp(loopback.local_addr()?).run()?;

    lab.assert_no_alert_for(&sensor, run.pid)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn allowed_reader_raises_no_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let allowed = lab.actor_exe().as_os_str().to_owned();
    let sensor = lab.sensor_with(&["--allow-reader".as_ref(), allowed.as_os_str()])?;

    let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;

    // The sensor saw the allowed read; the barrier's control actor is a copy at another path,
    // so it is not allowed.
    sensor.expect(alert::is_allowed_read_by(run.pid), ALERT_TIMEOUT)?;
    ensure!(
        sensor.lines_matching(alert::is_secret_read_by(run.pid)).is_empty(),
        "the allowed reader was tainted"
    );
    lab.assert_no_alert_for(&sensor, run.pid)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn shell_that_cats_a_secret_then_runs_curl_raises_no_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let url = host_tools::url(lab.remote().tcp_v4());

    // cat is tainted, but neither the shell nor the curl it starts afterwards read anything.
    host_tools::sh(&format!(
        "cat {} > /dev/null; curl -sS -o /dev/null --max-time 10 {url}",
        quoted(lab.secret())
    ))?;

    let alerts = lab.alerts_other_than(&sensor, &[])?;
    ensure!(alerts.is_empty(), "the shell's curl was reported: {alerts:#?}");
    Ok(())
}
