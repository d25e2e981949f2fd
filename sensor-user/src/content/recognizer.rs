//! The recognizer: the values of every watched file and database, indexed by their forms,
//! and the streams being scanned.
//!
//! [`Recognizer::refresh`] costs one `stat` per watched file (two for a database: it and its
//! WAL) when nothing changed. A changed file is read again (at most
//! [`FILE_LIMIT`](crate::alert::redact::fingerprints::FILE_LIMIT) bytes) and its values'
//! forms hashed: about 25 forms a value, microseconds each. A changed database costs one
//! indexed `SELECT` per token table, at most 20,000 rows per table and refresh (the rest at
//! the next refreshes).

use std::{
    collections::hash_map::RandomState,
    fs::File,
    io::Read,
    path::{Path, PathBuf},
};

use sensor_common::FileId;

use super::{
    database::{self, NewTokens, TokenCursor, TABLES},
    encodings,
    patterns::{PatternSet, ANCHOR},
    streams::{Streams, MAX_STREAMS},
    values::{self, FoundValue, Sharing, SQLITE_HEADER},
    ContentMatch, Encoding, Scope, Source, StreamKey,
};
use crate::{
    alert::redact::{
        fingerprint,
        fingerprints::{distinct_bytes, read_secret, stamp, Stamp, FILE_LIMIT, MIN_DISTINCT_BYTES},
    },
    state::secret_catalog::SecretCatalog,
};

/// The longest value matched: a key's body line, a token or a password is far shorter; a
/// whole certificate bundle in one value would only lengthen every stream's tail.
const MAX_VALUE: usize = 4096;
/// Database tokens held at most, over all databases: a token costs about 430 bytes (six forms
/// and its name; `database_token_memory` measures it), so 50,000 tokens some 21 MB. Past it,
/// new tokens are still told by their checksum (`syt_`), and the report says the limit was
/// reached.
const MAX_DATABASE_TOKENS: usize = 50_000;

/// Recognises the watched secrets' values in streams of bytes.
#[derive(Debug)]
pub struct Recognizer {
    /// The per-agent key: redaction's, so a match's fingerprint is its `h=`.
    key: RandomState,
    patterns: PatternSet,
    /// Every value ever indexed, by index (a value replaced by its file's change is dropped
    /// from the patterns; its entry here stays, a name and a fingerprint).
    values: Vec<Value>,
    files: Vec<WatchedFile>,
    streams: Streams,
}

/// What the recognizer knows of one value: never the value.
#[derive(Debug)]
struct Value {
    name: String,
    source: Source,
    sharing: Sharing,
    fingerprint: String,
    /// The index of the file it came from.
    file: usize,
}

/// A watched file: the stamps it was read at (a database's and its WAL's), and what it gave.
#[derive(Debug)]
struct WatchedFile {
    path: PathBuf,
    /// `None` to read it at the next refresh whatever its stamps: a database that was busy, or
    /// has more rows than one refresh reads.
    stamps: Option<(Stamp, Option<Stamp>)>,
    outcome: Outcome,
    /// Values left out, by name, and why.
    skipped: Vec<(String, &'static str)>,
}

#[derive(Debug)]
enum Outcome {
    /// Values read from the file.
    Values(usize),
    /// A database: tokens read so far, and the cursor; the last read's error, if it failed.
    Database { tokens: usize, cursor: TokenCursor, error: Option<String> },
    /// Nothing taken from it, and why.
    Skipped(&'static str),
}

/// A recognizer that knows no value (until the agent gives it the watched secrets').
impl Default for Recognizer {
    fn default() -> Self {
        Self::new(&RandomState::new(), &SecretCatalog::default())
    }
}

impl Recognizer {
    /// A recognizer keyed with `key` (redaction's), with the values of every file `catalog`
    /// watches now.
    pub fn new(key: &RandomState, catalog: &SecretCatalog) -> Self {
        let mut recognizer = Self {
            key: key.clone(),
            patterns: PatternSet::new(key),
            values: Vec::new(),
            files: Vec::new(),
            streams: Streams::default(),
        };
        recognizer.refresh(catalog, |_| true);
        recognizer
    }

    /// Reads again the watched files (and databases) whose stamp changed since they were read,
    /// among those `may_read` allows.
    pub fn refresh(&mut self, catalog: &SecretCatalog, may_read: impl Fn(&Path) -> bool) {
        for (_, secret) in catalog.iter() {
            // Labels (a trusted process's memory) have no file.
            if secret.id != FileId::default() && may_read(&secret.path) {
                self.refresh_file(&secret.path);
            }
        }
    }

