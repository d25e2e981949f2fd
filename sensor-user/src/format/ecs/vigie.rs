//! `vigie.*`: what ECS has no field for — the secret, the story of an alert, the agent's own
//! state. Typed like the ECS sections; `docs/FIELDS.md` lists every field.

use serde::Serialize;

use crate::{
    alert::redact::{FingerprintReport, Redactor},
    content::RecognizerReport,
    kernel::handover::Handover,
    state::process_table::Process,
};

/// The `vigie` object; each document kind fills the parts it has.
#[derive(Debug, Default, Serialize)]
pub struct Vigie {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<ProcessSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ancestry: Option<Vec<ProcessSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
    /// Every secret the sender carried when it sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carried: Option<Vec<String>>,
    /// Where a late alert's connect came from: [`RECOVERED_FROM_SEND_TOTALS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<&'static str>,
    /// Parts of the story the agent does not know, rather than invented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<Vec<Missing>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived: Option<DerivedFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_lost: Option<Loss>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_probe: Option<TlsProbe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tamper: Option<super::Tamper>,
    #[serde(flatten)]
    pub started: Option<Started>,
}

/// `vigie.recovered` of an alert whose connect record was lost (a full ring buffer) and that
/// was rebuilt, late, from the kernel's per-destination byte counts.
pub const RECOVERED_FROM_SEND_TOTALS: &str = "kernel-send-totals";

/// A part of a story that is not known (`vigie.incomplete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missing {
    /// The process itself: the agent never saw it start (records lost), so only its pid.
    Process,
    /// The process that opened the secret (exited and forgotten, or never seen).
    Origin,
    /// An ancestor: the chain stops before init.
    Ancestry,
}

/// `vigie.secret`: which watched secret, whatever it is (a file, a trusted process's memory).
#[derive(Debug, Serialize)]
pub struct SecretRef {
    /// `file` or `process-memory`.
    pub kind: &'static str,
    /// The path as configured, or the label of a process's memory.
    pub name: String,
}

/// A short description of a process for `vigie.ancestry` and `vigie.origin`.
#[derive(Debug, Serialize)]
pub struct ProcessSummary {
    pub pid: u32,
    /// Left out (with `args`) for a process the agent never saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

impl ProcessSummary {
    /// `process`, its arguments masked by `redactor`.
    pub fn of(process: &Process, redactor: &Redactor) -> Self {
        Self {
            pid: process.pid,
            executable: Some(process.executable.clone()),
            args: Some(redactor.args(&process.args)),
        }
    }

    /// A process known only by its pid.
    pub fn unknown(pid: u32) -> Self {
        Self { pid, executable: None, args: None }
    }
}

/// `vigie.via`: the channel a taint came through.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Via {
    /// A derived file; its path when the agent found it.
    File {
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        inode: String,
    },
    Pipe {
        inode: String,
    },
    /// Its identity is a kernel address, which is not for logs.
    UnixSocket,
    LoopbackSocket,
    Pty,
    /// A trusted process's memory, by its pid.
    ProcessMemory {
        pid: u64,
    },
    /// A unix or loopback socket a store's database server answered on.
    DatabaseSocket,
}

/// `vigie.content`: a secret's value recognised in the bytes sent — named, fingerprinted with
/// the agent's key, never shown.
#[derive(Debug, Serialize)]
pub struct Content {
    /// Always `true`: the bytes carried the value, not only the process the secret.
    pub confirmed: bool,
    /// Which value: a config key and its file, a key file, or a token kind.
    pub value: String,
    /// How it was written in the bytes: `raw`, `base64`, `base64url`, `hex`, `percent`, `json`.
    pub encoding: &'static str,
    /// The value's keyed fingerprint: equal for one value within one agent run, and telling
    /// nothing about it without the agent's key.
    pub fingerprint: String,
    /// Where the bytes were seen: `socket` (plaintext) or the TLS library (`openssl`, `gnutls`).
    pub seen_in: &'static str,
}

/// `vigie.derived`: the file a tainted process wrote.
#[derive(Debug, Serialize)]
pub struct DerivedFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub inode: String,
}

/// `vigie.events_lost` of an `events-lost` document.
#[derive(Debug, Serialize)]
pub struct Loss {
    /// `ring-buffer-full`, `taint-map-full`, `send-totals-full`, `outbound-uncopied` (bytes),
    /// `record-malformed` or `agent-map-update-failed`.
    pub reason: &'static str,
    pub new: u64,
    pub total: u64,
}

