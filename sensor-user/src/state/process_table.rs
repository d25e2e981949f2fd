//! Every live process (and the recently exited), kept true by exec/fork/exit records and
//! seeded from `/proc` at start-up, so an alert can tell a process's whole story.

use std::{
    collections::{HashMap, VecDeque},
    fs,
};

use sensor_common::{ExitEvent, FileId, ForkEvent, START_TICK_NS};

use crate::kernel::decode::{split_args, Exec};

/// Exited processes kept for ancestry of their orphans and late reports.
const EXITED_KEPT: usize = 4096;
/// Longest ancestry walked (guards against a cycle from reused pids).
const ANCESTRY_MAX: usize = 64;

/// What is known of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// The parent's start time (0: unknown), which tells it from a later process of its pid.
    pub parent_start_ns: u64,
    pub uid: u32,
    pub executable: String,
    pub args: Vec<String>,
    /// Start time, nanoseconds since boot.
    pub start_ns: u64,
    /// Its `self_exec_id`, which program of the process this is (`None`: seen in `/proc`,
    /// which does not tell).
    pub exec_id: Option<u64>,
    /// The kernel's identity of its executable (`None`: not known).
    pub exe_id: Option<FileId>,
}

/// Live processes by pid, and the recently exited by (pid, start time): a story told after
/// a pid was reused still names the processes it was about.
#[derive(Debug, Default)]
pub struct ProcessTable {
    live: HashMap<u32, Process>,
    exited: HashMap<(u32, u64), Process>,
    exit_order: VecDeque<(u32, u64)>,
    /// Exited processes dropped to keep [`EXITED_KEPT`].
    forgotten: u64,
}

impl ProcessTable {
    /// A table of the processes running now, read from `/proc`.
    pub fn from_proc(ns_per_tick: u64) -> Self {
        let mut table = Self::default();
        let Ok(entries) = fs::read_dir("/proc") else { return table };
        for pid in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
            if let Some(process) = read_proc(pid, ns_per_tick) {
                table.live.insert(pid, process);
            }
        }
        let starts: HashMap<u32, u64> = table.live.values().map(|p| (p.pid, p.start_ns)).collect();
        for process in table.live.values_mut() {
            // A parent that started after its child is a later process of its pid.
            let start = starts.get(&process.ppid).copied().filter(|&s| s <= process.start_ns);
            process.parent_start_ns = start.unwrap_or(0);
        }
        table
    }

    /// Live processes.
    pub fn iter(&self) -> impl Iterator<Item = &Process> {
        self.live.values()
    }

    /// The live process `pid`.
    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.live.get(&pid)
    }

    /// The process `pid` that started at `start_ns`, live or recently exited. Start times
    /// are compared in ticks of `START_TICK_NS`, the precision of those read from `/proc`.
    pub fn find(&self, pid: u32, start_ns: u64) -> Option<&Process> {
        let tick = start_ns / START_TICK_NS;
        self.live
            .get(&pid)
            .filter(|p| p.start_ns / START_TICK_NS == tick)
            .or_else(|| self.exited.get(&(pid, tick)))
    }

    /// How many exited processes were dropped to bound the table.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    pub fn exec(&mut self, exec: &Exec) {
        let pid = exec.header.pid;
        let known = self.get(pid);
        let parent_start_ns = match known {
            Some(p) => p.parent_start_ns,
            None => self.get(exec.ppid).map_or(0, |parent| parent.start_ns),
        };
        let process = Process {
            pid,
            ppid: exec.ppid,
            parent_start_ns,
            uid: exec.header.uid,
            executable: exec.filename.clone(),
            args: exec.args.clone(),
            start_ns: known.map_or(exec.start_ns, |p| p.start_ns),
            exec_id: Some(exec.self_exec_id),
            exe_id: Some(exec.exe).filter(|id| *id != FileId::default()),
        };
        self.live.insert(pid, process);
    }

    /// The child starts as a copy of its parent, running the same program.
    pub fn fork(&mut self, fork: &ForkEvent) {
        let parent = fork.header.pid;
        let child = match self.get(parent) {
            Some(p) => Process {
                pid: fork.child_pid,
                ppid: parent,
                parent_start_ns: p.start_ns,
                start_ns: fork.child_start_ns,
                exec_id: Some(fork.child_exec_id),
                ..p.clone()
            },
            None => Process {
                pid: fork.child_pid,
                ppid: parent,
                parent_start_ns: 0,
                uid: fork.header.uid,
                executable: String::new(),
                args: Vec::new(),
                start_ns: fork.child_start_ns,
                exec_id: Some(fork.child_exec_id),
                exe_id: None,
            },
        };
        self.live.insert(fork.child_pid, child);
    }

    /// Keeps the exited process for a while: its orphans and late reports may need it.
    pub fn exit(&mut self, exit: &ExitEvent) {
        let Some(process) = self.live.remove(&exit.header.pid) else { return };
        let key = (process.pid, process.start_ns / START_TICK_NS);
        self.exited.insert(key, process);
        self.exit_order.push_back(key);
        while self.exit_order.len() > EXITED_KEPT {
            let Some(old) = self.exit_order.pop_front() else { break };
            self.exited.remove(&old);
            self.forgotten += 1;
        }
    }

    /// The parent of `process`, if known: the one that started it, not a later process of
    /// its pid.
    pub fn parent(&self, process: &Process) -> Option<&Process> {
        if process.ppid == 0 || process.ppid == process.pid {
            return None;
        }
        match process.parent_start_ns {
            0 => self.get(process.ppid).filter(|p| p.start_ns <= process.start_ns),
            start => self.find(process.ppid, start),
        }
    }

    /// Parent, grandparent, … up to init (or the first unknown process).
    pub fn ancestry(&self, process: &Process) -> Vec<&Process> {
        let mut chain = Vec::new();
        let mut current = self.parent(process);
        while let Some(parent) = current {
            if chain.len() == ANCESTRY_MAX {
                break;
            }
            chain.push(parent);
            current = self.parent(parent);
        }
        chain
    }
}

