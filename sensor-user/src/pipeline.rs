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

#[cfg(test)]
mod tests {
    use std::fs;

    use sensor_common::{family, transport, EventKind, ExitEvent, FileId, ForkEvent, SecretReadEvent, Taint};

    use super::*;
    use crate::decode::Exec;

    const READER: u32 = 100;
    const CHILD: u32 = 101;

    fn header(kind: EventKind, pid: u32) -> EventHeader {
        EventHeader { kind: kind as u32, pid, uid: 1000, _pad: 0, ktime_ns: 1_000 }
    }

    /// A pipeline watching one real file, with a shell (pid 1) that started the reader.
    fn pipeline(dir: &std::path::Path) -> (Pipeline, FileId) {
        let secret = dir.join("homeserver.yaml");
        fs::write(&secret, "registration_shared_secret: x").unwrap();
        let catalog = SecretCatalog::resolve(&[secret.display().to_string()]);
        let id = catalog.get(0).unwrap().id;
        let facts =
            HostFacts { host: ecs::Host { name: "test".into() }, boot_id: "b".into(), boot_wall_ns: 0 };
        let correlator = Correlator::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let mut pipeline = Pipeline::new(facts, catalog, ProcessTable::default(), correlator);
        for (pid, ppid, exe) in [(1, 0, "/bin/sh"), (READER, 1, "/usr/bin/cat")] {
            let exec = Exec {
                header: header(EventKind::Exec, pid),
                ppid,
                start_ns: 5,
                filename: exe.into(),
                args: vec![exe.into()],
            };
            assert!(pipeline.handle(&KernelEvent::Exec(exec)).is_empty());
        }
        (pipeline, id)
    }

    fn connect(pid: u32, addr: [u8; 4], taint: Taint) -> KernelEvent {
        let mut bytes = [0; 16];
        bytes[..4].copy_from_slice(&addr);
        KernelEvent::Connect(ConnectEvent {
            header: header(EventKind::Connect, pid),
            taint,
            family: family::INET,
            port: 8448,
            transport: transport::TCP,
            _pad: [0; 3],
            addr: bytes,
        })
    }

    fn json(documents: &[Document]) -> Vec<Value> {
        documents.iter().map(|d| serde_json::to_value(d).unwrap()).collect()
    }

    #[test]
    fn a_forked_child_of_a_reader_alerts_with_its_story() {
        let dir = tempfile_dir("story");
        let (mut pipeline, id) = pipeline(&dir);
        let read = SecretReadEvent {
            header: header(EventKind::SecretRead, READER),
            secret_id: 0,
            _pad: 0,
            file: id,
        };
        let docs = json(&pipeline.handle(&KernelEvent::SecretRead(read)));
        assert_eq!(docs[0]["event"]["action"], "secret-read");
        assert_eq!(docs[0]["process"]["pid"], READER);

        let fork = ForkEvent {
            header: header(EventKind::Fork, READER),
            child_pid: CHILD,
            _pad: 0,
            child_start_ns: 9,
        };
        assert!(pipeline.handle(&KernelEvent::Fork(fork)).is_empty());
        let alerts = json(&pipeline.handle(&connect(CHILD, [10, 213, 1, 2], Taint::default())));

        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        assert_eq!(alert["event"]["action"], "credential-exfiltration");
        assert_eq!(alert["process"]["pid"], CHILD);
        assert_eq!(alert["process"]["parent"]["pid"], READER);
        assert_eq!(alert["vigie"]["origin"]["pid"], READER);
        assert_eq!(alert["vigie"]["ancestry"][1]["executable"], "/bin/sh");
        assert_eq!(alert["file"]["path"], dir.join("homeserver.yaml").display().to_string());
        assert_eq!(alert["destination"], serde_json::json!({"ip": "10.213.1.2", "port": 8448}));
        assert_eq!(alert["user"]["id"], "1000");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn loopback_is_silent_and_exit_ends_the_taint() {
        let dir = tempfile_dir("exit");
        let (mut pipeline, id) = pipeline(&dir);
        let read = SecretReadEvent {
            header: header(EventKind::SecretRead, READER),
            secret_id: 0,
            _pad: 0,
            file: id,
        };
        pipeline.handle(&KernelEvent::SecretRead(read));
        assert!(pipeline.handle(&connect(READER, [127, 0, 0, 1], Taint::default())).is_empty());
        pipeline.handle(&KernelEvent::Exit(ExitEvent { header: header(EventKind::Exit, READER) }));
        // The kernel's record is the fallback when the agent lost the read: it still names the secret.
        let kernel_taint = Taint { secret_id: 0, origin_pid: READER, since_ns: 1 };
        let alerts = json(&pipeline.handle(&connect(READER, [10, 0, 0, 1], kernel_taint)));
        assert_eq!(alerts[0]["vigie"]["origin"]["pid"], READER);
        fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vigie-pipeline-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