/// `vigie.counters` of the `sensor-stopped` document: totals since start.
#[derive(Debug, Serialize)]
pub struct Counters {
    pub records: u64,
    pub records_malformed: u64,
    pub events_lost: u64,
    pub taint_inserts_failed: u64,
    pub send_totals_full: u64,
    pub alerts_repeated: u64,
    /// Exited processes whose story was dropped to bound the process table.
    pub processes_forgotten: u64,
    /// Documents the output never took (the oldest, dropped from a full queue).
    pub documents_dropped: u64,
    /// Documents still waiting for the output at stop.
    pub documents_undelivered: u64,
    /// Documents the journal dropped (its channel was full).
    pub journal_documents_dropped: u64,
    /// Documents (or deliveries) the journal failed to write.
    pub journal_writes_failed: u64,
    /// Each sink's counters, the output first.
    pub sinks: Vec<crate::sinks::SinkStats>,
    /// Where the programs stay pinned and attached after this stop (`keep_loaded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_attached: Option<String>,
}

/// `vigie.output` of an `output-degraded` document: the output's health.
#[derive(Debug, Serialize)]
pub struct OutputHealth {
    /// The output in use now (`stdout`, `stderr`, a path).
    pub name: String,
    /// The output that failed first.
    pub failed: String,
    /// `failing` or `recovered`.
    pub state: &'static str,
    pub documents_failed: u64,
    pub alerts_failed: u64,
    pub documents_dropped: u64,
    /// The last error.
    pub error: String,
}

/// `vigie.journal` of a `journal-degraded` document: what the journal lost since the last one.
#[derive(Debug, Serialize)]
pub struct JournalHealth {
    /// The journal's file.
    pub path: String,
    /// Documents dropped: the journal's channel was full.
    pub documents_dropped: u64,
    /// Documents (or deliveries) whose write failed.
    pub writes_failed: u64,
    /// The last write error; empty when only drops happened.
    pub error: String,
}

/// `vigie.config` of `config-reloaded` and `config-reload-failed`.
#[derive(Debug, Serialize)]
pub struct ConfigReport {
    /// Settings changed and applied live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<&'static str>>,
    /// Settings changed that apply at the next start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<Vec<&'static str>>,
    /// Why the configuration did not load (file, line, column).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `sensor-started` says about the watch, at the top of `vigie`.
#[derive(Debug, Serialize)]
pub struct Started {
    pub secrets_watched: usize,
    pub patterns_unmatched: Vec<String>,
    pub allowed_readers: usize,
    pub trusted_nets: Vec<String>,
    /// This host's interface addresses known now (they are local, not off the host).
    pub local_addresses: usize,
    pub fingerprints: FingerprintReport,
    pub recognizer: RecognizerReport,
    pub cgroup: String,
    pub backend: Backend,
    pub tmpfs_secrets: TmpfsReport,
    /// The TLS library files whose writes are watched (entry uprobes).
    pub tls_libraries: Vec<String>,
    /// The database servers whose replies taint their readers, and what was found of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<StoreReport>,
    /// Where the programs are pinned to outlive the agent (`keep_loaded`), and what was taken
    /// over from those earlier agents left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_loaded: Option<KeptLoaded>,
}

/// `vigie.kept_loaded` of `sensor-started`.
#[derive(Debug, Serialize)]
pub struct KeptLoaded {
    /// This agent's generation: the directory its links and maps are pinned in.
    pub pinned_in: String,
    pub taken_over: Handover,
    pub derived_files: CarriedFiles,
}

/// `vigie.kept_loaded.derived_files`: the derived files marked once the marks were taken
/// over, and how many the journal named (the others are named by inode in alerts).
#[derive(Debug, Default, Serialize)]
pub struct CarriedFiles {
    /// Derived files the kernel holds marks of: the carried ones, and any this agent's
    /// programs marked since they were attached.
    pub carried: usize,
    pub named: usize,
    /// Why none could be named: no journal, or what went wrong reading it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unnamed_because: Option<String>,
}

/// `vigie.stores[]`: a store (the homeserver's Postgres database), where its server listens
/// and which of its processes were found.
#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// The secret's name in alerts ("homeserver database").
    pub name: String,
    /// `unix:PATH` or `tcp:HOST:PORT`.
    pub endpoint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub server_pids: Vec<u32>,
    /// Why no server process was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `vigie.tls_probe`: a file of TLS code a trusted service maps, and its write probes.
#[derive(Debug, Serialize)]
pub struct TlsProbe {
    /// The file as the service's process names it.
    pub path: String,
    /// The service, and the process whose maps showed the file first.
    pub service: String,
    pub pid: u32,
    /// The functions probed (`SSL_write`, `SSL_write_ex`, `gnutls_record_send`).
    pub symbols: Vec<&'static str>,
    /// Why the file could not be read or probed (a probe attached before the failure stays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `vigie.backend`: the kernel hook set, and why.
#[derive(Debug, Serialize)]
pub struct Backend {
    pub name: &'static str,
    pub reason: String,
}

/// `vigie.tmpfs_secrets`: how many tmpfs secrets fanotify watches, or why it does not.
#[derive(Debug, Serialize)]
pub struct TmpfsReport {
    pub watched: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_watched: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
