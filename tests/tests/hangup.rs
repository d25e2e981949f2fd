//! SIGHUP: the output file is opened again at its path (logrotate moved it) and the
//! configuration read again, applied live where it can be, and kept when it is broken. The
//! agent never stops watching: an alert after the signal arrives each time.

use std::fs;
use std::path::Path;

use anyhow::{ensure, Result};
use integration_tests::sensor::Documents;
use integration_tests::{actor_exe, alert, Lab, ALERT_TIMEOUT};
use serde_json::Value;

fn strings(line: &Value, pointer: &str) -> Vec<String> {
    line.pointer(pointer)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The JSON lines of `path` whose `process.pid` is `pid`.
fn lines_of(path: &Path, pid: u32) -> Result<usize> {
    let text = fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| alert::process_pid(line) == Some(pid))
        .count())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn after_a_hangup_documents_go_to_a_new_file_at_the_output_path() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let output = lab.dir().join("alerts.jsonl");
    let rotated = lab.dir().join("alerts.jsonl.1");
    let sensor = lab.sensor_reading::<&str>(&Documents::File(output.clone()), &[])?;
    let before = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;
    sensor.expect(alert::is_exfiltration_by(before.pid), ALERT_TIMEOUT)?;

    fs::rename(&output, &rotated)?;
    sensor.signal(libc::SIGHUP)?;
    let reloaded = sensor.expect(|l| alert::is_state(l, "config-reloaded"), ALERT_TIMEOUT)?;
    let after = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;

    sensor.expect(alert::is_exfiltration_by(after.pid), ALERT_TIMEOUT)?;
    assert!(strings(&reloaded, "/vigie/config/applied").is_empty(), "nothing changed: {reloaded}");
    ensure!(lines_of(&output, after.pid)? >= 2, "the read and the alert after the HUP in the new file");
    ensure!(lines_of(&output, before.pid)? == 0, "the new file starts after the HUP");
    ensure!(lines_of(&rotated, before.pid)? >= 2, "what came before stays in the moved file");
    ensure!(lines_of(&rotated, after.pid)? == 0, "nothing after the HUP in the moved file");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_hangup_with_a_broken_config_keeps_the_running_one_and_says_where() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let config = lab.dir().join("vigie.toml");
    fs::write(&config, "secrets = []\n")?;
    let sensor = lab.sensor_with(&["--config".as_ref(), config.as_os_str()])?;

    fs::write(&config, "secrets = []\ntrusted_nets = [\"10.0.0.0/33\"]\n")?;
    sensor.signal(libc::SIGHUP)?;

    let failed = sensor.expect(|l| alert::is_state(l, "config-reload-failed"), ALERT_TIMEOUT)?;
    let error = failed.pointer("/vigie/config/error").and_then(Value::as_str).unwrap_or_default();
    assert!(error.contains(&config.display().to_string()) && error.contains("line 2, column"), "{failed}");
    let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;
    sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_hangup_applies_new_secrets_and_trusted_nets_and_names_what_needs_a_restart() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let config = lab.dir().join("vigie.toml");
    let second = lab.dir().join("second-credentials");
    fs::write(&second, "not a real key\n")?;
    fs::write(&config, "secrets = []\n")?;
    let sensor = lab.sensor_with(&["--config".as_ref(), config.as_os_str()])?;

    let trusted = format!("{}/128", lab.remote().ipv6());
    fs::write(
        &config,
        format!("secrets = [{:?}]\ntrusted_nets = [{trusted:?}]\ntaint_window_secs = 60\n", second.display()),
    )?;
    sensor.signal(libc::SIGHUP)?;

    let reloaded = sensor.expect(|l| alert::is_state(l, "config-reloaded"), ALERT_TIMEOUT)?;
    assert_eq!(strings(&reloaded, "/vigie/config/applied"), ["secrets", "trusted_nets"], "{reloaded}");
    assert_eq!(strings(&reloaded, "/vigie/config/ignored"), ["taint_window"], "{reloaded}");
    sensor.expect(alert::is_watch_updated_for(&second), ALERT_TIMEOUT)?;
    let run = lab.actor().read(&second).tcp(lab.remote().tcp_v6()).tcp(lab.remote().tcp_v4()).run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), second.to_str(), "the new secret: {alert:#}");
    lab.barrier(&sensor)?;
    let alerts = sensor.lines_matching(alert::is_exfiltration_by(run.pid));
    let destinations: Vec<_> = alerts.iter().map(alert::destination).collect();
    ensure!(destinations == [Some(lab.remote().tcp_v4())], "the newly trusted net is silent: {alerts:#?}");
    Ok(())
}
