//! One document, as the journal reads it back from the line the agent wrote (the same bytes
//! the sinks get), and the rows it becomes. Documents carry names, identities and addresses,
//! never a secret's value; so do these rows.

use rusqlite::{params, ToSql, Transaction};
use serde::{Deserialize, Serialize};

/// The fields of a document the journal keeps; the rest stays in the stored document.
#[derive(Debug, Deserialize)]
pub struct Entry {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    event: EventView,
    process: Option<ProcessView>,
    user: Option<UserView>,
    file: Option<FileView>,
    source: Option<SourceView>,
    destination: Option<DestinationView>,
    network: Option<NetworkView>,
    host: HostView,
    vigie: Option<VigieView>,
}

#[derive(Debug, Deserialize)]
struct EventView {
    id: String,
    action: String,
    severity: Option<u8>,
}

#[derive(Debug, Deserialize)]
struct ProcessView {
    pid: u32,
    name: Option<String>,
    executable: Option<String>,
    entity_id: Option<String>,
    parent: Option<Ancestor>,
}

/// A process of an ancestry, as the journal stores it (`ancestry` column, JSON).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UserView {
    id: String,
}

#[derive(Debug, Deserialize)]
struct FileView {
    path: String,
}

#[derive(Debug, Deserialize)]
struct SourceView {
    bytes: u64,
}

#[derive(Debug, Deserialize)]
struct DestinationView {
    ip: String,
    port: u16,
}

#[derive(Debug, Deserialize)]
struct NetworkView {
    transport: String,
}

