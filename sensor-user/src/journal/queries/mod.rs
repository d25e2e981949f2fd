//! What the commands ask the journal: who read which secret and what they sent where
//! ([`history`]), the story of one alert ([`explain`]), and an act against the agent
//! ([`explain_act`]); and what the agent asks it at start: where derived files it carries
//! marks of were written ([`derived_paths`]).

mod act;
mod derived;
mod history;
mod story;

use rusqlite::Row;
use serde::{Deserialize, Serialize};

pub use act::explain_act;
pub use derived::derived_paths;
pub use history::{history, HistoryFilter, ProcessFilter, Read};
pub use story::{explain, Step};

pub use super::entry::Ancestor;

/// A process as the journal names it (and as a document's `process` has it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRef {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
}

/// `ip:port`, with brackets around an IPv6 address.
fn address(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// A count the journal stores as an `SQLite` integer.
fn count(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(u64::try_from(row.get::<_, i64>(index)?).unwrap_or_default())
}

/// The `ancestry` column, read back.
fn ancestry(json: &str) -> Vec<Ancestor> {
    serde_json::from_str(json).unwrap_or_default()
}
