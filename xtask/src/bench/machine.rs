//! Facts about the machine and the tree a report was made on, so numbers are never read
//! without their context.

use std::fs;

use super::Plan;
use crate::command::{self, tool};
use crate::workspace;

#[derive(Debug, Clone)]
pub struct Machine {
    pub command: &'static str,
    pub date: String,
    pub kernel: String,
    pub cores: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    /// `/proc/loadavg` when the bench started: other work on the machine adds noise.
    pub load_average: String,
    /// BPF programs already loaded by others when the bench started (they run in every arm).
    pub foreign_bpf_programs: Option<usize>,
    pub revision: String,
}

pub fn facts(plan: &Plan) -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    #[expect(clippy::cast_precision_loss, reason = "memory sizes are far below 2^52 KiB")]
    let memory_gib =
        first_number(&meminfo, "MemTotal:").map_or(f64::NAN, |kib| kib as f64 / f64::from(1 << 20));
    Machine {
        command: plan.command(),
        date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown".to_owned()),
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "?".to_owned(), |k| k.trim().to_owned()),
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu_model: cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")?.split_once(':').map(|(_, name)| name.trim().to_owned())
            })
            .unwrap_or_else(|| "?".to_owned()),
        memory_gib,
        load_average: fs::read_to_string("/proc/loadavg")
            .map(|load| load.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        foreign_bpf_programs: output("bpftool", &["-j", "prog", "show"])
            .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
            .and_then(|list| list.as_array().map(Vec::len)),
        revision: revision(),
    }
}

/// `git rev-parse --short HEAD`, marked when the tree has uncommitted changes.
fn revision() -> String {
    let root = workspace::root().ok();
    let git = |args: &[&str]| {
        let mut git = tool("git").ok()?;
        if let Some(root) = &root {
            git.current_dir(root);
        }
        command::output(git.args(args)).ok()
    };
    match (git(&["rev-parse", "--short", "HEAD"]), git(&["status", "--porcelain"])) {
        (Some(head), Some(changes)) if !changes.is_empty() => format!("{head} + uncommitted changes"),
        (Some(head), _) => head,
        (None, _) => "unknown".to_owned(),
    }
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    command::output(tool(program).ok()?.args(args)).ok()
}

/// The number after `key` on its line, e.g. `MemTotal:  24576000 kB`.
fn first_number(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
}
