//! Where derived files were written: how an agent that carries an earlier agent's marks
//! names the files they are on.

use std::collections::HashMap;

use rusqlite::Connection;

/// The paths the journal holds for each derived file's inode, newest first (the journal
/// keeps no device: files of other file systems may share an inode number).
pub fn derived_paths(conn: &Connection) -> rusqlite::Result<HashMap<u64, Vec<String>>> {
    let mut statement = conn.prepare(
        "SELECT inode, path FROM derived WHERE path IS NOT NULL ORDER BY at_ns DESC, event_id DESC",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
    let mut paths: HashMap<u64, Vec<String>> = HashMap::new();
    for row in rows {
        let (inode, path) = row?;
        if let Ok(inode) = inode.parse() {
            let known = paths.entry(inode).or_default();
            if !known.contains(&path) {
                known.push(path);
            }
        }
    }
    Ok(paths)
}
