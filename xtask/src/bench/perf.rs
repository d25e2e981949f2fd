//! Where a workload's CPU time goes, by symbol (`perf record -e cpu-clock`, which needs no
//! hardware counters), when Debian's perf is installed. Used only to explain numbers.

use std::ffi::OsString;
use std::fs;
use std::process::Command;

use anyhow::Result;

use crate::bootstrap;
use crate::command::{self, tool};

/// Samples per second: enough for tens of thousands of samples in a full-size loop.
const FREQUENCY: &str = "4999";
const TOP: usize = 12;
/// Symbols of the sensor's own programs.
const BPF_PROGRAMS: &[&str] = &["bpf_prog_"];
/// Kernel code that runs only because a BPF program is attached to a tracepoint: the
/// tracepoint glue, the helpers the programs call, the probe reads behind them.
const BPF_GLUE: &[&str] = &[
    "trace_call_bpf",
    "perf_syscall_enter",
    "perf_syscall_exit",
    "perf_trace_",
    "bpf_",
    "__bpf_",
    "copy_from_kernel_nofault",
    "copy_from_user_nofault",
    "strncpy_from_kernel_nofault",
    "htab_map_",
    "lookup_nulls_elem_raw",
    "__htab_map_lookup_elem",
    "ringbuf_",
];

/// The busiest symbols of one run and the share of samples in the sensor's code.
#[derive(Debug, Clone)]
pub struct PerfProfile {
    pub label: String,
    /// `perf report` lines: share, `[k]`/`[.]` (kernel/user), symbol.
    pub top: Vec<String>,
    /// Percent of samples in BPF programs, and in the glue that runs them.
    pub bpf_programs: f64,
    pub bpf_glue: f64,
}

/// Whether `perf record -e cpu-clock` works here.
pub fn available() -> bool {
    let Ok(Some(perf)) = bootstrap::find_command("perf") else { return false };
    command::output(Command::new(perf).args(["stat", "-e", "cpu-clock", "true"])).is_ok()
}

/// Runs `program_and_args` under `perf record` and summarises the samples.
pub fn record(label: &str, program_and_args: &[OsString]) -> Result<PerfProfile> {
    let data = std::env::temp_dir().join(format!("vigie-bench-{}.perf.data", std::process::id()));
    let recorded = command::output(
        tool("perf")?
            .args(["record", "-q", "-e", "cpu-clock", "-F", FREQUENCY, "-o"])
            .arg(&data)
            .arg("--")
            .args(program_and_args),
    );
    let report = recorded.and_then(|_| {
        command::output(tool("perf")?.args(["report", "--stdio", "--sort", "sym", "-q", "-i"]).arg(&data))
    });
    let _ = fs::remove_file(&data);
    let symbols = parse(&report?);
    Ok(PerfProfile {
        label: label.to_owned(),
        top: symbols.iter().take(TOP).map(|(share, line)| format!("{share:6.2}%  {line}")).collect(),
        bpf_programs: share_of(&symbols, BPF_PROGRAMS, &[]),
        bpf_glue: share_of(&symbols, BPF_GLUE, BPF_PROGRAMS),
    })
}

/// `perf report --sort sym` lines as (percent, `[k] symbol`), busiest first.
fn parse(report: &str) -> Vec<(f64, String)> {
    report
        .lines()
        .filter_map(|line| {
            let (share, symbol) = line.trim().split_once('%')?;
            Some((share.trim().parse().ok()?, symbol.trim().to_owned()))
        })
        .collect()
}

/// Summed percent of the symbols whose name starts with one of `prefixes` but none of
/// `except`.
fn share_of(symbols: &[(f64, String)], prefixes: &[&str], except: &[&str]) -> f64 {
    let starts = |name: &str, list: &[&str]| list.iter().any(|prefix| name.starts_with(prefix));
    symbols
        .iter()
        .filter(|(_, line)| {
            let name = line.rsplit(' ').next().unwrap_or_default();
            starts(name, prefixes) && !starts(name, except)
        })
        .map(|(share, _)| share)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{parse, share_of, BPF_GLUE, BPF_PROGRAMS};

    #[test]
    fn sums_the_sensor_share() {
        let report = "     5.10%  [k] copy_from_kernel_nofault\n\
                      4.86%  [k] do_syscall_64\n\
                      3.28%  [k] trace_call_bpf\n\
                      2.82%  [k] bpf_prog_8f984ab51cf04d80_sys_exit_open\n\
                      1.00%  [.] __GI___libc_open\n";
        let symbols = parse(report);
        assert_eq!(symbols.len(), 5);
        assert!((share_of(&symbols, BPF_PROGRAMS, &[]) - 2.82).abs() < 1e-9);
        assert!((share_of(&symbols, BPF_GLUE, BPF_PROGRAMS) - 8.38).abs() < 1e-9);
    }
}
