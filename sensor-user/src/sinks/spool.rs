//! A webhook's spool: every document a file of its own in the spool directory, named by a
//! sequence number that only grows, so the directory alone says what is undelivered and in
//! which order, across collector outages, agent restarts and power losses (each document and
//! its name are synced before it counts as spooled). Past its size limit the oldest are
//! dropped, and counted.

use std::{
    collections::VecDeque,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// Suffix of a spooled document; a file being written has [`PARTIAL`] instead.
const SPOOLED: &str = "json";
const PARTIAL: &str = "partial";

/// The documents not yet delivered, oldest first.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    /// (sequence number, size in bytes) of each spooled document, oldest first.
    entries: VecDeque<(u64, u64)>,
    bytes: u64,
    max_bytes: u64,
    next: u64,
}

impl Spool {
    /// Opens the spool in `dir` (created, mode 0700, if missing), with what an earlier run
    /// left there; a document whose write was cut short is removed.
    ///
    /// # Errors
    /// When the directory cannot be created or read.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let mut entries = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some(PARTIAL) => fs::remove_file(&path)?,
                Some(SPOOLED) => {
                    let sequence =
                        path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<u64>().ok());
                    if let Some(sequence) = sequence {
                        entries.push((sequence, fs::metadata(&path)?.len()));
                    }
                }
                _ => {}
            }
        }
        entries.sort_unstable();
        let next = entries.last().map_or(0, |&(sequence, _)| sequence + 1);
        let bytes = entries.iter().map(|&(_, size)| size).sum();
        Ok(Self { dir: dir.to_owned(), entries: entries.into(), bytes, max_bytes, next })
    }

    /// Spools `document`, then drops the oldest while the spool is over its limit (never the
    /// one just spooled); the count dropped.
    ///
    /// # Errors
    /// When the document cannot be written: it is not spooled.
    pub fn push(&mut self, document: &[u8]) -> io::Result<u64> {
        let sequence = self.next;
        let partial = self.path(sequence, PARTIAL);
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
        file.write_all(document)?;
        // On disk before it counts as spooled, and its name too: a power loss after the
        // push loses no document (this runs on the sink's thread, not the event loop).
        file.sync_data()?;
        fs::rename(&partial, self.path(sequence, SPOOLED))?;
        File::open(&self.dir)?.sync_all()?;
        self.next += 1;
        self.entries.push_back((sequence, document.len() as u64));
        self.bytes += document.len() as u64;
        let mut dropped = 0;
        while self.bytes > self.max_bytes && self.entries.len() > 1 {
            self.remove_oldest()?;
            dropped += 1;
        }
        Ok(dropped)
    }

    /// The oldest documents, at most `count` of them and about `max_bytes` (at least one),
    /// with the sequence number of the last.
    ///
    /// # Errors
    /// When a spooled document cannot be read.
    pub fn oldest(&self, count: usize, max_bytes: u64) -> io::Result<(Vec<Vec<u8>>, Option<u64>)> {
        let mut documents = Vec::new();
        let mut bytes = 0;
        let mut last = None;
        for &(sequence, size) in self.entries.iter().take(count) {
            if !documents.is_empty() && bytes + size > max_bytes {
                break;
            }
            documents.push(fs::read(self.path(sequence, SPOOLED))?);
            bytes += size;
            last = Some(sequence);
        }
        Ok((documents, last))
    }

    /// Removes every document up to sequence number `last`: they were delivered.
    ///
    /// # Errors
    /// When a file cannot be removed.
    pub fn remove_through(&mut self, last: u64) -> io::Result<()> {
        while self.entries.front().is_some_and(|&(sequence, _)| sequence <= last) {
            self.remove_oldest()?;
        }
        Ok(())
    }

    /// Documents spooled.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn remove_oldest(&mut self) -> io::Result<()> {
        if let Some((sequence, size)) = self.entries.pop_front() {
            self.bytes -= size;
            match fs::remove_file(self.path(sequence, SPOOLED)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    /// Zero-padded, so the directory lists in order too.
    fn path(&self, sequence: u64, suffix: &str) -> PathBuf {
        self.dir.join(format!("{sequence:020}.{suffix}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vigie-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn documents_come_out_oldest_first_and_survive_a_reopen() {
        let dir = dir("order");
        let mut spool = Spool::open(&dir, 1 << 20).unwrap();
        for document in ["a", "b", "c"] {
            assert_eq!(spool.push(document.as_bytes()).unwrap(), 0);
        }
        let (first, last) = spool.oldest(2, 1 << 20).unwrap();
        assert_eq!(first, [b"a".to_vec(), b"b".to_vec()]);
        spool.remove_through(last.unwrap()).unwrap();
        fs::write(dir.join(format!("{:020}.{PARTIAL}", 9)), "cut short").unwrap();

        let mut reopened = Spool::open(&dir, 1 << 20).unwrap();
        reopened.push(b"d").unwrap();
        assert_eq!(reopened.len(), 2);
        assert_eq!(
            reopened.oldest(10, 1 << 20).unwrap().0,
            [b"c".to_vec(), b"d".to_vec()],
            "after a restart, in order"
        );
        assert!(!dir.join(format!("{:020}.{PARTIAL}", 9)).exists(), "a cut-short write is removed");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_spool_drops_its_oldest_and_counts_them() {
        let dir = dir("full");
        let mut spool = Spool::open(&dir, 10).unwrap();
        assert_eq!(spool.push(b"1234").unwrap() + spool.push(b"5678").unwrap(), 0);
        assert_eq!(spool.push(b"9abc").unwrap(), 1, "12 bytes over a 10-byte limit: one dropped");
        assert_eq!(
            spool.push(b"0123456789abcdef").unwrap(),
            2,
            "only the newest is kept, even over the limit"
        );
        assert_eq!(spool.oldest(10, 1 << 20).unwrap().0, [b"0123456789abcdef".to_vec()]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "dropped documents are gone from disk");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_batch_stops_at_its_byte_limit_but_holds_at_least_one() {
        let dir = dir("batch");
        let mut spool = Spool::open(&dir, 1 << 20).unwrap();
        for document in ["aaaa", "bbbb", "cccc"] {
            spool.push(document.as_bytes()).unwrap();
        }
        assert_eq!(spool.oldest(10, 9).unwrap().0.len(), 2);
        assert_eq!(spool.oldest(10, 1).unwrap().0.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
