//! `vigie history`'s question: who read which secret, and what was sent where afterwards.

use rusqlite::{params, Connection, Row};
use serde::Serialize;

use super::{address, ancestry, count, Ancestor, ProcessRef};

/// Which reads `vigie history` shows.
#[derive(Debug, Default)]
pub struct HistoryFilter {
    /// A secret's name (as configured) or its file's path.
    pub secret: Option<String>,
    pub process: Option<ProcessFilter>,
    /// Only reads at or after this time (ns since the epoch).
    pub since_ns: Option<i64>,
}

/// A process by pid, or by executable (its path or its file name).
#[derive(Debug)]
pub enum ProcessFilter {
    Pid(u32),
    Executable(String),
}

/// How a secret came to a process that did not open it itself.
#[derive(Debug, Serialize)]
pub struct ViaRef {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<String>,
}

/// One secret read (or take-in through a channel), and what was sent with it since.
#[derive(Debug, Serialize)]
pub struct Read {
    pub event_id: String,
    pub at: String,
    pub secret: String,
    pub secret_kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub process: ProcessRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<ViaRef>,
    pub ancestry: Vec<Ancestor>,
    /// The alerts of this process, or of those it passed the secret to, after the read.
    pub sent: Vec<Sent>,
    #[serde(skip)]
    run: String,
    #[serde(skip)]
    at_ns: i64,
}

/// An alerted transfer: where to, and how many bytes in all.
#[derive(Debug, Serialize)]
pub struct Sent {
    /// The alert's `event.id`.
    pub alert: String,
    pub at: String,
    pub destination: String,
    pub transport: String,
    /// The most bytes reported (the alert, then its progress reports).
    pub bytes: u64,
    pub by: ProcessRef,
}

/// The reads matching `filter`, oldest first, each with what was sent with it.
pub fn history(conn: &Connection, filter: &HistoryFilter) -> rusqlite::Result<Vec<Read>> {
    let (pid, executable) = match &filter.process {
        Some(ProcessFilter::Pid(pid)) => (Some(*pid), None),
        Some(ProcessFilter::Executable(exe)) => (None, Some(exe.as_str())),
        None => (None, None),
    };
    let mut statement = conn.prepare(
        "SELECT event_id, at, secret_name, secret_kind, file_path, pid, executable, process_entity,
                user, via_kind, via_path, via_inode, ancestry, run, at_ns
         FROM reads
         WHERE at_ns >= ?1
           AND (?2 IS NULL OR secret_name = ?2 OR file_path = ?2)
           AND (?3 IS NULL OR pid = ?3)
           AND (?4 IS NULL OR executable = ?4 OR name = ?4)
         ORDER BY at_ns, event_id",
    )?;
    let rows = statement
        .query_map(params![filter.since_ns.unwrap_or(i64::MIN), filter.secret, pid, executable], read_row)?;
    let mut reads = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    for read in &mut reads {
        read.sent = sent_after(conn, read)?;
    }
    Ok(reads)
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<Read> {
    let via_kind: Option<String> = row.get(9)?;
    Ok(Read {
        event_id: row.get(0)?,
        at: row.get(1)?,
        secret: row.get(2)?,
        secret_kind: row.get(3)?,
        file: row.get(4)?,
        process: ProcessRef { pid: row.get(5)?, executable: row.get(6)?, entity_id: row.get(7)? },
        user: row.get(8)?,
        via: via_kind
            .map(|kind| -> rusqlite::Result<ViaRef> {
                Ok(ViaRef { kind, path: row.get(10)?, inode: row.get(11)? })
            })
            .transpose()?,
        ancestry: ancestry(&row.get::<_, String>(12)?),
        sent: Vec::new(),
        run: row.get(13)?,
        at_ns: row.get(14)?,
    })
}

/// The alerts, after `read`, of its process or of a process whose taint started with it.
fn sent_after(conn: &Connection, read: &Read) -> rusqlite::Result<Vec<Sent>> {
    let mut statement = conn.prepare_cached(
        "SELECT a.event_id, a.at, a.destination_ip, a.destination_port, a.transport,
                (SELECT max(p.bytes) FROM egress p
                 WHERE p.run = a.run AND p.pid = a.pid AND p.secret_name = a.secret_name
                   AND p.destination_ip = a.destination_ip AND p.destination_port = a.destination_port
                   AND p.at_ns >= a.at_ns),
                a.pid, a.executable, a.process_entity
         FROM egress a
         WHERE a.kind = 'alert' AND a.run = ?1 AND a.secret_name = ?2 AND a.at_ns >= ?3
           AND (a.process_entity = ?4 OR a.pid = ?6 OR a.origin_pid = ?5)
         ORDER BY a.at_ns, a.event_id",
    )?;
    let rows = statement.query_map(
        params![
            read.run,
            read.secret,
            read.at_ns,
            read.process.entity_id,
            read.process.pid,
            // By pid only a process the agent never saw, which has no entity id.
            read.process.entity_id.is_none().then_some(read.process.pid),
        ],
        |row| {
            Ok(Sent {
                alert: row.get(0)?,
                at: row.get(1)?,
                destination: address(&row.get::<_, String>(2)?, row.get(3)?),
                transport: row.get(4)?,
                bytes: count(row, 5)?,
                by: ProcessRef { pid: row.get(6)?, executable: row.get(7)?, entity_id: row.get(8)? },
            })
        },
    )?;
    rows.collect()
}
