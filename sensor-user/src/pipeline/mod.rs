//! Kernel events in, documents out: process table and taint state are updated in record
//! order, and the rule turns a tainted process's connect into an alert with its story.

mod outbound;
mod tampering;

use std::collections::HashSet;

use ipnet::IpNet;
use sensor_common::{via, ConnectEvent, EventHeader, EventKind, FileId, SendKey, SendTotal, TaintEvent};

use crate::{
    alert::redact::Redactor,
    content::Recognizer,
    format::ecs::{self, Document, Event, EventIds, Missing, ProcessFields, ProcessSummary, Vigie},
    kernel::decode::{Derived, KernelEvent},
    rules::{
        content::Confirmations,
        exfiltration::{Correlator, Exfiltration},
    },
    state::derived_files::DerivedFiles,
    state::outbound_streams::OutboundStreams,
    state::process_table::{Process, ProcessTable},
    state::secret_catalog::{Secret, SecretCatalog, SecretKind},
    state::taint::{TaintTable, Touch},
    state::trusted_processes::{TrustChange, TrustedProcesses},
    system,
};

/// Facts about the host stamped on every document.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub host: ecs::Host,
    /// Kernel times and entity ids are relative to it.
    pub boot: ecs::Boot,
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
    ids: EventIds,
    redactor: Redactor,
    outbound: OutboundStreams,
    /// Print each stream's byte count and digest as it grows (`VIGIE_DIAG_OUTBOUND_DIGESTS`).
    outbound_digests: bool,
    recognizer: Recognizer,
    confirmations: Confirmations,
    /// The agent's tracers already reported (`crate::tamper`).
    tracers: HashSet<u32>,
}

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
        let agent = std::process::id();
        let ids = EventIds::new(processes.get(agent).unwrap_or(&unknown(agent, 0)), &facts.boot);
        let mut pipeline = Self {
            facts,
            catalog,
            processes,
            taint,
            correlator,
            derived: DerivedFiles::default(),
            trusted,
            ids,
            redactor: Redactor::default(),
            outbound: OutboundStreams::default(),
            outbound_digests: false,
            recognizer: Recognizer::default(),
            confirmations: Confirmations::default(),
            tracers: HashSet::new(),
        };
        for process in pipeline.processes.iter() {
            pipeline.trusted.observe(process, &mut pipeline.catalog);
        }
        pipeline
    }

    /// What the kernel's trusted-process map must learn, in order.
    pub fn take_trust_changes(&mut self) -> Vec<TrustChange> {
        self.trusted.take_changes()
    }

    /// The name of the service trusted process `pid` runs.
    pub fn trusted_service(&self, pid: u32) -> Option<&str> {
        self.trusted.service_of(pid)
    }

    /// Applies one kernel event; returns the documents it gives rise to.
    pub fn handle(&mut self, event: &KernelEvent) -> Vec<Document> {
        match event {
            KernelEvent::Exec(exec) => {
                self.processes.exec(exec);
                self.observe(exec.header.pid, exec.header.ktime_ns);
            }
            KernelEvent::Fork(fork) => {
                self.processes.fork(fork);
                self.taint.fork(fork.header.pid, fork.child_pid);
                self.observe(fork.child_pid, fork.header.ktime_ns);
                self.trusted.forked(fork.header.pid, fork.child_pid);
            }
            KernelEvent::Exit(exit) => {
                self.processes.exit(exit);
                self.taint.exit(exit.header.pid);
                self.correlator.exited(exit.header.pid);
                self.trusted.exit(exit.header.pid);
                self.outbound.exit(exit.header.pid);
                self.recognizer.forget_process(exit.header.pid);
                self.confirmations.exited(exit.header.pid);
            }
            // A trusted service's records from before the kernel knew it was trusted; one that
            // carried taint from before it became the service is judged like any process.
            KernelEvent::Taint(TaintEvent { header, taint, .. })
                if self.trusted.is_trusted(header.pid) && !self.taint.holds(header.pid) =>
            {
                self.trusted.shed(header.pid, taint);
            }
            KernelEvent::Derived(Derived { header, .. })
            | KernelEvent::Connect(ConnectEvent { header, .. })
                if self.trusted.is_trusted(header.pid) && !self.taint.holds(header.pid) => {}
            KernelEvent::Taint(taint) => {
                self.taint.acquire(taint.header.pid, Touch::from(&taint.taint));
                return self.secret_read(taint).into_iter().collect();
            }
            KernelEvent::AllowedRead(read) => return self.allowed_read(read).into_iter().collect(),
            KernelEvent::Derived(derived) => return self.derived(derived).into_iter().collect(),
            KernelEvent::Connect(connect) => return self.connect(connect),
            KernelEvent::Outbound(outbound) => return self.outbound(outbound),
            KernelEvent::Signal(signal) => return self.signalled(signal).into_iter().collect(),
        }
        Vec::new()
    }

    /// `pid` was tainted by an earlier agent's programs, before this agent started.
    pub fn carry(&mut self, pid: u32, taint: &sensor_common::Taint) {
        self.taint.acquire(pid, Touch::from(taint));
    }

    /// Derived file `id`, which an earlier agent marked, was written at `path`: alerts name it
    /// so if it is still there. True if it is.
    pub fn carry_derived(&mut self, id: FileId, path: &str) -> bool {
        self.derived.recall(id, path)
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

    /// Re-evaluates whether `pid` is a trusted service after its exec or fork at `since_ns`;
    /// a newly trusted one sheds the taint its new program took in, not what it carried.
    fn observe(&mut self, pid: u32, since_ns: u64) {
        let Some(process) = self.processes.get(pid) else { return };
        if self.trusted.observe(process, &mut self.catalog) {
            self.taint.forget_taken_since(pid, since_ns);
        }
    }

    /// Progress of alerted transfers whose byte count grew; `total` reads the kernel's count.
    pub fn progress(&mut self, total: impl FnMut(&SendKey) -> Option<u64>) -> Vec<Document> {
        let grown = self.correlator.progress(total);
        grown
            .iter()
            .filter_map(|found| self.exfiltration_document(found, ecs::EXFILTRATION_PROGRESS, now_ns()))
            .collect()
    }

    /// A configured secret path now leads to a new file.
    pub fn watch_updated(&mut self, secret: &Secret) -> Document {
        Document { file: file_fields(secret), ..self.state(ecs::WATCH_UPDATED, secret_vigie(secret)) }
    }

    /// A state document (`sensor-started`, `events-lost`, …) stamped now.
    pub fn state(&self, event: Event, vigie: Vigie) -> Document {
        Document { vigie: Some(vigie), ..self.document(now_ns(), event) }
    }

    /// When the live process `pid` started.
    pub fn start_of(&self, pid: u32) -> Option<u64> {
        self.processes.get(pid).map(|p| p.start_ns)
    }

    /// Exited processes whose story was dropped to bound the process table.
    pub fn processes_forgotten(&self) -> u64 {
        self.processes.forgotten()
    }

    /// Sends and connects that repeated an alert already printed.
    pub fn repeated_alerts(&self) -> u64 {
        self.correlator.repeats() + self.confirmations.repeats()
    }

    /// Destinations trusted from now on (a reloaded configuration).
    pub fn set_trusted_nets(&mut self, trusted: Vec<IpNet>) {
        self.correlator.set_trusted(trusted);
    }

    pub fn catalog_mut(&mut self) -> &mut SecretCatalog {
        &mut self.catalog
    }

    /// Masks arguments with `redactor` and recognises values in outbound bytes with
    /// `recognizer` from now on (the default ones know no secret's content).
    pub fn use_fingerprints(&mut self, (redactor, recognizer): (Redactor, Recognizer)) {
        self.redactor = redactor;
        self.recognizer = recognizer;
    }

    /// The recognizer, to take in what a background read of a database gave.
    pub fn recognizer_mut(&mut self) -> &mut Recognizer {
        &mut self.recognizer
    }

    /// Fingerprints again the watched files that changed and that `may_read` allows.
    pub fn refresh_fingerprints(&mut self, may_read: impl Fn(&std::path::Path) -> bool) {
        self.redactor.refresh(&self.catalog, &may_read);
        self.recognizer.refresh(&self.catalog, may_read);
    }

    fn secret_read(&self, event: &TaintEvent) -> Option<Document> {
        let secret = self.catalog.get(event.taint.secret_id)?;
        let process = self.processes.get(event.header.pid);
        let kind = match secret.kind {
            SecretKind::File => ecs::SECRET_READ,
            SecretKind::ProcessMemory => ecs::SECRET_MEMORY_READ,
            SecretKind::Database => ecs::SECRET_DATABASE_READ,
        };
        let vigie = Vigie {
            via: self.via(&Touch::from(&event.taint)),
            incomplete: process.is_none().then(|| vec![Missing::Process]),
            ..secret_vigie(secret)
        };
        Some(Document {
            process: Some(self.process_fields(event.header.pid, process)),
            user: Some(ecs::User { id: event.header.uid.to_string() }),
            file: file_fields(secret),
            vigie: Some(vigie),
            ..self.document(self.kernel_time(event.header.ktime_ns), kind)
        })
    }

    /// `secret-read-allowed`: an allowed reader or a trusted service opened a secret file.
    fn allowed_read(&self, event: &TaintEvent) -> Option<Document> {
        let secret = self.catalog.get(event.taint.secret_id)?;
        let process = self.processes.get(event.header.pid);
        let vigie =
            Vigie { incomplete: process.is_none().then(|| vec![Missing::Process]), ..secret_vigie(secret) };
        Some(Document {
            process: Some(self.process_fields(event.header.pid, process)),
            user: Some(ecs::User { id: event.header.uid.to_string() }),
            file: file_fields(secret),
            vigie: Some(vigie),
            ..self.document(self.kernel_time(event.header.ktime_ns), ecs::SECRET_READ_ALLOWED)
        })
    }

    fn derived(&mut self, event: &Derived) -> Option<Document> {
        let path = self.derived.record(event.taint.via, &event.mount_path);
        let secret = self.catalog.get(event.taint.secret_id)?;
        let process = self.processes.get(event.header.pid);
        let derived = ecs::DerivedFile { path, inode: event.taint.via.ino.to_string() };
        let vigie = Vigie {
            derived: Some(derived),
            incomplete: process.is_none().then(|| vec![Missing::Process]),
            ..secret_vigie(secret)
        };
        Some(Document {
            process: Some(self.process_fields(event.header.pid, process)),
            user: Some(ecs::User { id: event.header.uid.to_string() }),
            file: file_fields(secret),
            vigie: Some(vigie),
            ..self.document(self.kernel_time(event.header.ktime_ns), ecs::SECRET_DERIVED)
        })
    }

    /// The kernel's per-destination byte counts, read after records were lost: a count that
    /// no connect record named is a send whose record was lost, and is judged now from what
    /// the count kept of its first send (the late alert says so, `vigie.recovered`).
    pub fn recover_lost_connects(&mut self, counted: &[(SendKey, SendTotal)]) -> Vec<Document> {
        let mut documents = Vec::new();
        for (key, total) in counted {
            if self.correlator.has_seen(key, total.acquired_ns) {
                continue;
            }
            let connect = ConnectEvent {
                header: EventHeader {
                    kind: EventKind::Connect as u32,
                    pid: key.pid,
                    uid: total.uid,
                    _pad: 0,
                    ktime_ns: system::monotonic_ns(),
                },
                taint: total.taint,
                family: key.family,
                port: key.port,
                transport: u8::try_from(total.transport).unwrap_or_default(),
                _pad: [0; 3],
                addr: key.addr,
                bytes: total.bytes,
            };
            for mut document in self.connect(&connect) {
                if let Some(vigie) = document.vigie.as_mut() {
                    vigie.recovered = Some(ecs::RECOVERED_FROM_SEND_TOTALS);
                }
                documents.push(document);
            }
        }
        self.forget_uncounted(counted);
        documents
    }

    /// Forgets the connects the kernel no longer counts bytes for (its map is bounded).
    pub fn forget_uncounted(&mut self, counted: &[(SendKey, SendTotal)]) {
        let still_counted = counted.iter().map(|(key, total)| (*key, total.acquired_ns)).collect();
        self.correlator.keep_seen(&still_counted);
    }

    fn connect(&mut self, connect: &ConnectEvent) -> Vec<Document> {
        let pid = connect.header.pid;
        let start_ns = self.processes.get(pid).map_or(0, |p| p.start_ns);
        let touches = self.taint.touches(pid, &connect.taint, connect.header.ktime_ns);
        let found = self.correlator.connect(connect, start_ns, &touches);
        let time = self.kernel_time(connect.header.ktime_ns);
        found
            .iter()
            .filter_map(|exfiltration| {
                self.exfiltration_document(exfiltration, ecs::CREDENTIAL_EXFILTRATION, time)
            })
            .collect()
    }

    /// An alert or a progress report, with the whole story: the processes as they were
    /// (by pid and start time), every secret the sender carried, and what is not known.
    fn exfiltration_document(&self, found: &Exfiltration, event: Event, epoch_ns: u64) -> Option<Document> {
        let secret = self.catalog.get(found.touch.secret_id)?;
        let process = self.processes.find(found.pid, found.start_ns);
        let ancestry = process.map(|p| self.processes.ancestry(p)).unwrap_or_default();
        let origin = self.processes.find(found.touch.origin_pid, found.touch.origin_start_ns);
        let mut incomplete = Vec::new();
        if process.is_none() {
            incomplete.push(Missing::Process);
        }
        if origin.is_none() {
            incomplete.push(Missing::Origin);
        }
        let orphaned = ancestry
            .last()
            .copied()
            .or(process)
            .is_some_and(|p| p.ppid > 1 && self.processes.parent(p).is_none());
        if orphaned {
            incomplete.push(Missing::Ancestry);
        }
        let carried =
            found.carried.iter().filter_map(|&id| self.catalog.get(id)).map(|s| s.path.display().to_string());
        let vigie = Vigie {
            origin: Some(origin.map_or_else(
                || ProcessSummary::unknown(found.touch.origin_pid),
                |p| ProcessSummary::of(p, &self.redactor),
            )),
            ancestry: Some(ancestry.into_iter().map(|p| ProcessSummary::of(p, &self.redactor)).collect()),
            via: self.via(&found.touch),
            carried: Some(carried.collect()),
            incomplete: (!incomplete.is_empty()).then_some(incomplete),
            ..secret_vigie(secret)
        };
        let alert = event.kind == "alert";
        Some(Document {
            rule: alert.then_some(ecs::EXFILTRATION_RULE),
            threat: alert.then_some(ecs::EXFILTRATION_THREAT),
            process: Some(self.process_fields(found.pid, process)),
            user: Some(ecs::User { id: found.uid.to_string() }),
            file: file_fields(secret),
            source: Some(ecs::Source { bytes: found.bytes }),
            destination: Some(ecs::Destination {
                ip: found.destination.ip().to_string(),
                port: found.destination.port(),
            }),
            network: Some(ecs::Network { transport: found.transport.as_str() }),
            vigie: Some(vigie),
            ..self.document(epoch_ns, event)
        })
    }

    /// `vigie.via` of a touch that came through a derived file, pipe or socket.
    fn via(&self, touch: &Touch) -> Option<ecs::Via> {
        let inode = touch.via.ino.to_string();
        match touch.via_kind {
            via::FILE => {
                Some(ecs::Via::File { path: self.derived.path(touch.via).map(str::to_owned), inode })
            }
            via::PIPE => Some(ecs::Via::Pipe { inode }),
            via::UNIX_SOCKET => Some(ecs::Via::UnixSocket),
            via::LOOPBACK_SOCKET => Some(ecs::Via::LoopbackSocket),
            via::PTY => Some(ecs::Via::Pty),
            via::PROCESS_MEMORY => Some(ecs::Via::ProcessMemory { pid: touch.via.ino }),
            via::STORE_SOCKET => Some(ecs::Via::DatabaseSocket),
            _ => None,
        }
    }

    /// `process.*` of process `pid`: what the table knows of it, or its pid alone.
    fn process_fields(&self, pid: u32, process: Option<&Process>) -> ProcessFields {
        match process {
            Some(p) => ProcessFields::new(p, self.processes.parent(p), &self.facts.boot, &self.redactor),
            None => ProcessFields::unknown(pid),
        }
    }

    fn kernel_time(&self, ktime_ns: u64) -> u64 {
        self.facts.boot.wall_ns + ktime_ns
    }

    fn document(&self, epoch_ns: u64, event: Event) -> Document {
        Document::new(epoch_ns, event, self.ids.next(), self.facts.host.clone())
    }
}

