//! Kernel events in, documents out: process table and taint state are updated in record
//! order, and the rule turns a tainted process's connect into an alert with its story.

use ipnet::IpNet;
use sensor_common::{via, ConnectEvent, EventHeader, SendKey, TaintEvent};
use serde_json::{json, Value};

use crate::{
    correlate::{Correlator, Exfiltration},
    derived_files::DerivedFiles,
    ecs::{self, Document, Event, ProcessFields},
    kernel::decode::{Derived, KernelEvent},
    process_table::{Process, ProcessTable},
    secret_catalog::{Secret, SecretCatalog},
    taint::{TaintTable, Touch},
    trusted_processes::{TrustChange, TrustedProcesses},
};

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
    derived: DerivedFiles,
    trusted: TrustedProcesses,
}

const ALERT: Event = Event {
    kind: "alert",
    action: "credential-exfiltration",
    severity: Some(ecs::EXFILTRATION_SEVERITY),
    category: &["network", "intrusion_detection"],
};
const PROGRESS: Event =
    Event { kind: "event", action: "exfiltration-progress", severity: None, category: &["network"] };
const SECRET_READ: Event =
    Event { kind: "event", action: "secret-read", severity: None, category: &["file"] };
const SECRET_DERIVED: Event =
    Event { kind: "event", action: "secret-derived", severity: None, category: &["file"] };

impl Pipeline {
    /// A pipeline over the processes running now; trusted services among them are
    /// reported by the first `take_trust_changes`.
    pub fn new(
        facts: HostFacts,
        catalog: SecretCatalog,
        processes: ProcessTable,
        correlator: Correlator,
        taint: TaintTable,
        trusted: TrustedProcesses,
    ) -> Self {
        let mut pipeline =
            Self { facts, catalog, processes, taint, correlator, derived: DerivedFiles::default(), trusted };
        for process in pipeline.processes.iter() {
            pipeline.trusted.observe(process, &mut pipeline.catalog);
        }
        pipeline
    }

    /// What the kernel's trusted-process map must learn, in order.
    pub fn take_trust_changes(&mut self) -> Vec<TrustChange> {
        self.trusted.take_changes()
    }

    /// Applies one kernel event; returns the documents it gives rise to.
    pub fn handle(&mut self, event: &KernelEvent) -> Vec<Document> {
        match event {
            KernelEvent::Exec(exec) => {
                self.processes.exec(exec);
                self.observe(exec.header.pid);
            }
            KernelEvent::Fork(fork) => {
                self.processes.fork(fork);
                self.taint.fork(fork.header.pid, fork.child_pid);
                self.observe(fork.child_pid);
            }
            KernelEvent::Exit(exit) => {
                self.processes.exit(exit);
                self.taint.exit(exit.header.pid);
                self.correlator.exited(exit.header.pid);
                self.trusted.exit(exit.header.pid);
            }
            // A trusted service's records from before the kernel knew it was trusted.
            KernelEvent::Taint(TaintEvent { header, .. })
            | KernelEvent::Derived(Derived { header, .. })
            | KernelEvent::Connect(ConnectEvent { header, .. })
                if self.trusted.is_trusted(header.pid) => {}
            KernelEvent::Taint(taint) => {
                self.taint.acquire(taint.header.pid, Touch::from(&taint.taint));
                return self.secret_read(taint).into_iter().collect();
            }
            KernelEvent::Derived(derived) => return self.derived(derived).into_iter().collect(),
            KernelEvent::Connect(connect) => return self.connect(connect),
        }
        Vec::new()
    }

    /// How many times a process took in a secret since start (a count that only grows).
    pub fn taints_acquired(&self) -> u64 {
        self.taint.acquired()
    }

    /// Whether any process is tainted now.
    pub fn any_tainted(&self) -> bool {
        !self.taint.is_empty()
    }

    pub fn is_tainted(&self, pid: u32) -> bool {
        self.taint.holds(pid)
    }

    pub fn is_trusted(&self, pid: u32) -> bool {
        self.trusted.is_trusted(pid)
    }

    /// Re-evaluates whether `pid` is a trusted service; a newly trusted one sheds its taint.
    fn observe(&mut self, pid: u32) {
        let Some(process) = self.processes.get(pid) else { return };
        self.trusted.observe(process, &mut self.catalog);
        if self.trusted.is_trusted(pid) {
            self.taint.exit(pid);
        }
    }

    /// Progress of alerted transfers whose byte count grew; `total` reads the kernel's count.
    pub fn progress(&mut self, total: impl FnMut(&SendKey) -> Option<u64>) -> Vec<Document> {
        let grown = self.correlator.progress(total);
        grown.iter().filter_map(|found| self.exfiltration_document(found, PROGRESS, now_ns())).collect()
    }

