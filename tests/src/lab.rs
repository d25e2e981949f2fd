//! One test's world: a secret, a remote host, the actor and a copy of it for barriers.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::{
    alert,
    sensor::{vigie_bin, Documents},
    Actor, RemoteHost, RunningActor, Sensor, ALERT_TIMEOUT,
};

/// How long [`Lab::start_service`]'s service runs.
const SERVICE_LIFE: Duration = Duration::from_mins(2);

/// A fake credential; its content never matters and is never printed.
const SECRET_CONTENT: &str = "aws_secret_access_key = vigie-test-not-a-real-key\n";

/// A private temporary directory holding a secret file and a copy of the actor, plus a
/// [`RemoteHost`]. Everything is removed on drop.
pub struct Lab {
    _dir: TempDir,
    root: PathBuf,
    secret: PathBuf,
    actor_exe: PathBuf,
    control_exe: PathBuf,
    test_exe: PathBuf,
    journal: PathBuf,
    remote: RemoteHost,
}

impl Lab {
    /// Builds the lab around the actor at `actor_exe` (pass [`crate::actor_exe!`]).
    ///
    /// # Errors
    /// When the files cannot be written or the remote host cannot be set up (needs root).
    pub fn new(actor_exe: impl AsRef<Path>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("vigie-it-").tempdir()?;
        // Paths as the kernel reports them, so that comparisons do not trip on symlinks.
        let root = dir.path().canonicalize()?;
        let secret = root.join("credentials");
        fs::write(&secret, SECRET_CONTENT)?;
        let actor_exe = actor_exe.as_ref().canonicalize().context("find vigie-actor")?;
        // A distinct file (not a link): another path and inode, so never an allowed reader.
        let control_exe = root.join("control-actor");
        fs::copy(&actor_exe, &control_exe).context("copy vigie-actor")?;
        let test_exe = std::env::current_exe().and_then(fs::canonicalize).context("find the test binary")?;
        let remote = RemoteHost::start(&actor_exe)?;
        let journal = root.join("journal.db");
        Ok(Lab { _dir: dir, root, secret, actor_exe, control_exe, test_exe, journal, remote })
    }

    /// The watched secret's path, exactly as given to the sensor.
    #[must_use]
    pub fn secret(&self) -> &Path {
        &self.secret
    }

    /// A private directory for the test's own files (links, configs), removed on drop.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The journal every sensor of this lab keeps (`--journal`): one file across restarts.
    #[must_use]
    pub fn journal(&self) -> &Path {
        &self.journal
    }

    /// The remote host the actor may send to.
    #[must_use]
    pub fn remote(&self) -> &RemoteHost {
        &self.remote
    }

    /// The actor binary's canonical path (for `--allow-reader` or `--service`).
    #[must_use]
    pub fn actor_exe(&self) -> &Path {
        &self.actor_exe
    }

    /// A run of the actor binary.
    pub fn actor(&self) -> Actor {
        Actor::new(&self.actor_exe)
    }

    /// Starts `vigie run --profile none --secret <secret> --output - --service <this test>
    /// --journal <lab>/journal.db` (unless the test names a journal, or none).
    ///
    /// The test process reads every actor's stdout through a pipe, and data from a tainted
    /// process's pipe taints its reader: the test would be tainted, and with it every actor it
    /// starts afterwards. So the test binary is a trusted service, as a supervisor collecting
    /// its children's output (a log collector) would be on a real host.
    ///
    /// # Errors
    /// See [`Sensor::start`].
    pub fn sensor(&self) -> Result<Sensor> {
        self.sensor_with::<&str>(&[])
    }

    /// [`Lab::sensor`] with `extra` arguments appended.
    ///
    /// # Errors
    /// See [`Sensor::start`].
    pub fn sensor_with<S: AsRef<OsStr>>(&self, extra: &[S]) -> Result<Sensor> {
        self.sensor_reading(&Documents::Stdout, extra)
    }

    /// [`Lab::sensor_with`], its documents read from `documents` (`--output` names the file of
    /// [`Documents::File`]).
    ///
    /// # Errors
    /// See [`Sensor::start`].
    pub fn sensor_reading<S: AsRef<OsStr>>(&self, documents: &Documents, extra: &[S]) -> Result<Sensor> {
        self.sensor_with_env(documents, extra, &[])
    }

    /// [`Lab::sensor_reading`], with the variables `env` set for `vigie` (a diagnostic).
    ///
    /// # Errors
    /// See [`Sensor::start`].
    pub fn sensor_with_env<S: AsRef<OsStr>>(
        &self,
        documents: &Documents,
        extra: &[S],
        env: &[(&str, &str)],
    ) -> Result<Sensor> {
        self.sensor_as(&[vigie_bin().into()], documents, extra, env)
    }

