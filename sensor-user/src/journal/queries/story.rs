//! `vigie explain`'s question: how one alert came about, step by step.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{address, ancestry, count, Ancestor, ProcessRef};

/// One alert and how it came about.
#[derive(Debug, Serialize)]
pub struct Story {
    pub event_id: String,
    pub at: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
    pub secret: String,
    pub process: ProcessRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub ancestry: Vec<Ancestor>,
    pub destination: String,
    pub transport: String,
    /// Its steps, in time order: read, channel, derived, connect, bytes, delivered.
    pub timeline: Vec<Step>,
}

/// One step of a story.
#[derive(Debug, Serialize)]
pub struct Step {
    pub at: String,
    /// `read`, `channel`, `derived`, `connect`, `bytes` or `delivered`; `act` for an act
    /// against the agent.
    pub kind: &'static str,
    /// The document the step comes from (none for a delivery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessRef>,
    /// What happened, in a sentence.
    pub what: String,
    #[serde(skip)]
    pub(super) at_ns: i64,
}

/// What the alert row says, for the queries of its story.
struct AlertRow {
    run: String,
    at_ns: i64,
    origin_pid: Option<u32>,
    via_inode: Option<String>,
    ip: String,
    port: u16,
    bytes: u64,
}

/// The story of the alert `event_id`; `None` if the journal has no such alert.
pub fn explain(conn: &Connection, event_id: &str) -> rusqlite::Result<Option<Story>> {
    let found = conn
        .query_row(
            "SELECT e.at, l.action, l.severity, e.secret_name, e.pid, e.executable, e.process_entity,
                    e.user, e.ancestry, e.destination_ip, e.destination_port, e.transport, e.bytes,
                    e.run, e.at_ns, e.origin_pid, e.via_inode
             FROM alerts l JOIN egress e ON e.event_id = l.event_id WHERE l.event_id = ?1",
            [event_id],
            |row| {
                let alert = AlertRow {
                    run: row.get(13)?,
                    at_ns: row.get(14)?,
                    origin_pid: row.get(15)?,
                    via_inode: row.get(16)?,
                    ip: row.get(9)?,
                    port: row.get(10)?,
                    bytes: count(row, 12)?,
                };
                let story = Story {
                    event_id: event_id.to_owned(),
                    at: row.get(0)?,
                    action: row.get(1)?,
                    severity: row.get(2)?,
                    secret: row.get(3)?,
                    process: ProcessRef { pid: row.get(4)?, executable: row.get(5)?, entity_id: row.get(6)? },
                    user: row.get(7)?,
                    ancestry: ancestry(&row.get::<_, String>(8)?),
                    destination: address(&alert.ip, alert.port),
                    transport: row.get(11)?,
                    timeline: Vec::new(),
                };
                Ok((story, alert))
            },
        )
        .optional()?;
    let Some((mut story, alert)) = found else { return Ok(None) };
    let mut timeline = take_ins(conn, &story, &alert)?;
    timeline.extend(derivations(conn, &story, &alert)?);
    timeline.push(Step {
        at: story.at.clone(),
        kind: "connect",
        event_id: Some(story.event_id.clone()),
        process: Some(story.process.clone()),
        what: format!(
            "sent to {} over {} ({} bytes so far): {}{}",
            story.destination,
            story.transport,
            alert.bytes,
            story.action,
            story.severity.map(|s| format!(", severity {s}")).unwrap_or_default()
        ),
        at_ns: alert.at_ns,
    });
    timeline.extend(progress(conn, &story, &alert)?);
    timeline.extend(deliveries(conn, event_id)?);
    timeline.sort_by_key(|step| step.at_ns);
    story.timeline = timeline;
    Ok(Some(story))
}

