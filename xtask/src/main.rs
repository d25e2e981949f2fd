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
mod vm;
mod workspace;

use std::ffi::OsString;
use std::path::PathBuf;

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
        /// Instead of the host suites: boot this kernel of the matrix (`debian-12`,
        /// `debian-12-6.12`) under qemu and run the in-guest suite there; repeatable.
        #[arg(long = "kernel", value_name = "NAME")]
        kernels: Vec<String>,
        /// With `--kernel`: only the core cases.
        #[arg(long, requires = "kernels")]
        quick: bool,
        /// With `--kernel`: the agent binary to test (default: the debug build).
        #[arg(long, value_name = "PATH", requires = "kernels")]
        vigie: Option<PathBuf>,
        /// With `--kernel`: `vigie run --backend BACKEND` in the guest (default: `auto`).
        #[arg(long, value_name = "BACKEND", requires = "kernels")]
        backend: Option<String>,
        /// With `--kernel`: the backend the agent must report (default: the one `--backend`
        /// forces, else the kernel table's choice for `auto`).
        #[arg(long, value_name = "BACKEND", requires = "kernels")]
        expect_backend: Option<String>,
        /// With `--kernel`: run this shell script in the guest instead of the suite (passes if
        /// it exits 0); the agent is `/usr/bin/vigie`, the lab disk the current directory.
        #[arg(long, value_name = "FILE", requires = "kernels")]
        guest_script: Option<PathBuf>,
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
        Task::Test { kernels, args, .. } if kernels.is_empty() => test::run(&args),
        Task::Test { kernels, quick, vigie, backend, expect_backend, guest_script, .. } => {
            vm::test(&vm::Options { kernels, quick, vigie, backend, expect_backend, script: guest_script })
        }
    }
}