    /// Scans the next `bytes` of `stream`: the values (and, for a tainted sender, the token
    /// shapes) found whole in the stream so far that end in these bytes.
    pub fn scan(&mut self, stream: &StreamKey, bytes: &[u8], scope: Scope) -> Vec<ContentMatch> {
        let found = self.streams.scan(stream, bytes, &self.patterns, scope == Scope::Tainted);
        let mut matches: Vec<ContentMatch> = Vec::new();
        for entry in found.forms {
            let value = &self.values[entry.value as usize];
            if scope == Scope::TrustedService && value.sharing == Sharing::HandedOut {
                continue;
            }
            // One match a secret and encoding: a key's lines are one key; database tokens, all
            // named after their table, are told apart by fingerprint.
            let token = matches!(value.source, Source::Database(_));
            let known = |m: &&ContentMatch| {
                m.secret == value.name
                    && m.encoding == entry.encoding
                    && (!token || m.fingerprint == value.fingerprint)
            };
            if !matches.iter().any(|m| known(&m)) {
                matches.push(ContentMatch {
                    secret: value.name.clone(),
                    source: value.source.clone(),
                    encoding: entry.encoding,
                    fingerprint: value.fingerprint.clone(),
                });
            }
        }
        for (kind, token) in &found.tokens {
            let fingerprint = fingerprint(&self.key, token);
            // A token the database gave is named by it already.
            if !matches.iter().any(|m| m.fingerprint == fingerprint && m.encoding == Encoding::Raw) {
                matches.push(ContentMatch {
                    secret: kind.name().to_owned(),
                    source: Source::TokenFormat,
                    encoding: Encoding::Raw,
                    fingerprint,
                });
            }
        }
        matches
    }

    /// Forgets every stream of `pid` (it exited).
    pub fn forget_process(&mut self, pid: u32) {
        self.streams.forget_process(pid);
    }

    /// For `sensor-started`: how many values by source, what was skipped and why.
    pub fn report(&self) -> RecognizerReport {
        let mut sources = Vec::new();
        let mut skipped = Vec::new();
        for file in &self.files {
            let path = file.path.display().to_string();
            match &file.outcome {
                Outcome::Values(values) => sources.push(SourceReport { path, kind: "file", values: *values }),
                Outcome::Database { tokens, error, .. } => {
                    if let Some(error) = error {
                        skipped.push(SkippedReport { name: path.clone(), reason: error.clone() });
                    }
                    sources.push(SourceReport { path, kind: "database", values: *tokens });
                }
                Outcome::Skipped(reason) => {
                    skipped.push(SkippedReport { name: path, reason: (*reason).to_owned() });
                }
            }
            skipped.extend(
                file.skipped
                    .iter()
                    .map(|(name, reason)| SkippedReport { name: name.clone(), reason: (*reason).to_owned() }),
            );
        }
        RecognizerReport {
            values: sources.iter().map(|s| s.values).sum(),
            forms: self.patterns.len(),
            min_value_bytes: ANCHOR,
            max_value_bytes: MAX_VALUE,
            sources,
            skipped,
            streams: self.streams.len(),
            max_streams: MAX_STREAMS,
            streams_evicted: self.streams.evicted,
        }
    }

    fn refresh_file(&mut self, path: &Path) {
        let Some(file_stamp) = stamp(path) else { return };
        let stamps = Some((file_stamp, stamp(&wal_of(path))));
        let index = match self.files.iter().position(|f| f.path == path) {
            Some(index) if self.files[index].stamps == stamps => return,
            Some(index) => index,
            None => {
                let outcome = Outcome::Values(0);
                self.files.push(WatchedFile { path: path.to_owned(), stamps, outcome, skipped: Vec::new() });
                self.files.len() - 1
            }
        };
        self.files[index].stamps = stamps;
        if let Outcome::Database { .. } = self.files[index].outcome {
            self.read_tokens(index);
            return;
        }
        self.patterns.retain(|value| self.values[value as usize].file != index);
        self.files[index].skipped.clear();
        if is_database(path) {
            self.files[index].outcome =
                Outcome::Database { tokens: 0, cursor: TokenCursor::default(), error: None };
            self.read_tokens(index);
            return;
        }
        if file_stamp.size > FILE_LIMIT {
            self.files[index].outcome = Outcome::Skipped("larger than the file limit");
            return;
        }
        let Ok(content) = read_secret(path, file_stamp.size) else {
            self.files[index].outcome = Outcome::Skipped("unreadable");
            return;
        };
        self.files[index].outcome = match values::of_file(path, &content) {
            Ok(found) => {
                let source = Source::File(path.to_owned());
                let added = found.into_iter().filter(|value| self.add(value, &source, index)).count();
                Outcome::Values(added)
            }
            Err(reason) => Outcome::Skipped(reason.as_str()),
        };
    }

