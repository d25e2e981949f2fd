//! What a process costs, from procfs: CPU time (`utime + stime` of `/proc/PID/stat`, all
//! threads) over a window, and peak resident memory (`VmHWM` of `/proc/PID/status`).

use std::fs;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::command::{self, tool};

/// A point on a process's CPU clock.
#[derive(Clone, Copy)]
pub struct CpuMark {
    ticks: u64,
    at: Instant,
}

/// CPU use of `pid` between two marks.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub cpu_seconds: f64,
    pub wall: Duration,
}

impl CpuUse {
    /// Percent of one core.
    pub fn percent(&self) -> f64 {
        100.0 * self.cpu_seconds / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

pub fn mark(pid: u32) -> Result<CpuMark> {
    let stat =
        fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("no process {pid}"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("unreadable /proc/{pid}/stat"))?;
    Ok(CpuMark { ticks, at: Instant::now() })
}

pub fn since(before: CpuMark, pid: u32) -> Result<CpuUse> {
    let after = mark(pid)?;
    #[expect(clippy::cast_precision_loss, reason = "tick counts of one run are far below 2^52")]
    let cpu_seconds = after.ticks.saturating_sub(before.ticks) as f64 / ticks_per_second();
    Ok(CpuUse { cpu_seconds, wall: after.at - before.at })
}

/// Peak resident set size of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// Resident set size of `pid` now, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("no process {pid}"))?;
    kib_field(&status, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line; the command name in
/// parentheses may hold spaces, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Name:   1234 kB` line of `/proc/PID/status`.
fn kib_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix(field))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `getconf CLK_TCK`, 100 on every Linux we know of if getconf is missing.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        tool("getconf")
            .and_then(|mut getconf| command::output(getconf.arg("CLK_TCK")))
            .ok()
            .and_then(|ticks| ticks.parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::{cpu_ticks, kib_field};

    #[test]
    fn reads_utime_and_stime_after_a_name_with_spaces() {
        let stat = "42 (tokio (rt) w) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 99 1000 200";
        assert_eq!(cpu_ticks(stat), Some(12));
        assert_eq!(cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn reads_the_peak_rss() {
        let status = "Name:\tvigie\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(kib_field(status, "VmHWM:"), Some(12_345));
        assert_eq!(kib_field(status, "VmRSS:"), Some(1_000));
        assert_eq!(kib_field("Name:\tvigie\n", "VmHWM:"), None);
    }
}
