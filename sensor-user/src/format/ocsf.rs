//! Documents as Open Cybersecurity Schema Framework events, for sinks whose collector speaks
//! OCSF: an alert is a Detection Finding (class 2004), `sensor-started`/`sensor-stopped` an
//! Application Lifecycle event (6002) of Vigie itself, every other document a Base Event (0).
//! Built from the ECS document, so it carries exactly what that does — names, identities and
//! addresses, never a secret's value; what OCSF has no attribute for is under `unmapped`.
//! `docs/OCSF.md` lists the mapping; `tests/tests/ocsf_documents.rs` validates real documents
//! against the published schema of [`OCSF_VERSION`].

mod objects;

use serde::Serialize;

use crate::format::ecs::{self, Document, Vigie};
use objects::{Analytic, Attack, Device, Evidence, FindingInfo};

/// The OCSF schema version these events are validated against.
pub const OCSF_VERSION: &str = "1.8.0";

/// One document as an OCSF event; serialize it like the [`Document`] it borrows from.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum OcsfEvent<'a> {
    Finding(Box<DetectionFinding<'a>>),
    Lifecycle(ApplicationLifecycle<'a>),
    Base(BaseEvent<'a>),
}

/// `document` as an OCSF event of the class that fits it.
pub fn render(document: &Document) -> OcsfEvent<'_> {
    let event = document.event.class;
    match (event.kind, event.action) {
        ("alert", _) => OcsfEvent::Finding(Box::new(DetectionFinding::of(document))),
        (_, "sensor-started") => OcsfEvent::Lifecycle(ApplicationLifecycle::of(document, START)),
        (_, "sensor-stopped") => OcsfEvent::Lifecycle(ApplicationLifecycle::of(document, STOP)),
        _ => OcsfEvent::Base(BaseEvent::of(document)),
    }
}

/// The attributes every OCSF event has: its class, activity, severity, time and metadata.
#[derive(Debug, Serialize)]
pub struct Header<'a> {
    pub class_uid: u32,
    pub class_name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
    pub activity_id: u32,
    pub activity_name: &'static str,
    /// `class_uid * 100 + activity_id`.
    pub type_uid: u32,
    pub type_name: String,
    pub severity_id: u8,
    pub severity: &'static str,
    /// Milliseconds since the epoch.
    pub time: i64,
    pub message: &'static str,
    pub metadata: Metadata<'a>,
    pub unmapped: Unmapped<'a>,
}

/// A class and one of its activities.
#[derive(Debug, Clone, Copy)]
struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
}

const FINDING_CREATED: Class = Class {
    uid: 2004,
    name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
    activity_id: 1,
    activity_name: "Create",
};
const LIFECYCLE: Class = Class {
    uid: 6002,
    name: "Application Lifecycle",
    category_uid: 6,
    category_name: "Application Activity",
    activity_id: 0,
    activity_name: "",
};
const START: Class = Class { activity_id: 3, activity_name: "Start", ..LIFECYCLE };
const STOP: Class = Class { activity_id: 4, activity_name: "Stop", ..LIFECYCLE };
const BASE_OTHER: Class = Class {
    uid: 0,
    name: "Base Event",
    category_uid: 0,
    category_name: "Uncategorized",
    activity_id: 99,
    activity_name: "Other",
};

impl<'a> Header<'a> {
    fn of(document: &'a Document, class: Class, unmapped: Unmapped<'a>) -> Self {
        let (severity_id, severity) = severity(document.event.class.severity);
        Self {
            class_uid: class.uid,
            class_name: class.name,
            category_uid: class.category_uid,
            category_name: class.category_name,
            activity_id: class.activity_id,
            activity_name: class.activity_name,
            type_uid: class.uid * 100 + class.activity_id,
            type_name: format!("{}: {}", class.name, class.activity_name),
            severity_id,
            severity,
            time: epoch_ms(&document.timestamp).unwrap_or_default(),
            message: document.event.class.action,
            metadata: Metadata::of(document),
            unmapped,
        }
    }
}

/// `metadata`: this product, the schema version, the document's id and ECS time.
#[derive(Debug, Serialize)]
pub struct Metadata<'a> {
    pub product: Product,
    pub version: &'static str,
    /// The document's `event.id`, kept by whoever forwards it.
    pub uid: &'a str,
    /// The ECS `@timestamp`, with its microseconds.
    pub original_time: &'a str,
}

impl<'a> Metadata<'a> {
    fn of(document: &'a Document) -> Self {
        Self {
            product: Product::VIGIE,
            version: OCSF_VERSION,
            uid: &document.event.id,
            original_time: &document.timestamp,
        }
    }
}

/// `product`: Vigie, at this build's version.
#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub name: &'static str,
    pub vendor_name: &'static str,
    pub version: &'static str,
}

impl Product {
    const VIGIE: Self = Self { name: "Vigie", vendor_name: "Vigie", version: env!("CARGO_PKG_VERSION") };
}

