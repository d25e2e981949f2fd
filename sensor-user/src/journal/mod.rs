//! The journal: every document the agent writes, kept in `SQLite` so that `vigie history` and
//! `vigie explain` can answer weeks later what touched a secret and what left.
//!
//! The event loop hands each document's line to a [`Feed`], which only tries to send it on a
//! bounded channel; the journal's thread writes batches in transactions (WAL,
//! `synchronous=NORMAL`: a crash loses at most the last batches, never the database). A full
//! channel or a failed write is counted, for the agent to report (`journal-degraded`), and
//! never blocks detection. `docs/JOURNAL.md` describes the tables.

mod entry;
pub mod queries;
mod retention;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::{
    fs::{self, DirBuilder, OpenOptions},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::Ordering,
        mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc, PoisonError,
    },
    thread::{self, JoinHandle},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rusqlite::{Connection, OpenFlags};

pub use writer::now_ns;

use crate::{
    config::journal::JournalSettings,
    format::ecs::{self, Document, JournalHealth},
};
use retention::Limits;
use writer::{Health, Message};

/// Documents that may wait for the journal's thread; past this they are dropped and counted.
const CHANNEL_CAPACITY: usize = 8192;
/// How long a write waits for a lock someone else holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the agent, stopping, waits for the journal to write what is queued.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the journal could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal's directory or file could not be created.
    #[error("journal {path}: {source}{}", unless_permitted(source))]
    Create { path: PathBuf, source: std::io::Error },
    /// `SQLite` could not open the file, or set it up.
    #[error("journal {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    /// There is no journal at the path given.
    #[error("journal {path} does not exist (is vigie run keeping one there? see --journal)")]
    Missing { path: PathBuf },
    /// The file is an `SQLite` database but no journal.
    #[error("{path} is not a vigie journal (it has no schema_migrations table)")]
    NotAJournal { path: PathBuf },
    /// The journal was written by a newer agent.
    #[error("the journal's schema is version {found}; this vigie knows up to {known}")]
    NewerSchema { found: u32, known: u32 },
    /// The journal's thread could not be started.
    #[error("starting the journal's thread: {0}")]
    Thread(std::io::Error),
    /// A query failed.
    #[error("reading the journal: {0}")]
    Sql(#[from] rusqlite::Error),
    /// `vigie explain` was given an id no alert of the journal has.
    #[error("no alert with event.id {id} in journal {path}")]
    UnknownEvent { id: String, path: PathBuf },
}

/// What to do about a journal the agent may not create.
fn unless_permitted(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        " (run vigie as root, give --journal a path it may write, or --no-journal)"
    } else {
        ""
    }
}

/// The journal the agent writes: a thread, fed through [`Feed`]s. Dropping it writes what is
/// queued and waits for the thread.
pub struct Journal {
    path: Option<PathBuf>,
    feed: Feed,
    writer: Option<Writer>,
    /// Drops and failures already reported.
    reported: (u64, u64),
}

/// The journal's thread, and the channel that closes when it is done.
struct Writer {
    thread: JoinHandle<()>,
    done: Receiver<()>,
}

/// Where documents enter the journal; cheap to clone, never blocks.
#[derive(Clone, Default)]
pub struct Feed {
    sender: Option<SyncSender<Message>>,
    health: Arc<Health>,
}

impl Journal {
    /// Opens (creating it, mode 0600, in a 0700 directory) and migrates the journal, and starts
    /// its thread; with no settings, a journal that keeps nothing.
    pub fn open(settings: Option<&JournalSettings>) -> Result<Self, JournalError> {
        let Some(settings) = settings else {
            return Ok(Self { path: None, feed: Feed::default(), writer: None, reported: (0, 0) });
        };
        let path = settings.path.clone();
        let conn = open_for_writing(&path)?;
        let limits = Limits {
            retention_ns: i64::try_from(settings.retention.as_nanos()).unwrap_or(i64::MAX),
            max_bytes: settings.max_bytes,
        };
        let (sender, receiver) = sync_channel(CHANNEL_CAPACITY);
        let health = Arc::new(Health::default());
        let shared = Arc::clone(&health);
        let (finished, done) = sync_channel(0);
        let thread = thread::Builder::new()
            .name("vigie-journal".to_owned())
            .spawn(move || {
                writer::run(conn, &receiver, &shared, limits);
                drop(finished);
            })
            .map_err(JournalError::Thread)?;
        let writer = Writer { thread, done };
        Ok(Self {
            path: Some(path),
            feed: Feed { sender: Some(sender), health },
            writer: Some(writer),
            reported: (0, 0),
        })
    }

