//! Workload 7's incumbent: auditd from Debian, set up as a host admin would to catch the
//! same thing, a read watch on each secret (`-w PATH -p r`) plus a `connect` syscall rule.
//!
//! Once audit has been enabled, the kernel gives every new task a syscall-audit context
//! (and the slow syscall path) unless a `task,never` rule says otherwise. So outside the
//! auditd arm the bench keeps `-a task,never` in place: the no-sensor and Vigie arms pay
//! nothing for audit, as on a host without it. The rule is lifted only for the auditd arm.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::say;
use crate::bootstrap;
use crate::command::{self, tool};

/// auditctl and the daemon both come from Debian's auditd package.
const COMMANDS: &[(&str, &str)] = &[("auditctl", "auditd"), ("auditd", "auditd")];
/// Key on every rule the bench adds, so only those are ever removed.
const KEY: &str = "vigie-bench";
const TASK_NEVER: [&str; 2] = ["-a", "task,never"];
const CONNECT_RULE: [&str; 8] = ["-a", "always,exit", "-F", "arch=b64", "-S", "connect", "-k", KEY];
const DAEMON_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Audit {
    started_daemon: bool,
    enabled_before: String,
    task_never_before: bool,
    watched: Vec<PathBuf>,
    restored: bool,
}

impl Audit {
    /// Installs auditd if missing, starts the daemon if none runs, and mutes audit for the
    /// arms without it.
    pub fn take_over() -> Result<Self> {
        bootstrap::commands(COMMANDS)?;
        let status = auditctl_output(&["-s"])?;
        let enabled_before = status_field(&status, "enabled").unwrap_or("0").to_owned();
        let task_never_before = has_task_never(&auditctl_output(&["-l"])?);
        let mut audit = Self {
            started_daemon: false,
            enabled_before,
            task_never_before,
            watched: Vec::new(),
            restored: false,
        };
        if status_field(&status, "pid").is_none_or(|pid| pid == "0") {
            // The daemon must not hold our stdout: a CI log reader would wait for it forever.
            let null = || std::process::Stdio::null();
            let mut daemon = tool("auditd")?;
            command::run(daemon.stdin(null()).stdout(null()).stderr(null()))
                .context("cannot start auditd")?;
            audit.started_daemon = true;
            wait_for_daemon(true)?;
            say("auditd: started");
        } else {
            say("auditd: already running");
        }
        if !audit.task_never_before {
            auditctl(&TASK_NEVER)?;
        }
        Ok(audit)
    }

    /// The admin's rules: a read watch on each secret and a connect rule; audit on.
    pub fn watch(&mut self, secrets: &[&Path]) -> Result<()> {
        auditctl(&["-d", "task,never"])?;
        for secret in secrets {
            auditctl(&["-w", &secret.display().to_string(), "-p", "r", "-k", KEY])?;
            self.watched.push(secret.to_path_buf());
        }
        auditctl(&CONNECT_RULE)?;
        Ok(())
    }

    /// Back to muted: the bench's rules removed, `task,never` in place.
    pub fn unwatch(&mut self) -> Result<()> {
        if self.watched.is_empty() {
            return Ok(());
        }
        for secret in std::mem::take(&mut self.watched) {
            auditctl(&["-W", &secret.display().to_string(), "-p", "r", "-k", KEY])?;
        }
        let mut delete = CONNECT_RULE;
        delete[0] = "-d";
        auditctl(&delete)?;
        auditctl(&TASK_NEVER)
    }

    /// Leaves audit as found. If the bench started auditd it stops it again; `task,never`
    /// then stays, so tasks started later get no audit context, as before the bench.
    pub fn restore(&mut self) -> Result<()> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        self.unwatch()?;
        if self.started_daemon {
            let status = auditctl_output(&["-s"])?;
            if let Some(pid) = status_field(&status, "pid").filter(|pid| *pid != "0") {
                command::output(tool("kill")?.args(["-TERM", pid]))?;
                wait_for_daemon(false)?;
            }
            auditctl(&["-e", &self.enabled_before])?;
            say("auditd: stopped; `-a task,never` left in place (remove with `auditctl -d task,never`)");
        } else if !self.task_never_before {
            auditctl(&["-d", "task,never"])?;
        }
        Ok(())
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        if let Err(error) = self.restore() {
            eprintln!("[bench] cannot restore audit settings: {error:#}");
        }
    }
}

fn auditctl(args: &[&str]) -> Result<()> {
    auditctl_output(args).map(drop)
}

fn auditctl_output(args: &[&str]) -> Result<String> {
    command::output(tool("auditctl")?.args(args))
}

/// Waits until `auditctl -s` shows a daemon (`running`) or none.
fn wait_for_daemon(running: bool) -> Result<()> {
    let deadline = Instant::now() + DAEMON_TIMEOUT;
    loop {
        let status = auditctl_output(&["-s"])?;
        let pid = status_field(&status, "pid").unwrap_or("0");
        if (pid != "0") == running {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("auditd did not {} within {DAEMON_TIMEOUT:?}", if running { "register" } else { "exit" });
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `value` of the `name value` line of `auditctl -s`.
fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(name)).then(|| words.next()).flatten()
    })
}

/// Whether `auditctl -l` lists a `task,never` rule (printed as `-a never,task`).
fn has_task_never(rules: &str) -> bool {
    rules.lines().any(|line| {
        let line = line.trim();
        line == "-a never,task" || line == "-a task,never"
    })
}

#[cfg(test)]
mod tests {
    use super::{has_task_never, status_field};

    #[test]
    fn reads_auditctl_status() {
        let status = "enabled 1\nfailure 1\npid 4242\nrate_limit 0\n";
        assert_eq!(status_field(status, "enabled"), Some("1"));
        assert_eq!(status_field(status, "pid"), Some("4242"));
        assert_eq!(status_field(status, "lost"), None);
    }

    #[test]
    fn finds_the_task_never_rule() {
        assert!(has_task_never("-a never,task\n-w /etc/shadow -p r -k x\n"));
        assert!(!has_task_never("No rules\n"));
    }
}
