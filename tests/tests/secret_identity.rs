//! A secret is its file, not its path: reads through other names are still the secret's,
//! and alerts show the path the operator configured.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::ptr;

use anyhow::{Context, Result};
use integration_tests::{actor_exe, alert, Actor, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// Runs `actor` (which reads the secret some way), then a connect to the remote; expects the
/// alert under the configured path, as a direct read (no `vigie.via`).
fn assert_reported_as_the_secret(lab: &Lab, sensor: &Sensor, actor: Actor, how: &str) -> Result<Value> {
    let run = actor.tcp(lab.remote().tcp_v4()).run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "read {how}: {alert:#}");
    assert_eq!(alert::origin_pid(&alert), Some(run.pid), "read {how}: {alert:#}");
    assert_eq!(alert::via_kind(&alert), None, "a direct read, read {how}: {alert:#}");
    Ok(alert)
}

fn read_through(lab: &Lab, sensor: &Sensor, link: &Path) -> Result<()> {
    let how = format!("through {}", link.display());
    assert_reported_as_the_secret(lab, sensor, lab.actor().read(link), &how).map(drop)
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

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn read_through_dot_dot_traversal_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    fs::create_dir_all(lab.dir().join("a/b"))?;
    let name = lab.secret().file_name().context("the secret has a file name")?;
    let detour = lab.dir().join("a/b/../..").join(name);
    let sensor = lab.sensor()?;

    read_through(&lab, &sensor, &detour)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn read_through_a_reopen_of_proc_self_fd_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;

    let actor = lab.actor().read_reopened(lab.secret());
    assert_reported_as_the_secret(&lab, &sensor, actor, "through /proc/self/fd/N").map(drop)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn read_through_o_path_and_a_reopen_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;

    let actor = lab.actor().read_o_path(lab.secret());
    assert_reported_as_the_secret(&lab, &sensor, actor, "through O_PATH + /proc/self/fd/N").map(drop)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn read_through_proc_pid_root_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    // Another process's view of the file system: this test's own.
    let via_root = PathBuf::from(format!("/proc/{}/root", std::process::id()))
        .join(lab.secret().strip_prefix("/").context("the secret's path is absolute")?);
    let sensor = lab.sensor()?;

    read_through(&lab, &sensor, &via_root)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn read_through_a_bind_mount_of_the_secret_directory_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let mount_point = tempfile::Builder::new().prefix("vigie-it-bind-").tempdir()?;
    // Declared after the directory, so dropped (unmounted) before it is removed.
    let bind = BindMount::new(lab.dir(), mount_point.path())?;
    let name = lab.secret().file_name().context("the secret has a file name")?;
    let sensor = lab.sensor()?;

    read_through(&lab, &sensor, &bind.target.join(name))
}

/// `mount --bind SOURCE TARGET`, undone on drop, also when the test fails.
struct BindMount {
    target: PathBuf,
}

impl BindMount {
    fn new(source: &Path, target: &Path) -> Result<Self> {
        let (source_c, target_c) = (c_path(source)?, c_path(target)?);
        // SAFETY: both are valid NUL-terminated paths; a bind mount takes no fs type or data.
        let done = unsafe {
            libc::mount(source_c.as_ptr(), target_c.as_ptr(), ptr::null(), libc::MS_BIND, ptr::null())
        };
        if done != 0 {
            let error = io::Error::last_os_error();
            return Err(error).with_context(|| format!("bind {} on {}", source.display(), target.display()));
        }
        Ok(BindMount { target: target.to_owned() })
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let Ok(target) = c_path(&self.target) else { return };
        // SAFETY: a valid NUL-terminated path; MNT_DETACH succeeds even if something is still
        // open under it.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!("unmount {}: {}", self.target.display(), io::Error::last_os_error());
        }
    }
}

fn c_path(path: &Path) -> Result<CString> {
    Ok(CString::new(path.as_os_str().as_bytes())?)
}

/// Creates files in `dir` until one gets inode number `ino` (ext4 hands a freed inode number
/// to the next file created nearby); returns it, or `None` after `tries` files.
fn file_reusing_inode(dir: &Path, ino: u64, tries: u32) -> Result<Option<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    for n in 0..tries {
        let path = dir.join(format!("new-{n}"));
        fs::write(&path, "not a secret\n")?;
        if fs::metadata(&path)?.ino() == ino {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_deleted_secret_is_unwatched_and_its_inode_number_reused_by_a_new_file_is_not_the_secret() -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let lab = Lab::new(actor_exe!())?;
    let dir = lab.dir().join("db");
    fs::create_dir(&dir)?;
    let wal = dir.join("homeserver.db-wal");
    fs::write(&wal, "access token pages\n")?;
    let ino = fs::metadata(&wal)?.ino();
    let sensor = lab.sensor_with(&["--secret".as_ref(), wal.as_os_str()])?;
    let dest = lab.remote().tcp_v4();

    fs::remove_file(&wal)?;
    let reused = file_reusing_inode(&dir, ino, 1_000)?.context("no new file got the freed inode number")?;
    let reader = lab.actor().read(&reused).tcp(dest).run()?;
    lab.assert_no_alert_for(&sensor, reader.pid)?;

    // Back at its path, it is watched again.
    sensor.expect(alert::is_watch_updated_for(&wal), ALERT_TIMEOUT)?;
    fs::write(&wal, "access token pages\n")?;
    sensor.expect(
        |line: &Value| alert::is_watch_updated_for(&wal)(line) && alert::file_inode(line).is_some(),
        ALERT_TIMEOUT,
    )?;
    let again = lab.actor().read(&wal).tcp(dest).run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(again.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), wal.to_str(), "{alert:#}");
    Ok(())
}