/// One process from `/proc/PID`; `None` if it vanished meanwhile.
fn read_proc(pid: u32, ns_per_tick: u64) -> Option<Process> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain anything.
    let after_comm: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ppid = after_comm.get(1)?.parse().ok()?;
    let start_ticks: u64 = after_comm.get(19)?.parse().ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()?;
    let executable =
        fs::read_link(format!("/proc/{pid}/exe")).map(|p| p.display().to_string()).unwrap_or_default();
    let args = fs::read(format!("/proc/{pid}/cmdline")).map(|b| split_args(&b)).unwrap_or_default();
    Some(Process {
        pid,
        ppid,
        parent_start_ns: 0,
        uid,
        executable,
        args,
        start_ns: start_ticks * ns_per_tick,
        exec_id: None,
        exe_id: crate::state::secret_catalog::file_id(std::path::Path::new(&format!("/proc/{pid}/exe"))),
    })
}

#[cfg(test)]
mod tests {
    use sensor_common::{EventHeader, EventKind};

    use super::*;

    fn header(kind: EventKind, pid: u32) -> EventHeader {
        EventHeader { kind: kind as u32, pid, uid: 0, _pad: 0, ktime_ns: 0 }
    }

    fn exec(pid: u32, ppid: u32, exe: &str) -> Exec {
        Exec {
            header: header(EventKind::Exec, pid),
            ppid,
            start_ns: 1,
            self_exec_id: 1,
            exe: FileId::default(),
            filename: exe.into(),
            args: vec![exe.into()],
        }
    }

    fn fork(parent: u32, child: u32) -> ForkEvent {
        ForkEvent {
            header: header(EventKind::Fork, parent),
            child_pid: child,
            _pad: 0,
            child_start_ns: 2,
            child_exec_id: 1,
        }
    }

    #[test]
    fn fork_then_exec_builds_the_ancestry() {
        let mut table = ProcessTable::default();
        table.exec(&exec(1, 0, "/sbin/init"));
        table.fork(&fork(1, 10));
        table.exec(&exec(10, 1, "/bin/bash"));
        table.fork(&fork(10, 11));
        let child = table.get(11).unwrap();
        assert_eq!((child.ppid, child.executable.as_str()), (10, "/bin/bash"));
        table.exec(&exec(11, 10, "/usr/bin/curl"));
        let curl = table.get(11).unwrap();
        let chain: Vec<_> = table.ancestry(curl).iter().map(|p| p.executable.as_str()).collect();
        assert_eq!(chain, ["/bin/bash", "/sbin/init"]);
    }

    #[test]
    fn a_story_told_after_pid_reuse_names_the_processes_it_was_about() {
        let mut table = ProcessTable::default();
        table.exec(&exec(1, 0, "/sbin/init"));
        table.fork(&fork(1, 10));
        table.exec(&exec(10, 1, "/bin/bash"));
        table.fork(&ForkEvent { child_start_ns: 3, ..fork(10, 11) });
        let child = table.get(11).unwrap().clone();
        table.exit(&ExitEvent { header: header(EventKind::Exit, 10) });
        // Another process gets pid 10.
        table.fork(&ForkEvent { child_start_ns: 2 * START_TICK_NS, ..fork(1, 10) });
        table.exec(&exec(10, 1, "/usr/sbin/nginx"));

        let chain: Vec<_> = table.ancestry(&child).iter().map(|p| p.executable.as_str()).collect();
        assert_eq!(chain, ["/bin/bash", "/sbin/init"]);
        assert_eq!(table.find(10, 2).unwrap().executable, "/bin/bash");
        let later = 2 * START_TICK_NS;
        assert_eq!(table.find(10, later).unwrap().executable, "/usr/sbin/nginx");
    }

    #[test]
    fn the_proc_seed_knows_this_test_process() {
        let table = ProcessTable::from_proc(crate::system::ns_per_tick());
        let me = table.get(std::process::id()).unwrap();
        assert_eq!(me.executable, std::env::current_exe().unwrap().display().to_string());
        assert!(table.ancestry(me).iter().any(|p| p.pid == me.ppid));
    }

    #[test]
    fn exited_processes_are_forgotten_only_after_many_more_exits_and_counted() {
        let mut table = ProcessTable::default();
        table.exec(&exec(5, 1, "/bin/true"));
        table.exit(&ExitEvent { header: header(EventKind::Exit, 5) });
        assert!(table.get(5).is_none() && table.find(5, 1).is_some());
        for pid in 100..100 + u32::try_from(EXITED_KEPT).unwrap() {
            table.exec(&exec(pid, 1, "/bin/true"));
            table.exit(&ExitEvent { header: header(EventKind::Exit, pid) });
        }
        assert!(table.find(5, 1).is_none());
        assert_eq!(table.forgotten(), 1);
    }
}
