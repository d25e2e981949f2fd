//! A file written by a tainted process carries the secret: a later, unrelated reader of it is
//! tainted, and its alert names the original secret and the derived file. A derived file's
//! taint ends when it is deleted.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use integration_tests::host_tools::{self, quoted};
use integration_tests::{actor_exe, alert, Lab, ALERT_TIMEOUT};

/// `make` derives a file from the secret at the given path with the program `writer`; then a
/// new curl (no relation to the writer) uploads the derived file.
fn assert_upload_of_derived_file_is_reported(
    name: &str,
    writer: &str,
    make: impl FnOnce(&Lab, &Path) -> Result<()>,
) -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let derived = lab.dir().join(name);
    make(&lab, &derived).with_context(|| format!("derive {name} with {writer}"))?;

    let curl = host_tools::curl_upload(&derived, lab.remote().tcp_v4())?;

    let alert = sensor.expect(alert::is_exfiltration_by(curl), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "the original secret: {alert:#}");
    assert_eq!(alert::via_kind(&alert), Some("file"), "{alert:#}");
    assert_eq!(alert::via_path(&alert), derived.to_str(), "the derived file: {alert:#}");
    let inode = fs::metadata(&derived)?.ino().to_string();
    assert_eq!(alert.pointer("/vigie/via/inode").and_then(|v| v.as_str()), Some(inode.as_str()), "{alert:#}");
    assert!(host_tools::is_program(alert::origin_executable(&alert), writer), "{writer} read it: {alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn upload_of_a_cp_copy_is_reported() -> Result<()> {
    assert_upload_of_derived_file_is_reported("copy", "cp", |lab, derived| {
        host_tools::run("cp", &[lab.secret(), derived]).map(drop)
    })
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn upload_of_a_tar_archive_is_reported() -> Result<()> {
    assert_upload_of_derived_file_is_reported("backup.tar", "tar", |lab, derived| {
        let name = lab.secret().file_name().context("the secret has a file name")?;
        let args = ["-cf".as_ref(), derived.as_os_str(), "-C".as_ref(), lab.dir().as_os_str(), name];
        host_tools::run("tar", &args).map(drop)
    })
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn upload_of_a_gzip_output_is_reported() -> Result<()> {
    assert_upload_of_derived_file_is_reported("credentials.gz", "gzip", |lab, derived| {
        host_tools::sh(&format!("gzip -c {} > {}", quoted(lab.secret()), quoted(derived))).map(drop)
    })
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn upload_of_a_base64_redirect_is_reported() -> Result<()> {
    assert_upload_of_derived_file_is_reported("credentials.b64", "base64", |lab, derived| {
        host_tools::sh(&format!("base64 {} > {}", quoted(lab.secret()), quoted(derived))).map(drop)
    })
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn upload_of_a_file_written_through_io_uring_is_reported() -> Result<()> {
    assert_upload_of_derived_file_is_reported("uring-copy", "vigie-actor", |lab, derived| {
        lab.actor().read(lab.secret()).uring_write_to(derived).run().map(drop)
    })
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn deleted_derived_file_passes_no_taint_to_a_new_file() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let derived = lab.dir().join("copy");
    host_tools::run("cp", &[lab.secret(), derived.as_path()])?;
    let derived_inode = fs::metadata(&derived)?.ino();

    fs::remove_file(&derived)?;
    // Written by this test, which never read the secret. On ext4 the freed inode number is
    // usually handed straight to it: the case where a stale mark would wrongly taint.
    let innocent = lab.dir().join("innocent");
    fs::write(&innocent, "nothing secret here\n")?;
    let reused = fs::metadata(&innocent)?.ino() == derived_inode;
    eprintln!("the new file {} the deleted copy's inode", if reused { "reuses" } else { "does not reuse" });
    let curl = host_tools::curl_upload(&innocent, lab.remote().tcp_v4())?;

    lab.assert_no_alert_for(&sensor, curl)
}
