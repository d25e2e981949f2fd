//! Workload 5: distinct processes, one after the other, each reading the secret and
//! connecting to the namespace host; each reports when it called `connect()` and when the
//! call returned, on the clock (`CLOCK_REALTIME`) the bench stamps the agent's lines with.

use std::env;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::bound::{nanos, Bound};
use crate::secret;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts `count` exfiltrating children in turn; prints their pids and connect times.
pub fn run(secret: &Path, addr: SocketAddr, count: u64, limit: Duration) -> Result<Value> {
    let exe = env::current_exe().context("find my own executable")?;
    let bound = Bound::start(count, limit);
    let mut exfiltrations = Vec::new();
    let mut done = 0;
    while bound.allows(done) {
        let child = Command::new(&exe)
            .arg("exfiltrate-once")
            .arg("--secret")
            .arg(secret)
            .args(["--addr", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("start an exfiltrating child")?;
        let pid = child.id();
        let output = child.wait_with_output()?;
        ensure!(output.status.success(), "exfiltrating child {pid} failed: {}", output.status);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let times: Vec<u64> = stdout.split_whitespace().filter_map(|time| time.parse().ok()).collect();
        let [started_ns, connected_ns] = times[..] else {
            bail!("child {pid} printed {stdout:?}, not two times");
        };
        exfiltrations.push(json!({ "pid": pid, "started_ns": started_ns, "connected_ns": connected_ns }));
        done += 1;
    }
    Ok(json!({ "exfiltrations": exfiltrations, "elapsed_ns": nanos(bound.elapsed()) }))
}

/// The child: taint, connect, print when `connect()` was called and when it returned.
pub fn once(secret: &Path, addr: SocketAddr) -> Result<()> {
    secret::taint(secret)?;
    let started = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).with_context(|| format!("connect to {addr}"))?;
    let connected = SystemTime::now().duration_since(UNIX_EPOCH)?;
    println!("{} {}", nanos(started), nanos(connected));
    drop(stream);
    Ok(())
}
