//! The access and refresh tokens of a homeserver's `SQLite` database, read incrementally (rows
//! with a larger `id` than the last one read) without ever holding Synapse up.
//!
//! How it never blocks the homeserver: Synapse runs its `SQLite` database in WAL mode
//! (`synapse/storage/engines/sqlite.py`), where a reader takes no lock a writer waits for: it
//! reads a snapshot (the database plus the WAL up to its read mark) while the writer appends to
//! the WAL. The connection is opened `mode=ro` (`SQLITE_OPEN_READ_ONLY`: it can never write,
//! nor take a write lock, nor checkpoint), each read is one short `SELECT` by primary key, and
//! the busy timeout is zero: if the file is locked exclusively (a rollback-journal database in
//! the middle of a commit, `locking_mode=EXCLUSIVE`), the read fails at once and is tried again
//! at the next refresh, rather than waiting. `immutable=1` would skip locking altogether, but
//! it also ignores the WAL, where the newest tokens are until a checkpoint.

use std::{path::Path, time::Duration};

use rusqlite::{Connection, OpenFlags};
use zeroize::Zeroizing;

/// Rows read at most per table and refresh: a database of a million tokens is taken in over
/// several ticks instead of stalling one.
pub const ROWS_PER_REFRESH: u32 = 20_000;

/// The tables holding tokens, and what their tokens are.
pub const TABLES: &[(&str, &str)] = &[("access_tokens", "access token"), ("refresh_tokens", "refresh token")];

/// The query for table `name`'s next rows: `id` after `$1`, `$2` rows at most. The same text
/// for `SQLite` (where `$N` is the Nth parameter) and Postgres; the casts make either's integer
/// column a 64-bit one.
pub fn new_rows_query(name: &str) -> String {
    format!("SELECT CAST(id AS BIGINT), token FROM {name} WHERE id > CAST($1 AS BIGINT) ORDER BY id LIMIT $2")
}

/// How far each table of one database has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCursor {
    /// The largest `id` read, by table (in [`TABLES`] order).
    last_ids: [i64; 2],
}

impl Default for TokenCursor {
    fn default() -> Self {
        Self { last_ids: [i64::MIN; 2] }
    }
}

/// A token read from the database: its table's index in [`TABLES`] and the token.
pub type Token = (usize, Zeroizing<String>);

/// What one read gave: the new tokens, and whether a table has more rows than one read takes.
pub struct NewTokens {
    pub tokens: Vec<Token>,
    pub more: bool,
}

/// How many tokens, never which.
impl std::fmt::Debug for NewTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewTokens").field("tokens", &self.tokens.len()).field("more", &self.more).finish()
    }
}

/// Whether `err` says the database was locked by a writer (then it is worth trying again soon;
/// any other error waits for the file to change).
pub fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl TokenCursor {
    /// The largest `id` of table `table` read so far.
    pub fn after(&self, table: usize) -> i64 {
        self.last_ids[table]
    }

    /// Notes that the row `id` of table `table` was read.
    pub fn saw(&mut self, table: usize, id: i64) {
        self.last_ids[table] = self.last_ids[table].max(id);
    }

    /// The tokens added to the database at `path` since the last call.
    pub fn new_tokens(&mut self, path: &Path) -> rusqlite::Result<NewTokens> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let db = Connection::open_with_flags(path, flags)?;
        db.busy_timeout(Duration::ZERO)?;
        let mut tokens = Vec::new();
        let mut more = false;
        for (table, (name, _)) in TABLES.iter().enumerate() {
            let mut statement = db.prepare(&new_rows_query(name))?;
            let mut rows = statement.query((self.after(table), ROWS_PER_REFRESH))?;
            let mut count = 0;
            while let Some(row) = rows.next()? {
                count += 1;
                let token = Zeroizing::new(row.get::<_, String>(1)?);
                self.saw(table, row.get(0)?);
                tokens.push((table, token));
            }
            more |= count == ROWS_PER_REFRESH;
        }
        Ok(NewTokens { tokens, more })
    }
}