/// `unmapped`: the document's fields OCSF has no attribute for, under their ECS names.
#[derive(Debug, Serialize)]
pub struct Unmapped<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vigie: Option<VigieFields<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a ecs::Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<&'a ecs::Host>,
}

/// `unmapped.vigie`: an alert's story without what `evidences` holds, or a state document's
/// whole `vigie`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum VigieFields<'a> {
    Story(Story<'a>),
    State(&'a Vigie),
}

/// The parts of an alert's `vigie` that OCSF has no place for (its ancestry is the process's).
#[derive(Debug, Serialize)]
pub struct Story<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a ecs::SecretRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<&'a ecs::ProcessSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'a ecs::Via>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carried: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<&'a Vec<ecs::Missing>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a ecs::Content>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tamper: Option<&'a ecs::Tamper>,
}

impl<'a> Story<'a> {
    fn of(vigie: &'a Vigie) -> Self {
        Self {
            secret: vigie.secret.as_ref(),
            origin: vigie.origin.as_ref(),
            via: vigie.via.as_ref(),
            carried: vigie.carried.as_ref(),
            recovered: vigie.recovered,
            incomplete: vigie.incomplete.as_ref(),
            content: vigie.content.as_ref(),
            tamper: vigie.tamper.as_ref(),
        }
    }
}

/// Detection Finding (2004): an alert.
#[derive(Debug, Serialize)]
pub struct DetectionFinding<'a> {
    #[serde(flatten)]
    pub header: Header<'a>,
    pub finding_info: FindingInfo<'a>,
    pub evidences: Vec<Evidence>,
    pub device: Device,
    pub is_alert: bool,
    /// 1: New.
    pub status_id: u8,
    pub status: &'static str,
}

impl<'a> DetectionFinding<'a> {
    fn of(document: &'a Document) -> Self {
        let unmapped = Unmapped {
            vigie: document.vigie.as_ref().map(|vigie| VigieFields::Story(Story::of(vigie))),
            source: document.source.as_ref(),
            host: None,
        };
        let header = Header::of(document, FINDING_CREATED, unmapped);
        let rule = document.rule.as_ref().unwrap_or(&ecs::EXFILTRATION_RULE);
        let finding_info = FindingInfo {
            uid: &document.event.id,
            title: title(document),
            desc: rule.description,
            types: [document.event.class.action],
            analytic: Analytic::rule(rule),
            attacks: document.threat.iter().map(Attack::of).collect(),
            created_time: header.time,
        };
        Self {
            header,
            finding_info,
            evidences: vec![Evidence::of(document)],
            device: Device::of(&document.host),
            is_alert: true,
            status_id: 1,
            status: "New",
        }
    }
}

/// A finding's title: what was found, and for an exfiltration whether the bytes themselves
/// carried the secret.
fn title(document: &Document) -> &'static str {
    if document.event.class.action == ecs::AGENT_TAMPERED.action {
        "Agent tampered with"
    } else if document.vigie.as_ref().is_some_and(|vigie| vigie.content.is_some()) {
        "Credential exfiltration confirmed by content"
    } else {
        "Credential exfiltration"
    }
}

/// Application Lifecycle (6002): Vigie started or stopped.
#[derive(Debug, Serialize)]
pub struct ApplicationLifecycle<'a> {
    #[serde(flatten)]
    pub header: Header<'a>,
    pub app: Product,
}

impl<'a> ApplicationLifecycle<'a> {
    fn of(document: &'a Document, class: Class) -> Self {
        Self { header: Header::of(document, class, state_unmapped(document)), app: Product::VIGIE }
    }
}

/// Base Event (0, activity Other): a document OCSF has no class for; `message` is its
/// `event.action`.
#[derive(Debug, Serialize)]
pub struct BaseEvent<'a> {
    #[serde(flatten)]
    pub header: Header<'a>,
}

impl<'a> BaseEvent<'a> {
    fn of(document: &'a Document) -> Self {
        Self { header: Header::of(document, BASE_OTHER, state_unmapped(document)) }
    }
}

/// A non-alert document's `vigie` and host.
fn state_unmapped(document: &Document) -> Unmapped<'_> {
    Unmapped {
        vigie: document.vigie.as_ref().map(VigieFields::State),
        source: document.source.as_ref(),
        host: Some(&document.host),
    }
}

/// OCSF `severity_id` and its caption for an ECS severity (none: informational).
fn severity(ecs_severity: Option<u8>) -> (u8, &'static str) {
    match ecs_severity {
        None | Some(0) => (1, "Informational"),
        Some(90..) => (5, "Critical"),
        Some(70..) => (4, "High"),
        Some(40..) => (3, "Medium"),
        Some(_) => (2, "Low"),
    }
}

/// Milliseconds since the epoch of an ECS timestamp.
fn epoch_ms(timestamp: &str) -> Option<i64> {
    i64::try_from(ecs::epoch_ns(timestamp)? / 1_000_000).ok()
}

#[cfg(test)]
mod tests;