/// The secret's reads before the alert, by the process that opened it first and by the
/// sender (which may have taken it in through a channel).
fn take_ins(conn: &Connection, story: &Story, alert: &AlertRow) -> rusqlite::Result<Vec<Step>> {
    let mut statement = conn.prepare(
        "SELECT event_id, at, at_ns, pid, executable, process_entity, via_kind, via_path, via_inode
         FROM reads
         WHERE run = ?1 AND secret_name = ?2 AND at_ns <= ?3
           AND (pid = ?4 OR process_entity = ?5 OR pid = ?6)
         ORDER BY at_ns",
    )?;
    let rows = statement.query_map(
        params![
            alert.run,
            story.secret,
            alert.at_ns,
            alert.origin_pid,
            story.process.entity_id,
            // By pid only a sender the agent never saw, which has no entity id.
            story.process.entity_id.is_none().then_some(story.process.pid)
        ],
        |row| {
            let via_kind: Option<String> = row.get(6)?;
            let (kind, what) = match &via_kind {
                None => ("read", format!("read {}", story.secret)),
                Some(kind) => ("channel", channel(&story.secret, kind, row.get(7)?, row.get(8)?)),
            };
            Ok(Step {
                at: row.get(1)?,
                kind,
                event_id: Some(row.get(0)?),
                process: Some(ProcessRef {
                    pid: row.get(3)?,
                    executable: row.get(4)?,
                    entity_id: row.get(5)?,
                }),
                what,
                at_ns: row.get(2)?,
            })
        },
    )?;
    rows.collect()
}

/// `took SECRET in through a pipe (inode N)`.
fn channel(secret: &str, kind: &str, path: Option<String>, inode: Option<String>) -> String {
    let through = match kind {
        "file" => format!("the derived file {}", path.unwrap_or_else(|| "(path unknown)".to_owned())),
        other => format!("a {}", other.replace('-', " ")),
    };
    let label = if kind == "process-memory" { "pid" } else { "inode" };
    let identity = inode.map(|i| format!(" ({label} {i})")).unwrap_or_default();
    format!("took {secret} in through {through}{identity}")
}

/// The files written with the secret before the alert: the one it came through, and those
/// the origin or the sender wrote.
fn derivations(conn: &Connection, story: &Story, alert: &AlertRow) -> rusqlite::Result<Vec<Step>> {
    let mut statement = conn.prepare(
        "SELECT event_id, at, at_ns, pid, executable, process_entity, path, inode
         FROM derived
         WHERE run = ?1 AND secret_name = ?2 AND at_ns <= ?3
           AND (inode = ?4 OR pid = ?5 OR process_entity = ?6)
         ORDER BY at_ns",
    )?;
    let rows = statement.query_map(
        params![
            alert.run,
            story.secret,
            alert.at_ns,
            alert.via_inode,
            alert.origin_pid,
            story.process.entity_id
        ],
        |row| {
            let path: Option<String> = row.get(6)?;
            let inode: String = row.get(7)?;
            Ok(Step {
                at: row.get(1)?,
                kind: "derived",
                event_id: Some(row.get(0)?),
                process: Some(ProcessRef {
                    pid: row.get(3)?,
                    executable: row.get(4)?,
                    entity_id: row.get(5)?,
                }),
                what: format!(
                    "wrote {} into {} (inode {inode})",
                    story.secret,
                    path.unwrap_or_else(|| "a file".to_owned())
                ),
                at_ns: row.get(2)?,
            })
        },
    )?;
    rows.collect()
}

/// The alerted transfer's progress reports.
fn progress(conn: &Connection, story: &Story, alert: &AlertRow) -> rusqlite::Result<Vec<Step>> {
    let mut statement = conn.prepare(
        "SELECT event_id, at, at_ns, bytes FROM egress
         WHERE kind = 'progress' AND run = ?1 AND pid = ?2 AND secret_name = ?3
           AND destination_ip = ?4 AND destination_port = ?5 AND at_ns >= ?6
         ORDER BY at_ns",
    )?;
    let rows = statement.query_map(
        params![alert.run, story.process.pid, story.secret, alert.ip, alert.port, alert.at_ns],
        |row| {
            Ok(Step {
                at: row.get(1)?,
                kind: "bytes",
                event_id: Some(row.get(0)?),
                process: None,
                what: format!("{} bytes sent to {} in all", count(row, 3)?, story.destination),
                at_ns: row.get(2)?,
            })
        },
    )?;
    rows.collect()
}

/// The sinks that delivered the alert.
pub(super) fn deliveries(conn: &Connection, event_id: &str) -> rusqlite::Result<Vec<Step>> {
    let mut statement =
        conn.prepare("SELECT sink, state, at, at_ns FROM deliveries WHERE event_id = ?1 ORDER BY at_ns")?;
    let rows = statement.query_map([event_id], |row| {
        Ok(Step {
            at: row.get(2)?,
            kind: "delivered",
            event_id: None,
            process: None,
            what: format!("{} to sink {}", row.get::<_, String>(1)?, row.get::<_, String>(0)?),
            at_ns: row.get(3)?,
        })
    })?;
    rows.collect()
}
