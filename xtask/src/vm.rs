//! `cargo xtask test --kernel NAME`: the in-guest suite on another kernel, in a virtual machine.
//!
//! For each kernel of the table (`vm/kernels.rs`): its Debian package is downloaded and
//! unpacked once (`<target>/vm/kernels/`), a busybox initramfs with the agent, the actor and
//! `vigie-vm-suite` is built when its inputs change (`<target>/vm/<kernel>/`), qemu boots it
//! under TCG with a fresh ext4 lab disk, and the guest runs the cases the host asked for on its
//! command line. The host reads one `VIGIE-TEST` line per case off the serial console and fails
//! unless every case passed; a guest that goes quiet fails the case in flight.

mod cases;
mod kernel_package;
mod kernels;
mod modules;
mod qemu;
mod report;
mod root_image;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::build::{self, Profile};
use crate::command::{self, cargo};
use crate::{bootstrap, workspace};
use report::{Line, Tally};

/// (command, Debian package) the VM runs need; bootstrap installs them with the others.
pub const COMMANDS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("apt-get", "apt"),
    ("dpkg-deb", "dpkg"),
    ("ldd", "libc-bin"),
    ("strip", "binutils"),
    ("xz", "xz-utils"),
    ("mkfs.ext4", "e2fsprogs"),
    // The remote host's namespace and veth pair, in the guest.
    ("ip", "iproute2"),
];
/// How long the guest may take from qemu's start to its `ready` line.
const BOOT_TIMEOUT: Duration = Duration::from_mins(3);
/// How long the guest may stay silent while a case runs (TCG; the cases wait a minute at most).
const QUIET_TIMEOUT: Duration = Duration::from_mins(5);
/// Boots tried when the guest kernel does not reach the suite (below).
const BOOT_ATTEMPTS: u32 = 2;

/// What `cargo xtask test --kernel …` was asked.
pub struct Options {
    /// The kernels to boot, by table name.
    pub kernels: Vec<String>,
    /// Only the core cases.
    pub quick: bool,
    /// The agent to test; default: the debug build.
    pub vigie: Option<PathBuf>,
    /// `vigie run --backend` in the guest; default `auto`, the agent's own choice.
    pub backend: Option<String>,
    /// The backend the agent must report; default: a forced backend, else the kernel table's.
    pub expect_backend: Option<String>,
    /// Run this shell script in the guest instead of the suite; pass if it exits 0.
    pub script: Option<PathBuf>,
}

/// Boots each kernel in turn; fails if any run failed.
pub fn test(options: &Options) -> Result<()> {
    let kernels = options.kernels.iter().map(|name| kernels::named(name)).collect::<Result<Vec<_>>>()?;
    bootstrap::toolchain()?;
    bootstrap::commands(COMMANDS)?;
    let programs = programs(options.vigie.as_deref())?;
    let cases = if options.quick { cases::QUICK } else { cases::FULL };
    let mut failed = Vec::new();
    for kernel in kernels {
        let backend = options.backend.as_deref().unwrap_or("auto");
        let forced = options.backend.as_deref().filter(|name| *name != "auto");
        let expected = options.expect_backend.as_deref().or(forced).unwrap_or(kernel.backend);
        let plan =
            Plan { kernel, backend, expected, cases, programs: &programs, script: options.script.as_deref() };
        if !boot_and_report(&plan)? {
            failed.push(kernel.name);
        }
    }
    if !failed.is_empty() {
        bail!("the in-guest suite failed on {}", failed.join(", "));
    }
    Ok(())
}

/// One kernel's run.
struct Plan<'a> {
    kernel: kernels::Kernel,
    /// `vigie run --backend` in the guest.
    backend: &'a str,
    /// What the agent must report.
    expected: &'a str,
    cases: &'a [&'a str],
    programs: &'a [(PathBuf, &'static str)],
    script: Option<&'a Path>,
}

/// The agent (given, or the debug build), the actor and the suite (built), and `ip`, with the
/// names the guest runs them by.
fn programs(vigie: Option<&Path>) -> Result<Vec<(PathBuf, &'static str)>> {
    let vigie = match vigie {
        Some(path) => {
            path.canonicalize().with_context(|| format!("no agent binary at {}", path.display()))?
        }
        None => build::vigie(Profile::Debug)?,
    };
    command::run(cargo()?.args(["build", "--package", "integration-tests", "--bins"]))?;
    let tests = workspace::target_dir()?.join("debug");
    let ip =
        bootstrap::find_command("ip")?.context("iproute2's ip is not installed (cargo xtask bootstrap)")?;
    Ok(vec![
        (vigie, "vigie"),
        (tests.join("vigie-actor"), "vigie-actor"),
        (tests.join("vigie-vm-suite"), "vigie-vm-suite"),
        (ip, "ip"),
    ])
}

