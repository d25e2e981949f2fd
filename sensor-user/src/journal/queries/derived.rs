//! Where derived files were written: how an agent that carries an earlier agent's marks
//! names the files they are on.

use std::collections::HashMap;

use rusqlite::Connection;

/// The newest path the journal holds for each derived file's inode.
pub fn derived_paths(conn: &Connection) -> rusqlite::Result<HashMap<u64, String>> {
    let mut statement =
        conn.prepare("SELECT inode, path FROM derived WHERE path IS NOT NULL ORDER BY at_ns, event_id")?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
    let mut paths = HashMap::new();
    for row in rows {
        let (inode, path) = row?;
        if let Ok(inode) = inode.parse() {
            paths.insert(inode, path);
        }
    }
    Ok(paths)
}
