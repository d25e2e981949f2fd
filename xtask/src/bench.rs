//! `cargo xtask bench [--quick]`: what Vigie costs, measured.
//!
//! Each overhead workload runs with no sensor and with the sensor attached, alternating
//! within one run (the arms swap order every round, at least five rounds) so that a busy
//! neighbour slows both arms alike; medians of the per-round differences are reported. The
//! timed loops are `vigie-load`, a release build; this (debug) crate only starts things,
//! stamps the agent's output lines and does the arithmetic. Nothing here fails on a
//! target: the bench reports, the reader judges.
//!
//! Traffic goes to loopback or to a network namespace the bench creates (10.214.0.0/24)
//! and deletes again, also on error or Ctrl-C; so does every process it starts (nginx, wrk,
//! a tainted bystander), stopped by guards. Audit rules, auditd and the kernel's BPF
//! statistics switch are put back as they were found.

mod ab;
mod agent;
mod auditd;
mod bpf_stats;
mod child;
mod doc;
mod idle;
mod interrupt;
mod lab;
mod latency;
mod links;
mod load;
mod loss;
mod machine;
mod nginx;
mod perf;
mod plan;
mod proc_usage;
mod profile;
mod remote;
mod report;
mod stats;
mod tainted;
mod tls;

use std::fs::{self, File, TryLockError};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::build::{self, Profile};
use crate::command::{self, cargo};
use crate::{bootstrap, privilege, workspace};

pub use plan::Plan;

/// Held for the whole run: two benches at once would share the subnet and audit rules.
const LOCK_FILE: &str = "/run/vigie-bench.lock";

/// The release binaries under test.
pub struct Binaries {
    pub vigie: PathBuf,
    pub load: PathBuf,
}

/// The `bench` task.
pub fn run(plan: &Plan) -> Result<()> {
    privilege::require_root("bench", "loads BPF programs, creates a network namespace and runs auditd")?;
    let _lock = single_run()?;
    interrupt::install()?;
    without_loader_variables();

    say("set-up: toolchain, mounts, bpftool, nginx, wrk, auditd");
    bootstrap::all()?;
    let machine = machine::facts(plan);
    let binaries = build_binaries()?;
    let mut audit = auditd::Audit::take_over()?;
    let lab = lab::Lab::create(&binaries)?;
    let remote = remote::RemoteHost::start(&binaries.load)?;
    let site = nginx::Site::create()?;
    let neighbours = bpf_stats::Neighbours::at_start()?;
    let env =
        Env { plan, binaries: &binaries, lab: &lab, remote: &remote, site: &site, neighbours: &neighbours };

    let idle = idle::measure(&env)?;
    let rounds = ab::run(&env, &mut audit)?;
    let profiles = profile::run(&env)?;
    let latency = latency::measure(&env)?;
    let loss = loss::measure(&env)?;
    audit.restore()?;

    let report = report::Report { plan: plan.clone(), machine, idle, rounds, profiles, latency, loss };
    let markdown = report.markdown();
    println!("{markdown}");
    let written = doc::write(plan, &markdown)?;
    say(&format!("report written to {}", written.display()));
    Ok(())
}

/// What every workload needs to run.
pub struct Env<'a> {
    pub plan: &'a Plan,
    pub binaries: &'a Binaries,
    pub lab: &'a lab::Lab,
    pub remote: &'a remote::RemoteHost,
    /// Workload 8's and 11's web server.
    pub site: &'a nginx::Site,
    pub neighbours: &'a bpf_stats::Neighbours,
}

impl Env<'_> {
    /// `vigie run` arguments watching the lab's secret, with the lab's allowed reader, keeping
    /// its journal in the lab and writing to two sinks beside stdout (as a deployed agent
    /// would: none of that is the host's own).
    pub fn agent_args(&self) -> Vec<String> {
        let (secret, allowed, journal) =
            (self.lab.secret_arg(), self.lab.allowed_arg(), self.lab.journal_arg());
        let [file, syslog] = self.lab.sink_args();
        let args =
            ["--profile", "none", "--secret", &secret, "--allow-reader", &allowed, "--journal", &journal];
        let sinks = ["--output", "-", "--sink", &file, "--sink", &syslog];
        args.iter().chain(&sinks).map(|arg| (*arg).to_owned()).collect()
    }
}

/// `vigie` and `vigie-load`, both release builds, through the workspace's target dir.
fn build_binaries() -> Result<Binaries> {
    let vigie = build::vigie(Profile::Release)?;
    let mut load = cargo()?;
    load.args(["build", "--release", "--package", "vigie-bench", "--bin", "vigie-load"]);
    say(&command::describe(&load));
    command::run(&mut load)?;
    let load = workspace::target_dir()?.join("release").join("vigie-load");
    for binary in [&vigie, &load] {
        if !binary.is_file() {
            bail!("the build did not produce {}", binary.display());
        }
    }
    Ok(Binaries { vigie, load })
}

/// Takes the dynamic loader's variables out of the environment every process the bench starts
/// inherits. `cargo xtask` runs this task with cargo's `LD_LIBRARY_PATH`, and the sensor rightly
/// refuses allowance to an allowed reader started with one: workload 2's "allowed" reader would
/// be tainted, the bench tainted by reading its result, and every later workload born tainted.
fn without_loader_variables() {
    for variable in ["LD_PRELOAD", "LD_AUDIT", "LD_LIBRARY_PATH"] {
        std::env::remove_var(variable);
    }
}

/// An exclusive lock on [`LOCK_FILE`]; refuses to run beside another bench.
fn single_run() -> Result<File> {
    if let Some(dir) = PathBuf::from(LOCK_FILE).parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = File::create(LOCK_FILE).with_context(|| format!("cannot create {LOCK_FILE}"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => bail!("another `cargo xtask bench` is running ({LOCK_FILE})"),
        Err(TryLockError::Error(error)) => Err(error).with_context(|| format!("cannot lock {LOCK_FILE}")),
    }
}

/// One progress line on stderr, with the seconds since the first; stdout carries only the report.
fn say(message: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    eprintln!("[bench {:>5.1}s] {message}", elapsed.as_secs_f64());
}
