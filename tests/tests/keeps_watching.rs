//! An agent that keeps watching whatever happens to its output: a stdout closed by its
//! reader (`vigie run | head -c 100`), an output file on a full file system. Each case proves
//! detection went on: the alert of a secret read and sent while the output failed arrives.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use integration_tests::sensor::Documents;
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// The tmpfs page: a file's last page takes appends until it is full.
const PAGE: u64 = 4096;

/// `vigie.output` of an `output-degraded` document in `state` (`failing`, `recovered`).
fn degraded(state: &'static str) -> impl Fn(&Value) -> bool {
    move |line| {
        alert::is_state(line, "output-degraded")
            && line.pointer("/vigie/output/state").and_then(Value::as_str) == Some(state)
    }
}

fn count(line: &Value, field: &str) -> u64 {
    line.pointer(&format!("/vigie/output/{field}")).and_then(Value::as_u64).unwrap_or(0)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_stdout_closed_by_its_reader_leaves_the_agent_detecting() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_reading::<&str>(&Documents::StderrAfterHead(100), &[])?;

    let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;

    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::destination(&alert), Some(lab.remote().tcp_v4()), "{alert:#}");
    let report = sensor.expect(degraded("recovered"), ALERT_TIMEOUT)?;
    assert_eq!(report.pointer("/vigie/output/failed").and_then(Value::as_str), Some("stdout"), "{report:#}");
    assert_eq!(report.pointer("/vigie/output/name").and_then(Value::as_str), Some("stderr"), "{report:#}");
    let error = report.pointer("/vigie/output/error").and_then(Value::as_str).unwrap_or_default();
    assert!(error.contains("Broken pipe"), "{report:#}");
    // Still running, still attached: the next secret reader alerts too.
    lab.barrier(&sensor)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_alert_raised_while_the_output_disk_is_full_arrives_once_space_is_freed() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let disk = SmallTmpfs::mount(&lab.dir().join("log"))?;
    let output = disk.path().join("alerts.jsonl");
    let mut sensor = lab.sensor_reading::<&str>(&Documents::File(output.clone()), &[])?;
    let filler = disk.fill_after(&output)?;

    let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;

    // The alert was raised, and could not be written.
    let failing =
        wait_on_stderr(&sensor, |line| degraded("failing")(line) && count(line, "alerts_failed") >= 1)?;
    ensure!(sensor.lines_matching(alert::is_exfiltration_by(run.pid)).is_empty(), "written while full?");
    assert!(failing
        .pointer("/vigie/output/error")
        .and_then(Value::as_str)
        .is_some_and(|e| e.contains("No space")));
    fs::remove_file(&filler)?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::destination(&alert), Some(lab.remote().tcp_v4()), "{alert:#}");
    let recovered = sensor.expect(degraded("recovered"), ALERT_TIMEOUT)?;
    assert!(count(&recovered, "documents_failed") >= 2, "the read and the alert: {recovered:#}");
    assert!(count(&recovered, "alerts_failed") >= 1, "{recovered:#}");
    assert_eq!(count(&recovered, "documents_dropped"), 0, "{recovered:#}");
    lab.barrier(&sensor)?;
    ensure!(sensor.stop()?.success(), "a clean exit on SIGTERM");
    Ok(())
}

/// Waits until a JSON line of the sensor's stderr matches.
fn wait_on_stderr(sensor: &Sensor, matches: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + ALERT_TIMEOUT;
    loop {
        let stderr = sensor.stderr();
        if let Some(line) =
            stderr.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|l| matches(l))
        {
            return Ok(line);
        }
        if Instant::now() > deadline {
            bail!("no such line on vigie's stderr within {ALERT_TIMEOUT:?}:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A 1 MiB tmpfs mounted for the test, unmounted on drop.
struct SmallTmpfs {
    path: PathBuf,
}

impl SmallTmpfs {
    fn mount(path: &Path) -> Result<Self> {
        fs::create_dir_all(path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(path)
            .status()?;
        ensure!(status.success(), "mount a tmpfs on {}", path.display());
        Ok(Self { path: path.to_owned() })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Fills the file system: the last page of `output` with one blank line, then every
    /// free page with a filler file, whose path is returned. Nothing more can be appended.
    fn fill_after(&self, output: &Path) -> Result<PathBuf> {
        let len = fs::metadata(output)?.len();
        let pad = (PAGE - len % PAGE) % PAGE;
        if pad > 0 {
            let mut blank = vec![b' '; usize::try_from(pad)?];
            *blank.last_mut().context("a page is never empty")? = b'\n';
            OpenOptions::new().append(true).open(output)?.write_all(&blank)?;
        }
        let filler = self.path.join("filler");
        let mut file = File::create(&filler)?;
        let chunk = vec![0u8; usize::try_from(PAGE)?];
        loop {
            match file.write(&chunk) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e).context("fill the tmpfs"),
            }
        }
        ensure!(
            OpenOptions::new().append(true).open(output)?.write(b"x").map_err(|e| e.kind())
                == Err(io::ErrorKind::StorageFull),
            "the output file could still grow"
        );
        Ok(filler)
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