    /// [`Lab::sensor_with_env`], `vigie` started by `command_line` (see [`Sensor::start_as`]).
    ///
    /// # Errors
    /// See [`Sensor::start`].
    pub fn sensor_as<S: AsRef<OsStr>>(
        &self,
        command_line: &[OsString],
        documents: &Documents,
        extra: &[S],
        env: &[(&str, &str)],
    ) -> Result<Sensor> {
        let mut args: Vec<&OsStr> = ["run", "--profile", "none", "--secret"].iter().map(OsStr::new).collect();
        args.push(self.secret.as_os_str());
        args.push(OsStr::new("--output"));
        args.push(match documents {
            Documents::File(path) => path.as_os_str(),
            Documents::Stdout | Documents::StderrAfterHead(_) => OsStr::new("-"),
        });
        args.push(OsStr::new("--service"));
        args.push(self.test_exe.as_os_str());
        if !extra.iter().any(|a| ["--journal", "--no-journal"].map(OsStr::new).contains(&a.as_ref())) {
            args.push(OsStr::new("--journal"));
            args.push(self.journal.as_os_str());
        }
        args.extend(extra.iter().map(AsRef::as_ref));
        Sensor::start_as(command_line, &args, documents, env)
    }

    /// A long-running actor standing for a trusted service (a homeserver): it reads the
    /// secret, then waits.
    ///
    /// # Errors
    /// See [`Actor::spawn`].
    pub fn start_service(&self) -> Result<RunningActor> {
        self.actor().read(&self.secret).sleep(SERVICE_LIFE).spawn()
    }

    /// [`Lab::sensor`] trusting [`Lab::start_service`]'s actor as the service `name`.
    ///
    /// # Errors
    /// See [`Lab::sensor_trusting`].
    pub fn sensor_trusting_the_service(&self, name: &str) -> Result<Sensor> {
        let millis = SERVICE_LIFE.as_millis().to_string();
        self.sensor_trusting(name, &["--read", &self.secret.display().to_string(), "--sleep-ms", &millis])
    }

    /// [`Lab::sensor`] trusting as the service `name` the actor's own executable run with
    /// exactly `args` (the barrier's copy of the actor is another executable).
    ///
    /// # Errors
    /// When the config cannot be written; see [`Sensor::start`].
    pub fn sensor_trusting(&self, name: &str, args: &[&str]) -> Result<Sensor> {
        let config = self.root.join("vigie.toml");
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        let text = format!(
            "[[services]]\nname = \"{name}\"\nexecutables = [\"{}\"]\nargs = [{}]\n",
            self.actor_exe.display(),
            args.join(", ")
        );
        fs::write(&config, text)?;
        self.sensor_with(&["--config".as_ref(), config.as_os_str()])
    }

    /// Returns once the sensor has handled every event that happened before the call: a copy
    /// of the actor reads the secret and connects to the remote host, and its alert comes
    /// back. The kernel's ring buffer is ordered, so earlier events were decoded first.
    ///
    /// # Errors
    /// When the control alert does not arrive within [`ALERT_TIMEOUT`].
    pub fn barrier(&self, sensor: &Sensor) -> Result<()> {
        let control = Actor::new(&self.control_exe)
            .read(&self.secret)
            .tcp(self.remote.tcp_v4())
            .run()
            .context("barrier: run the control actor")?;
        sensor
            .expect(alert::is_exfiltration_by(control.pid), ALERT_TIMEOUT)
            .context("barrier: the control actor's alert did not come")?;
        Ok(())
    }

    /// Passes the barrier, then returns every exfiltration alert so far except the barriers'
    /// own and those of the processes in `expected`.
    ///
    /// # Errors
    /// When the barrier fails.
    pub fn alerts_other_than(&self, sensor: &Sensor, expected: &[u32]) -> Result<Vec<Value>> {
        self.barrier(sensor)?;
        let control = self.control_exe.to_str();
        Ok(sensor.lines_matching(|line| {
            alert::is_exfiltration(line)
                && alert::process_executable(line) != control
                && alert::process_pid(line).is_none_or(|pid| !expected.contains(&pid))
        }))
    }

    /// Passes the barrier, then fails if any exfiltration alert names `pid`.
    ///
    /// # Errors
    /// When the barrier fails or such an alert was printed.
    pub fn assert_no_alert_for(&self, sensor: &Sensor, pid: u32) -> Result<()> {
        self.barrier(sensor)?;
        let alerts = sensor.lines_matching(alert::is_exfiltration_by(pid));
        ensure!(alerts.is_empty(), "unexpected alerts for pid {pid}: {alerts:#?}");
        Ok(())
    }
}
