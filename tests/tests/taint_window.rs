//! `--taint-window SECS`: a process's taint expires SECS after its read, while a derived
//! file keeps its taint (a new reader of it is tainted afresh).

use std::time::Duration;

use anyhow::Result;
use integration_tests::{actor_exe, alert, host_tools, Lab, ALERT_TIMEOUT};

const WINDOW: &str = "1";
/// Longer than the window, with room for timer granularity. Waiting for a window to pass is
/// the precondition of these tests, not what they assert, so a sleep is the right tool.
const PAST_THE_WINDOW: Duration = Duration::from_secs(2);

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn taint_older_than_the_window_raises_no_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_with(&["--taint-window", WINDOW])?;
    let dest = lab.remote().tcp_v4();

    let late = lab.actor().read(lab.secret()).sleep(PAST_THE_WINDOW).tcp(dest).run()?;
    let prompt = lab.actor().read(lab.secret()).tcp(dest).run()?;

    let alert = sensor.expect(alert::is_exfiltration_by(prompt.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    lab.assert_no_alert_for(&sensor, late.pid)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn derived_file_keeps_its_taint_past_the_window() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_with(&["--taint-window", WINDOW])?;
    let derived = lab.dir().join("copy");
    host_tools::run("cp", &[lab.secret(), derived.as_path()])?;
    std::thread::sleep(PAST_THE_WINDOW);

    let curl = host_tools::curl_upload(&derived, lab.remote().tcp_v4())?;

    let alert = sensor.expect(alert::is_exfiltration_by(curl), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    assert_eq!(alert::via_path(&alert), derived.to_str(), "{alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn every_read_renews_the_window() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_with(&["--taint-window", WINDOW])?;
    let dest = lab.remote().tcp_v4();
    let most_of_the_window = Duration::from_millis(700);

    // Each read comes within the window of the one before; the send comes past the window of
    // the first read.
    let renewed = lab
        .actor()
        .read(lab.secret())
        .sleep(most_of_the_window)
        .read(lab.secret())
        .sleep(most_of_the_window)
        .tcp(dest)
        .run()?;

    let alert = sensor.expect(alert::is_exfiltration_by(renewed.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_read_after_the_window_taints_afresh() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_with(&["--taint-window", WINDOW])?;
    let dest = lab.remote().tcp_v4();

    let again = lab.actor().read(lab.secret()).sleep(PAST_THE_WINDOW).read(lab.secret()).tcp(dest).run()?;

    let alert = sensor.expect(alert::is_exfiltration_by(again.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    Ok(())
}
