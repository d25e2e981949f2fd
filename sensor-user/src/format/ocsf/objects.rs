//! The OCSF objects an alert's evidence is made of — process (with its parent, ancestry and
//! user), file, endpoint, connection — built from the ECS sections of the same document.

use serde::Serialize;

use super::epoch_ms;
use crate::format::ecs::{self, Document, ProcessSummary};

/// `finding_info`: what was found, by which rule.
#[derive(Debug, Serialize)]
pub struct FindingInfo<'a> {
    /// The document's `event.id`.
    pub uid: &'a str,
    pub title: &'static str,
    pub desc: &'static str,
    /// The ECS `event.action`.
    pub types: [&'static str; 1],
    pub analytic: Analytic,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<Attack>,
    pub created_time: i64,
}

/// `analytic`: the rule that found it.
#[derive(Debug, Serialize)]
pub struct Analytic {
    pub name: &'static str,
    pub desc: &'static str,
    /// 1: Rule.
    pub type_id: u8,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl Analytic {
    pub fn rule(rule: &ecs::Rule) -> Self {
        Self { name: rule.name, desc: rule.description, type_id: 1, kind: "Rule" }
    }
}

/// `attack`: the MITRE ATT&CK tactic and technique.
#[derive(Debug, Serialize)]
pub struct Attack {
    pub tactic: Named,
    pub technique: Named,
}

/// An ATT&CK tactic or technique, by id and name.
#[derive(Debug, Serialize)]
pub struct Named {
    pub uid: &'static str,
    pub name: &'static str,
}

impl Attack {
    pub fn of(threat: &ecs::Threat) -> Self {
        let named = |t: &ecs::Technique| Named { uid: t.id[0], name: t.name[0] };
        Self { tactic: named(&threat.tactic), technique: named(&threat.technique) }
    }
}

/// One `evidences[]` item: who sent which secret where.
#[derive(Debug, Serialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_endpoint: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_info: Option<ConnectionInfo>,
}

impl Evidence {
    /// The evidence of the alert `document`.
    pub fn of(document: &Document) -> Self {
        let ancestry =
            document.vigie.as_ref().and_then(|vigie| vigie.ancestry.as_deref()).unwrap_or_default();
        Self {
            process: document
                .process
                .as_ref()
                .map(|process| Process::of(process, document.user.as_ref(), ancestry)),
            file: document.file.as_ref().map(File::of),
            dst_endpoint: document.destination.as_ref().map(|d| Endpoint { ip: d.ip.clone(), port: d.port }),
            connection_info: document.network.as_ref().map(ConnectionInfo::outbound),
        }
    }
}

/// `process`: who it is, as far as known, then its user, parent and ancestry.
#[derive(Debug, Serialize)]
pub struct Process {
    #[serde(flatten)]
    pub entity: ProcessEntity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(rename = "parent_process", skip_serializing_if = "Option::is_none")]
    pub parent: Option<Box<Process>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestry: Vec<ProcessEntity>,
}

impl Process {
    fn of(process: &ecs::ProcessFields, user: Option<&ecs::User>, ancestry: &[ProcessSummary]) -> Self {
        let entity = ProcessEntity {
            pid: process.pid,
            name: process.name.clone(),
            path: process.executable.clone(),
            cmd_line: process.args.as_deref().map(command_line),
            uid: process.entity_id.clone(),
            created_time: process.start.as_deref().and_then(epoch_ms),
        };
        let parent = process.parent.as_ref().map(|parent| ProcessEntity {
            pid: parent.pid,
            name: parent.name.clone(),
            path: Some(parent.executable.clone()),
            cmd_line: None,
            uid: Some(parent.entity_id.clone()),
            created_time: parent.start.as_deref().and_then(epoch_ms),
        });
        Self {
            entity,
            user: user.map(|user| User { uid: user.id.clone() }),
            parent: parent
                .map(|entity| Box::new(Self { entity, user: None, parent: None, ancestry: Vec::new() })),
            ancestry: ancestry.iter().map(ProcessEntity::of).collect(),
        }
    }
}

/// `process_entity`: a process by its identity alone (an ancestor: parent first, up to init).
#[derive(Debug, Serialize)]
pub struct ProcessEntity {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The arguments, masked as in the ECS document, joined by spaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd_line: Option<String>,
    /// The ECS `entity_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

impl ProcessEntity {
    fn of(summary: &ProcessSummary) -> Self {
        let name =
            summary.executable.as_deref().and_then(|exe| exe.rsplit('/').next()).filter(|n| !n.is_empty());
        Self {
            pid: summary.pid,
            name: name.map(str::to_owned),
            path: summary.executable.clone(),
            cmd_line: summary.args.as_deref().map(command_line),
            uid: None,
            created_time: None,
        }
    }
}

/// Arguments (already masked) as one command line.
fn command_line(args: &[String]) -> String {
    args.join(" ")
}

/// `user`, by uid.
#[derive(Debug, Serialize)]
pub struct User {
    pub uid: String,
}

/// `file`: the secret, by its configured path.
#[derive(Debug, Serialize)]
pub struct File {
    pub name: String,
    pub path: String,
    /// The inode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// 1: Regular File.
    pub type_id: u8,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl File {
    fn of(file: &ecs::File) -> Self {
        let name = file.path.rsplit('/').next().unwrap_or(&file.path);
        Self {
            name: name.to_owned(),
            path: file.path.clone(),
            uid: file.inode.clone(),
            type_id: 1,
            kind: "Regular File",
        }
    }
}

/// `network_endpoint`: where the bytes went.
#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub ip: String,
    pub port: u16,
}

/// `network_connection_info`: outbound, over TCP or UDP.
#[derive(Debug, Serialize)]
pub struct ConnectionInfo {
    /// 2: Outbound.
    pub direction_id: u8,
    pub direction: &'static str,
    pub protocol_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_num: Option<u8>,
}

impl ConnectionInfo {
    fn outbound(network: &ecs::Network) -> Self {
        let protocol_num = match network.transport {
            "tcp" => Some(6),
            "udp" => Some(17),
            _ => None,
        };
        Self { direction_id: 2, direction: "Outbound", protocol_name: network.transport, protocol_num }
    }
}

/// `device`: this host, by name (its type is not known).
#[derive(Debug, Serialize)]
pub struct Device {
    pub hostname: String,
    /// 0: Unknown.
    pub type_id: u8,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl Device {
    pub fn of(host: &ecs::Host) -> Self {
        Self { hostname: host.name.clone(), type_id: 0, kind: "Unknown" }
    }
}
