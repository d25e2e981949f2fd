//! Runs `vigie` to completion: for the tests of what it does with bad input, and for the
//! queries of a journal (`vigie history`, `vigie explain`).

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::sensor::vigie_bin;

/// A bad invocation must be refused long before this.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// How a finished `vigie` run ended.
#[derive(Debug)]
pub struct Exit {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Exit {
    /// Whether stderr shows a Rust panic.
    #[must_use]
    pub fn panicked(&self) -> bool {
        self.stderr.contains("panicked")
    }
}

/// Runs `vigie ARGS` (as `user`'s uid and gid when given, which needs root) until it exits.
///
/// # Errors
/// When it cannot start, or still runs after 30 s (it is then killed).
pub fn run_vigie<S: AsRef<OsStr>>(args: &[S], user: Option<(u32, u32)>) -> Result<Exit> {
    let bin = vigie_bin();
    let mut command = Command::new(&bin);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some((uid, gid)) = user {
        // std also drops supplementary groups when root switches uid.
        command.gid(gid).uid(uid);
    }
    let child =
        command.spawn().with_context(|| format!("start {} (build it, or set VIGIE_BIN)", bin.display()))?;
    let pid = libc::pid_t::try_from(child.id())?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    let (output, timed_out) = if let Ok(output) = rx.recv_timeout(EXIT_TIMEOUT) {
        (output, false)
    } else {
        // SAFETY: plain syscall; the waiting thread reaps the child only once it has died,
        // so the pid is still ours unless it died this very instant.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        (rx.recv().context("waiting for killed vigie")?, true)
    };
    let output = output.context("wait for vigie")?;
    let exit = Exit {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if timed_out {
        bail!("vigie still ran after {EXIT_TIMEOUT:?} and was killed: {exit:?}");
    }
    Ok(exit)
}

/// `vigie ARGS... --journal JOURNAL`, which must succeed.
///
/// # Errors
/// When it cannot run, or exits with another code than 0.
pub fn query_journal(journal: &Path, args: &[&str]) -> Result<Exit> {
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.extend([OsStr::new("--journal"), journal.as_os_str()]);
    let exit = run_vigie(&all, None)?;
    ensure!(exit.code == Some(0), "vigie {args:?} failed: {exit:#?}");
    Ok(exit)
}
