//! The journal's tables, versioned: each migration runs once, in order, and is recorded in
//! `schema_migrations`. `docs/JOURNAL.md` describes every table.

use rusqlite::{Connection, OptionalExtension};

use super::JournalError;

/// The migrations, in order; migration `n` (1-based) brings the journal to version `n`.
const MIGRATIONS: &[&str] = &[
    // 1: runs, what was read, derived and sent, the alerts' documents, the state documents
    // and delivery state per sink. The story's lookups (by pid, entity, origin, inode) each
    // have an index of their own, so that SQLite can join their results (an OR of them). Times are the documents' `@timestamp`, and `at_ns` the same
    // in nanoseconds since the epoch (what queries and retention compare).
    "CREATE TABLE runs (
         agent TEXT PRIMARY KEY,
         host TEXT NOT NULL,
         backend TEXT,
         started_at TEXT NOT NULL,
         started_ns INTEGER NOT NULL,
         stopped_at TEXT,
         stopped_ns INTEGER
     );
     CREATE TABLE reads (
         event_id TEXT PRIMARY KEY,
         run TEXT NOT NULL,
         at TEXT NOT NULL,
         at_ns INTEGER NOT NULL,
         pid INTEGER NOT NULL,
         process_entity TEXT,
         executable TEXT,
         name TEXT,
         user TEXT,
         ancestry TEXT NOT NULL,
         secret_kind TEXT NOT NULL,
         secret_name TEXT NOT NULL,
         file_path TEXT,
         via_kind TEXT,
         via_path TEXT,
         via_inode TEXT
     );
     CREATE INDEX reads_at ON reads (at_ns);
     CREATE INDEX reads_secret ON reads (secret_name, at_ns);
     CREATE INDEX reads_pid ON reads (pid, run);
     CREATE INDEX reads_process ON reads (process_entity);
     CREATE TABLE derived (
         event_id TEXT PRIMARY KEY,
         run TEXT NOT NULL,
         at TEXT NOT NULL,
         at_ns INTEGER NOT NULL,
         pid INTEGER NOT NULL,
         process_entity TEXT,
         executable TEXT,
         user TEXT,
         secret_name TEXT NOT NULL,
         path TEXT,
         inode TEXT NOT NULL
     );
     CREATE INDEX derived_at ON derived (at_ns);
     CREATE INDEX derived_inode ON derived (inode, run);
     CREATE INDEX derived_pid ON derived (pid, run);
     CREATE INDEX derived_process ON derived (process_entity);
     CREATE TABLE egress (
         event_id TEXT PRIMARY KEY,
         run TEXT NOT NULL,
         at TEXT NOT NULL,
         at_ns INTEGER NOT NULL,
         kind TEXT NOT NULL,
         pid INTEGER NOT NULL,
         process_entity TEXT,
         executable TEXT,
         user TEXT,
         secret_name TEXT NOT NULL,
         destination_ip TEXT NOT NULL,
         destination_port INTEGER NOT NULL,
         transport TEXT NOT NULL,
         bytes INTEGER NOT NULL,
         ancestry TEXT NOT NULL,
         origin_pid INTEGER,
         origin_executable TEXT,
         via_kind TEXT,
         via_path TEXT,
         via_inode TEXT
     );
     CREATE INDEX egress_at ON egress (at_ns);
     CREATE INDEX egress_process ON egress (process_entity);
     CREATE INDEX egress_pid ON egress (pid, run);
     CREATE INDEX egress_origin ON egress (origin_pid, run);
     CREATE TABLE alerts (
         event_id TEXT PRIMARY KEY,
         at_ns INTEGER NOT NULL,
         action TEXT NOT NULL,
         severity INTEGER,
         document TEXT NOT NULL
     );
     CREATE INDEX alerts_at ON alerts (at_ns);
     CREATE TABLE states (
         event_id TEXT PRIMARY KEY,
         run TEXT NOT NULL,
         at TEXT NOT NULL,
         at_ns INTEGER NOT NULL,
         action TEXT NOT NULL,
         document TEXT NOT NULL
     );
     CREATE INDEX states_at ON states (at_ns);
     CREATE TABLE deliveries (
         event_id TEXT NOT NULL,
         sink TEXT NOT NULL,
         state TEXT NOT NULL,
         at TEXT NOT NULL,
         at_ns INTEGER NOT NULL,
         PRIMARY KEY (event_id, sink)
     );
     CREATE INDEX deliveries_at ON deliveries (at_ns);",
];

/// The version this agent writes and reads.
pub fn current_version() -> u32 {
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

/// Brings the journal to [`current_version`]: each migration not yet applied, in its own
/// transaction. A journal written by a newer agent is refused.
pub fn migrate(conn: &mut Connection) -> Result<(), JournalError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
         );",
    )?;
    let applied = version(conn)?.unwrap_or(0);
    if applied > current_version() {
        return Err(JournalError::NewerSchema { found: applied, known: current_version() });
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(applied as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [version])?;
        tx.commit()?;
    }
    Ok(())
}

/// The journal's schema version: `None` for a database that is no journal.
pub fn version(conn: &Connection) -> Result<Option<u32>, JournalError> {
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        [],
        |row| row.get(0),
    )?;
    if !has_table {
        return Ok(None);
    }
    let version: Option<u32> = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |row| row.get(0))
        .optional()?
        .flatten();
    Ok(Some(version.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_are_recorded() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(version(&conn).unwrap(), None, "a blank database is no journal");
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), Some(current_version()));
        let recorded: u32 =
            conn.query_row("SELECT count(*) FROM schema_migrations", [], |row| row.get(0)).unwrap();
        assert_eq!(recorded, current_version());
    }

    #[test]
    fn a_journal_from_a_newer_agent_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [current_version() + 1]).unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(matches!(err, JournalError::NewerSchema { .. }), "{err}");
    }
}
