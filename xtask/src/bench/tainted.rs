//! Workload 9: workload 1 while some other process is tainted. A bystander (`vigie-load
//! hold-taint`, not an allowed reader) reads the secret and stays alive, silent, for the
//! whole run, so the sensor has a tainted process to follow and attaches whatever it
//! attaches only then; the loop itself is workload 1's, untainted, on the ordinary file.
//!
//! The bystander sends nothing anywhere, and its stdout and stderr go to /dev/null: the
//! sensor follows taint through pipes, so the bench must never read a tainted process's
//! output. That it read the secret, the bench learns from the agent's `secret-read` line.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use super::agent::{action_of, Agent};
use super::child::Guarded;
use super::links::{self, Attachments};
use super::load::{self, Reader, Timed};
use super::Env;

/// How long the agent may take to report the bystander's read.
const SEEN_TIMEOUT: Duration = Duration::from_secs(10);
/// After the report, how long the agent may take to attach what a taint needs.
const ATTACH_TIMEOUT: Duration = Duration::from_millis(500);
/// The bystander exits on its own after this long, should every cleanup fail.
const BYSTANDER_LIFETIME_SECS: u64 = 600;

/// Workload 1's loop with a tainted bystander alive, and the agent's links meanwhile.
pub fn open_read(env: &Env<'_>, agent: &Agent) -> Result<(Timed, Attachments)> {
    let before = links::of(agent.pid())?;
    let bystander = hold(env, agent)?;
    let during = attached(agent.pid(), &before)?;
    let measured = load::open_read(env, Reader::Untrusted, &env.lab.plain);
    bystander.stop()?;
    Ok((measured?, during))
}

/// Starts the bystander and waits until the agent says it read the secret.
fn hold(env: &Env<'_>, agent: &Agent) -> Result<Guarded> {
    let mut command = Command::new(&env.binaries.load);
    command
        .arg("hold-taint")
        .arg("--secret")
        .arg(&env.lab.secret)
        .args(["--max-seconds", &BYSTANDER_LIFETIME_SECS.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let bystander = Guarded::spawn("the tainted bystander", &mut command)?;
    let pid = u64::from(bystander.id());
    if !agent.wait_for(SEEN_TIMEOUT, |lines| lines.iter().any(|line| is_secret_read_by(&line.text, pid))) {
        let why = if bystander.exited() { "it exited first" } else { "it is still running" };
        bail!(
            "the agent reported no secret-read by the bystander (pid {pid}) within {SEEN_TIMEOUT:?}; {why}"
        );
    }
    Ok(bystander)
}

/// The agent's attachments once they differ from `before`, or after [`ATTACH_TIMEOUT`].
fn attached(pid: u32, before: &Attachments) -> Result<Attachments> {
    let deadline = Instant::now() + ATTACH_TIMEOUT;
    loop {
        let now = links::of(pid)?;
        if now.links != before.links || Instant::now() >= deadline {
            return Ok(now);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether an agent line is the `secret-read` of process `pid`.
fn is_secret_read_by(line: &str, pid: u64) -> bool {
    line.contains("secret-read")
        && serde_json::from_str::<Value>(line).is_ok_and(|doc| {
            action_of(&doc) == Some("secret-read") && doc["process"]["pid"].as_u64() == Some(pid)
        })
}

#[cfg(test)]
mod tests {
    use super::is_secret_read_by;

    #[test]
    fn matches_the_bystanders_read_only() {
        let line = r#"{"event":{"action":"secret-read"},"process":{"pid":42}}"#;
        assert!(is_secret_read_by(line, 42));
        assert!(!is_secret_read_by(line, 43));
        assert!(!is_secret_read_by(
            r#"{"event":{"action":"credential-exfiltration"},"process":{"pid":42}}"#,
            42
        ));
    }
}
