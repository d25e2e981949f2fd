//! A running `vigie` whose JSON lines the test can wait on.

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

use crate::alert;
use crate::line_reader::{snapshot, spawn_collector, spawn_file_follower, spawn_line_reader};

/// How long the sensor may take to load and attach its programs.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Environment variable raising [`START_TIMEOUT`] to that many seconds: the in-guest suite
/// runs under an emulated CPU, where a debug build takes longer than that to start.
pub const START_TIMEOUT_ENV: &str = "VIGIE_TEST_START_SECS";
/// How long it may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a SIGSTOP may take to stop it.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The `vigie` binary: `$VIGIE_BIN` (set by `cargo xtask test`), else `target/debug/vigie`.
#[must_use]
pub fn vigie_bin() -> PathBuf {
    std::env::var_os("VIGIE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/vigie"),
        PathBuf::from,
    )
}

/// Environment variable naming the backend every `vigie run` of the tests is started with
/// (`syscalls` runs the detection suites against the fallback on a kernel that has both).
pub const BACKEND_ENV: &str = "VIGIE_TEST_BACKEND";

/// `--backend NAME` for a `vigie run` that names none, when [`BACKEND_ENV`] is set.
fn backend_override<S: AsRef<OsStr>>(args: &[S]) -> Vec<OsString> {
    let names_one = args.iter().any(|a| a.as_ref() == "--backend");
    match std::env::var_os(BACKEND_ENV) {
        Some(name) if args.first().is_some_and(|a| a.as_ref() == "run") && !names_one => {
            vec!["--backend".into(), name]
        }
        _ => Vec::new(),
    }
}

/// [`START_TIMEOUT`], or what [`START_TIMEOUT_ENV`] says.
fn start_timeout() -> Duration {
    std::env::var(START_TIMEOUT_ENV)
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(START_TIMEOUT, Duration::from_secs)
}

/// Where the test reads the documents `vigie` writes.
#[derive(Debug, Clone)]
pub enum Documents {
    /// Its stdout (`--output -`).
    Stdout,
    /// Its stderr, after its stdout was read for this many bytes and closed, as
    /// `vigie run | head -c N` does: the documents that follow can only arrive there.
    StderrAfterHead(usize),
    /// The file it writes (`--output PATH`), followed by name like `tail -F`.
    File(PathBuf),
}

/// `vigie` running in the foreground; every document line it printed is kept, in order.
/// Dropping it sends SIGTERM, then SIGKILL if it has not exited within a few seconds.
pub struct Sensor {
    pid: u32,
    child: Option<Child>,
    incoming: Receiver<String>,
    /// Set to stop following an output file once `vigie` has exited.
    stop_following: Option<Arc<AtomicBool>>,
    seen: RefCell<Vec<Value>>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Sensor {
    /// Starts `vigie ARGS` and waits for its `sensor-started` line.
    ///
    /// # Errors
    /// When the binary is missing, exits, or does not start within [`START_TIMEOUT`]; the
    /// error quotes its stderr.
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Result<Self> {
        Self::start_reading(args, &Documents::Stdout)
    }

    /// [`Sensor::start`], reading its documents from `documents`; with
    /// [`Documents::StderrAfterHead`] it returns once the first bytes were read, which
    /// `sensor-started` is the start of.
    ///
    /// # Errors
    /// See [`Sensor::start`].
    pub fn start_reading<S: AsRef<OsStr>>(args: &[S], documents: &Documents) -> Result<Self> {
        Self::start_with_env(args, documents, &[])
    }

    /// [`Sensor::start_reading`], with the variables `env` set for `vigie`.
    ///
    /// # Errors
    /// See [`Sensor::start`].
    pub fn start_with_env<S: AsRef<OsStr>>(
        args: &[S],
        documents: &Documents,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        Self::start_as(&[vigie_bin().into()], args, documents, env)
    }

    /// [`Sensor::start_with_env`], `vigie` started by `command_line`: a binary, or a launcher
    /// and its arguments followed by the binary (`setpriv --bounding-set=… -- /usr/sbin/vigie`).
    ///
    /// # Errors
    /// See [`Sensor::start`].
    pub fn start_as<S: AsRef<OsStr>>(
        command_line: &[OsString],
        args: &[S],
        documents: &Documents,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let (bin, launcher_args) = command_line.split_first().context("an empty command line")?;
        let mut child = Command::new(bin)
            .args(launcher_args)
            .args(args)
            .args(backend_override(args))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {} (build it, or set VIGIE_BIN)", bin.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (incoming, stop_following, stderr, stderr_reader) = match documents {
            Documents::Stdout => {
                let (stderr, reader) = spawn_collector(stderr);
                (spawn_line_reader(stdout).0, None, stderr, Some(reader))
            }
            Documents::StderrAfterHead(bytes) => {
                let mut head = vec![0; *bytes];
                let read = { stdout }.read_exact(&mut head);
                let incoming = spawn_line_reader(stderr).0;
                if let Err(error) = read {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(error).context("read the head of vigie's stdout");
                }
                (incoming, None, Arc::default(), None)
            }
            Documents::File(path) => {
                let stop = Arc::new(AtomicBool::new(false));
                let (stderr, reader) = spawn_collector(stderr);
                (spawn_file_follower(path.clone(), Arc::clone(&stop)), Some(stop), stderr, Some(reader))
            }
        };
        let mut sensor = Sensor {
            pid: child.id(),
            child: Some(child),
            incoming,
            stop_following,
            seen: RefCell::new(Vec::new()),
            stderr,
            stderr_reader,
        };
        if matches!(documents, Documents::StderrAfterHead(_)) {
            return Ok(sensor);
        }
        if let Err(failure) = sensor.wait_for(alert::is_sensor_started, start_timeout()) {
            let status = sensor.shutdown();
            bail!("vigie did not report sensor-started: {failure} (exit: {status:?})\n{}", sensor.report());
        }
        Ok(sensor)
    }

