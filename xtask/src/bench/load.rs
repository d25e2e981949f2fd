//! Running `vigie-load`: every timed loop is one of its subcommands, which prints one JSON
//! line; this module turns those lines into numbers.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use super::loss::FloodSpec;
use super::Env;
use crate::command;

/// A timed loop's result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timed {
    pub iterations: u64,
    pub elapsed_ns: u64,
    /// CPU time of the looping thread (softirq work it triggered included), if known.
    pub cpu_ns: Option<u64>,
}

#[expect(clippy::cast_precision_loss, reason = "ns and counts of one run are far below 2^52")]
impl Timed {
    /// Wall-clock ns per iteration.
    pub fn ns_per_iteration(&self) -> f64 {
        self.elapsed_ns as f64 / self.iterations.max(1) as f64
    }

    /// CPU ns per iteration; NaN when unknown.
    pub fn cpu_ns_per_iteration(&self) -> f64 {
        self.cpu_ns.map_or(f64::NAN, |cpu| cpu as f64 / self.iterations.max(1) as f64)
    }
}

/// Who reads the secret in workload 2.
#[derive(Debug, Clone, Copy)]
pub enum Reader {
    /// The original `vigie-load`: not on the agent's allow list.
    Untrusted,
    /// The lab's copy of `vigie-load`, which the agent allows.
    Allowed,
}

/// Workloads 1, 2 and 7.
pub fn open_read(env: &Env<'_>, reader: Reader, path: &Path) -> Result<Timed> {
    let mut args = open_read_args(env, path);
    if let Reader::Allowed = reader {
        args[0] = env.lab.allowed_load.clone().into();
    }
    timed(&run_json(Command::new(&args[0]).args(&args[1..]))?)
}

/// Workload 3.
pub fn loopback_connect(env: &Env<'_>) -> Result<Timed> {
    let args = loopback_connect_args(env);
    timed(&run_json(Command::new(&args[0]).args(&args[1..]))?)
}

/// Program and arguments of workload 1's loop on `path`, by the untrusted reader.
pub fn open_read_args(env: &Env<'_>, path: &Path) -> Vec<OsString> {
    let iterations = env.plan.open_read_iterations.to_string();
    let args = [OsStr::new("open-read"), OsStr::new("--path"), path.as_os_str(), OsStr::new("--iterations")];
    program_and(env, &args).into_iter().chain([iterations.into()]).collect()
}

/// Program and arguments of workload 3's loop.
pub fn loopback_connect_args(env: &Env<'_>) -> Vec<OsString> {
    let iterations = env.plan.connect_iterations.to_string();
    let args = [OsStr::new("loopback-connect"), OsStr::new("--iterations"), OsStr::new(&iterations)];
    program_and(env, &args)
}

fn program_and(env: &Env<'_>, args: &[&OsStr]) -> Vec<OsString> {
    std::iter::once(env.binaries.load.as_os_str())
        .chain(args.iter().copied())
        .map(OsStr::to_os_string)
        .collect()
}

/// Workload 4: bytes per second.
#[expect(clippy::cast_precision_loss, reason = "byte counts of one run are far below 2^52")]
pub fn stream(env: &Env<'_>) -> Result<f64> {
    let result = run_json(
        load(env, "stream")
            .arg("--secret")
            .arg(&env.lab.secret)
            .args(["--addr", &env.remote.sink().to_string()])
            .args(["--bytes", &env.plan.stream_bytes.to_string()])
            .args(["--chunk", &env.plan.stream_chunk.to_string()]),
    )?;
    let bytes = field(&result, "bytes")?;
    let elapsed_ns = field(&result, "elapsed_ns")?;
    Ok(bytes as f64 / (elapsed_ns.max(1) as f64 / 1e9))
}

/// One exfiltrating process: its pid, and when (ns since the epoch) it called `connect()`
/// and when the call returned.
#[derive(Debug, Clone, Copy)]
pub struct Exfiltration {
    pub pid: u64,
    pub started_ns: u64,
    pub connected_ns: u64,
}

/// Workload 5.
pub fn exfiltrate(env: &Env<'_>) -> Result<Vec<Exfiltration>> {
    let result = run_json(
        load(env, "exfiltrate")
            .arg("--secret")
            .arg(&env.lab.secret)
            .args(["--addr", &env.remote.sink().to_string()])
            .args(["--count", &env.plan.exfiltrations.to_string()]),
    )?;
    let list = result["exfiltrations"].as_array().context("vigie-load exfiltrate: no list")?;
    list.iter()
        .map(|entry| {
            Ok(Exfiltration {
                pid: field(entry, "pid")?,
                started_ns: field(entry, "started_ns")?,
                connected_ns: field(entry, "connected_ns")?,
            })
        })
        .collect()
}

/// Workload 6: the workers' summed counters.
pub fn flood(env: &Env<'_>, addr: SocketAddr, spec: &FloodSpec) -> Result<Value> {
    run_json(
        load(env, "flood")
            .arg("--secret")
            .arg(&env.lab.secret)
            .args(["--addr", &addr.to_string()])
            .args(["--workers", &env.plan.flood_workers.to_string()])
            .args(["--seconds", &spec.time.as_secs().to_string()])
            .args(["--rate", &spec.rate.unwrap_or(0).to_string()])
            .args(["--transport", spec.transport]),
    )
}

/// Parses the JSON line `vigie-load` printed.
pub fn parse(stdout: &str) -> Result<Value> {
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("vigie-load printed {last:?}, not JSON"))
}

/// An unsigned field of a result.
pub fn field(result: &Value, name: &str) -> Result<u64> {
    result[name].as_u64().with_context(|| format!("vigie-load result has no {name}: {result}"))
}

fn load(env: &Env<'_>, subcommand: &str) -> Command {
    let mut command = Command::new(&env.binaries.load);
    command.arg(subcommand);
    command
}

fn run_json(command: &mut Command) -> Result<Value> {
    parse(&command::output(command)?)
}

pub fn timed(result: &Value) -> Result<Timed> {
    Ok(Timed {
        iterations: field(result, "iterations")?,
        elapsed_ns: field(result, "elapsed_ns")?,
        cpu_ns: result["cpu_ns"].as_u64(),
    })
}
