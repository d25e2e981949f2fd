//! Recognising secret values in outbound bytes: the content a tainted process or a trusted
//! service sends is scanned for the values of the watched secrets (in the encodings an
//! attacker would wrap them in) and for tokens recognised by their structure alone.
//!
//! - [`values`]: what each watched file holds (config secrets, key seeds and bodies, `.env`
//!   and cloud credentials); [`database`]: the homeserver's access and refresh tokens in its
//!   `SQLite` file, [`postgres_tokens`]: in its Postgres database.
//! - [`encodings`]: every form a value takes in traffic; [`patterns`]: the index of those
//!   forms, which holds keyed hashes and no value; [`streams`]: per-stream tails, so values
//!   split across sends are found; [`token_shapes`]: Synapse and MAS tokens by checksum.
//! - [`Recognizer`] ties them together: built from the secret catalog, refreshed on the
//!   agent's tick, asked to [`Recognizer::scan`] each stream's next bytes.
//!
//! No value is kept once its forms are hashed; file contents, tokens read from the database
//! and stream tails live in buffers zeroed when dropped, and no `Debug` shows any of them.

mod database;
pub mod encodings;
mod patterns;
mod postgres_tokens;
mod recognizer;
mod streams;
mod token_shapes;
mod values;

use std::path::PathBuf;

pub use database::NewTokens;
pub use encodings::Encoding;
pub use postgres_tokens::PostgresTokens;
pub use recognizer::{Recognizer, RecognizerReport};

/// Which outbound stream bytes belong to: one TCP connection or UDP destination of one
/// process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub pid: u32,
    pub destination: std::net::SocketAddr,
}

/// Which values count in a sender's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A tainted process: every value and every token.
    Tainted,
    /// A trusted service (the homeserver): only the secrets it keeps to itself, not the
    /// tokens it hands its clients at login nor the credentials it presents to its peers.
    TrustedService,
}

/// Where a matched value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A watched file.
    File(PathBuf),
    /// A homeserver's database: its `SQLite` file, or its Postgres database's label
    /// (`postgresql:ENDPOINT/DBNAME`).
    Database(PathBuf),
    /// Nowhere: a token recognised by its checksum.
    TokenFormat,
}

/// A secret found in a stream: its name, where it came from, how it was written and its
/// keyed fingerprint (`h=` of redaction, with the same key), never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentMatch {
    /// "`registration_shared_secret` of /etc/matrix-synapse/homeserver.yaml",
    /// "access token (syt_ checksum)".
    pub secret: String,
    pub source: Source,
    pub encoding: Encoding,
    pub fingerprint: String,
}

#[cfg(test)]
mod tests;
