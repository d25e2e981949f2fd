//! Every live process (and the recently exited), kept true by exec/fork/exit records and
//! seeded from `/proc` at start-up, so an alert can tell a process's whole story.

use std::{
    collections::{HashMap, VecDeque},
    fs,
};

use sensor_common::{ExitEvent, ForkEvent};

use crate::kernel::decode::{split_args, Exec};

/// Exited processes kept for ancestry of their orphans and late records.
const EXITED_KEPT: usize = 4096;
/// Longest ancestry walked (guards against a cycle from reused pids).
const ANCESTRY_MAX: usize = 64;

/// What is known of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub executable: String,
    pub args: Vec<String>,
    /// Start time, nanoseconds since boot.
    pub start_ns: u64,
}

/// Processes by pid.
#[derive(Debug, Default)]
pub struct ProcessTable {
    processes: HashMap<u32, Process>,
    exited: VecDeque<(u32, u64)>,
}

impl ProcessTable {
    /// A table of the processes running now, read from `/proc`.
    pub fn from_proc(ns_per_tick: u64) -> Self {
        let mut table = Self::default();
        let Ok(entries) = fs::read_dir("/proc") else { return table };
        for pid in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
            if let Some(process) = read_proc(pid, ns_per_tick) {
                table.processes.insert(pid, process);
            }
        }
        table
    }

    pub fn iter(&self) -> impl Iterator<Item = &Process> {
        self.processes.values()
    }

    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.processes.get(&pid)
    }

    pub fn exec(&mut self, exec: &Exec) {
        let pid = exec.header.pid;
        let process = Process {
            pid,
            ppid: exec.ppid,
            uid: exec.header.uid,
            executable: exec.filename.clone(),
            args: exec.args.clone(),
            start_ns: self.get(pid).map_or(exec.start_ns, |p| p.start_ns),
        };
        self.processes.insert(pid, process);
    }

    /// The child starts as a copy of its parent, running the same program.
    pub fn fork(&mut self, fork: &ForkEvent) {
        let parent = fork.header.pid;
        let child = match self.get(parent) {
            Some(p) => {
                Process { pid: fork.child_pid, ppid: parent, start_ns: fork.child_start_ns, ..p.clone() }
            }
            None => Process {
                pid: fork.child_pid,
                ppid: parent,
                uid: fork.header.uid,
                executable: String::new(),
                args: Vec::new(),
                start_ns: fork.child_start_ns,
            },
        };
        self.processes.insert(fork.child_pid, child);
    }

    /// Keeps the exited process for a while: its orphans and in-flight records may need it.
    pub fn exit(&mut self, exit: &ExitEvent) {
        let pid = exit.header.pid;
        let Some(start) = self.get(pid).map(|p| p.start_ns) else { return };
        self.exited.push_back((pid, start));
        while self.exited.len() > EXITED_KEPT {
            let Some((old_pid, old_start)) = self.exited.pop_front() else { break };
            // Only forget it if the pid was not reused meanwhile.
            if self.get(old_pid).is_some_and(|p| p.start_ns == old_start) {
                self.processes.remove(&old_pid);
            }
        }
    }

    /// Parent, grandparent, … up to init (or the first unknown process).
    pub fn ancestry(&self, pid: u32) -> Vec<&Process> {
        let mut chain = Vec::new();
        let mut current = self.get(pid);
        while let Some(process) = current {
            if chain.len() == ANCESTRY_MAX || process.ppid == 0 || process.ppid == process.pid {
                break;
            }
            current = self.get(process.ppid);
            if let Some(parent) = current {
                chain.push(parent);
            }
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
    Some(Process { pid, ppid, uid, executable, args, start_ns: start_ticks * ns_per_tick })
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
            filename: exe.into(),
            args: vec![exe.into()],
        }
    }

    fn fork(parent: u32, child: u32) -> ForkEvent {
        ForkEvent { header: header(EventKind::Fork, parent), child_pid: child, _pad: 0, child_start_ns: 2 }
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
        let chain: Vec<_> = table.ancestry(11).iter().map(|p| p.executable.as_str()).collect();
        assert_eq!(chain, ["/bin/bash", "/sbin/init"]);
    }

    #[test]
    fn the_proc_seed_knows_this_test_process() {
        let table = ProcessTable::from_proc(crate::system::ns_per_tick());
        let me = table.get(std::process::id()).unwrap();
        assert_eq!(me.executable, std::env::current_exe().unwrap().display().to_string());
        assert!(table.ancestry(me.pid).iter().any(|p| p.pid == me.ppid));
    }

    #[test]
    fn exited_processes_are_forgotten_only_after_many_more_exits() {
        let mut table = ProcessTable::default();
        table.exec(&exec(5, 1, "/bin/true"));
        table.exit(&ExitEvent { header: header(EventKind::Exit, 5) });
        assert!(table.get(5).is_some());
        for pid in 100..100 + u32::try_from(EXITED_KEPT).unwrap() {
            table.exec(&exec(pid, 1, "/bin/true"));
            table.exit(&ExitEvent { header: header(EventKind::Exit, pid) });
        }
        assert!(table.get(5).is_none());
    }
}
