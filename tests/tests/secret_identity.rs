//! A secret is its file, not its path: reads through other names are still the secret's,
//! and alerts show the path the operator configured.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::Result;
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};

fn read_through(lab: &Lab, sensor: &Sensor, link: &Path) -> Result<()> {
    let run = lab.actor().read(link).tcp(lab.remote().tcp_v4()).run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "read through {}: {alert:#}", link.display());
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn reads_through_a_hardlink_or_a_symlink_are_reported_under_the_configured_path() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let hardlink = lab.dir().join("hardlink-to-credentials");
    let symlink_path = lab.dir().join("symlink-to-credentials");
    fs::hard_link(lab.secret(), &hardlink)?;
    symlink(lab.secret(), &symlink_path)?;
    let sensor = lab.sensor()?;

    read_through(&lab, &sensor, &hardlink)?;
    read_through(&lab, &sensor, &symlink_path)
}
