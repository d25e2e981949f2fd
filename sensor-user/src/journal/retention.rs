//! Keeping the journal within its age and size: entries past the retention are deleted, then
//! the oldest tenth of what is left, again, until the pages in use fit the cap.

use rusqlite::{params, Connection};

/// The tables of timed entries, each with its `at_ns` column.
const TIMED: [&str; 6] = ["reads", "derived", "egress", "alerts", "states", "deliveries"];

/// How long to keep entries and how much room they may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub retention_ns: i64,
    pub max_bytes: u64,
}

/// Deletes what is older than the retention, then the oldest entries while the journal is
/// over its size cap; gives the freed pages back to the file system. Returns the entries
/// deleted.
pub fn enforce(conn: &Connection, limits: Limits, now_ns: i64) -> rusqlite::Result<usize> {
    let mut deleted = delete_before(conn, now_ns.saturating_sub(limits.retention_ns))?;
    while used_bytes(conn)? > limits.max_bytes {
        let Some((oldest, newest)) = span(conn)? else { break };
        let removed = delete_before(conn, oldest + ((newest - oldest) / 10).max(1))?;
        if removed == 0 {
            break;
        }
        deleted += removed;
        conn.execute_batch("PRAGMA incremental_vacuum;")?;
    }
    if deleted > 0 {
        conn.execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")?;
    }
    Ok(deleted)
}

/// Deletes every entry before `cutoff_ns`, and the runs that ended (or, but for the latest,
/// started) before it.
fn delete_before(conn: &Connection, cutoff_ns: i64) -> rusqlite::Result<usize> {
    let mut deleted = 0;
    for table in TIMED {
        deleted += conn.execute(&format!("DELETE FROM {table} WHERE at_ns < ?1"), [cutoff_ns])?;
    }
    deleted += conn.execute(
        "DELETE FROM runs WHERE coalesce(stopped_ns, started_ns) < ?1
             AND started_ns < (SELECT max(started_ns) FROM runs)",
        params![cutoff_ns],
    )?;
    Ok(deleted)
}

/// Bytes of the pages that hold data (free pages are not counted: they are reused).
fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pragma = |name: &str| -> rusqlite::Result<u64> {
        let value: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))?;
        Ok(u64::try_from(value).unwrap_or_default())
    };
    Ok(pragma("page_count")?.saturating_sub(pragma("freelist_count")?) * pragma("page_size")?)
}

/// The oldest and newest entry times, if there is any entry.
fn span(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    let union = TIMED.map(|table| format!("SELECT at_ns FROM {table}")).join(" UNION ALL ");
    conn.query_row(&format!("SELECT min(at_ns), max(at_ns) FROM ({union})"), [], |row| {
        Ok(row.get::<_, Option<i64>>(0)?.zip(row.get::<_, Option<i64>>(1)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::schema;

    const DAY_NS: i64 = 86_400 * 1_000_000_000;

    fn journal_with_states(times: impl IntoIterator<Item = i64>) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;").unwrap();
        schema::migrate(&mut conn).unwrap();
        for (n, at_ns) in times.into_iter().enumerate() {
            conn.execute(
                "INSERT INTO states (event_id, run, at, at_ns, action, document) VALUES (?1, 'r', '', ?2, 'x', ?3)",
                params![n.to_string(), at_ns, "d".repeat(2000)],
            )
            .unwrap();
        }
        conn
    }

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM states", [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn entries_past_the_retention_are_deleted_and_the_rest_kept() {
        let now = 100 * DAY_NS;
        let conn = journal_with_states([now - 40 * DAY_NS, now - 20 * DAY_NS, now - DAY_NS]);
        let limits = Limits { retention_ns: 30 * DAY_NS, max_bytes: u64::MAX };
        assert_eq!(enforce(&conn, limits, now).unwrap(), 1);
        let oldest: i64 = conn.query_row("SELECT min(at_ns) FROM states", [], |row| row.get(0)).unwrap();
        assert_eq!((count(&conn), oldest), (2, now - 20 * DAY_NS));
    }

    #[test]
    fn over_its_cap_the_journal_loses_its_oldest_entries_first() {
        let conn = journal_with_states((0..1000).map(|n| n * 1_000));
        let before = used_bytes(&conn).unwrap();
        let limits = Limits { retention_ns: i64::MAX, max_bytes: before / 2 };
        enforce(&conn, limits, 1_000_000).unwrap();
        assert!(used_bytes(&conn).unwrap() <= before / 2);
        let (oldest, newest) = span(&conn).unwrap().unwrap();
        assert!(oldest > 0 && newest == 999_000, "{oldest} {newest}");
        assert!(count(&conn) > 300, "only what was needed went: {} left", count(&conn));
    }
}
