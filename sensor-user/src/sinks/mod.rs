//! Where documents go: the output and every configured sink, fanned out by
//! [`output::Output`]. Local lines (stdout, files) are written on the event loop; each network
//! sink runs on its own thread behind a bounded queue ([`remote`]), so none can hold up
//! detection.

pub mod file;
pub mod matrix;
pub mod outgoing;
pub mod output;
pub mod remote;
pub mod spool;
pub mod syslog;
pub mod webhook;

use std::{io, time::Duration};

use serde::Serialize;

/// A sink's counters since start: what `sensor-stopped` reports and metrics can read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// The sink, as documents name it (`stdout`, a path, a URL).
    pub name: String,
    /// Documents it took.
    pub delivered: u64,
    /// Failed attempts, each retried after a backoff.
    pub retries: u64,
    /// Documents dropped undelivered: the oldest, from a full queue or spool.
    pub dropped: u64,
    /// Documents waiting now.
    pub queued: u64,
}

/// Why a network sink could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A socket or spool file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The HTTP request failed (connect, TLS, timeout).
    #[error("{0}")]
    Http(#[from] ureq::Error),
    /// The collector answered with an error status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The server said to come back later (HTTP 429 with a delay: Matrix's `retry_after_ms`).
    #[error("HTTP status 429, rate limited for {} ms", .0.as_millis())]
    RateLimited(Duration),
}

impl SinkError {
    /// How long the server asked to be left alone, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(wait) => Some(*wait),
            _ => None,
        }
    }
}

/// First wait before a failed sink is tried again; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The wait before the next try of a failing sink, doubling at each failure.
#[derive(Debug, Clone, Copy)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(FIRST_BACKOFF)
    }
}

impl Backoff {
    /// The wait after one more failure.
    pub fn failed(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }

    /// Back to the first wait: the sink works.
    pub fn reset(&mut self) {
        self.0 = FIRST_BACKOFF;
    }
}