    /// A configured secret path now leads to a new file.
    pub fn watch_updated(&mut self, secret: &Secret) -> Document {
        let file = Some(file_fields(secret));
        Document { file, ..self.state("watch-updated", Value::Null) }
    }

    /// A state document (`sensor-started`, `events-lost`, …) stamped now.
    pub fn state(&self, action: &'static str, vigie: Value) -> Document {
        Document {
            vigie,
            ..self.document(now_ns(), Event { kind: "state", action, severity: None, category: &["host"] })
        }
    }

    /// Sends and connects that repeated an alert already printed.
    pub fn repeated_alerts(&self) -> u64 {
        self.correlator.repeats()
    }

    /// Destinations trusted from now on (a reloaded configuration).
    pub fn set_trusted_nets(&mut self, trusted: Vec<IpNet>) {
        self.correlator.set_trusted(trusted);
    }

    pub fn catalog_mut(&mut self) -> &mut SecretCatalog {
        &mut self.catalog
    }

    fn secret_read(&self, event: &TaintEvent) -> Option<Document> {
        let secret = self.catalog.get(event.taint.secret_id)?;
        let process = self.process(&event.header);
        Some(Document {
            process: Some(self.process_fields(&process)),
            user: Some(ecs::User { id: event.header.uid.to_string() }),
            file: Some(file_fields(secret)),
            vigie: self.via(&Touch::from(&event.taint)).map_or(Value::Null, |via| json!({ "via": via })),
            ..self.document(self.kernel_time(event.header.ktime_ns), SECRET_READ)
        })
    }

    fn derived(&mut self, event: &Derived) -> Option<Document> {
        let path = self.derived.record(event.taint.via, &event.mount_path);
        let secret = self.catalog.get(event.taint.secret_id)?;
        let process = self.process(&event.header);
        let derived = json!({ "path": path, "inode": event.taint.via.ino.to_string() });
        Some(Document {
            process: Some(self.process_fields(&process)),
            user: Some(ecs::User { id: event.header.uid.to_string() }),
            file: Some(file_fields(secret)),
            vigie: json!({ "derived": derived }),
            ..self.document(self.kernel_time(event.header.ktime_ns), SECRET_DERIVED)
        })
    }

    fn connect(&mut self, connect: &ConnectEvent) -> Vec<Document> {
        let process = self.process(&connect.header);
        let touches = self.taint.touches(process.pid, &connect.taint, connect.header.ktime_ns);
        let found = self.correlator.connect(connect, process.start_ns, &touches);
        let time = self.kernel_time(connect.header.ktime_ns);
        found
            .iter()
            .filter_map(|exfiltration| self.exfiltration_document(exfiltration, ALERT, time))
            .collect()
    }

    /// An alert or a progress report, with the whole story.
    fn exfiltration_document(&self, found: &Exfiltration, event: Event, epoch_ns: u64) -> Option<Document> {
        let secret = self.catalog.get(found.touch.secret_id)?;
        let process = self.processes.get(found.pid).cloned().unwrap_or_else(|| unknown(found.pid, 0));
        let ancestry: Vec<Value> =
            self.processes.ancestry(process.pid).into_iter().map(ecs::summary).collect();
        let origin = self
            .processes
            .get(found.touch.origin_pid)
            .map_or_else(|| json!({ "pid": found.touch.origin_pid }), ecs::summary);
        let mut vigie = json!({ "origin": origin, "ancestry": ancestry });
        if let Some(via) = self.via(&found.touch) {
            vigie["via"] = via;
        }
        let alert = event.kind == "alert";
        Some(Document {
            rule: alert.then_some(ecs::EXFILTRATION_RULE),
            threat: alert.then_some(ecs::EXFILTRATION_THREAT),
            process: Some(self.process_fields(&process)),
            user: Some(ecs::User { id: process.uid.to_string() }),
            file: Some(file_fields(secret)),
            destination: Some(ecs::Destination {
                ip: found.destination.ip().to_string(),
                port: found.destination.port(),
                bytes: found.bytes,
            }),
            network: Some(ecs::Network { transport: found.transport.as_str() }),
            vigie,
            ..self.document(epoch_ns, event)
        })
    }

    /// `vigie.via` of a touch that came through a derived file, pipe or socket.
    fn via(&self, touch: &Touch) -> Option<Value> {
        let inode = touch.via.ino.to_string();
        match touch.via_kind {
            via::FILE => {
                Some(json!({ "kind": "file", "path": self.derived.path(touch.via), "inode": inode }))
            }
            via::PIPE => Some(json!({ "kind": "pipe", "inode": inode })),
            // Its identity is a kernel address, which is not for logs.
            via::UNIX_SOCKET => Some(json!({ "kind": "unix-socket" })),
            via::LOOPBACK_SOCKET => Some(json!({ "kind": "loopback-socket" })),
            via::PTY => Some(json!({ "kind": "pty" })),
            via::PROCESS_MEMORY => Some(json!({ "kind": "process-memory", "pid": touch.via.ino })),
            _ => None,
        }
    }

