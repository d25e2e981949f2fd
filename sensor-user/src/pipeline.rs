//! Kernel events in, documents out: process table and taint state are updated in record
//! order, and the rule turns a tainted process's connect into an alert with its story.

use serde_json::{json, Value};

use crate::{
    correlate::{Correlator, Exfiltration},
    decode::KernelEvent,
    ecs::{self, Document, Event, ProcessFields},
    process_table::{Process, ProcessTable},
    secret_catalog::SecretCatalog,
    taint::TaintTable,
};
use sensor_common::{ConnectEvent, EventHeader, SecretReadEvent};

/// Facts about the host stamped on every document.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub host: ecs::Host,
    pub boot_id: String,
    /// Wall-clock time of boot, ns since the epoch; kernel times are relative to it.
    pub boot_wall_ns: u64,
}

/// The agent's state between the ring buffer and the output.
pub struct Pipeline {
    facts: HostFacts,
    catalog: SecretCatalog,
    processes: ProcessTable,
    taint: TaintTable,
    correlator: Correlator,
}

impl Pipeline {
    pub fn new(
        facts: HostFacts,
        catalog: SecretCatalog,
        processes: ProcessTable,
        correlator: Correlator,
    ) -> Self {
        Self { facts, catalog, processes, taint: TaintTable::default(), correlator }
    }

    /// Applies one kernel event; returns the documents it gives rise to.
    pub fn handle(&mut self, event: &KernelEvent) -> Vec<Document> {
        match event {
            KernelEvent::Exec(exec) => self.processes.exec(exec),
            KernelEvent::Fork(fork) => {
                self.processes.fork(fork);
                self.taint.fork(fork.header.pid, fork.child_pid);
            }
            KernelEvent::Exit(exit) => {
                self.processes.exit(exit);
                self.taint.exit(exit.header.pid);
            }
            KernelEvent::SecretRead(read) => {
                self.taint.secret_read(read.header.pid, read.secret_id);
                return self.secret_read(read).into_iter().collect();
            }
            KernelEvent::Connect(connect) => return self.connect(connect),
        }
        Vec::new()
    }

    /// A state document (`sensor-started`, `events-lost`, …) stamped now.
    pub fn state(&self, action: &'static str, vigie: Value) -> Document {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Document {
            vigie,
            ..self.document(now, Event { kind: "state", action, severity: None, category: &["host"] })
        }
    }

    /// Connects that repeated an alert already printed.
    pub fn repeated_alerts(&self) -> u64 {
        self.correlator.repeats()
    }

    fn secret_read(&self, read: &SecretReadEvent) -> Option<Document> {
        let secret = self.catalog.get(read.secret_id)?;
        let process = self.process(&read.header);
        let event = Event { kind: "event", action: "secret-read", severity: None, category: &["file"] };
        Some(Document {
            process: Some(self.process_fields(&process)),
            user: Some(ecs::User { id: read.header.uid.to_string() }),
            file: Some(ecs::File {
                path: secret.path.display().to_string(),
                inode: read.file.ino.to_string(),
            }),
            ..self.document(self.facts.boot_wall_ns + read.header.ktime_ns, event)
        })
    }

    fn connect(&mut self, connect: &ConnectEvent) -> Vec<Document> {
        let process = self.process(&connect.header);
        let touches = self.taint.touches(process.pid, &connect.taint);
        let found = self.correlator.connect(connect, process.start_ns, &touches);
        found.iter().filter_map(|exfiltration| self.exfiltration(connect, &process, exfiltration)).collect()
    }

    fn exfiltration(
        &self,
        connect: &ConnectEvent,
        process: &Process,
        found: &Exfiltration,
    ) -> Option<Document> {
        let secret = self.catalog.get(found.touch.secret_id)?;
        let ancestry: Vec<Value> =
            self.processes.ancestry(process.pid).into_iter().map(ecs::summary).collect();
        let origin = self
            .processes
            .get(found.touch.origin_pid)
            .map_or_else(|| json!({ "pid": found.touch.origin_pid }), ecs::summary);
        let event = Event {
            kind: "alert",
            action: "credential-exfiltration",
            severity: Some(ecs::EXFILTRATION_SEVERITY),
            category: &["network", "intrusion_detection"],
        };
        Some(Document {
            rule: Some(ecs::EXFILTRATION_RULE),
            threat: Some(ecs::EXFILTRATION_THREAT),
            process: Some(self.process_fields(process)),
            user: Some(ecs::User { id: connect.header.uid.to_string() }),
            file: Some(ecs::File {
                path: secret.path.display().to_string(),
                inode: secret.id.ino.to_string(),
            }),
            destination: Some(ecs::Destination {
                ip: found.destination.ip().to_string(),
                port: found.destination.port(),
            }),
            network: Some(ecs::Network { transport: found.transport.as_str() }),
            vigie: json!({ "origin": origin, "ancestry": ancestry }),
            ..self.document(self.facts.boot_wall_ns + connect.header.ktime_ns, event)
        })
    }

    /// The process a record came from; a stand-in if the table never saw it.
    fn process(&self, header: &EventHeader) -> Process {
        self.processes.get(header.pid).cloned().unwrap_or_else(|| Process {
            pid: header.pid,
            ppid: 0,
            uid: header.uid,
            executable: String::new(),
            args: Vec::new(),
            start_ns: 0,
        })
    }

    fn process_fields(&self, process: &Process) -> ProcessFields {
        ProcessFields::new(process, self.processes.get(process.ppid), &self.facts.boot_id)
    }

    fn document(&self, epoch_ns: u64, event: Event) -> Document {
        Document {
            timestamp: ecs::timestamp(epoch_ns),
            event,
            rule: None,
            threat: None,
            process: None,
            user: None,
            file: None,
            destination: None,
            network: None,
            host: self.facts.host.clone(),
            vigie: Value::Null,
        }
    }
}
