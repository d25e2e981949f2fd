//! The journal's own thread: documents arrive through a bounded channel and are written in
//! batches, one transaction each (whatever waited while the last one was written); retention
//! and the size cap are enforced between batches, once a minute. Nothing here can hold up the
//! event loop: the loop only ever tries to send.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, RecvTimeoutError},
        Mutex, PoisonError,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rusqlite::{params, Connection, TransactionBehavior};

use super::{
    entry::{Entry, EntryError},
    retention::{self, Limits},
};
use crate::format::ecs::timestamp;

/// The most messages written in one transaction.
const BATCH_LIMIT: usize = 512;
/// How often retention and the size cap are enforced.
const UPKEEP_EVERY: Duration = Duration::from_mins(1);

/// What the agent hands the journal.
pub enum Message {
    /// A document's line, as the output got it.
    Document(Vec<u8>),
    /// A sink delivered the document `event_id`.
    Delivered { event_id: String, sink: String, at_ns: u64 },
    /// Write what is queued, then end.
    Stop,
}

/// What went wrong, counted where the agent can read it.
#[derive(Debug, Default)]
pub struct Health {
    /// Documents dropped because the channel was full (or the thread gone).
    pub dropped: AtomicU64,
    /// Documents or deliveries whose write failed.
    pub failed: AtomicU64,
    /// The last write error.
    pub error: Mutex<String>,
}

impl Health {
    fn failed(&self, count: usize, error: &dyn std::fmt::Display) {
        self.failed.fetch_add(u64::try_from(count).unwrap_or(u64::MAX), Ordering::Relaxed);
        *self.error.lock().unwrap_or_else(PoisonError::into_inner) = error.to_string();
    }
}

/// Writes what arrives on `receiver` until [`Message::Stop`] (or every sender is gone).
pub fn run(mut conn: Connection, receiver: &Receiver<Message>, health: &Health, limits: Limits) {
    let mut upkeep_at = Instant::now();
    loop {
        let wait = upkeep_at.saturating_duration_since(Instant::now());
        let mut batch = match receiver.recv_timeout(wait) {
            Ok(message) => vec![message],
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        batch.extend(receiver.try_iter().take(BATCH_LIMIT));
        let stop = batch.iter().any(|m| matches!(m, Message::Stop));
        write(&mut conn, &batch, health);
        if Instant::now() >= upkeep_at {
            if let Err(error) = retention::enforce(&conn, limits, now_ns()) {
                health.failed(0, &error);
            }
            upkeep_at = Instant::now() + UPKEEP_EVERY;
        }
        if stop {
            return;
        }
    }
}

/// One transaction for the whole batch, taken at once (`BEGIN IMMEDIATE`: a lock held by
/// someone else is waited for once a batch, not once a document). A document the journal does
/// not understand is counted and the rest kept; a database error (full, locked, I/O) counts
/// the whole batch, which is rolled back.
fn write(conn: &mut Connection, batch: &[Message], health: &Health) {
    let count = batch.iter().filter(|m| !matches!(m, Message::Stop)).count();
    if count == 0 {
        return;
    }
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => return health.failed(count, &error),
    };
    for message in batch {
        let written = match message {
            Message::Document(line) => Entry::parse(line).and_then(|entry| entry.insert(&tx, line)),
            Message::Delivered { event_id, sink, at_ns } => delivered(&tx, event_id, sink, *at_ns),
            Message::Stop => Ok(()),
        };
        match written {
            Err(EntryError::Sql(error)) => return health.failed(count, &error),
            Err(error) => health.failed(1, &error),
            Ok(()) => {}
        }
    }
    if let Err(error) = tx.commit() {
        health.failed(count, &error);
    }
}

pub(super) fn delivered(
    tx: &rusqlite::Transaction<'_>,
    event_id: &str,
    sink: &str,
    at_ns: u64,
) -> Result<(), EntryError> {
    tx.execute(
        "INSERT INTO deliveries (event_id, sink, state, at, at_ns) VALUES (?1, ?2, 'delivered', ?3, ?4)
         ON CONFLICT (event_id, sink) DO UPDATE SET state = excluded.state, at = excluded.at, at_ns = excluded.at_ns",
        params![event_id, sink, timestamp(at_ns), i64::try_from(at_ns).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}