/// Boots `plan`'s kernel, prints the guest's console and the verdict; true if it passed.
fn boot_and_report(plan: &Plan) -> Result<bool> {
    let vm_dir = workspace::target_dir()?.join("vm");
    let kernel_dir = vm_dir.join(plan.kernel.name);
    fs::create_dir_all(vm_dir.join("kernels")).context("cannot create <target>/vm/kernels")?;
    fs::create_dir_all(&kernel_dir).with_context(|| format!("cannot create {}", kernel_dir.display()))?;
    let files = kernel_package::ensure(&plan.kernel, &vm_dir.join("kernels"))?;
    let busybox = bootstrap::find_command("busybox")?.context("busybox is not installed")?;
    let contents = root_image::Contents {
        busybox,
        programs: plan.programs.to_vec(),
        script: plan.script.map(Path::to_path_buf),
    };
    let initramfs = root_image::ensure(&kernel_dir, &files, &contents)?;
    let lab_disk = kernel_dir.join("lab.img");
    let parameters = match plan.script {
        Some(_) => "vigie.mode=script".to_owned(),
        None => format!(
            "vigie.backend={} vigie.expect={} vigie.cases={}",
            plan.backend,
            plan.expected,
            plan.cases.join(",")
        ),
    };
    say(&format!("booting {} ({}) with {parameters}", plan.kernel.name, files.package));
    let boot = qemu::Boot {
        vmlinuz: &files.vmlinuz,
        initramfs: &initramfs,
        lab_disk: &lab_disk,
        parameters: &parameters,
    };
    let expected: &[&str] = if plan.script.is_some() { &[] } else { plan.cases };
    let mut attempt = 1;
    let (tally, times) = loop {
        qemu::fresh_lab_disk(&lab_disk)?;
        let (tally, times) = watch(&qemu::start(&boot)?, expected);
        // Nothing of Vigie runs before `ready`: a guest kernel that stops there failed on its own
        // (6.12 under TCG has been seen to oops on an int3 of its live code patching at boot).
        if times.booted.is_some() || attempt == BOOT_ATTEMPTS {
            break (tally, times);
        }
        say(&format!(
            "the guest did not reach the suite (console above): boot {} of {BOOT_ATTEMPTS}",
            attempt + 1
        ));
        attempt += 1;
    };
    let release = &files.release;
    let right_kernel = times.release.as_ref() == Some(release);
    if !right_kernel {
        say(&format!("the guest ran {:?}, not {release}", times.release));
    }
    say(&format!(
        "{}: booted in {}, ran for {}, {} in all",
        plan.kernel.name,
        seconds(times.booted),
        seconds(times.ran),
        seconds(Some(times.total))
    ));
    eprint!("{tally}");
    let passed = right_kernel && tally.passed() && times.exit.as_deref() == Some("0");
    say(&format!("{}: {}", plan.kernel.name, if passed { "passed" } else { "FAILED" }));
    Ok(passed)
}

/// When the guest got where.
struct Times {
    /// From qemu's start to the init script's `ready`.
    booted: Option<Duration>,
    /// From `ready` to the suite's exit.
    ran: Option<Duration>,
    total: Duration,
    /// The suite's (or script's) exit code, as the init script reported it.
    exit: Option<String>,
    /// The kernel release the guest said it runs.
    release: Option<String>,
}

/// Echoes the console and tallies the suite's lines until qemu exits or the guest goes quiet.
fn watch(guest: &qemu::Guest, expected: &[&str]) -> (Tally, Times) {
    let started = Instant::now();
    let mut tally = Tally::new(expected);
    let (mut ready_at, mut exit_at, mut exit, mut release) = (None, None, None, None);
    loop {
        let timeout = if ready_at.is_some() { QUIET_TIMEOUT } else { BOOT_TIMEOUT };
        match guest.console.recv_timeout(timeout) {
            Ok(text) => {
                eprintln!("[guest] {text}");
                let line = Line::parse(&text);
                match line {
                    Line::Ready(running) => {
                        ready_at = Some(Instant::now());
                        release = Some(running.to_owned());
                    }
                    Line::Exit(code) => {
                        exit_at = Some(Instant::now());
                        exit = Some(code.to_owned());
                    }
                    _ => tally.record(&line),
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let why = match ready_at {
                    None => format!("the guest did not boot within {}", seconds(Some(BOOT_TIMEOUT))),
                    Some(_) => format!("no console line for {}", seconds(Some(QUIET_TIMEOUT))),
                };
                say(&format!("{why} (case in flight: {})", tally.in_flight().unwrap_or("none")));
                tally.give_up(&why);
                break;
            }
            Err(RecvTimeoutError::Disconnected) => {
                if !tally.complete() {
                    tally.give_up("the guest powered off");
                }
                break;
            }
        }
    }
    let times = Times {
        booted: ready_at.map(|ready| ready - started),
        ran: ready_at.zip(exit_at).map(|(ready, exit)| exit - ready),
        total: started.elapsed(),
        exit,
        release,
    };
    (tally, times)
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "-".to_owned(), |duration| format!("{:.1} s", duration.as_secs_f64()))
}

fn say(message: &str) {
    eprintln!("[vm] {message}");
}