/// `file.*` of a secret that is a file.
fn file_fields(secret: &Secret) -> Option<ecs::File> {
    let inode = (secret.id != FileId::default()).then(|| secret.id.ino.to_string());
    (secret.kind == SecretKind::File).then(|| ecs::File { path: secret.path.display().to_string(), inode })
}

/// `vigie` naming `secret`, for the caller to add to.
fn secret_vigie(secret: &Secret) -> Vigie {
    let secret = ecs::SecretRef { kind: secret.kind.as_str(), name: secret.path.display().to_string() };
    Vigie { secret: Some(secret), ..Vigie::default() }
}

fn unknown(pid: u32, uid: u32) -> Process {
    Process {
        pid,
        ppid: 0,
        parent_start_ns: 0,
        uid,
        executable: String::new(),
        args: Vec::new(),
        start_ns: 0,
        exec_id: None,
        exe_id: None,
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use sensor_common::{family, transport, via, ExitEvent, ForkEvent, Taint};
    use serde_json::Value;

    use super::*;
    use crate::config::services::{Service, ServiceSpec};
    use crate::kernel::decode::Exec;
    use crate::kernel::outbound::{Destination, Outbound, OutboundBytes, SendPath, Sender};
    use crate::state::trusted_processes::ShedTaint;

    pub(super) const READER: u32 = 100;
    const CHILD: u32 = 101;
    /// A process the agent never saw.
    const STRANGER: u32 = 555;

    fn header(kind: EventKind, pid: u32) -> EventHeader {
        EventHeader { kind: kind as u32, pid, uid: 1000, _pad: 0, ktime_ns: 1_000 }
    }

    /// [`pipeline`] in a fresh directory of its own, which the caller removes.
    pub(super) fn pipeline_for_tests(name: &str) -> (Pipeline, std::path::PathBuf) {
        let dir = tempfile_dir(name);
        (pipeline(&dir).0, dir)
    }

    /// A pipeline watching one real file, with a shell (pid 1) that started the reader.
    fn pipeline(dir: &std::path::Path) -> (Pipeline, FileId) {
        pipeline_trusting(dir, TrustedProcesses::default())
    }

    /// [`pipeline`] with `trusted` services.
    fn pipeline_trusting(dir: &std::path::Path, trusted: TrustedProcesses) -> (Pipeline, FileId) {
        let secret = dir.join("homeserver.yaml");
        fs::write(&secret, "registration_shared_secret: x").unwrap();
        let catalog = SecretCatalog::resolve(&[secret.display().to_string()]);
        let id = catalog.get(0).unwrap().id;
        let facts = HostFacts {
            host: ecs::Host { name: "test".into() },
            boot: ecs::Boot { id: "b".into(), wall_ns: 0 },
        };
        let correlator = Correlator::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let mut pipeline =
            Pipeline::new(facts, catalog, ProcessTable::default(), correlator, TaintTable::new(0), trusted);
        for (pid, ppid, exe) in [(1, 0, "/bin/sh"), (READER, 1, "/usr/bin/cat")] {
            assert!(pipeline.handle(&exec(pid, ppid, exe, 5)).is_empty());
        }
        (pipeline, id)
    }

    /// [`pipeline_trusting`] the service "hs" (`python3 homeserver`), which `pid` has just
    /// started.
    fn homeserver_started(dir: &std::path::Path, pid: u32) -> (Pipeline, FileId) {
        let spec =
            ServiceSpec { name: "hs".into(), args: vec!["homeserver".into()], ..ServiceSpec::default() };
        let trusted = TrustedProcesses::new(vec![Service::resolve(&spec)]);
        let (mut pipeline, id) = pipeline_trusting(dir, trusted);
        let KernelEvent::Exec(service) = exec(pid, 1, "/usr/bin/python3", 5) else { unreachable!() };
        let service = Exec { args: vec!["python3".into(), "homeserver".into()], ..service };
        assert!(pipeline.handle(&KernelEvent::Exec(service)).is_empty());
        assert!(pipeline.is_trusted(pid));
        (pipeline, id)
    }

    /// `pid` (a child of `ppid`, started at `start_ns`) exec'ing `exe`.
    fn exec(pid: u32, ppid: u32, exe: &str, start_ns: u64) -> KernelEvent {
        KernelEvent::Exec(Exec {
            header: header(EventKind::Exec, pid),
            ppid,
            start_ns,
            self_exec_id: 1,
            exe: FileId::default(),
            filename: exe.into(),
            args: vec![exe.into()],
        })
    }

    /// `parent` forking `child`, which runs the same program.
    fn fork(parent: u32, child: u32) -> KernelEvent {
        let header = header(EventKind::Fork, parent);
        KernelEvent::Fork(ForkEvent {
            header,
            child_pid: child,
            _pad: 0,
            child_start_ns: 9,
            child_exec_id: 1,
        })
    }

    /// `pid` taking in `taint` through `file`.
    fn taken_in(pid: u32, taint: Taint, file: FileId) -> KernelEvent {
        KernelEvent::Taint(TaintEvent { header: header(EventKind::Taint, pid), taint, fd: 3, _pad: 0, file })
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
        taken_in(pid, taint, file)
    }

    /// `pid` reading the memory of trusted process 7, whose label is secret `label`.
    fn memory_read(pid: u32, label: u32) -> KernelEvent {
        let taint = Taint {
            secret_id: label,
            origin_pid: pid,
            read_ns: 1_000,
            acquired_ns: 1_000,
            via_kind: via::PROCESS_MEMORY,
            via_generation: 0,
            via: FileId::new(0, 7),
            origin_start_ns: 5,
        };
        taken_in(pid, taint, FileId::default())
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

        assert!(pipeline.handle(&fork(READER, CHILD)).is_empty());
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
        assert_eq!(alert["source"], serde_json::json!({"bytes": 0}));
        assert_eq!(alert["user"]["id"], "1000");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_services_child_sheds_the_taint_it_took_as_the_service_not_what_it_took_after_an_exec() {
        const SERVICE: u32 = 7;
        let dir = tempfile_dir("shed");
        let (mut pipeline, id) = homeserver_started(&dir, SERVICE);
        // A worker of the service reads the secret before the kernel knows it is trusted.
        assert!(pipeline.handle(&fork(SERVICE, CHILD)).is_empty());
        assert!(pipeline.handle(&read(CHILD, id)).is_empty(), "the service's own work");
        // Another child runs curl first: its read is no work of the service's.
        assert!(pipeline.handle(&fork(SERVICE, STRANGER)).is_empty());
        assert!(pipeline.handle(&exec(STRANGER, SERVICE, "/usr/bin/curl", 9)).is_empty());
        let docs = json(&pipeline.handle(&read(STRANGER, id)));
        assert_eq!(docs[0]["event"]["action"], "secret-read", "{docs:#?}");

        let changes = pipeline.take_trust_changes();
        let shed: Vec<_> = changes.iter().filter(|c| matches!(c, TrustChange::Shed { .. })).collect();
        let own = TrustChange::Shed { pid: CHILD, taint: ShedTaint::AcquiredAt(1_000) };
        assert_eq!(shed, [&own], "{changes:?}");
        assert!(changes.contains(&TrustChange::Untrust { pid: STRANGER }), "{changes:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_services_children_forked_before_its_taint_is_shed_shed_the_copy_the_kernel_gave_them() {
        const SERVICE: u32 = 7;
        const GRANDCHILD: u32 = 44;
        let dir = tempfile_dir("shed-forked");
        let (mut pipeline, id) = homeserver_started(&dir, SERVICE);
        // The service reads its secret before the kernel knows it is trusted (its taint read at
        // 800, renewed since), then starts a worker, which starts one of its own.
        let taint = Taint { origin_pid: SERVICE, read_ns: 800, acquired_ns: 600, ..Taint::default() };
        assert!(pipeline.handle(&taken_in(SERVICE, taint, id)).is_empty(), "the service's own work");
        assert!(pipeline.handle(&fork(SERVICE, CHILD)).is_empty());
        assert!(pipeline.handle(&fork(CHILD, GRANDCHILD)).is_empty());

        let shed: Vec<_> = pipeline
            .take_trust_changes()
            .into_iter()
            .filter_map(|c| match c {
                TrustChange::Shed { pid, taint } => Some((pid, taint)),
                _ => None,
            })
            .collect();
        assert_eq!(
            shed,
            [
                (SERVICE, ShedTaint::AcquiredAt(600)),
                (CHILD, ShedTaint::ReadAt(800)),
                (GRANDCHILD, ShedTaint::ReadAt(800))
            ]
        );
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
            origin_start_ns: 5,
        };
        let docs = json(&pipeline.handle(&taken_in(CHILD, through_pipe, pipe)));
        assert_eq!(docs[0]["vigie"]["via"], serde_json::json!({"kind": "pipe", "inode": "4242"}));
        let alerts = json(&pipeline.handle(&connect(CHILD, [10, 0, 0, 1], Taint::default())));
        assert_eq!(alerts[0]["vigie"]["origin"]["pid"], READER);
        assert_eq!(alerts[0]["vigie"]["via"]["kind"], "pipe");
        assert_eq!(alerts[0]["file"]["inode"], id.ino.to_string());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_origin_is_named_as_it_was_after_its_pid_is_reused() {
        let dir = tempfile_dir("reuse");
        let (mut pipeline, _) = pipeline(&dir);
        let pipe = FileId::new(0xd, 4243);
        let through_pipe = Taint {
            origin_pid: READER,
            origin_start_ns: 5,
            via_kind: via::PIPE,
            via: pipe,
            ..Taint::default()
        };
        pipeline.handle(&taken_in(CHILD, through_pipe, pipe));
        pipeline.handle(&KernelEvent::Exit(ExitEvent { header: header(EventKind::Exit, READER) }));
        // Another process gets the reader's pid, later.
        let later = 7 * sensor_common::START_TICK_NS;
        pipeline.handle(&exec(READER, 1, "/usr/sbin/nginx", later));

        let alerts = json(&pipeline.handle(&connect(CHILD, [10, 0, 0, 1], Taint::default())));
        assert_eq!(alerts[0]["vigie"]["origin"]["executable"], "/usr/bin/cat", "{:#}", alerts[0]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_sender_never_seen_is_named_incomplete_with_the_uid_it_sent_as() {
        let dir = tempfile_dir("unknown");
        let (mut pipeline, _) = pipeline(&dir);
        let kernel_taint = Taint { secret_id: 0, origin_pid: STRANGER, ..Taint::default() };

        let alerts = json(&pipeline.handle(&connect(STRANGER, [10, 0, 0, 1], kernel_taint)));

        let alert = &alerts[0];
        assert_eq!(alert["process"], serde_json::json!({ "pid": STRANGER }), "{alert:#}");
        assert_eq!(alert["user"]["id"], "1000", "{alert:#}");
        assert_eq!(alert["vigie"]["incomplete"], serde_json::json!(["process", "origin"]), "{alert:#}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_secret_the_sender_carries_is_named_in_each_alert() {
        let dir = tempfile_dir("carried");
        let (mut pipeline, id) = pipeline(&dir);
        let second = pipeline.catalog_mut().add_label("memory of hs (pid 7)".into());
        pipeline.handle(&read(READER, id));
        pipeline.handle(&memory_read(READER, second));

        let alerts = json(&pipeline.handle(&connect(READER, [10, 0, 0, 1], Taint::default())));

        assert_eq!(alerts.len(), 2, "one alert per secret");
        let names =
            serde_json::json!([dir.join("homeserver.yaml").display().to_string(), "memory of hs (pid 7)"]);
        for alert in &alerts {
            assert_eq!(alert["vigie"]["carried"], names, "{alert:#}");
            assert!(alert["vigie"].get("incomplete").is_none(), "{alert:#}");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_read_of_a_services_memory_names_no_file() {
        let dir = tempfile_dir("memory");
        let (mut pipeline, _) = pipeline(&dir);
        let label = pipeline.catalog_mut().add_label("memory of hs (pid 7)".into());
        let docs = json(&pipeline.handle(&memory_read(READER, label)));
        assert_eq!(docs[0]["event"]["category"], serde_json::json!(["process"]));
        assert!(docs[0].get("file").is_none(), "{:#}", docs[0]);
        let secret = serde_json::json!({"kind": "process-memory", "name": "memory of hs (pid 7)"});
        assert_eq!(docs[0]["vigie"]["secret"], secret);
        assert_eq!(docs[0]["vigie"]["via"], serde_json::json!({"kind": "process-memory", "pid": 7}));
        fs::remove_dir_all(dir).unwrap();
    }

    /// A value long enough to be recognised.
    const VALUE: &str = "Zq8vN3xL0pT7sK2wR9mB";

    /// The pipeline of [`pipeline`], its secret holding [`VALUE`] and fingerprinted.
    fn recognising_pipeline(dir: &std::path::Path) -> (Pipeline, FileId) {
        let (mut pipeline, id) = pipeline(dir);
        fs::write(dir.join("homeserver.yaml"), format!("registration_shared_secret: \"{VALUE}\"\n")).unwrap();
        let redactor = Redactor::new(&pipeline.catalog);
        let recognizer = Recognizer::new(redactor.key(), &pipeline.catalog);
        pipeline.use_fingerprints((redactor, recognizer));
        (pipeline, id)
    }

    /// `pid`'s TLS write of `bytes` to `to`, as the kernel copies it.
    fn sent(pid: u32, sender: Sender, to: &str, bytes: &[u8]) -> KernelEvent {
        KernelEvent::Outbound(Outbound::Bytes(OutboundBytes {
            pid,
            tid: pid,
            uid: 1000,
            ktime_ns: 2_000,
            taint: Taint::default(),
            call: 1,
            sender,
            path: SendPath::OpenSsl,
            destination: Some(Destination { addr: to.parse().unwrap(), transport: "tcp" }),
            bytes: bytes.to_vec(),
        }))
    }

    #[test]
    fn a_value_in_a_tainted_process_bytes_confirms_the_exfiltration_at_critical_severity() {
        let dir = tempfile_dir("confirmed");
        let (mut pipeline, id) = recognising_pipeline(&dir);
        pipeline.handle(&read(READER, id));
        let encoded = crate::content::encodings::base64_padded(format!("secret={VALUE}").as_bytes(), false);
        let (head, tail) = encoded.as_bytes().split_at(10);
        assert!(pipeline.handle(&sent(READER, Sender::Tainted, "10.213.1.2:443", head)).is_empty());
        let alerts = json(&pipeline.handle(&sent(READER, Sender::Tainted, "10.213.1.2:443", tail)));

        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let alert = &alerts[0];
        assert_eq!(alert["event"]["action"], "credential-exfiltration");
        assert_eq!(alert["event"]["severity"], 99);
        assert_eq!(alert["vigie"]["content"]["confirmed"], true);
        assert_eq!(alert["vigie"]["content"]["encoding"], "base64");
        assert_eq!(alert["vigie"]["content"]["seen_in"], "openssl");
        let named = alert["vigie"]["content"]["value"].as_str().unwrap();
        assert!(named.contains("registration_shared_secret"), "{named}");
        assert_eq!(alert["vigie"]["origin"]["pid"], READER);
        assert_eq!(alert["source"]["bytes"], encoded.len());
        assert!(!alert.to_string().contains(VALUE), "{alert}");

        let again = pipeline.handle(&sent(READER, Sender::Tainted, "10.213.1.2:443", VALUE.as_bytes()));
        assert!(again.is_empty(), "one alert per value and destination");
        assert_eq!(pipeline.repeated_alerts(), 1);
        let local = pipeline.handle(&sent(READER, Sender::Tainted, "127.0.0.1:443", VALUE.as_bytes()));
        assert!(local.is_empty(), "loopback is not off the host");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_trusted_service_sending_its_own_secret_value_off_the_host_is_alerted_its_tokens_are_not() {
        let dir = tempfile_dir("trusted-content");
        let (mut pipeline, _) = recognising_pipeline(&dir);
        // A Synapse access token, its checksum valid: the homeserver hands these to its clients.
        let token = "syt_YWRtaW4_hphggrTyVrHnOIUuDGsS_1hCggm";
        let login =
            pipeline.handle(&sent(READER, Sender::TrustedService, "10.213.1.2:443", token.as_bytes()));
        assert!(login.is_empty(), "{:#?}", json(&login));

        let alerts =
            json(&pipeline.handle(&sent(READER, Sender::TrustedService, "10.213.1.2:443", VALUE.as_bytes())));
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(alerts[0]["event"]["severity"], 99);
        assert_eq!(alerts[0]["vigie"]["content"]["encoding"], "raw");
        assert_eq!(alerts[0]["vigie"]["origin"]["pid"], READER, "the service holds it by right");
        assert_eq!(alerts[0]["file"]["path"], dir.join("homeserver.yaml").display().to_string());
        fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vigie-pipeline-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
