//! Workload 6: tainted processes connecting as fast as they can, or at a set rate, to find
//! where the agent starts to lose events. Each worker reads the secret once (one secret-read
//! record), then connects to a port of the namespace host where nothing listens, one connect
//! record per attempt:
//! - `tcp`: a blocking connect that the reset ends (the kernel moves the socket to
//!   `SYN_SENT`, and reports it, before the reset comes back);
//! - `udp`: `connect()` on a UDP socket, which sends nothing: the cheapest connect the sensor
//!   reports, so on a small machine the generator's CPU goes to events, not handshakes.

use std::env;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::bound::{nanos, Bound};
use crate::secret;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Far above what one core reaches in the longest run; the time limit ends the loop.
const MAX_CONNECTS: u64 = 1_000_000_000;
/// A paced worker checks its schedule once per this many connects.
const PACE_BATCH: u64 = 32;
/// Counters each worker reports and the parent sums.
const COUNTERS: [&str; 5] = ["secret_reads", "connects", "refused", "accepted", "other_errors"];

#[derive(Clone, Copy, ValueEnum)]
pub enum Transport {
    Tcp,
    Udp,
}

/// What to flood, how long, how fast.
#[derive(Args, Clone)]
pub struct Spec {
    #[arg(long)]
    secret: PathBuf,
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    seconds: u64,
    /// Connects per second, all workers together (0: as fast as they can).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
}

/// Starts `workers` worker processes together and sums what they report.
pub fn run(spec: &Spec, workers: u32) -> Result<Value> {
    let exe = env::current_exe().context("find my own executable")?;
    let worker_rate = spec.rate.div_ceil(u64::from(workers.max(1)));
    let transport = match spec.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    let children = (0..workers)
        .map(|_| {
            Command::new(&exe)
                .arg("flood-worker")
                .arg("--secret")
                .arg(&spec.secret)
                .args(["--addr", &spec.addr.to_string(), "--seconds", &spec.seconds.to_string()])
                .args(["--rate", &worker_rate.to_string(), "--transport", transport])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .context("start a flood worker")
        })
        .collect::<Result<Vec<Child>>>()?;

    let mut totals = [0_u64; COUNTERS.len()];
    let mut elapsed_ns = 0;
    let mut first_error = Value::Null;
    for child in children {
        let pid = child.id();
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("flood worker {pid} failed: {}", output.status);
        }
        let report: Value = serde_json::from_slice(&output.stdout)
            .with_context(|| format!("flood worker {pid} printed no report"))?;
        for (total, name) in totals.iter_mut().zip(COUNTERS) {
            *total += report[name].as_u64().unwrap_or(0);
        }
        elapsed_ns = elapsed_ns.max(report["elapsed_ns"].as_u64().unwrap_or(0));
        if first_error.is_null() {
            first_error = report["first_error"].clone();
        }
    }
    let mut summary = json!({ "workers": workers, "elapsed_ns": elapsed_ns, "first_error": first_error });
    for (total, name) in totals.iter().zip(COUNTERS) {
        summary[name] = json!(total);
    }
    Ok(summary)
}

/// One worker: taint once, then connect until the time is up, on schedule if paced.
pub fn worker(spec: &Spec) -> Result<Value> {
    secret::taint(&spec.secret)?;
    let (mut refused, mut accepted, mut other_errors) = (0_u64, 0_u64, 0_u64);
    let mut first_error = None;
    let target = SockAddr::from(spec.addr);
    let domain = Domain::for_address(spec.addr);
    // UDP reuses one socket: every connect() on it is a new connect the sensor reports.
    let udp = match spec.transport {
        Transport::Udp => Some(Socket::new(domain, Type::DGRAM, None)?),
        Transport::Tcp => None,
    };
    let bound = Bound::start(MAX_CONNECTS, Duration::from_secs(spec.seconds));
    let mut connects = 0;
    while bound.allows(connects) {
        let attempt = match &udp {
            Some(socket) => socket.connect(&target),
            None => tcp_connect(domain, &target),
        };
        match attempt {
            Ok(()) => accepted += 1,
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => refused += 1,
            Err(error) => {
                other_errors += 1;
                first_error.get_or_insert_with(|| error.to_string());
            }
        }
        connects += 1;
        if spec.rate > 0 && connects.is_multiple_of(PACE_BATCH) {
            keep_pace(connects, spec.rate, bound.elapsed());
        }
    }
    Ok(json!({
        "secret_reads": 1,
        "connects": connects,
        "refused": refused,
        // UDP connects "succeed": the sensor sees them all the same.
        "accepted": if udp.is_some() { 0 } else { accepted },
        "other_errors": other_errors,
        "first_error": first_error,
        "elapsed_ns": nanos(bound.elapsed()),
    }))
}

/// A blocking connect bounded by a send timeout (Linux applies `SO_SNDTIMEO` to connect):
/// three syscalls and a wait for the reset, where `connect_timeout` needs six.
fn tcp_connect(domain: Domain, target: &SockAddr) -> std::io::Result<()> {
    let socket = Socket::new(domain, Type::STREAM, None)?;
    socket.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    socket.connect(target)
}

/// Sleeps until `done` connects are due at `rate` per second.
fn keep_pace(done: u64, rate: u64, elapsed: Duration) {
    #[expect(clippy::cast_precision_loss, reason = "counts and rates are far below 2^52")]
    let due = Duration::from_secs_f64(done as f64 / rate as f64);
    if let Some(ahead) = due.checked_sub(elapsed) {
        thread::sleep(ahead);
    }
}
