//! Processes a workload starts and must stop again, also when the bench fails on the way:
//! nginx and its worker, wrk, the tainted bystander. Dropping a [`Guarded`] stops the
//! process (SIGTERM, then SIGKILL after a grace period, its children included) and reaps
//! it. Processes are signalled by id only, and only the ones the bench started.

use std::fs;
use std::io::Read;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::command::{self, tool};

/// How long a process may take to exit after SIGTERM before it and its children get SIGKILL.
const GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

pub struct Guarded {
    child: Option<Child>,
    name: String,
    grace: Duration,
}

impl Guarded {
    /// Starts `command`; `name` is what errors call it.
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self> {
        let child =
            command.spawn().with_context(|| format!("cannot start `{}`", command::describe(command)))?;
        Ok(Self { child: Some(child), name: name.to_owned(), grace: GRACE })
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it has exited (it stays unreaped, so its id cannot be reused meanwhile).
    pub fn exited(&self) -> bool {
        exited(self.id())
    }

    /// Waits up to `timeout` for it to exit by itself, then returns its stdout. The output
    /// must fit a pipe's buffer (64 KiB): it is read after the exit.
    pub fn finish(mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        while !self.exited() {
            if Instant::now() >= deadline {
                bail!("{} did not finish within {timeout:?}", self.name);
            }
            thread::sleep(POLL);
        }
        let mut child = self.child.take().context("process already stopped")?;
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if let Some(pipe) = child.stdout.as_mut() {
            pipe.read_to_string(&mut stdout).with_context(|| format!("{}'s output", self.name))?;
        }
        if let Some(pipe) = child.stderr.as_mut() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let status = child.wait()?;
        if !status.success() {
            let said = if stderr.trim().is_empty() { String::new() } else { format!(": {}", stderr.trim()) };
            bail!("{} failed ({status}){said}", self.name);
        }
        Ok(stdout)
    }

    /// SIGTERM, then SIGKILL for it and its children if it lingers; reaped either way.
    pub fn stop(mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("process already stopped")?;
        terminate(&mut child, self.grace)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(error) = terminate(&mut child, self.grace) {
                eprintln!("[bench] cannot stop {}: {error:#}", self.name);
            }
        }
    }
}

fn terminate(child: &mut Child, grace: Duration) -> Result<ExitStatus> {
    let pid = child.id();
    if !exited(pid) {
        signal("-TERM", &[pid]);
        let deadline = Instant::now() + grace;
        while !exited(pid) && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        if !exited(pid) {
            // Children first: once their parent is gone they would be someone else's.
            signal("-KILL", &children(pid));
            signal("-KILL", &[pid]);
        }
    }
    child.wait().context("cannot reap a stopped process")
}

/// `kill SIGNAL PIDS`; a process that is already gone is not an error worth reporting.
fn signal(signal: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    if let Ok(mut kill) = tool("kill") {
        let _ = command::output(kill.arg(signal).args(pids.iter().map(u32::to_string)));
    }
}

/// A zombie or gone: `/proc/PID/stat`'s state, after the parenthesised command name.
fn exited(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')').is_none_or(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// The children of every thread of `pid` (`/proc/PID/task/TID/children`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|pid| pid.parse().ok()).collect::<Vec<_>>())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::{children, exited, Guarded};

    #[test]
    fn finish_returns_the_output() {
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo done"]).stdout(Stdio::piped()).stderr(Stdio::piped());
        let output = Guarded::spawn("echo", &mut echo).unwrap().finish(Duration::from_secs(10)).unwrap();
        assert_eq!(output.trim(), "done");
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo oops >&2; exit 3"]).stdout(Stdio::piped()).stderr(Stdio::piped());
        let error =
            Guarded::spawn("failing", &mut failing).unwrap().finish(Duration::from_secs(10)).unwrap_err();
        assert!(format!("{error:#}").contains("oops"), "{error:#}");
    }

    #[test]
    fn a_stubborn_process_and_its_children_are_killed() {
        // Ignores SIGTERM, and so does the child it waits for.
        let mut stubborn = Command::new("sh");
        stubborn.args(["-c", "trap '' TERM; sleep 30 & wait"]).stdout(Stdio::null());
        let mut guarded = Guarded::spawn("stubborn", &mut stubborn).unwrap();
        guarded.grace = Duration::from_millis(200);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut kids = Vec::new();
        while kids.is_empty() && Instant::now() < deadline {
            kids = children(guarded.id());
        }
        assert_eq!(kids.len(), 1, "the shell's sleep");
        let started = Instant::now();
        drop(guarded);
        assert!(started.elapsed() < Duration::from_secs(3));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !exited(kids[0]) && Instant::now() < deadline {}
        assert!(exited(kids[0]), "the orphaned sleep {} still runs", kids[0]);
    }
}