    /// The process a record came from; a stand-in if the table never saw it.
    fn process(&self, header: &EventHeader) -> Process {
        self.processes.get(header.pid).cloned().unwrap_or_else(|| unknown(header.pid, header.uid))
    }

    fn process_fields(&self, process: &Process) -> ProcessFields {
        ProcessFields::new(process, self.processes.get(process.ppid), &self.facts.boot_id)
    }

    fn kernel_time(&self, ktime_ns: u64) -> u64 {
        self.facts.boot_wall_ns + ktime_ns
    }

    fn document(&self, epoch_ns: u64, event: Event) -> Document {
        Document::new(epoch_ns, event, self.facts.host.clone())
    }
}

fn file_fields(secret: &Secret) -> ecs::File {
    ecs::File { path: secret.path.display().to_string(), inode: secret.id.ino.to_string() }
}

fn unknown(pid: u32, uid: u32) -> Process {
    Process { pid, ppid: 0, uid, executable: String::new(), args: Vec::new(), start_ns: 0 }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use sensor_common::{family, transport, via, EventKind, ExitEvent, FileId, ForkEvent, Taint, TaintEvent};

    use super::*;
    use crate::kernel::decode::Exec;

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
        let mut pipeline = Pipeline::new(
            facts,
            catalog,
            ProcessTable::default(),
            correlator,
            TaintTable::new(0),
            TrustedProcesses::default(),
        );
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
            bytes: 0,
        })
    }

    /// `pid` opening the secret itself.
    fn read(pid: u32, file: FileId) -> KernelEvent {
        let taint =
            Taint { secret_id: 0, origin_pid: pid, read_ns: 1_000, acquired_ns: 1_000, ..Taint::default() };
        KernelEvent::Taint(TaintEvent { header: header(EventKind::Taint, pid), taint, fd: 3, _pad: 0, file })
    }

    fn json(documents: &[Document]) -> Vec<Value> {
        documents.iter().map(|d| serde_json::to_value(d).unwrap()).collect()
    }

    #[test]
    fn a_forked_child_of_a_reader_alerts_with_its_story() {
        let dir = tempfile_dir("story");
        let (mut pipeline, id) = pipeline(&dir);
        let docs = json(&pipeline.handle(&read(READER, id)));
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
        assert_eq!(alert["destination"], serde_json::json!({"ip": "10.213.1.2", "port": 8448, "bytes": 0}));
        assert_eq!(alert["user"]["id"], "1000");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn loopback_is_silent_and_exit_ends_the_taint() {
        let dir = tempfile_dir("exit");
        let (mut pipeline, id) = pipeline(&dir);
        pipeline.handle(&read(READER, id));
        assert!(pipeline.handle(&connect(READER, [127, 0, 0, 1], Taint::default())).is_empty());
        pipeline.handle(&KernelEvent::Exit(ExitEvent { header: header(EventKind::Exit, READER) }));
        // The kernel's record is the fallback when the agent lost the read: it still names the secret.
        let kernel_taint = Taint { secret_id: 0, origin_pid: READER, ..Taint::default() };
        let alerts = json(&pipeline.handle(&connect(READER, [10, 0, 0, 1], kernel_taint)));
        assert_eq!(alerts[0]["vigie"]["origin"]["pid"], READER);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_pipe_reader_alerts_naming_the_pipe_and_the_origin() {
        let dir = tempfile_dir("pipe");
        let (mut pipeline, id) = pipeline(&dir);
        let pipe = FileId::new(0xd, 4242);
        let through_pipe = Taint {
            secret_id: 0,
            origin_pid: READER,
            read_ns: 1_000,
            acquired_ns: 2_000,
            via_kind: via::PIPE,
            via_generation: 0,
            via: pipe,
        };
        let taint = TaintEvent {
            header: header(EventKind::Taint, CHILD),
            taint: through_pipe,
            fd: 0,
            _pad: 0,
            file: pipe,
        };
        let docs = json(&pipeline.handle(&KernelEvent::Taint(taint)));
        assert_eq!(docs[0]["vigie"]["via"], serde_json::json!({"kind": "pipe", "inode": "4242"}));
        let alerts = json(&pipeline.handle(&connect(CHILD, [10, 0, 0, 1], Taint::default())));
        assert_eq!(alerts[0]["vigie"]["origin"]["pid"], READER);
        assert_eq!(alerts[0]["vigie"]["via"]["kind"], "pipe");
        assert_eq!(alerts[0]["file"]["inode"], id.ino.to_string());
        fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vigie-pipeline-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
