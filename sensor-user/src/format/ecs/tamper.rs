//! `vigie.tamper`: what was done to the agent, for `agent-tampered` alerts (the process that
//! did it is the document's `process`).

use serde::Serialize;

use super::{Rule, Technique, Threat};

/// The rule behind `agent-tampered` alerts.
pub const TAMPER_RULE: Rule = Rule {
    name: "agent-self-protection",
    description: "Another process acted on the agent or its kernel state: a signal, a tracer, its BPF maps, programs or links, or its hooks",
};

/// MITRE ATT&CK: Defense Evasion (TA0005) by impairing defenses (T1562).
pub const TAMPER_THREAT: Threat = Threat {
    framework: "MITRE ATT&CK",
    tactic: Technique { id: ["TA0005"], name: ["Defense Evasion"] },
    technique: Technique { id: ["T1562"], name: ["Impair Defenses"] },
};

/// ECS severity of an act against the agent (high).
pub const TAMPER_SEVERITY: u8 = 73;

/// `vigie.tamper`.
#[derive(Debug, Default, Serialize)]
pub struct Tamper {
    /// `signal`, `stop-signal`, `reload-signal`, `ptrace`, `bpf-object-held`, `map-changed`,
    /// `taint-removed`, `link-detached` or `foreign-program`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalSent>,
    /// The agent's thread signalled or traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<u32>,
    /// The BPF object held, the link detached, or the foreign link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<BpfObject>,
    /// The program of the link detached, or the foreign program.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<BpfObject>,
    /// The hook a foreign program runs on (`tracepoint:NAME`, `uprobe:FILE+OFFSET`,
    /// `cgroup:ID:ATTACH_TYPE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<MapChange>,
    /// The process whose taint was removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tainted_pid: Option<u32>,
    /// Whether the agent put back what it had written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored: Option<bool>,
}

/// `vigie.tamper.signal`.
#[derive(Debug, Serialize)]
pub struct SignalSent {
    /// `SIGUSR1`, …
    pub name: &'static str,
    pub number: u32,
    /// `kill`, `tkill`, `sigqueue`, or `kernel` (sent by the kernel in the sender's context).
    pub sent_with: &'static str,
}

/// `vigie.tamper.object` and `vigie.tamper.program`: a BPF object by its kernel id.
#[derive(Debug, Serialize)]
pub struct BpfObject {
    /// `map`, `program` or `link`.
    pub kind: &'static str,
    pub id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `vigie.tamper.map`: a map of the agent changed behind its back.
#[derive(Debug, Serialize)]
pub struct MapChange {
    pub name: &'static str,
    /// Entries the agent did not write.
    pub entries_foreign: u64,
    /// Entries it wrote that were gone or changed.
    pub entries_missing: u64,
}
