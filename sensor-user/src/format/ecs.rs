//! Output documents in Elastic Common Schema field names, one JSON object per line.
//! Only names, identities and addresses appear here — never a secret's contents.
//! Every field is listed, with its type, in `docs/FIELDS.md`.

mod kinds;
mod tamper;
mod vigie;

use std::cell::Cell;

use serde::Serialize;

pub use kinds::*;
pub use tamper::*;
pub use vigie::*;

use crate::{alert::redact::Redactor, state::process_table::Process};

/// The ECS version these documents are checked against (the `@elastic/ecs` 9.4.0 definitions).
pub const ECS_VERSION: &str = "9.4.0";

/// One output line.
#[derive(Debug, Serialize)]
pub struct Document {
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub ecs: Ecs,
    pub event: EventFields,
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
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    pub host: Host,
    /// Vigie-specific context (secret, ancestry, origin, counters), outside the ECS namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vigie: Option<Vigie>,
}

/// `ecs.*`: which schema the document follows.
#[derive(Debug, Serialize)]
pub struct Ecs {
    pub version: &'static str,
}

/// What kind of document this is: the same for every document of one `event.action`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Event {
    pub kind: &'static str,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
    pub category: &'static [&'static str],
    /// ECS `event.type`: for each category, one of the types ECS allows with it.
    #[serde(rename = "type")]
    pub types: &'static [&'static str],
}

/// `event.*` of one document: its kind and its own id.
#[derive(Debug, Serialize)]
pub struct EventFields {
    /// Unique per document, and kept by whoever stores or forwards it (see [`EventIds`]).
    pub id: String,
    #[serde(flatten)]
    pub class: Event,
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
    /// The executable's file name; left out when the executable is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Left out, with `args` and `entity_id`, for a process the agent never saw
    /// (`vigie.incomplete` says so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
}

#[derive(Debug, Serialize)]
pub struct Parent {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub executable: String,
    pub entity_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct User {
    pub id: String,
}

/// `file.*`: only ever a file (a secret that is a process's memory has none).
#[derive(Debug, Serialize)]
pub struct File {
    pub path: String,
    /// Left out when the path leads nowhere (a watched file that was deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<String>,
}

/// `source.*`: the process on this host that sends.
#[derive(Debug, Serialize)]
pub struct Source {
    /// Bytes sent so far by this process to the destination (ECS: from source to destination).
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Destination {
    pub ip: String,
    pub port: u16,
}

#[derive(Debug, Serialize)]
pub struct Network {
    pub transport: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
}

/// The boot that kernel times and process entity ids are relative to.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The kernel's boot id, in full.
    pub id: String,
    /// Wall-clock time of boot, ns since the epoch.
    pub wall_ns: u64,
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
/// ECS severity of an exfiltration whose bytes carried a secret's value (critical).
pub const CONFIRMED_EXFILTRATION_SEVERITY: u8 = 99;

impl ProcessFields {
    /// `process.*` of `process`, with `parent` if known; arguments masked by `redactor`.
    pub fn new(process: &Process, parent: Option<&Process>, boot: &Boot, redactor: &Redactor) -> Self {
        Self {
            pid: process.pid,
            name: name(process),
            executable: Some(process.executable.clone()),
            args: Some(redactor.args(&process.args)),
            entity_id: Some(entity_id(process, &boot.id)),
            start: start(process, boot),
            parent: parent.map(|p| Parent {
                pid: p.pid,
                name: name(p),
                executable: p.executable.clone(),
                entity_id: entity_id(p, &boot.id),
                start: start(p, boot),
            }),
        }
    }

    /// A process the agent never saw: its pid alone.
    pub fn unknown(pid: u32) -> Self {
        Self { pid, name: None, executable: None, args: None, entity_id: None, start: None, parent: None }
    }
}

impl Document {
    /// A document with only its time, event, id and host; sections are filled by the caller.
    pub fn new(epoch_ns: u64, event: Event, id: String, host: Host) -> Self {
        Self {
            timestamp: timestamp(epoch_ns),
            ecs: Ecs { version: ECS_VERSION },
            event: EventFields { id, class: event },
            rule: None,
            threat: None,
            process: None,
            user: None,
            file: None,
            source: None,
            destination: None,
            network: None,
            host,
            vigie: None,
        }
    }
}

/// `event.id`s: the agent's own process entity id (boot, pid, start time), then a sequence
/// number. Unique across reboots and agent restarts without coordination, ordered within one
/// run, and fixed once given, so a sink can deliver a document twice and be deduplicated.
#[derive(Debug)]
pub struct EventIds {
    agent: String,
    next: Cell<u64>,
}

impl EventIds {
    /// Ids of the agent `process`.
    pub fn new(agent: &Process, boot: &Boot) -> Self {
        Self { agent: entity_id(agent, &boot.id), next: Cell::new(0) }
    }

