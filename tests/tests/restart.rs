//! Restarting the agent with `keep_loaded` opens no window: its programs stay attached and
//! pinned while no agent runs, and the next agent takes them over — the processes they
//! tainted, and the records they made while nobody read them. `vigie unload` removes them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use integration_tests::bpf_objects;
use integration_tests::sensor::vigie_bin;
use integration_tests::{actor_exe, alert, Lab, RunningActor, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// How long the kernel may take to free what nothing holds any more.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// This test's pin directory, unloaded when the test ends (passed or not).
struct Pins(PathBuf);

impl Pins {
    fn for_lab(lab: &Lab) -> Self {
        let name = lab.dir().file_name().map(|n| n.to_string_lossy().replace('.', "_")).unwrap_or_default();
        Self(Path::new("/sys/fs/bpf").join(name))
    }

    fn args(&self) -> Vec<String> {
        vec!["--keep-loaded".to_owned(), "--pin-dir".to_owned(), self.0.display().to_string()]
    }

    /// The generations pinned now (their directory names).
    fn generations(&self) -> Result<Vec<String>> {
        match fs::read_dir(&self.0) {
            Ok(entries) => entries.map(|e| Ok(e?.file_name().to_string_lossy().into_owned())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `vigie unload --pin-dir DIR`; returns its stdout.
    fn unload(&self) -> Result<String> {
        let out = Command::new(vigie_bin()).args(["unload", "--pin-dir"]).arg(&self.0).output()?;
        ensure!(
            out.status.success(),
            "vigie unload: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = self.unload();
        }
    }
}

/// An actor that reads the secret, then waits on a FIFO until the test lets it send to the
/// remote host.
struct Waiting {
    actor: RunningActor,
    fifo: PathBuf,
}

impl Waiting {
    fn start(lab: &Lab) -> Result<Self> {
        let fifo = lab.dir().join("go");
        let status = Command::new("mkfifo").arg(&fifo).status()?;
        ensure!(status.success(), "mkfifo: {status}");
        let actor = lab.actor().read(lab.secret()).read(&fifo).tcp(lab.remote().tcp_v4()).spawn()?;
        Ok(Self { actor, fifo })
    }

    fn pid(&self) -> u32 {
        self.actor.pid
    }

    /// Lets it send, and waits for it to finish.
    fn send(self) -> Result<()> {
        fs::write(&self.fifo, "go")?;
        self.actor.finish()?;
        Ok(())
    }
}

/// `vigie.kept_loaded.taken_over` of the sensor's `sensor-started` line.
fn taken_over(sensor: &Sensor) -> Result<Value> {
    kept_loaded(sensor, "taken_over")
}

/// `vigie.kept_loaded.FIELD` of the sensor's `sensor-started` line.
fn kept_loaded(sensor: &Sensor, field: &str) -> Result<Value> {
    let started = sensor.lines_matching(alert::is_sensor_started);
    let started = started.first().context("no sensor-started line")?;
    let pointer = format!("/vigie/kept_loaded/{field}");
    started.pointer(&pointer).cloned().with_context(|| format!("no {pointer} in sensor-started"))
}

fn count(value: &Value, field: &str) -> u64 {
    value[field].as_u64().unwrap_or(0)
}

/// A lab whose first agent keeps its programs loaded and has seen a reader take the secret in;
/// the reader waits to send.
fn a_waiting_reader() -> Result<(Lab, Pins, Sensor, Waiting)> {
    let lab = Lab::new(actor_exe!())?;
    let pins = Pins::for_lab(&lab);
    let first = lab.sensor_with(&pins.args())?;
    let waiting = Waiting::start(&lab)?;
    first.expect(alert::is_secret_read_by(waiting.pid()), ALERT_TIMEOUT)?;
    Ok((lab, pins, first, waiting))
}

/// Stops `sensor` with SIGTERM; fails unless it exits 0.
fn stop_cleanly(sensor: &mut Sensor) -> Result<()> {
    let status = sensor.stop()?;
    ensure!(status.success(), "vigie exited with {status}");
    Ok(())
}

/// The restart itself, by `stop` (SIGTERM or SIGKILL): a process that read the secret before
/// it and sends after it is alerted on by the next agent, from the taint it carried over.
fn tainted_before_restart_alerts_after(stop: impl FnOnce(&mut Sensor) -> Result<()>) -> Result<()> {
    let (lab, pins, mut first, waiting) = a_waiting_reader()?;
    stop(&mut first)?;
    ensure!(pins.generations()?.len() == 1, "one generation left pinned: {:?}", pins.generations()?);

    let second = lab.sensor_with(&pins.args())?;
    let handover = taken_over(&second)?;
    assert_eq!(handover["generations"].as_array().map(Vec::len), Some(1), "{handover:#}");
    assert!(count(&handover, "taints") >= 1, "the reader's taint carried: {handover:#}");
    assert!(count(&handover, "links_detached") > 0, "{handover:#}");
    let pid = waiting.pid();
    waiting.send()?;
    let alert = second.expect(alert::is_exfiltration_by(pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::destination(&alert), Some(lab.remote().tcp_v4()), "{alert:#}");
    assert_eq!(pins.generations()?.len(), 1, "the first generation replaced by the second");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_process_tainted_before_a_sigterm_restart_is_alerted_by_the_next_agent() -> Result<()> {
    tainted_before_restart_alerts_after(|sensor| {
        stop_cleanly(sensor)?;
        let stopped = sensor.lines_matching(alert::is_sensor_stopped);
        let left = stopped.first().and_then(|line| line.pointer("/vigie/counters/left_attached"));
        ensure!(
            left.is_some_and(Value::is_string),
            "sensor-stopped names where it left the programs: {stopped:#?}"
        );
        Ok(())
    })
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_process_tainted_before_the_agent_is_killed_is_alerted_by_the_next_agent() -> Result<()> {
    tainted_before_restart_alerts_after(|sensor| {
        sensor.signal(libc::SIGKILL)?;
        let status = sensor.stop()?;
        ensure!(!status.success(), "vigie was killed, yet exited with {status}");
        Ok(())
    })
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_generation_of_another_object_version_is_replaced_with_its_taint_but_not_its_records() -> Result<()> {
    let (lab, pins, mut first, waiting) = a_waiting_reader()?;
    stop_cleanly(&mut first)?;
    // What an upgrade leaves: the same layout under another object version.
    let [generation] = &pins.generations()?[..] else {
        anyhow::bail!("one generation: {:?}", pins.generations()?)
    };
    let (_, rest) = generation.split_once('-').context("a generation is VERSION-PID-NS")?;
    fs::rename(pins.0.join(generation), pins.0.join(format!("0000000000000000-{rest}")))?;

    let second = lab.sensor_with(&pins.args())?;
    let handover = taken_over(&second)?;
    assert!(count(&handover, "taints") >= 1, "{handover:#}");
    let not_carried = handover["not_carried"].to_string();
    assert!(not_carried.contains("EVENTS"), "another version's records are not decoded: {handover:#}");
    let pid = waiting.pid();
    waiting.send()?;
    second.expect(alert::is_exfiltration_by(pid), ALERT_TIMEOUT)?;
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_secret_read_and_sent_while_no_agent_runs_is_reported_when_the_next_starts() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let pins = Pins::for_lab(&lab);
    let mut first = lab.sensor_with(&pins.args())?;
    stop_cleanly(&mut first)?;

    let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;
    let sender = run.sender();

    let second = lab.sensor_with(&pins.args())?;
    let read = second.expect(alert::is_secret_read_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&read), lab.secret().to_str(), "{read:#}");
    let alert = second.expect(alert::is_exfiltration_by(sender), ALERT_TIMEOUT)?;
    assert_eq!(alert::destination(&alert), Some(lab.remote().tcp_v4()), "{alert:#}");
    let handover = taken_over(&second)?;
    assert_eq!(count(&handover, "events_lost"), 0, "the ring held every record: {handover:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_file_derived_before_a_restart_taints_its_reader_after_it_and_is_named_in_the_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let pins = Pins::for_lab(&lab);
    let mut first = lab.sensor_with(&pins.args())?;
    let copy = lab.dir().join("copy");
    let writer = lab.actor().read(lab.secret()).write_to(&copy).run()?;
    let derived = |line: &Value| {
        line.pointer("/event/action") == Some(&Value::from("secret-derived"))
            && line.pointer("/process/pid") == Some(&Value::from(writer.pid))
    };
    first.expect(derived, ALERT_TIMEOUT)?;
    stop_cleanly(&mut first)?;

    let second = lab.sensor_with(&pins.args())?;
    let named = kept_loaded(&second, "derived_files")?;
    ensure!(
        count(&named, "carried") == 1 && count(&named, "named") == 1,
        "the copy carried and named: {named:#}"
    );
    // The second agent read the secret (its fingerprints) while only the first one's programs
    // were attached, which took it for any process: none of that is carried.
    let handover = taken_over(&second)?;
    assert_eq!(
        count(&handover, "taints"),
        0,
        "nothing was tainted at the restart but the new agent: {handover:#}"
    );
    let reader = lab.actor().read(&copy).tcp(lab.remote().tcp_v4()).run()?;
    let alert = second.expect(alert::is_exfiltration_by(reader.sender()), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "the original secret: {alert:#}");
    assert_eq!(alert::via_kind(&alert), Some("file"), "{alert:#}");
    assert_eq!(alert::via_path(&alert), copy.to_str(), "the copy, named from the journal: {alert:#}");
    let about_itself =
        second.lines_matching(|line| line.pointer("/process/pid") == Some(&Value::from(second.pid())));
    assert!(about_itself.is_empty(), "the agent reported its own reads and writes: {about_itself:#?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn programs_stay_loaded_after_a_keep_loaded_stop_until_vigie_unload() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let pins = Pins::for_lab(&lab);
    let mut sensor = lab.sensor_with(&pins.args())?;
    let held = bpf_objects::held_by(sensor.pid())?;
    ensure!(!held.is_empty(), "vigie holds no BPF object");
    stop_cleanly(&mut sensor)?;

    let kept = bpf_objects::still_loaded(&held)?;
    assert!(!kept.programs.is_empty(), "no program of the stopped agent still loaded");
    let generations = pins.generations()?;
    assert_eq!(generations.len(), 1, "{generations:?}");

    let said = pins.unload()?;
    assert!(said.contains("1 generation(s) unloaded"), "{said}");
    assert!(!pins.0.exists(), "{} left behind", pins.0.display());
    let left = bpf_objects::wait_for_release(&held, RELEASE_TIMEOUT)?;
    assert!(left.is_empty(), "still loaded {RELEASE_TIMEOUT:?} after vigie unload: {left:?}");
    let again = pins.unload()?;
    assert!(again.contains("0 generation(s) unloaded"), "{again}");
    Ok(())
}
