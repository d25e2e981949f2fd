//! Records the ring buffer had no room for are counted, and a lost connect record still gives
//! its alert: the kernel counts every tainted process's bytes per destination, with what the
//! first send's record said, and the agent reads those counts after a loss.

use anyhow::{ensure, Result};
use integration_tests::host_tools;
use integration_tests::ring_overflow::{self, SMALLEST_RING};
use integration_tests::{actor_exe, alert, Lab, ALERT_TIMEOUT};
use serde_json::Value;

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_connect_lost_to_a_full_ring_buffer_is_alerted_late_from_the_kernels_byte_counts() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_with(&["--ring-buffer-bytes", SMALLEST_RING])?;
    let dest = lab.remote().tcp_v4();

    // Its exec, taint and connect records find the ring full.
    let thief = ring_overflow::while_full(&sensor, || {
        lab.actor().read(lab.secret()).open_tcp(dest).send(1_000).run()
    })?;

    let lost = sensor.expect(alert::is_events_lost, ALERT_TIMEOUT)?;
    ensure!(alert::loss(&lost).is_some(), "{lost:#}");
    let late = sensor.expect(alert::is_exfiltration_by(thief.pid), ALERT_TIMEOUT)?;
    let recovered = late.pointer("/vigie/recovered").and_then(Value::as_str);
    ensure!(recovered == Some("kernel-send-totals"), "the late alert says so: {late:#}");
    ensure!(alert::file_path(&late) == lab.secret().to_str(), "the secret is named: {late:#}");
    ensure!(alert::destination(&late) == Some(dest), "{late:#}");
    ensure!(alert::source_bytes(&late).is_some_and(|b| b >= 1_000), "the bytes it sent: {late:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_allowed_reader_with_a_loader_variable_is_not_allowed_while_the_ring_is_full() -> Result<()> {
    // The exec program checks the environment whether or not its record finds room.
    let lab = Lab::new(actor_exe!())?;
    let allowed = lab.actor_exe().display().to_string();
    let sensor =
        lab.sensor_with(&["--ring-buffer-bytes", SMALLEST_RING, "--allow-reader", allowed.as_str()])?;
    let dest = lab.remote().tcp_v4();

    let preloaded = ring_overflow::while_full(&sensor, || {
        host_tools::sh(&format!(
            "exec env -u LD_LIBRARY_PATH LD_PRELOAD=libm.so.6 {} --read {} --open-tcp {dest} --send 1000",
            host_tools::quoted(lab.actor_exe()),
            host_tools::quoted(lab.secret())
        ))
    })?;

    let late = sensor.expect(alert::is_exfiltration_by(preloaded), ALERT_TIMEOUT)?;
    ensure!(alert::file_path(&late) == lab.secret().to_str(), "{late:#}");
    Ok(())
}