    /// The next id.
    pub fn next(&self) -> String {
        let sequence = self.next.get();
        self.next.set(sequence + 1);
        format!("{}-{sequence}", self.agent)
    }
}

/// A process id unique across pid reuse and reboots: boot, pid, start time (in ticks of
/// 10 ms, the precision `/proc` gives for processes seen at start-up).
pub fn entity_id(process: &Process, boot_id: &str) -> String {
    format!("{boot_id}-{}-{}", process.pid, process.start_ns / 10_000_000)
}

/// `process.name`: the executable's file name.
fn name(process: &Process) -> Option<String> {
    let name = process.executable.rsplit('/').next().filter(|n| !n.is_empty())?;
    Some(name.to_owned())
}

/// `process.start`, when the start time is known.
fn start(process: &Process, boot: &Boot) -> Option<String> {
    (process.start_ns != 0).then(|| timestamp(boot.wall_ns + process.start_ns))
}

/// RFC 3339 UTC timestamp with microseconds, from nanoseconds since the epoch.
pub fn timestamp(epoch_ns: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(epoch_ns);
    humantime::format_rfc3339_micros(time).to_string()
}

/// Nanoseconds since the epoch of a [`timestamp`] (to the microsecond it keeps).
pub fn epoch_ns(timestamp: &str) -> Option<u64> {
    let since_epoch = humantime::parse_rfc3339(timestamp).ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, executable: &str) -> Process {
        Process {
            pid,
            ppid: 1,
            parent_start_ns: 0,
            uid: 0,
            executable: executable.into(),
            args: vec![executable.into()],
            start_ns: 1_230_000_000,
            exec_id: None,
            exe_id: None,
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(1_795_000_000_123_456_789), "2026-11-18T11:06:40.123456Z");
        assert_eq!(epoch_ns("2026-11-18T11:06:40.123456Z"), Some(1_795_000_000_123_456_000));
        assert_eq!(epoch_ns("yesterday"), None);
    }

    #[test]
    fn empty_sections_are_left_out() {
        let doc = Document::new(0, SENSOR_STARTED, "e-0".into(), Host { name: "h".into() });
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "@timestamp": "1970-01-01T00:00:00.000000Z",
                "ecs": {"version": ECS_VERSION},
                "event": {"id": "e-0", "kind": "state", "action": "sensor-started", "category": ["host"], "type": ["start"]},
                "host": {"name": "h"}
            })
        );
    }

    #[test]
    fn process_fields_name_the_parent_entity_and_start() {
        let boot =
            Boot { id: "0f6e3c1a-9b2d-4c5e-8f70-123456789abc".into(), wall_ns: 1_795_000_000_000_000_000 };
        let fields = ProcessFields::new(
            &process(7, "/usr/bin/curl"),
            Some(&process(1, "/bin/sh")),
            &boot,
            &Redactor::default(),
        );
        let json = serde_json::to_value(&fields).unwrap();
        assert_eq!(json["name"], "curl");
        assert_eq!(json["entity_id"], "0f6e3c1a-9b2d-4c5e-8f70-123456789abc-7-123");
        assert_eq!(json["start"], "2026-11-18T11:06:41.230000Z");
        assert_eq!(json["parent"]["entity_id"], "0f6e3c1a-9b2d-4c5e-8f70-123456789abc-1-123");
        assert_eq!(json["parent"]["name"], "sh");
        let unknown = ProcessFields::new(
            &Process { executable: String::new(), start_ns: 0, ..process(9, "") },
            None,
            &boot,
            &Redactor::default(),
        );
        let json = serde_json::to_value(&unknown).unwrap();
        assert!(json.get("name").is_none() && json.get("start").is_none() && json.get("parent").is_none());
    }

    #[test]
    fn event_ids_are_the_agents_entity_id_and_a_sequence() {
        let boot = Boot { id: "b".into(), wall_ns: 0 };
        let ids = EventIds::new(&process(42, "/usr/bin/vigie"), &boot);
        assert_eq!([ids.next(), ids.next()], ["b-42-123-0", "b-42-123-1"]);
    }
}
