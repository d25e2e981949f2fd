//! Alerts and state as documents: typed Elastic Common Schema, one JSON object per line.

pub mod ecs;

use serde::Deserialize;

use ecs::Document;

/// The schema a sink's documents are rendered in (`format = "ecs"` on a sink).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Elastic Common Schema 9.4.0, the agent's own documents as they are.
    #[default]
    Ecs,
}

/// `document` as `format` renders it, one line of JSON: what every sink writes.
pub fn render(format: Format, document: &Document) -> String {
    match format {
        // Our own documents always serialize (no map with non-string keys, no failing impl).
        Format::Ecs => serde_json::to_string(document).unwrap_or_default(),
    }
}