    /// Reads the database file `index`'s new tokens.
    fn read_tokens(&mut self, index: usize) {
        if !self.has_token_room() {
            self.note_token_limit(index);
            return;
        }
        let path = self.files[index].path.clone();
        let Outcome::Database { cursor, .. } = &mut self.files[index].outcome else { return };
        let read = cursor.new_tokens(&path);
        if read.as_ref().is_err_and(database::is_busy) {
            self.files[index].stamps = None;
        }
        self.take_tokens(index, read.map_err(|err| format!("database not read: {err}")));
    }

    /// Whether more database tokens may be held (fewer than [`MAX_DATABASE_TOKENS`] are).
    pub fn has_token_room(&self) -> bool {
        let held: usize = self
            .files
            .iter()
            .map(|f| if let Outcome::Database { tokens, .. } = f.outcome { tokens } else { 0 })
            .sum();
        held < MAX_DATABASE_TOKENS
    }

    /// Takes in what a read of the Postgres database named `label` gave (its tokens, or why it
    /// failed): see [`PostgresTokens`](super::PostgresTokens), which reads it off the event loop.
    pub fn take_postgres_tokens(&mut self, label: &str, read: Option<Result<NewTokens, String>>) {
        let path = Path::new(label);
        let index = self.files.iter().position(|f| f.path == path).unwrap_or_else(|| {
            let outcome = Outcome::Database { tokens: 0, cursor: TokenCursor::default(), error: None };
            self.files.push(WatchedFile {
                path: path.to_owned(),
                stamps: None,
                outcome,
                skipped: Vec::new(),
            });
            self.files.len() - 1
        });
        match read {
            Some(read) => self.take_tokens(index, read),
            None => self.note_token_limit(index),
        }
    }

    fn note_token_limit(&mut self, index: usize) {
        if let Outcome::Database { error, .. } = &mut self.files[index].outcome {
            *error = Some(format!("token limit reached ({MAX_DATABASE_TOKENS})"));
        }
    }

    /// Indexes the tokens a read of database `index` gave, or notes why it failed.
    fn take_tokens(&mut self, index: usize, read: Result<NewTokens, String>) {
        let path = self.files[index].path.clone();
        let source = Source::Database(path.clone());
        let (added, error) = match read {
            Ok(NewTokens { tokens, more }) => {
                if more {
                    self.files[index].stamps = None;
                }
                let found = tokens.into_iter().map(|(table, token)| FoundValue {
                    name: format!("{} in {}", TABLES[table].1, path.display()),
                    bytes: zeroize::Zeroizing::new(token.as_bytes().to_vec()),
                    sharing: Sharing::HandedOut,
                });
                (found.filter(|value| self.add(value, &source, index)).count(), None)
            }
            Err(reason) => (0, Some(reason)),
        };
        if let Outcome::Database { tokens, error: last_error, .. } = &mut self.files[index].outcome {
            *tokens += added;
            *last_error = error;
        }
    }

    /// Indexes every form of `value` (from file `file`); `false` if it is left out, noted.
    fn add(&mut self, value: &FoundValue, source: &Source, file: usize) -> bool {
        let reason = if value.bytes.len() < ANCHOR {
            Some("shorter than the minimum")
        } else if value.bytes.len() > MAX_VALUE {
            Some("longer than the maximum")
        } else if distinct_bytes(&value.bytes) < MIN_DISTINCT_BYTES {
            Some("too few distinct bytes")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.files[file].skipped.push((value.name.clone(), reason));
            return false;
        }
        let Ok(id) = u32::try_from(self.values.len()) else { return false };
        for (encoding, form) in encodings::forms(&value.bytes) {
            self.patterns.insert(&form, id, encoding);
        }
        self.values.push(Value {
            name: value.name.clone(),
            source: source.clone(),
            sharing: value.sharing,
            fingerprint: fingerprint(&self.key, &value.bytes),
            file,
        });
        true
    }
}

/// Whether the file at `path` is a `SQLite` database (whatever its size: its header tells).
fn is_database(path: &Path) -> bool {
    let mut header = [0u8; SQLITE_HEADER.len()];
    File::open(path).and_then(|mut file| file.read_exact(&mut header)).is_ok() && header == SQLITE_HEADER
}

/// The WAL beside an `SQLite` database (where its newest rows are).
fn wal_of(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// `vigie.recognizer` in `sensor-started`: what content recognition knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecognizerReport {
    pub values: usize,
    pub forms: usize,
    pub min_value_bytes: usize,
    pub max_value_bytes: usize,
    pub sources: Vec<SourceReport>,
    pub skipped: Vec<SkippedReport>,
    pub streams: usize,
    pub max_streams: usize,
    pub streams_evicted: u64,
}

/// How many values one file or database gave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceReport {
    pub path: String,
    pub kind: &'static str,
    pub values: usize,
}

/// A file or value left out (by its path or name), and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedReport {
    pub name: String,
    pub reason: String,
}
