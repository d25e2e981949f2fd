//! Output documents in Elastic Common Schema field names, one JSON object per line.
//! Only names, identities and addresses appear here — never a secret's contents.

use serde::Serialize;
use serde_json::Value;

use crate::{process_table::Process, redact::Redactor};

/// One output line.
#[derive(Debug, Serialize)]
pub struct Document {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub event: Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threat: Option<Threat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    pub host: Host,
    /// Vigie-specific context (ancestry, origin, counters), outside the ECS namespace.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub vigie: Value,
}

#[derive(Debug, Serialize)]
pub struct Event {
    pub kind: &'static str,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
    pub category: &'static [&'static str],
}

#[derive(Debug, Serialize)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Threat {
    pub framework: &'static str,
    pub tactic: Technique,
    pub technique: Technique,
}

#[derive(Debug, Serialize)]
pub struct Technique {
    pub id: [&'static str; 1],
    pub name: [&'static str; 1],
}

#[derive(Debug, Serialize)]
pub struct ProcessFields {
    pub pid: u32,
    pub executable: String,
    pub args: Vec<String>,
    pub entity_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
}

#[derive(Debug, Serialize)]
pub struct Parent {
    pub pid: u32,
    pub executable: String,
}

#[derive(Debug, Serialize)]
pub struct User {
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct File {
    pub path: String,
    pub inode: String,
}

#[derive(Debug, Serialize)]
pub struct Destination {
    pub ip: String,
    pub port: u16,
    /// Bytes sent so far by this process to this destination.
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Network {
    pub transport: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
}

/// The rule behind `credential-exfiltration` alerts.
pub const EXFILTRATION_RULE: Rule = Rule {
    name: "secret-read-then-egress",
    description: "A process that read a watched secret, or a descendant of it, sent traffic off this host",
};

/// MITRE ATT&CK: Exfiltration (TA0010) over the command-and-control channel (T1041).
pub const EXFILTRATION_THREAT: Threat = Threat {
    framework: "MITRE ATT&CK",
    tactic: Technique { id: ["TA0010"], name: ["Exfiltration"] },
    technique: Technique { id: ["T1041"], name: ["Exfiltration Over C2 Channel"] },
};

/// ECS severity of an exfiltration alert (high).
pub const EXFILTRATION_SEVERITY: u8 = 73;

impl ProcessFields {
    /// `process.*` of `process`, with `parent` if known; `boot_id` scopes the entity id.
    pub fn new(process: &Process, parent: Option<&Process>, boot_id: &str, redactor: &Redactor) -> Self {
        Self {
            pid: process.pid,
            executable: process.executable.clone(),
            args: redactor.args(&process.args),
            entity_id: entity_id(process, boot_id),
            parent: parent.map(|p| Parent { pid: p.pid, executable: p.executable.clone() }),
        }
    }
}

impl Document {
    /// A document with only its time, event and host; sections are filled by the caller.
    pub fn new(epoch_ns: u64, event: Event, host: Host) -> Self {
        Self {
            timestamp: timestamp(epoch_ns),
            event,
            rule: None,
            threat: None,
            process: None,
            user: None,
            file: None,
            destination: None,
            network: None,
            host,
            vigie: Value::Null,
        }
    }
}

/// A process id unique across pid reuse and reboots: boot, pid, start time (in ticks of
/// 10 ms, the precision `/proc` gives for processes seen at start-up).
pub fn entity_id(process: &Process, boot_id: &str) -> String {
    format!("{boot_id}-{}-{}", process.pid, process.start_ns / 10_000_000)
}

/// A short description of a process for `vigie.ancestry` and `vigie.origin`.
pub fn summary(process: &Process, redactor: &Redactor) -> Value {
    serde_json::json!({ "pid": process.pid, "executable": process.executable, "args": redactor.args(&process.args) })
}

/// RFC 3339 UTC timestamp with microseconds, from nanoseconds since the epoch.
pub fn timestamp(epoch_ns: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(epoch_ns);
    humantime::format_rfc3339_micros(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(1_795_000_000_123_456_789), "2026-11-18T11:06:40.123456Z");
    }

    #[test]
    fn empty_sections_are_left_out() {
        let event = Event { kind: "state", action: "sensor-started", severity: None, category: &["host"] };
        let doc = Document::new(0, event, Host { name: "h".into() });
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "@timestamp": "1970-01-01T00:00:00.000000Z",
                "event": {"kind": "state", "action": "sensor-started", "category": ["host"]},
                "host": {"name": "h"}
            })
        );
    }
}
