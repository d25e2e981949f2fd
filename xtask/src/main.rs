//! Vigie's developer tasks, run as `cargo xtask <task>` (alias in `.cargo/config.toml`).
//!
//! Building Vigie needs a nightly toolchain, bpf-linker built against that nightly's LLVM
//! and, for the kernel tests, root plus a few mounts and commands: this crate keeps those
//! steps in one place so CI and newcomers run the same thing.

mod bench;
mod bootstrap;
mod build;
mod command;
mod package;
mod privilege;
mod run;
mod test;
mod workspace;

use std::ffi::OsString;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Vigie's developer tasks: bootstrap the BPF toolchain, build, run, test")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Check or install what builds and tests need: nightly + rust-src, bpf-linker,
    /// tracefs/bpffs mounts and the commands the integration tests use. Idempotent.
    Bootstrap,
    /// Build the `vigie` binary; its build script builds the eBPF programs.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build in release and run `vigie run ARGS...` in the foreground (needs root).
    Run {
        /// Arguments passed to `vigie run`, after `--`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Measure what Vigie costs: workloads with and without the sensor, alternating, plus
    /// auditd side by side; prints a table and writes docs/BENCHMARKS.md (needs root).
    Bench {
        /// Smaller workloads, under two minutes once built: proves the harness works. Writes
        /// its report under the target directory, not to docs/.
        #[arg(long)]
        quick: bool,
    },
    /// Build the Debian package, `target/package/vigie_VERSION_ARCH.deb`: the release binary,
    /// the hardened systemd unit, the commented configuration, the manual pages.
    Package,
    /// Everything CI checks: bootstrap, fmt, clippy, build, then all tests including the
    /// privileged ones (needs root).
    Test {
        /// Arguments passed to the test binaries, after `--` (e.g. a name filter).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Bootstrap => bootstrap::all(),
        Task::Build { release } => build::run(build::Profile::from_release_flag(release)),
        Task::Run { args } => run::run(&args),
        Task::Bench { quick } => bench::run(&if quick { bench::Plan::quick() } else { bench::Plan::full() }),
        Task::Package => package::run().map(drop),
        Task::Test { args } => test::run(&args),
    }
}
