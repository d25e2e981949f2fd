//! Runs `vigie-actor` and reports which pids did what.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// A run of the actor to perform: its steps, in the order the builder methods were called
/// (see `src/bin/actor/main.rs` for what each does).
#[derive(Debug, Clone)]
#[must_use = "an actor does nothing until `run`"]
pub struct Actor {
    exe: PathBuf,
    args: Vec<OsString>,
}

/// The pids of a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActorRun {
    /// The process that read the files.
    pub pid: u32,
    /// With `--fork`, the child that did the sending.
    pub child_pid: Option<u32>,
}

impl ActorRun {
    /// The process that sent the traffic: the child when forked, else the reader.
    #[must_use]
    pub fn sender(&self) -> u32 {
        self.child_pid.unwrap_or(self.pid)
    }
}

impl Actor {
    /// An actor run from the binary at `exe` (the real one, or a copy at another path).
    pub fn new(exe: impl Into<PathBuf>) -> Self {
        Actor { exe: exe.into(), args: Vec::new() }
    }

    /// Open and read `path` to its end.
    pub fn read(self, path: impl AsRef<Path>) -> Self {
        self.step("--read", path.as_ref())
    }

    /// Carry out the remaining steps in a forked child, which the actor waits for.
    pub fn fork(mut self) -> Self {
        self.args.push("--fork".into());
        self
    }

    /// Connect over TCP to `dest`, write a few bytes, close.
    pub fn tcp(self, dest: SocketAddr) -> Self {
        self.step("--tcp", dest.to_string())
    }

    /// Send one UDP datagram to `dest`.
    pub fn udp(self, dest: SocketAddr) -> Self {
        self.step("--udp", dest.to_string())
    }

    /// Open `path`, then read it through a re-open of `/proc/self/fd/N`.
    pub fn read_reopened(self, path: impl AsRef<Path>) -> Self {
        self.step("--read-reopened", path.as_ref())
    }

    /// Open `path` with `O_PATH`, then re-open `/proc/self/fd/N` for reading and read.
    pub fn read_o_path(self, path: impl AsRef<Path>) -> Self {
        self.step("--read-o-path", path.as_ref())
    }

    /// Open `path` into an `io_uring` direct descriptor and read it with `IOSQE_FIXED_FILE`.
    pub fn uring_read_fixed(self, path: impl AsRef<Path>) -> Self {
        self.step("--uring-read-fixed", path.as_ref())
    }

    /// Open and read `path` through the ia32 gate (`int 0x80`), with i386 syscall numbers.
    pub fn read_ia32(self, path: impl AsRef<Path>) -> Self {
        self.step("--read-ia32", path.as_ref())
    }

    /// Open `path` by a file handle (`open_by_handle_at`), then read it.
    pub fn read_by_handle(self, path: impl AsRef<Path>) -> Self {
        self.step("--read-by-handle", path.as_ref())
    }

    /// Open and `mmap` `path` and touch every byte, without `read`.
    pub fn mmap(self, path: impl AsRef<Path>) -> Self {
        self.step("--mmap", path.as_ref())
    }

    /// Open `path` with `O_DIRECT` and read it, bypassing the page cache.
    pub fn read_direct(self, path: impl AsRef<Path>) -> Self {
        self.step("--read-direct", path.as_ref())
    }

    /// Map `path` and keep it mapped until the actor exits (as a library it loaded).
    pub fn map_kept(self, path: impl AsRef<Path>) -> Self {
        self.step("--map-kept", path.as_ref())
    }

    /// Open and read `path` with `IORING_OP_OPENAT` and `IORING_OP_READ`.
    pub fn uring_read(self, path: impl AsRef<Path>) -> Self {
        self.step("--uring-read", path.as_ref())
    }

    /// The same as [`Actor::uring_read`] with `IORING_OP_OPENAT2`.
    pub fn uring_read_openat2(self, path: impl AsRef<Path>) -> Self {
        self.step("--uring-read-openat2", path.as_ref())
    }

    /// Pause for `duration` (millisecond resolution).
    pub fn sleep(self, duration: Duration) -> Self {
        self.step("--sleep-ms", duration.as_millis().to_string())
    }

    /// Send one DNS query (an A question) over UDP to `dest`.
    pub fn dns(self, dest: SocketAddr) -> Self {
        self.step("--dns", dest.to_string())
    }

    /// Connect to `dest` with `IORING_OP_CONNECT` and send a few bytes with `IORING_OP_SEND`.
    pub fn uring_tcp(self, dest: SocketAddr) -> Self {
        self.step("--uring-tcp", dest.to_string())
    }

    /// Connect to `dest` and keep the connection for [`Actor::send`], [`Actor::sendfile`] and
    /// [`Actor::splice`].
    pub fn open_tcp(self, dest: SocketAddr) -> Self {
        self.step("--open-tcp", dest.to_string())
    }

    /// Write `bytes` bytes on the kept connection.
    pub fn send(self, bytes: u64) -> Self {
        self.step("--send", bytes.to_string())
    }

