//! Where the agent's programs are attached: the `bpftool -j link list` entries whose program
//! is one the agent holds (`bpf_stats::programs_of`), with the program's name and type and
//! the link's attach point; and the agent's programs that are loaded but attached nowhere
//! (hooks it attaches only when needed).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value;

use super::bpf_stats::{self, ProgramStat};
use crate::command::{self, tool};

/// One link of the agent's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub program: String,
    /// The program's type, as bpftool names it.
    pub program_kind: String,
    /// The link's own type (`raw_tracepoint`, `perf_event`, `cgroup`, ...).
    pub kind: String,
    /// Tracepoint name, attach type and cgroup, as far as bpftool says.
    pub target: String,
}

impl Link {
    /// One list item, e.g. ``"`sys_enter` (raw_tracepoint): raw_tracepoint link, `sys_enter`"``.
    pub fn describe(&self) -> String {
        format!("`{}` ({}): {} link, {}", self.program, self.program_kind, self.kind, self.target)
    }
}

/// The agent's links, and its programs without one, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Attachments {
    pub links: Vec<Link>,
    /// (name, type) of the agent's programs that are attached nowhere.
    pub unattached: Vec<(String, String)>,
}

impl Attachments {
    /// Links in `self` that `other` lacks.
    pub fn beyond<'a>(&'a self, other: &'a Attachments) -> impl Iterator<Item = &'a Link> + 'a {
        self.links.iter().filter(move |link| !other.links.contains(link))
    }
}

/// The attachments of process `pid`'s programs now.
pub fn of(pid: u32) -> Result<Attachments> {
    let ours = bpf_stats::programs_of(pid)?;
    let programs = bpf_stats::snapshot(&ours)?;
    let json = command::output(tool("bpftool")?.args(["-j", "link", "list"]))?;
    let links: Value = serde_json::from_str(&json).context("bpftool link list printed no JSON")?;
    Ok(attachments(&links, &programs))
}

fn attachments(links: &Value, programs: &BTreeMap<u32, ProgramStat>) -> Attachments {
    let mut linked = BTreeSet::new();
    let mut found = Vec::new();
    for link in links.as_array().into_iter().flatten() {
        let Some(id) = link["prog_id"].as_u64().and_then(|id| u32::try_from(id).ok()) else { continue };
        let Some(program) = programs.get(&id) else { continue };
        linked.insert(id);
        found.push(Link {
            program: program.name.clone(),
            program_kind: program.kind.clone(),
            kind: link["type"].as_str().unwrap_or("?").to_owned(),
            target: target(link),
        });
    }
    let unattached = programs
        .iter()
        .filter(|(id, _)| !linked.contains(id))
        .map(|(_, program)| (program.name.clone(), program.kind.clone()))
        .collect();
    Attachments { links: found, unattached }
}

/// Where a link is attached, from whichever of bpftool's fields it has.
fn target(link: &Value) -> String {
    let text = |name: &str| link[name].as_str().map(str::to_owned);
    let mut parts: Vec<String> = ["tp_name", "tracepoint", "func", "attach_type"]
        .iter()
        .filter_map(|name| text(name).map(|value| format!("`{value}`")))
        .collect();
    if let Some(cgroup) = link["cgroup_id"].as_u64() {
        parts.push(format!("cgroup {cgroup}"));
    }
    if parts.is_empty() && link["type"].as_str() == Some("perf_event") {
        return "a perf event (this bpftool does not name its tracepoint; the program name does)".to_owned();
    }
    if parts.is_empty() {
        return "attach point not shown by bpftool".to_owned();
    }
    parts.join(" on ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::{attachments, ProgramStat};

    fn program(name: &str, kind: &str) -> ProgramStat {
        ProgramStat { name: name.to_owned(), kind: kind.to_owned(), runs: 0, run_ns: 0 }
    }

    #[test]
    fn keeps_the_agents_links_and_names_their_targets() {
        let programs = BTreeMap::from([
            (101, program("sched_process_exec", "tracepoint")),
            (105, program("sys_enter", "raw_tracepoint")),
            (111, program("udp_connect4", "cgroup_sock_addr")),
            (120, program("pipe_read", "raw_tracepoint")),
        ]);
        let links = json!([
            { "id": 89, "type": "perf_event", "prog_id": 101 },
            { "id": 93, "type": "raw_tracepoint", "prog_id": 105, "tp_name": "sys_enter" },
            { "id": 99, "type": "cgroup", "prog_id": 111, "cgroup_id": 1, "attach_type": "cgroup_inet4_connect" },
            { "id": 7, "type": "raw_tracepoint", "prog_id": 3, "tp_name": "someone_elses" },
        ]);
        let found = attachments(&links, &programs);
        let described: Vec<String> = found.links.iter().map(super::Link::describe).collect();
        assert_eq!(described.len(), 3);
        assert!(described[0].starts_with("`sched_process_exec` (tracepoint): perf_event link, a perf event"));
        assert_eq!(described[1], "`sys_enter` (raw_tracepoint): raw_tracepoint link, `sys_enter`");
        assert_eq!(
            described[2],
            "`udp_connect4` (cgroup_sock_addr): cgroup link, `cgroup_inet4_connect` on cgroup 1"
        );
        assert_eq!(found.unattached, [("pipe_read".to_owned(), "raw_tracepoint".to_owned())]);
    }
}
