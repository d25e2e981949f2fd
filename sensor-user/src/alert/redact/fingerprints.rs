//! Keyed fingerprints of the watched secrets' contents: the keyed hash of every [`WINDOW`]-byte
//! window of each file, so that an argument carrying any such run of a secret is masked. The
//! contents themselves are kept nowhere: each file is read into one buffer ([`read_secret`]),
//! hashed, and the buffer is zeroed before it is freed. Without the agent's key a fingerprint
//! tells nothing.
//!
//! Memory is capped: files up to [`FILE_LIMIT`] bytes, [`TOTAL_LIMIT`] bytes in all (8 bytes
//! of fingerprint per byte of secret, so at most 16 MiB). A 100 MB homeserver database is not
//! fingerprinted; `sensor-started` lists what was skipped and why.

use std::{
    collections::hash_map::RandomState,
    fs::{self, File},
    hash::BuildHasher,
    io::{self, Read},
    ops::Range,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use sensor_common::FileId;
use zeroize::Zeroizing;

use crate::state::secret_catalog::SecretCatalog;

/// The shortest run of a secret's content that is masked: long enough that ordinary text
/// rarely repeats a secret by chance, short enough for a 16-character password.
pub const WINDOW: usize = 12;
/// Files larger than this are not fingerprinted: configs, keys and `.env` files are far smaller.
pub const FILE_LIMIT: u64 = 256 * 1024;
/// All fingerprinted files together.
pub const TOTAL_LIMIT: u64 = 2 * 1024 * 1024;
/// Windows with fewer distinct bytes (YAML indentation, `------------`) are not a secret's.
pub const MIN_DISTINCT_BYTES: usize = 4;

/// The fingerprints of every watched file, by secret id.
#[derive(Debug, Default)]
pub struct Fingerprints {
    files: Vec<FileFingerprints>,
}

/// One watched file: the state it was read in, and its window hashes (sorted, unique).
#[derive(Debug)]
struct FileFingerprints {
    secret_id: u32,
    path: PathBuf,
    stamp: Stamp,
    outcome: Outcome,
    windows: Vec<u64>,
}

/// What tells that a file changed without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    id: FileId,
    pub size: u64,
    mtime_ns: i128,
}

/// How the last attempt at a file went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Fingerprinted,
    TooLarge,
    OverBudget,
    Unreadable,
}

impl Fingerprints {
    /// Reads again every file of `catalog` whose stamp changed and that `may_read` allows. A
    /// file that disappeared keeps its fingerprints: its content is no less secret for it.
    pub fn refresh(&mut self, key: &RandomState, catalog: &SecretCatalog, may_read: impl Fn(&Path) -> bool) {
        for (secret_id, secret) in catalog.iter() {
            // Labels (a trusted process's memory) have no file.
            if secret.id == FileId::default() || !may_read(&secret.path) {
                continue;
            }
            let Some(stamp) = stamp(&secret.path) else { continue };
            let known = self.files.iter().position(|f| f.secret_id == secret_id);
            if known.is_some_and(|i| self.files[i].stamp == stamp) {
                continue;
            }
            let others: u64 = self
                .files
                .iter()
                .filter(|f| f.secret_id != secret_id && f.outcome == Outcome::Fingerprinted)
                .map(|f| f.stamp.size)
                .sum();
            let (outcome, windows) = if stamp.size > FILE_LIMIT {
                (Outcome::TooLarge, Vec::new())
            } else if others + stamp.size > TOTAL_LIMIT {
                (Outcome::OverBudget, Vec::new())
            } else {
                read_windows(key, &secret.path, stamp.size)
                    .map_or((Outcome::Unreadable, Vec::new()), |w| (Outcome::Fingerprinted, w))
            };
            let file = FileFingerprints { secret_id, path: secret.path.clone(), stamp, outcome, windows };
            match known {
                Some(i) => self.files[i] = file,
                None => self.files.push(file),
            }
        }
    }

    /// Byte ranges of `text` covered by a window of some watched file.
    pub fn spans(&self, key: &RandomState, text: &[u8]) -> Vec<Range<usize>> {
        if self.files.iter().all(|f| f.windows.is_empty()) {
            return Vec::new();
        }
        (0..text.len().saturating_sub(WINDOW - 1))
            .filter(|&at| {
                let hash = key.hash_one(&text[at..at + WINDOW]);
                self.files.iter().any(|f| f.windows.binary_search(&hash).is_ok())
            })
            .map(|at| at..at + WINDOW)
            .collect()
    }

    /// For `sensor-started`: how many files and bytes are fingerprinted, the limits, and the
    /// paths skipped by reason.
    pub fn report(&self) -> FingerprintReport {
        let with = |outcome| -> Vec<String> {
            self.files.iter().filter(|f| f.outcome == outcome).map(|f| f.path.display().to_string()).collect()
        };
        let fingerprinted = self.files.iter().filter(|f| f.outcome == Outcome::Fingerprinted);
        FingerprintReport {
            files: fingerprinted.clone().count(),
            bytes: fingerprinted.map(|f| f.stamp.size).sum(),
            file_limit_bytes: FILE_LIMIT,
            total_limit_bytes: TOTAL_LIMIT,
            skipped_too_large: with(Outcome::TooLarge),
            skipped_over_budget: with(Outcome::OverBudget),
            unreadable: with(Outcome::Unreadable),
        }
    }
}

/// `vigie.fingerprints` in `sensor-started`: what redaction can recognise by content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FingerprintReport {
    pub files: usize,
    pub bytes: u64,
    pub file_limit_bytes: u64,
    pub total_limit_bytes: u64,
    pub skipped_too_large: Vec<String>,
    pub skipped_over_budget: Vec<String>,
    pub unreadable: Vec<String>,
}

/// The stamp of the regular file at `path`; `None` for anything else or nothing.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok().filter(fs::Metadata::is_file)?;
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    Some(Stamp { id: crate::state::secret_catalog::file_id_of(&meta), size: meta.len(), mtime_ns })
}

/// The sorted, unique window hashes of the file at `path`, which `stat` said is `size` bytes.
fn read_windows(key: &RandomState, path: &Path, size: u64) -> io::Result<Vec<u64>> {
    let content = read_secret(path, size)?;
    let mut windows: Vec<u64> = content
        .windows(WINDOW)
        .filter(|window| distinct_bytes(window) >= MIN_DISTINCT_BYTES)
        .map(|window| key.hash_one(window))
        .collect();
    windows.sort_unstable();
    windows.dedup();
    Ok(windows)
}

/// The content of the secret file at `path`, which `stat` said is `size` bytes (at most
/// [`FILE_LIMIT`] are read), in a buffer zeroed when dropped.
pub fn read_secret(path: &Path, size: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    // One buffer of fixed size, never grown: a reallocation would leave a copy behind.
    let mut buffer = Zeroizing::new(vec![0u8; usize::try_from(size.min(FILE_LIMIT)).unwrap_or(0) + 1]);
    let read = read_into(File::open(path)?, &mut buffer)?;
    let limit = buffer.len() - 1;
    buffer.truncate(read.min(limit));
    Ok(buffer)
}

/// Fills `buffer` from `file` until it is full or the file ends; returns the bytes read.
fn read_into(mut file: File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// How many different bytes `window` holds.
pub fn distinct_bytes(window: &[u8]) -> usize {
    let mut seen = [false; 256];
    window.iter().filter(|&&b| !std::mem::replace(&mut seen[usize::from(b)], true)).count()
}
