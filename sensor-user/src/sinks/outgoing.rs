//! A document as a network sink takes it across to its thread: rendered in the sink's format,
//! with the few fields a sink shows outside the JSON (syslog's structured data, a Matrix
//! notice's text). Names, identities and addresses only, as in the document itself.

use crate::format::{self, ecs::Document, Schema};

/// One document, ready to deliver (rendered once per format, whatever the number of sinks).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `event.id`: stable, so a receiver can deduplicate what is delivered twice.
    pub id: String,
    /// `event.kind`: `alert`, `event` or `state`.
    pub kind: &'static str,
    /// `event.action`.
    pub action: &'static str,
    /// `event.severity` (ECS, 0–100), when the document has one.
    pub severity: Option<u8>,
    /// `@timestamp`, RFC 3339 UTC.
    pub timestamp: String,
    pub host: String,
    /// The alert's key fields, by their ECS names, those the document has.
    pub fields: Vec<(&'static str, String)>,
    /// The format it is rendered in.
    pub format: Schema,
    /// The document rendered in the sink's format, as one line of JSON.
    pub json: String,
}

impl Outgoing {
    /// `document` rendered in `format`.
    pub fn new(document: &Document, format: Schema) -> Self {
        let mut fields = Vec::new();
        let mut add = |name, value: Option<String>| fields.extend(value.map(|value| (name, value)));
        let process = document.process.as_ref();
        add("process.pid", process.map(|p| p.pid.to_string()));
        add("process.executable", process.and_then(|p| p.executable.clone()));
        add("user.id", document.user.as_ref().map(|u| u.id.clone()));
        add("file.path", document.file.as_ref().map(|f| f.path.clone()));
        let secret = document.vigie.as_ref().and_then(|v| v.secret.as_ref());
        add("vigie.secret.name", secret.map(|s| s.name.clone()));
        add("destination.ip", document.destination.as_ref().map(|d| d.ip.clone()));
        add("destination.port", document.destination.as_ref().map(|d| d.port.to_string()));
        add("network.transport", document.network.as_ref().map(|n| n.transport.to_owned()));
        Self {
            id: document.event.id.clone(),
            kind: document.event.class.kind,
            action: document.event.class.action,
            severity: document.event.class.severity,
            timestamp: document.timestamp.clone(),
            host: document.host.name.clone(),
            fields,
            format,
            json: format::render(format, document),
        }
    }
}
