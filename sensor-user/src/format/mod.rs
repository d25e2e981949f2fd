//! Alerts and state as documents: typed Elastic Common Schema, one JSON object per line, or
//! the same documents as OCSF events.

pub mod ecs;
pub mod ocsf;

use serde::Deserialize;

/// The schema documents are written in (`--format`, `format =` in the config file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schema {
    /// Elastic Common Schema, as `docs/FIELDS.md` lists it.
    #[default]
    Ecs,
    /// OCSF events, as `docs/OCSF.md` maps them.
    Ocsf,
}

impl Schema {
    /// `document` as one JSON text in this schema.
    pub fn json(self, document: &ecs::Document) -> serde_json::Result<Vec<u8>> {
        match self {
            Self::Ecs => serde_json::to_vec(document),
            Self::Ocsf => serde_json::to_vec(&ocsf::render(document)),
        }
    }
}

/// `document` in `schema`, one line of JSON: what every sink writes.
pub fn render(schema: Schema, document: &ecs::Document) -> String {
    // Our own documents always serialize (no map with non-string keys, no failing impl).
    schema.json(document).ok().and_then(|json| String::from_utf8(json).ok()).unwrap_or_default()
}
