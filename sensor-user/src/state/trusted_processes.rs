//! Which running processes are trusted services, kept up to date from exec and fork, and the
//! changes the kernel's `TRUSTED_PIDS` map must follow.

use std::collections::HashMap;

use sensor_common::Taint;

use crate::{config::services::Service, state::process_table::Process, state::secret_catalog::SecretCatalog};

/// A change for the kernel's view of trusted processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustChange {
    /// `pid`, started at `start_ns` and running the program `exec_id` names, is a trusted
    /// service's process. Reading its memory taints with secret `label`.
    Trust { pid: u32, start_ns: u64, exec_id: Option<u64>, label: u32 },
    /// `pid` no longer runs a trusted service.
    Untrust { pid: u32 },
    /// Trusted process `pid` took in a secret before the kernel knew it was trusted: the
    /// service's own work, so the kernel drops that taint (not a later one). Said when the
    /// taint's record arrives: a process's records come in order, so trust then reflects every
    /// exec before the read (a child of the service that ran another program first keeps its
    /// taint). Said too for each trusted child forked meanwhile, which the kernel gave a copy.
    Shed { pid: u32, taint: ShedTaint },
}

/// Which of a process's kernel taints a [`TrustChange::Shed`] drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedTaint {
    /// The one acquired at this instant: the process's own, as its record named it.
    AcquiredAt(u64),
    /// The one read at this instant: a child's copy of its parent's (a fork copies the taint
    /// with its read time, and stamps the acquisition anew).
    ReadAt(u64),
}

impl ShedTaint {
    /// Whether `held`, the kernel's taint of the process now, is the one to drop.
    pub fn is(self, held: &Taint) -> bool {
        match self {
            Self::AcquiredAt(ns) => held.acquired_ns == ns,
            Self::ReadAt(ns) => held.read_ns == ns,
        }
    }
}

/// A trusted process as the kernel was told of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Trusted {
    /// The catalog label naming its memory.
    label: u32,
    /// Index of the service it runs.
    service: usize,
    /// The program the kernel trusts (its `self_exec_id`).
    exec_id: Option<u64>,
    /// When the taint it shed was read: its children forked before the kernel dropped it hold
    /// a copy.
    shed_read_ns: Option<u64>,
}

/// Trusted processes by pid.
#[derive(Debug, Default)]
pub struct TrustedProcesses {
    services: Vec<Service>,
    by_pid: HashMap<u32, Trusted>,
    changes: Vec<TrustChange>,
}

impl TrustedProcesses {
    pub fn new(services: Vec<Service>) -> Self {
        Self { services, ..Self::default() }
    }

    /// Re-evaluates `process` after it started or changed program; true if it became trusted.
    /// The kernel trusts a program, not a pid: a trusted process that exec'd into another
    /// service's program (a supervisor starting the homeserver) is trusted anew, for its new
    /// program.
    pub fn observe(&mut self, process: &Process, catalog: &mut SecretCatalog) -> bool {
        let service = self.services.iter().position(|s| s.matches(process));
        let known = self.by_pid.get(&process.pid).copied();
        match (service, known) {
            (Some(service), known) if known.is_none_or(|k| k.exec_id != process.exec_id) => {
                let label = match known {
                    Some(k) if k.service == service => k.label,
                    _ => catalog.add_label(format!(
                        "memory of {} (pid {})",
                        self.services[service].name, process.pid
                    )),
                };
                let trusted = Trusted { label, service, exec_id: process.exec_id, shed_read_ns: None };
                self.by_pid.insert(process.pid, trusted);
                let (pid, start_ns, exec_id) = (process.pid, process.start_ns, process.exec_id);
                self.changes.push(TrustChange::Trust { pid, start_ns, exec_id, label });
                return true;
            }
            (None, Some(_)) => {
                self.by_pid.remove(&process.pid);
                self.changes.push(TrustChange::Untrust { pid: process.pid });
            }
            _ => {}
        }
        false
    }

    /// The process exited: the kernel forgets it by itself, unless the agent's trust reached
    /// the kernel after the exit (a short-lived child of a service), so it is told too.
    pub fn exit(&mut self, pid: u32) {
        if self.by_pid.remove(&pid).is_some() {
            self.changes.push(TrustChange::Untrust { pid });
        }
    }

    /// The record of trusted process `pid`'s `taint` arrived.
    pub fn shed(&mut self, pid: u32, taint: &Taint) {
        if let Some(trusted) = self.by_pid.get_mut(&pid) {
            trusted.shed_read_ns = Some(taint.read_ns);
        }
        self.changes.push(TrustChange::Shed { pid, taint: ShedTaint::AcquiredAt(taint.acquired_ns) });
    }

