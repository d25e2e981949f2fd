//! Runs `vigie-actor` and reports which pids did what.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// A run of the actor to perform: what to read, whether to fork, where to send.
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

    /// Open and read `path` fully first.
    pub fn read(mut self, path: impl AsRef<Path>) -> Self {
        self.args.push("--read".into());
        self.args.push(path.as_ref().into());
        self
    }

    /// Send from a forked child instead of the reader itself.
    pub fn fork(mut self) -> Self {
        self.args.push("--fork".into());
        self
    }

    /// Connect over TCP to `dest`, write a few bytes, close.
    pub fn tcp(mut self, dest: SocketAddr) -> Self {
        self.args.push("--tcp".into());
        self.args.push(dest.to_string().into());
        self
    }

    /// Send one UDP datagram to `dest`.
    pub fn udp(mut self, dest: SocketAddr) -> Self {
        self.args.push("--udp".into());
        self.args.push(dest.to_string().into());
        self
    }

    /// Runs the actor to completion.
    ///
    /// # Errors
    /// When it cannot start, exits non-zero, or prints something other than its pid line.
    pub fn run(self) -> Result<ActorRun> {
        let output = self.output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "{} {:?} failed ({}): {}",
            self.exe.display(),
            self.args,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        parse_run(stdout.trim()).with_context(|| format!("actor printed {stdout:?}"))
    }

    fn output(&self) -> Result<Output> {
        let mut attempts = 0;
        loop {
            let result = Command::new(&self.exe).args(&self.args).stdin(Stdio::null()).output();
            match result {
                // A copy of the actor written by one test thread can still be open for writing
                // in a child another thread forks at that instant; exec then fails with ETXTBSY
                // until that child execs in turn. Retrying briefly is the known remedy.
                Err(error) if is_text_busy(&error) && attempts < 20 => {
                    attempts += 1;
                    thread::sleep(Duration::from_millis(50));
                }
                result => {
                    return result.with_context(|| format!("start {}", self.exe.display()));
                }
            }
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
