//! The hook set is chosen at start-up: on a kernel with the page cache tracepoints, the
//! steady state has no program on any syscall tracepoint, and the syscall programs that
//! follow channels are attached only while some process is tainted. The syscall backend
//! can be forced, and then keeps them attached.
//!
//! The fentry and kprobe backends, for kernels without the page cache tracepoints, cannot run
//! on this host's kernel (it refuses trampolines and has no kprobes): asking for them is refused
//! with the kernel's reason. docs/KERNELS.md has their runs in a Debian 12 guest.
//!
//! The detection suites run against both backends: `cargo xtask test` runs them a second time
//! with `VIGIE_TEST_BACKEND=syscalls`.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use integration_tests::bpf_objects::{attached_tracepoints, is_syscall_tracepoint};
use integration_tests::cli::run_vigie;
use integration_tests::{actor_exe, alert, poll, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// How long a tainted actor stays alive while the attachments are looked at.
const HOLD: Duration = Duration::from_secs(4);

fn backend(started: &Value) -> Option<&str> {
    started.pointer("/vigie/backend/name").and_then(Value::as_str)
}

fn syscall_hooks(sensor: &Sensor) -> Result<BTreeSet<String>> {
    Ok(attached_tracepoints(sensor.pid())?.into_iter().filter(|t| is_syscall_tracepoint(t)).collect())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn the_steady_state_has_no_syscall_tracepoint_and_taint_brings_them_for_its_lifetime() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_with(&["--backend", "page-cache"])?;
    let started = sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;
    assert_eq!(backend(&started), Some("page-cache"), "{started:#}");
    let steady = attached_tracepoints(sensor.pid())?;
    assert!(steady.contains("mm_filemap_get_pages"), "the page cache programs are attached: {steady:?}");
    assert!(!steady.iter().any(|t| is_syscall_tracepoint(t)), "no syscall tracepoint: {steady:?}");

    let holder = lab.actor().read(lab.secret()).sleep(HOLD).spawn()?;
    sensor.expect(alert::is_secret_read_by(holder.pid), ALERT_TIMEOUT)?;
    let both = BTreeSet::from(["sys_enter".to_owned(), "sys_exit".to_owned()]);
    poll::until(
        "syscall hooks for a tainted process",
        ALERT_TIMEOUT,
        || syscall_hooks(&sensor),
        |h| *h == both,
    )?;
    holder.finish()?;
    poll::until(
        "no syscall hook once it exited",
        ALERT_TIMEOUT,
        || syscall_hooks(&sensor),
        BTreeSet::is_empty,
    )?;
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn the_syscall_backend_can_be_forced_and_keeps_its_hooks_attached() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_with(&["--backend", "syscalls"])?;
    let started = sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;
    assert_eq!(backend(&started), Some("syscalls"), "{started:#}");
    let reason = started.pointer("/vigie/backend/reason").and_then(Value::as_str).unwrap_or_default();
    assert!(reason.contains("configuration"), "{started:#}");
    assert_eq!(syscall_hooks(&sensor)?, BTreeSet::from(["sys_enter".to_owned(), "sys_exit".to_owned()]));
    assert!(!attached_tracepoints(sensor.pid())?.contains("mm_filemap_get_pages"));

    let thief = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;
    sensor.expect(alert::is_exfiltration_by(thief.pid), ALERT_TIMEOUT)?;
    Ok(())
}

/// The threads of a process share its taint, whichever of them leaves first or execs.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn taint_outlives_the_main_thread_and_survives_exec_from_another_thread() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let remote = lab.remote().tcp_v4();
    let secret = lab.secret().display().to_string();
    // The main thread reads, then leaves with pthread_exit; a second thread sends later.
    let main_leaves = format!(
        "import ctypes, socket, threading, time\n\
         open({secret:?}).read()\n\
         def later():\n    time.sleep(0.3)\n    socket.create_connection(('{ip}', {port}), timeout=5).close()\n\
         threading.Thread(target=later).start()\n\
         ctypes.CDLL(None).pthread_exit(None)\n",
        ip = remote.ip(),
        port = remote.port()
    );
    let process = integration_tests::host_tools::run("python3", &["-c", &main_leaves])?;
    sensor.expect(alert::is_exfiltration_by(process), ALERT_TIMEOUT)?;

    // A second thread replaces the process with curl, which sends.
    let thread_execs = format!(
        "import os, threading\n\
         open({secret:?}).read()\n\
         t = threading.Thread(target=lambda: os.execv('/usr/bin/curl', ['curl', '-sS', '-o', '/dev/null', '--max-time', '5', 'http://{remote}/']))\n\
         t.start()\n\
         t.join()\n"
    );
    let process = integration_tests::host_tools::run("python3", &["-c", &thread_execs])?;
    let alert = sensor.expect(alert::is_exfiltration_by(process), ALERT_TIMEOUT)?;
    assert!(
        integration_tests::host_tools::is_program(alert::process_executable(&alert), "curl"),
        "{alert:#}"
    );
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn this_kernel_gets_the_page_cache_backend_by_default() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_with(&["--backend", "auto"])?;
    let started = sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;
    assert_eq!(backend(&started), Some("page-cache"), "{started:#}");
    Ok(())
}

/// `--backend fentry` and `--backend kprobe` on this host: exit 2, naming the backend and what
/// the kernel refused, never a fallback.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn the_function_probe_backends_are_refused_here_with_the_kernels_reason() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let secret = lab.secret().display().to_string();
    let refusals = [
        ("fentry", "program fentry_file_read: the BPF_PROG_LOAD syscall returned Operation not permitted"),
        ("kprobe", "program kprobe_file_read: `/sys/bus/event_source/devices/kprobe/type`: No such file"),
    ];
    for (backend, why) in refusals {
        let args = ["run", "--profile", "none", "--secret", &secret, "--no-journal", "--backend", backend];
        let exit = run_vigie(&args, None)?;
        assert_eq!(exit.code, Some(2), "{exit:#?}");
        assert!(!exit.panicked(), "{exit:#?}");
        assert!(exit.stderr.contains(&format!("backend {backend} cannot run here: {why}")), "{exit:#?}");
        assert!(!exit.stdout.contains("sensor-started"), "{exit:#?}");
    }
    Ok(())
}
