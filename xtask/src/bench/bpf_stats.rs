//! The BPF programs' own cost. With `kernel.bpf_stats_enabled=1` the kernel counts every
//! program's runs and run time, and `bpftool -j prog show` reports both. The agent's
//! programs are the ones whose descriptors it holds (`prog_id:` in `/proc/PID/fdinfo`), so
//! other sensors loaded on the same machine are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::command::{self, tool};

const SWITCH: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Statistics on while this lives; the setting found before is put back on drop.
pub struct StatsSwitch {
    before: String,
}

impl StatsSwitch {
    pub fn on() -> Result<Self> {
        let before = fs::read_to_string(SWITCH).with_context(|| format!("cannot read {SWITCH}"))?;
        fs::write(SWITCH, "1").with_context(|| format!("cannot enable BPF statistics ({SWITCH})"))?;
        Ok(Self { before: before.trim().to_owned() })
    }
}

impl Drop for StatsSwitch {
    fn drop(&mut self) {
        if let Err(error) = fs::write(SWITCH, &self.before) {
            eprintln!("[bench] cannot restore {SWITCH} to {}: {error}", self.before);
        }
    }
}

/// One program's counters (or their growth over a workload).
#[derive(Debug, Clone)]
pub struct ProgramStat {
    pub name: String,
    pub kind: String,
    pub runs: u64,
    pub run_ns: u64,
}

impl ProgramStat {
    #[expect(clippy::cast_precision_loss, reason = "counters of one run are far below 2^52")]
    pub fn avg_ns(&self) -> f64 {
        self.run_ns as f64 / self.runs.max(1) as f64
    }
}

/// BPF programs that others load while the bench runs (another sensor under test, say):
/// they run in whichever arm they overlap, so the report says where they were seen.
pub struct Neighbours {
    /// Programs already loaded when the bench started: part of the machine, every arm has them.
    resident: BTreeSet<u32>,
}

impl Neighbours {
    pub fn at_start() -> Result<Self> {
        Ok(Self { resident: loaded()? })
    }

    /// Programs loaded now that are neither resident nor in `ours`.
    pub fn count(&self, ours: &BTreeSet<u32>) -> Result<usize> {
        Ok(loaded()?.iter().filter(|id| !self.resident.contains(id) && !ours.contains(id)).count())
    }
}

/// Ids of every loaded program.
fn loaded() -> Result<BTreeSet<u32>> {
    let json = command::output(tool("bpftool")?.args(["-j", "prog", "show"]))?;
    let programs: Value = serde_json::from_str(&json).context("bpftool printed no JSON")?;
    Ok(parse_programs(&programs).into_keys().collect())
}

/// Ids of the programs process `pid` holds open.
pub fn programs_of(pid: u32) -> Result<BTreeSet<u32>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = BTreeSet::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {dir}"))? {
        let Ok(info) = fs::read_to_string(entry?.path()) else { continue };
        ids.extend(prog_id(&info));
    }
    Ok(ids)
}

/// Counters of the programs `ids`, by id.
pub fn snapshot(ids: &BTreeSet<u32>) -> Result<BTreeMap<u32, ProgramStat>> {
    let json = command::output(tool("bpftool")?.args(["-j", "prog", "show"]))?;
    let programs: Value = serde_json::from_str(&json).context("bpftool printed no JSON")?;
    Ok(parse_programs(&programs).into_iter().filter(|(id, _)| ids.contains(id)).collect())
}

/// What each program did between two snapshots, busiest first.
pub fn growth(before: &BTreeMap<u32, ProgramStat>, after: &BTreeMap<u32, ProgramStat>) -> Vec<ProgramStat> {
    let mut grown: Vec<ProgramStat> = after
        .iter()
        .map(|(id, now)| {
            let (runs, run_ns) = before.get(id).map_or((0, 0), |then| (then.runs, then.run_ns));
            ProgramStat {
                runs: now.runs.saturating_sub(runs),
                run_ns: now.run_ns.saturating_sub(run_ns),
                ..now.clone()
            }
        })
        .collect();
    grown.sort_by(|a, b| b.run_ns.cmp(&a.run_ns).then_with(|| a.name.cmp(&b.name)));
    grown
}

/// `prog_id:` of a `/proc/PID/fdinfo/FD` (program and link descriptors both carry one).
fn prog_id(fdinfo: &str) -> Option<u32> {
    fdinfo.lines().find_map(|line| line.strip_prefix("prog_id:")?.trim().parse().ok())
}

/// `bpftool -j prog show` output by id; the counters are absent while zero.
fn parse_programs(programs: &Value) -> BTreeMap<u32, ProgramStat> {
    let Some(list) = programs.as_array() else { return BTreeMap::new() };
    list.iter()
        .filter_map(|program| {
            let id = u32::try_from(program["id"].as_u64()?).ok()?;
            let stat = ProgramStat {
                name: program["name"].as_str().unwrap_or("?").to_owned(),
                kind: program["type"].as_str().unwrap_or("?").to_owned(),
                runs: program["run_cnt"].as_u64().unwrap_or(0),
                run_ns: program["run_time_ns"].as_u64().unwrap_or(0),
            };
            Some((id, stat))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::{growth, parse_programs, prog_id};

    #[test]
    fn finds_program_ids_in_fdinfo() {
        assert_eq!(prog_id("pos:\t0\nflags:\t02000002\nprog_type:\t5\nprog_id:\t77\n"), Some(77));
        assert_eq!(prog_id("pos:\t0\nmap_type:\t27\nmap_id:\t5\n"), None);
    }

    #[test]
    fn counts_growth_per_program() {
        let before = parse_programs(&json!([
            { "id": 7, "type": "tracepoint", "name": "sys_exit_open", "run_time_ns": 1000, "run_cnt": 10 },
            { "id": 8, "type": "tracepoint", "name": "idle" },
        ]));
        let after = parse_programs(&json!([
            { "id": 7, "type": "tracepoint", "name": "sys_exit_open", "run_time_ns": 5000, "run_cnt": 60 },
            { "id": 8, "type": "tracepoint", "name": "idle" },
        ]));
        let grown = growth(&before, &after);
        assert_eq!(grown[0].name, "sys_exit_open");
        assert_eq!((grown[0].runs, grown[0].run_ns), (50, 4000));
        assert!((grown[0].avg_ns() - 80.0).abs() < 1e-9);
        assert_eq!(grown[1].runs, 0);
        assert!(growth(&BTreeMap::new(), &BTreeMap::new()).is_empty());
    }
}