#[derive(Debug, Deserialize)]
struct HostView {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct VigieView {
    secret: Option<SecretView>,
    origin: Option<Ancestor>,
    ancestry: Option<Vec<Ancestor>>,
    via: Option<ViaView>,
    derived: Option<DerivedView>,
    backend: Option<BackendView>,
}

#[derive(Debug, Deserialize)]
struct SecretView {
    kind: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct ViaView {
    kind: String,
    path: Option<String>,
    inode: Option<String>,
    pid: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct DerivedView {
    path: Option<String>,
    inode: String,
}

#[derive(Debug, Deserialize)]
struct BackendView {
    name: String,
}

/// Why a line did not become rows.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The line is not a document the journal understands.
    #[error("document not understood: {0}")]
    Shape(#[from] serde_json::Error),
    /// Its `@timestamp` is no RFC 3339 time.
    #[error("document {id}: bad @timestamp")]
    Time { id: String },
    /// A document of its kind lacks a section the journal needs.
    #[error("document {id} ({action}) lacks {section}")]
    Missing { id: String, action: String, section: &'static str },
    /// The database refused the rows.
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

impl Entry {
    /// Reads the document `line`.
    pub fn parse(line: &[u8]) -> Result<Self, EntryError> {
        Ok(serde_json::from_slice(line)?)
    }

    /// Writes the rows of this document (`line` is its text, kept for alerts and state
    /// documents). A document seen before (same `event.id`) is left as it was.
    pub fn insert(&self, tx: &Transaction<'_>, line: &[u8]) -> Result<(), EntryError> {
        let at_ns = nanos(&self.timestamp).ok_or_else(|| EntryError::Time { id: self.event.id.clone() })?;
        let run = run_of(&self.event.id);
        let vigie = self.vigie.as_ref();
        match self.event.action.as_str() {
            "sensor-started" => {
                tx.execute(
                    "INSERT OR IGNORE INTO runs (agent, host, backend, started_at, started_ns)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        run,
                        self.host.name,
                        vigie.and_then(|v| v.backend.as_ref()).map(|b| &b.name),
                        self.timestamp,
                        at_ns
                    ],
                )?;
            }
            "sensor-stopped" => {
                tx.execute(
                    "UPDATE runs SET stopped_at = ?2, stopped_ns = ?3 WHERE agent = ?1",
                    params![run, self.timestamp, at_ns],
                )?;
            }
            "secret-read" | "secret-read-allowed" => self.insert_read(tx, run, at_ns)?,
            "secret-derived" => self.insert_derived(tx, run, at_ns)?,
            "credential-exfiltration" | "exfiltration-progress" => {
                self.insert_egress(tx, run, at_ns)?;
                if self.event.action == "credential-exfiltration" {
                    tx.execute(
                        "INSERT OR IGNORE INTO alerts (event_id, at_ns, action, severity, document)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![self.event.id, at_ns, self.event.action, self.event.severity, text(line)],
                    )?;
                }
            }
            _ => {
                tx.execute(
                    "INSERT OR IGNORE INTO states (event_id, run, at, at_ns, action, document)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![self.event.id, run, self.timestamp, at_ns, self.event.action, text(line)],
                )?;
            }
        }
        Ok(())
    }

    fn insert_read(&self, tx: &Transaction<'_>, run: &str, at_ns: i64) -> Result<(), EntryError> {
        let (process, secret) = (self.process()?, self.secret()?);
        let via = self.vigie.as_ref().and_then(|v| v.via.as_ref());
        // An allowed read took in nothing through a channel: its way in is its allowance.
        let via_kind = if self.event.action == "secret-read-allowed" {
            Some("allowed")
        } else {
            via.map(|v| v.kind.as_str())
        };
        self.insert_act(
            tx,
            "reads",
            (run, at_ns),
            &[
                ("name", &process.name),
                ("ancestry", &self.ancestry(process)),
                ("secret_kind", &secret.kind),
                ("file_path", &self.file.as_ref().map(|f| &f.path)),
                ("via_kind", &via_kind),
                ("via_path", &via.and_then(|v| v.path.as_ref())),
                ("via_inode", &via.and_then(via_identity)),
            ],
        )
    }

    fn insert_derived(&self, tx: &Transaction<'_>, run: &str, at_ns: i64) -> Result<(), EntryError> {
        let derived = self
            .vigie
            .as_ref()
            .and_then(|v| v.derived.as_ref())
            .ok_or_else(|| self.missing("vigie.derived"))?;
        self.insert_act(tx, "derived", (run, at_ns), &[("path", &derived.path), ("inode", &derived.inode)])
    }

    fn insert_egress(&self, tx: &Transaction<'_>, run: &str, at_ns: i64) -> Result<(), EntryError> {
        let process = self.process()?;
        let destination = self.destination.as_ref().ok_or_else(|| self.missing("destination"))?;
        let vigie = self.vigie.as_ref();
        let origin = vigie.and_then(|v| v.origin.as_ref());
        let via = vigie.and_then(|v| v.via.as_ref());
        let kind = if self.event.action == "credential-exfiltration" { "alert" } else { "progress" };
        self.insert_act(
            tx,
            "egress",
            (run, at_ns),
            &[
                ("kind", &kind),
                ("destination_ip", &destination.ip),
                ("destination_port", &destination.port),
                ("transport", &self.network.as_ref().map_or("", |n| n.transport.as_str())),
                ("bytes", &self.source.as_ref().map_or(0, |s| i64::try_from(s.bytes).unwrap_or(i64::MAX))),
                ("ancestry", &self.ancestry(process)),
                ("origin_pid", &origin.map(|o| o.pid)),
                ("origin_executable", &origin.and_then(|o| o.executable.as_ref())),
                ("via_kind", &via.map(|v| &v.kind)),
                ("via_path", &via.and_then(|v| v.path.as_ref())),
                ("via_inode", &via.and_then(via_identity)),
            ],
        )
    }

    /// A row of `table` about what a process did with a secret: the columns every such row
    /// has (the document, its run and time, the process, its user, the secret), then `more`.
    fn insert_act(
        &self,
        tx: &Transaction<'_>,
        table: &str,
        (run, at_ns): (&str, i64),
        more: &[(&str, &dyn ToSql)],
    ) -> Result<(), EntryError> {
        let (process, secret) = (self.process()?, self.secret()?);
        let user = self.user.as_ref().map(|u| &u.id);
        let common: [(&str, &dyn ToSql); 9] = [
            ("event_id", &self.event.id),
            ("run", &run),
            ("at", &self.timestamp),
            ("at_ns", &at_ns),
            ("pid", &process.pid),
            ("process_entity", &process.entity_id),
            ("executable", &process.executable),
            ("user", &user),
            ("secret_name", &secret.name),
        ];
        let columns: Vec<_> = common.iter().chain(more).collect();
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let places: Vec<String> = (1..=columns.len()).map(|n| format!("?{n}")).collect();
        let values: Vec<&dyn ToSql> = columns.iter().map(|(_, value)| *value).collect();
        let sql =
            format!("INSERT OR IGNORE INTO {table} ({}) VALUES ({})", names.join(", "), places.join(", "));
        tx.prepare_cached(&sql)?.execute(values.as_slice())?;
        Ok(())
    }

    /// `vigie.ancestry` as JSON, or the parent alone where the document names no more.
    fn ancestry(&self, process: &ProcessView) -> String {
        let ancestry = self.vigie.as_ref().and_then(|v| v.ancestry.as_ref());
        let ancestry =
            ancestry.map_or_else(|| process.parent.iter().collect(), |a| a.iter().collect::<Vec<_>>());
        serde_json::to_string(&ancestry).unwrap_or_default()
    }

    fn process(&self) -> Result<&ProcessView, EntryError> {
        self.process.as_ref().ok_or_else(|| self.missing("process"))
    }

    fn secret(&self) -> Result<&SecretView, EntryError> {
        self.vigie.as_ref().and_then(|v| v.secret.as_ref()).ok_or_else(|| self.missing("vigie.secret"))
    }

    fn missing(&self, section: &'static str) -> EntryError {
        EntryError::Missing { id: self.event.id.clone(), action: self.event.action.clone(), section }
    }
}

/// A channel's identity: a derived file's or pipe's inode, or the pid whose memory was read.
fn via_identity(via: &ViaView) -> Option<String> {
    via.inode.clone().or_else(|| via.pid.map(|pid| pid.to_string()))
}

/// The run a document belongs to: its `event.id` without the sequence number (the agent's
/// own entity id).
pub fn run_of(event_id: &str) -> &str {
    event_id.rsplit_once('-').map_or(event_id, |(run, _)| run)
}

/// An RFC 3339 time in nanoseconds since the epoch.
pub fn nanos(timestamp: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(timestamp).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_nanos()).ok()
}

fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_the_event_id_without_its_sequence() {
        assert_eq!(run_of("b00t-951-959893-12"), "b00t-951-959893");
    }

    #[test]
    fn times_are_read_to_the_microsecond() {
        assert_eq!(nanos("2026-11-18T11:06:40.123456Z"), Some(1_795_000_000_123_456_000));
        assert_eq!(nanos("yesterday"), None);
    }
}
