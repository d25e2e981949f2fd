//! The watch follows a configured path to whatever file it names now: a secret replaced by
//! rename, deleted and recreated, or created after the sensor started is watched again
//! without a restart, and reported under the configured path.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// The issue promises the new identity within a second (a 500 ms rescan); the rest is margin
/// for a loaded CI machine.
const WATCH_TIMEOUT: Duration = Duration::from_secs(3);
const NEW_CONTENT: &str = "aws_secret_access_key = vigie-test-rotated-not-a-real-key\n";

fn inode(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)?.ino())
}

/// Waits for the `watch-updated` line that moves `path` to `new_inode`.
fn expect_watch_updated(sensor: &Sensor, path: &Path, new_inode: u64) -> Result<Value> {
    let started = Instant::now();
    let is_update = alert::is_watch_updated_for(path);
    let line =
        sensor.expect(|line| is_update(line) && alert::file_inode(line) == Some(new_inode), WATCH_TIMEOUT)?;
    eprintln!("watch-updated for {} after {:?}", path.display(), started.elapsed());
    Ok(line)
}

/// A new actor reads `path` and connects: the alert names `path` and the file it is now.
fn assert_new_file_is_the_secret(lab: &Lab, sensor: &Sensor, path: &Path, new_inode: u64) -> Result<()> {
    let run = lab.actor().read(path).tcp(lab.remote().tcp_v4()).run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), path.to_str(), "{alert:#}");
    assert_eq!(alert::file_inode(&alert), Some(new_inode), "the new file: {alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn secret_replaced_by_rename_is_followed() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let old = inode(lab.secret())?;

    // What editors and config-management tools do: write a temporary file, rename it over.
    let temporary = lab.dir().join(".credentials.tmp");
    fs::write(&temporary, NEW_CONTENT)?;
    fs::rename(&temporary, lab.secret())?;
    let new = inode(lab.secret())?;
    assert_ne!(old, new, "a rename gives the path another inode");

    expect_watch_updated(&sensor, lab.secret(), new)?;
    assert_new_file_is_the_secret(&lab, &sensor, lab.secret(), new)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn secret_deleted_and_recreated_is_followed() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let old = inode(lab.secret())?;
    // A second name keeps the old inode allocated, so the file system cannot hand its number
    // to the new file (ext4 would): the new file is a new identity for certain.
    fs::hard_link(lab.secret(), lab.dir().join("old-credentials"))?;

    fs::remove_file(lab.secret())?;
    fs::write(lab.secret(), NEW_CONTENT)?;
    let new = inode(lab.secret())?;
    assert_ne!(old, new);

    expect_watch_updated(&sensor, lab.secret(), new)?;
    assert_new_file_is_the_secret(&lab, &sensor, lab.secret(), new)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn secret_created_after_the_sensor_started_is_watched() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let later = lab.dir().join("later-credentials");
    let sensor = lab.sensor_with(&["--secret".as_ref(), later.as_os_str()])?;

    fs::write(&later, NEW_CONTENT)?;
    let new = inode(&later)?;

    expect_watch_updated(&sensor, &later, new)?;
    assert_new_file_is_the_secret(&lab, &sensor, &later, new)
}
