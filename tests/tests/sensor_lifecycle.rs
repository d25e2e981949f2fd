//! The sensor's own life: it reports the records the kernel had to drop, and on SIGTERM it
//! exits cleanly and leaves no program attached and no BPF object loaded.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use integration_tests::bpf_objects::{self, BpfObjects};
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// The smallest ring the agent accepts; an exec record is ~830 bytes, so it holds a handful.
const SMALLEST_RING: &str = "4096";
/// Processes run while the sensor is paused; each makes fork, exec and exit records.
const PROCESSES: u64 = 200;
/// Every program the sensor loads.
const PROGRAMS: [&str; 12] = [
    "sched_process_exec",
    "sched_process_exit",
    "sched_process_fork",
    "sys_enter",
    "sys_exit",
    "io_uring_complete",
    "inet_sock_set_state",
    "sock_send_length",
    "udp_sendmsg4",
    "udp_sendmsg6",
    "udp_connect4",
    "udp_connect6",
];
/// The ones attached to the cgroup v2 root.
const CGROUP_PROGRAMS: [&str; 4] = ["udp_sendmsg4", "udp_sendmsg6", "udp_connect4", "udp_connect6"];
/// How long the kernel may take to free what an exited sensor held.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn sensor_exits_cleanly_on_sigterm() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor()?;
    let status = sensor.stop()?;
    assert!(status.success(), "vigie exited with {status}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn lost_events_are_counted_and_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor_with(&["--ring-buffer-bytes", SMALLEST_RING])?;
    sensor.pause()?;
    // A busy host overflows so small a ring before the pause too; the paused window's report
    // is the one at least PROCESSES / 2 past the last report seen (every exec alone overflows it).
    let bar = last_loss_total(&sensor) + PROCESSES / 2;

    run_short_processes(PROCESSES)?;
    sensor.resume()?;

    let reported =
        |line: &Value| alert::is_events_lost(line) && alert::loss(line).is_some_and(|l| l.total >= bar);
    let report = sensor.expect(reported, ALERT_TIMEOUT)?;
    let loss = alert::loss(&report).context("the matched line has counts")?;
    assert!(loss.new >= 1 && loss.total >= loss.new, "{report:#}");
    eprintln!("after the pause vigie reported {} records lost, {} in all", loss.new, loss.total);

    let status = sensor.stop()?;
    assert!(status.success(), "vigie exited with {status}");
    let stopped = sensor.lines_matching(alert::is_sensor_stopped);
    let [stopped] = &stopped[..] else { panic!("one sensor-stopped line, got {stopped:#?}") };
    assert_eq!(alert::lost_at_stop(stopped), Some(last_loss_total(&sensor)), "{stopped:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn stopping_detaches_every_program() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor()?;
    let held = bpf_objects::held_by(sensor.pid())?;
    let cgroup = bpf_objects::cgroup2_mount()?;
    let names = program_names(&held.programs)?;
    assert!(PROGRAMS.iter().all(|p| names.contains(*p)), "vigie holds {names:?}");
    let attached = program_names(&held_programs_attached(&held, &cgroup)?)?;
    assert!(CGROUP_PROGRAMS.iter().all(|p| attached.contains(*p)), "{attached:?} on {}", cgroup.display());

    let stopping = Instant::now();
    let status = sensor.stop()?;
    let exited = stopping.elapsed();
    assert!(status.success(), "vigie exited with {status}");
    let left = bpf_objects::wait_for_release(&held, RELEASE_TIMEOUT)?;
    eprintln!(
        "vigie exited {exited:?} after SIGTERM; its BPF objects were gone {:?} after",
        stopping.elapsed()
    );

    assert!(left.is_empty(), "still loaded {RELEASE_TIMEOUT:?} after vigie exited: {left:?}");
    let attached = held_programs_attached(&held, &cgroup)?;
    assert!(attached.is_empty(), "programs {attached:?} still attached to {}", cgroup.display());
    Ok(())
}

/// The total of the last `events-lost` line so far; 0 if none.
fn last_loss_total(sensor: &Sensor) -> u64 {
    let reports = sensor.lines_matching(alert::is_events_lost);
    reports.iter().rev().find_map(alert::loss).map_or(0, |loss| loss.total)
}

/// Runs `/bin/true` `count` times, one after the other.
fn run_short_processes(count: u64) -> Result<()> {
    for _ in 0..count {
        let status = Command::new("/bin/true").stdin(Stdio::null()).status().context("run /bin/true")?;
        ensure!(status.success(), "/bin/true exited with {status}");
    }
    Ok(())
}

fn program_names(ids: &BTreeSet<u32>) -> Result<BTreeSet<String>> {
    let loaded = bpf_objects::loaded_programs()?;
    ids.iter().map(|id| loaded.get(id).cloned().with_context(|| format!("program {id} not loaded"))).collect()
}

fn held_programs_attached(held: &BpfObjects, cgroup: &Path) -> Result<BTreeSet<u32>> {
    Ok(bpf_objects::attached_to_cgroup(cgroup)?.intersection(&held.programs).copied().collect())
}