    /// `parent` forked `child`, both trusted: if the fork came before the kernel dropped a taint
    /// the parent shed, the child holds a copy, with no record of its own, and sheds it too (a
    /// lookup in the kernel's map when it holds none). Its own children after it.
    pub fn forked(&mut self, parent: u32, child: u32) {
        let Some(read_ns) = self.by_pid.get(&parent).and_then(|p| p.shed_read_ns) else { return };
        let Some(trusted) = self.by_pid.get_mut(&child) else { return };
        trusted.shed_read_ns = Some(read_ns);
        self.changes.push(TrustChange::Shed { pid: child, taint: ShedTaint::ReadAt(read_ns) });
    }

    pub fn is_trusted(&self, pid: u32) -> bool {
        self.by_pid.contains_key(&pid)
    }

    /// The name of the service trusted process `pid` runs.
    pub fn service_of(&self, pid: u32) -> Option<&str> {
        Some(&self.services.get(self.by_pid.get(&pid)?.service)?.name)
    }

    /// Changes since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<TrustChange> {
        std::mem::take(&mut self.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::services::ServiceSpec;

    fn worker(pid: u32, args: &[&str]) -> Process {
        Process {
            pid,
            ppid: 1,
            parent_start_ns: 0,
            uid: 0,
            executable: "/bin/sh".into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            start_ns: 3,
            exec_id: Some(4),
            exe_id: None,
        }
    }

    #[test]
    fn trust_follows_what_a_process_runs() {
        let spec =
            ServiceSpec { name: "hs".into(), args: vec!["homeserver".into()], ..ServiceSpec::default() };
        let mut trusted = TrustedProcesses::new(vec![Service::resolve(&spec)]);
        let mut catalog = SecretCatalog::default();
        assert!(trusted.observe(&worker(5, &["sh", "homeserver"]), &mut catalog));
        assert!(!trusted.observe(&worker(5, &["sh", "homeserver"]), &mut catalog));
        assert!(!trusted.observe(&worker(6, &["python3", "-c", "x"]), &mut catalog));
        assert!(trusted.is_trusted(5) && !trusted.is_trusted(6));
        assert_eq!(catalog.get(0).unwrap().path.display().to_string(), "memory of hs (pid 5)");
        trusted.observe(&worker(5, &["sh"]), &mut catalog);
        assert_eq!(
            trusted.take_changes(),
            [
                TrustChange::Trust { pid: 5, start_ns: 3, exec_id: Some(4), label: 0 },
                TrustChange::Untrust { pid: 5 }
            ]
        );
        assert!(trusted.take_changes().is_empty());
    }

    #[test]
    fn a_shed_drops_the_taint_it_names_and_no_later_one() {
        let own = Taint { read_ns: 800, acquired_ns: 600, ..Taint::default() };
        let forked_copy = Taint { acquired_ns: 900, ..own };
        let later = Taint { read_ns: 2_000, acquired_ns: 2_000, ..own };
        assert!(ShedTaint::AcquiredAt(600).is(&own));
        assert!(!ShedTaint::AcquiredAt(600).is(&forked_copy) && !ShedTaint::AcquiredAt(600).is(&later));
        assert!(ShedTaint::ReadAt(800).is(&forked_copy));
        assert!(!ShedTaint::ReadAt(800).is(&later));
    }

    #[test]
    fn a_trusted_process_that_execs_another_service_is_trusted_for_its_new_program() {
        let spec = |name: &str, arg: &str| ServiceSpec {
            name: name.into(),
            args: vec![arg.into()],
            ..ServiceSpec::default()
        };
        let services = vec![
            Service::resolve(&spec("supervisor", "supervise")),
            Service::resolve(&spec("hs", "homeserver")),
        ];
        let mut trusted = TrustedProcesses::new(services);
        let mut catalog = SecretCatalog::default();
        assert!(trusted.observe(&worker(5, &["sh", "supervise"]), &mut catalog));
        let exec = Process { exec_id: Some(5), ..worker(5, &["sh", "homeserver"]) };
        assert!(trusted.observe(&exec, &mut catalog), "its new program is trusted anew");
        let changes = trusted.take_changes();
        assert!(
            matches!(changes[1], TrustChange::Trust { pid: 5, exec_id: Some(5), label: 1, .. }),
            "{changes:?}"
        );
        assert_eq!(catalog.get(1).unwrap().path.display().to_string(), "memory of hs (pid 5)");
    }
}