    /// Waits until a line matching `matches` has been printed (now or earlier) and returns it.
    ///
    /// # Errors
    /// When `timeout` passes first or the sensor closes its output; the error shows the last
    /// lines and the sensor's stderr.
    pub fn expect(&self, matches: impl Fn(&Value) -> bool, timeout: Duration) -> Result<Value> {
        self.wait_for(matches, timeout).map_err(|failure| anyhow!("{failure}\n{}", self.report()))
    }

    fn wait_for(&self, matches: impl Fn(&Value) -> bool, timeout: Duration) -> Result<Value, WaitFailure> {
        if let Some(line) = self.seen.borrow().iter().find(|line| matches(line)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = match self.incoming.recv_timeout(wait) {
                Ok(line) => parse(&line),
                Err(RecvTimeoutError::Timeout) => return Err(WaitFailure::Timeout(timeout)),
                Err(RecvTimeoutError::Disconnected) => return Err(WaitFailure::Closed),
            };
            self.seen.borrow_mut().push(line.clone());
            if matches(&line) {
                return Ok(line);
            }
        }
    }

    /// Every line printed so far, in order (lines that are not JSON appear as strings).
    #[must_use]
    pub fn lines(&self) -> Vec<Value> {
        let mut seen = self.seen.borrow_mut();
        seen.extend(self.incoming.try_iter().map(|line| parse(&line)));
        seen.clone()
    }

    /// The lines printed so far that match `matches`.
    #[must_use]
    pub fn lines_matching(&self, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.lines().into_iter().filter(|line| matches(line)).collect()
    }

    /// What the sensor wrote to stderr so far.
    #[must_use]
    pub fn stderr(&self) -> String {
        snapshot(&self.stderr)
    }

    /// The `vigie` process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the sensor.
    ///
    /// # Errors
    /// When it has already been stopped (and reaped), or `kill` fails.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        ensure!(self.child.is_some(), "vigie has already been stopped");
        let pid = libc::pid_t::try_from(self.pid)?;
        // SAFETY: plain syscall on our own child, not yet reaped, so the pid is still ours.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error()).context(format!("signal {signal} to vigie"));
        }
        Ok(())
    }

    /// Sends SIGSTOP and returns once the kernel shows the sensor stopped, so that from then
    /// on it consumes nothing. [`Sensor::resume`] undoes it; so does stopping or dropping it.
    ///
    /// # Errors
    /// When the signal fails or the sensor is not stopped within a few seconds.
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)?;
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while !is_stopped(self.pid)? {
            ensure!(Instant::now() < deadline, "vigie not stopped {PAUSE_TIMEOUT:?} after SIGSTOP");
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Sends SIGCONT.
    ///
    /// # Errors
    /// See [`Sensor::signal`].
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Sends SIGTERM and returns how the sensor exited; every line it printed stays readable.
    ///
    /// # Errors
    /// When it had to be killed or could not be waited for.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.shutdown().context("vigie did not exit after SIGTERM and was killed")
    }

    /// SIGTERM, wait for stdout to close, SIGKILL if it takes too long; `None` if killed.
    fn shutdown(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = libc::pid_t::try_from(child.id()).ok()?;
        // SAFETY: plain syscalls on our own child, not yet reaped, so the pid is still ours.
        // SIGCONT lets a paused sensor act on the SIGTERM.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
            libc::kill(pid, libc::SIGCONT);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        if let Some(stop) = &self.stop_following {
            // The followed file never closes: wait for the process, then read the file's end.
            while child.try_wait().ok()?.is_none() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::Release);
        }
        let exited = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(wait) {
                Ok(line) => self.seen.borrow_mut().push(parse(&line)),
                Err(RecvTimeoutError::Disconnected) => break true,
                Err(RecvTimeoutError::Timeout) => break false,
            }
        };
        if !exited {
            let _ = child.kill();
        }
        let status = child.wait().ok();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        status.filter(|_| exited)
    }

    fn report(&self) -> String {
        let lines = self.lines();
        let tail: Vec<String> = lines.iter().rev().take(20).rev().map(Value::to_string).collect();
        format!(
            "vigie printed {} lines, last ones:\n{}\nvigie stderr:\n{}",
            lines.len(),
            tail.join("\n"),
            self.stderr()
        )
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Why a wait for a line ended without one.
#[derive(Debug)]
enum WaitFailure {
    Timeout(Duration),
    Closed,
}

impl fmt::Display for WaitFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitFailure::Timeout(timeout) => write!(f, "no matching line within {timeout:?}"),
            WaitFailure::Closed => f.write_str("vigie closed its output (exited?)"),
        }
    }
}

/// Whether `/proc/PID/stat` shows the process stopped by a signal (state `T`).
fn is_stopped(pid: u32) -> Result<bool> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).context("read vigie's /proc stat")?;
    // The state follows the command name, which is in parentheses and may contain anything.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    Ok(state == Some("T"))
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|_| Value::String(line.to_owned()))
}