    /// `sendfile` `path` into the kept connection.
    pub fn sendfile(self, path: impl AsRef<Path>) -> Self {
        self.step("--sendfile", path.as_ref())
    }

    /// `splice` `path` through a pipe into the kept connection.
    pub fn splice(self, path: impl AsRef<Path>) -> Self {
        self.step("--splice", path.as_ref())
    }

    /// Write what was last read into `path` (a FIFO's open blocks until its reader comes).
    pub fn write_to(self, path: impl AsRef<Path>) -> Self {
        self.step("--write-to", path.as_ref())
    }

    /// [`Actor::write_to`] through `IORING_OP_OPENAT` and `IORING_OP_WRITE`.
    pub fn uring_write_to(self, path: impl AsRef<Path>) -> Self {
        self.step("--uring-write-to", path.as_ref())
    }

    /// Write what was last read to the unix stream socket listening at `path`.
    pub fn unix_send(self, path: impl AsRef<Path>) -> Self {
        self.step("--unix-send", path.as_ref())
    }

    /// Bind and listen on a unix stream socket at `path`: peers may connect and write from
    /// now on, before [`Actor::unix_accept`].
    pub fn unix_listen(self, path: impl AsRef<Path>) -> Self {
        self.step("--unix-listen", path.as_ref())
    }

    /// Accept one peer on the [`Actor::unix_listen`] socket and read it to its end.
    pub fn unix_accept(mut self) -> Self {
        self.args.push("--unix-accept".into());
        self
    }

    fn step(mut self, flag: &str, value: impl Into<OsString>) -> Self {
        self.args.push(flag.into());
        self.args.push(value.into());
        self
    }

    /// Runs the actor to completion.
    ///
    /// # Errors
    /// When it cannot start, exits non-zero, or prints something other than its pid line.
    pub fn run(self) -> Result<ActorRun> {
        self.spawn()?.finish()
    }

    /// Starts the actor and returns while it runs, for steps that wait on another process.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn spawn(self) -> Result<RunningActor> {
        let mut attempts = 0;
        loop {
            // As a program a user starts: `cargo test` puts its own LD_LIBRARY_PATH in our
            // environment, which makes an allowed reader's process not allowed.
            let result = Command::new(&self.exe)
                .args(&self.args)
                .env_remove("LD_LIBRARY_PATH")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn();
            match result {
                // A copy of the actor written by one test thread can still be open for writing
                // in a child another thread forks at that instant; exec then fails with ETXTBSY
                // until that child execs in turn. Retrying briefly is the known remedy.
                Err(error) if is_text_busy(&error) && attempts < 20 => {
                    attempts += 1;
                    thread::sleep(Duration::from_millis(50));
                }
                result => {
                    let child = result.with_context(|| format!("start {}", self.exe.display()))?;
                    return Ok(RunningActor { pid: child.id(), child: Some(child), actor: self });
                }
            }
        }
    }
}

/// An actor still running. Dropping it kills it, so a failing test leaves none behind.
#[derive(Debug)]
pub struct RunningActor {
    /// Its pid, known from the start (the actor is exec'd directly, never through a shell).
    pub pid: u32,
    child: Option<Child>,
    actor: Actor,
}

impl RunningActor {
    /// Waits for the actor to finish.
    ///
    /// # Errors
    /// When it exits non-zero or prints something other than its pid line.
    pub fn finish(mut self) -> Result<ActorRun> {
        let child = self.child.take().context("already finished")?;
        let output = child.wait_with_output().context("wait for the actor")?;
        let (exe, args) = (&self.actor.exe, &self.actor.args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "{} {args:?} failed ({}): {}",
            exe.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        parse_run(stdout.trim()).with_context(|| format!("actor printed {stdout:?}"))
    }
}

impl Drop for RunningActor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn is_text_busy(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ETXTBSY)
}

fn parse_run(line: &str) -> Result<ActorRun> {
    let json: Value = serde_json::from_str(line)?;
    let pid = |key: &str| -> Result<Option<u32>> {
        match &json[key] {
            Value::Null => Ok(None),
            value => match value.as_u64().and_then(|pid| u32::try_from(pid).ok()) {
                Some(pid) => Ok(Some(pid)),
                None => bail!("{key} is not a pid: {value}"),
            },
        }
    };
    Ok(ActorRun { pid: pid("pid")?.context("no pid")?, child_pid: pid("child_pid")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_pid_line() {
        let run = parse_run(r#"{"pid":12,"child_pid":null}"#).unwrap();
        assert_eq!(run, ActorRun { pid: 12, child_pid: None });
        assert_eq!(run.sender(), 12);
        let forked = parse_run(r#"{"pid":12,"child_pid":13}"#).unwrap();
        assert_eq!(forked.sender(), 13);
        assert!(parse_run(r#"{"child_pid":13}"#).is_err());
        assert!(parse_run(r#"{"pid":-1,"child_pid":null}"#).is_err());
    }
}