    /// A feed for the output, which hands it every document it writes.
    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }

    /// Documents dropped (the channel was full) and writes failed, since start.
    pub fn losses(&self) -> (u64, u64) {
        let health = &self.feed.health;
        (health.dropped.load(Ordering::Relaxed), health.failed.load(Ordering::Relaxed))
    }

    /// `vigie.journal` of a `journal-degraded` document, when documents were dropped or writes
    /// failed since the last report.
    pub fn take_news(&mut self) -> Option<JournalHealth> {
        let (dropped, failed) = self.losses();
        if (dropped, failed) == self.reported {
            return None;
        }
        let health = JournalHealth {
            path: self.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            documents_dropped: dropped - self.reported.0,
            writes_failed: failed - self.reported.1,
            error: self.feed.health.error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        };
        self.reported = (dropped, failed);
        Some(health)
    }
}

impl Drop for Journal {
    /// Lets the thread write what is queued, for [`STOP_GRACE`] at most: a journal stuck on a
    /// lock or a dead disk must not keep the agent from stopping (what is committed stays).
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else { return };
        if let Some(sender) = self.feed.sender.take() {
            // Full, the queue is behind: the grace period is all it gets.
            let _ = sender.try_send(Message::Stop);
        }
        match writer.done.recv_timeout(STOP_GRACE) {
            Err(RecvTimeoutError::Timeout) => {
                eprintln!("vigie: the journal did not finish writing within {STOP_GRACE:?}; what it had queued is lost");
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => drop(writer.thread.join()),
        }
    }
}

impl Feed {
    /// Hands the journal `document`, whose line (as the output got it) is `line`. Its own
    /// `journal-degraded` reports are not journaled: a failing journal would report itself
    /// failing to journal the report, forever.
    pub fn record(&self, document: &Document, line: &[u8]) {
        if document.event.class.action != ecs::JOURNAL_DEGRADED.action {
            self.send(Message::Document(line.to_vec()));
        }
    }

    /// Records that `sink` delivered the document `event_id` (for `vigie explain`).
    pub fn delivered(&self, event_id: &str, sink: &str) {
        let at_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let at_ns = u64::try_from(at_ns).unwrap_or(u64::MAX);
        self.send(Message::Delivered { event_id: event_id.to_owned(), sink: sink.to_owned(), at_ns });
    }

    fn send(&self, message: Message) {
        let Some(sender) = &self.sender else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sender.try_send(message) {
            self.health.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Opens the journal at `path` for the agent, creating what is missing.
fn open_for_writing(path: &Path) -> Result<Connection, JournalError> {
    let created = |source| JournalError::Create { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(created)?;
    }
    // Created by us first, so that SQLite (and its -wal and -shm files, which copy the
    // database's mode) never make it readable by others.
    OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(created)?;
    let opened = |source| JournalError::Open { path: path.to_owned(), source };
    let mut conn = Connection::open(path).map_err(opened)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(opened)?;
    // auto_vacuum only takes on a new database: before the first table.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
    )
    .map_err(opened)?;
    match schema::migrate(&mut conn) {
        Err(JournalError::Sql(source)) => Err(opened(source)),
        other => other.map(|()| conn),
    }
}

/// Opens the journal at `path` read-only, for the commands that query it while the agent
/// writes (WAL lets both go on).
pub fn open_read_only(path: &Path) -> Result<Connection, JournalError> {
    if fs::metadata(path).is_err() {
        return Err(JournalError::Missing { path: path.to_owned() });
    }
    let opened = |source| JournalError::Open { path: path.to_owned(), source };
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(opened)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(opened)?;
    match schema::version(&conn).map_err(|e| match e {
        JournalError::Sql(source) => opened(source),
        other => other,
    })? {
        None => Err(JournalError::NotAJournal { path: path.to_owned() }),
        Some(found) if found > schema::current_version() => {
            Err(JournalError::NewerSchema { found, known: schema::current_version() })
        }
        Some(_) => Ok(conn),
    }
}
