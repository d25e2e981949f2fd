//! The token tables of the stores (the homeserver's Postgres databases), read on a blocking
//! thread every few ticks, with the homeserver's credentials; what a read gives is taken into
//! the recognizer on the event loop, in order with everything else.

use crate::{
    background::Background,
    config::synapse_database::DatabaseStore,
    content::{NewTokens, PostgresTokens, Recognizer},
};

/// One read of every database: each with its cursor moved on, and what it gave.
type Reads = Vec<(PostgresTokens, Result<NewTokens, String>)>;

/// Every store's token tables.
#[derive(Debug)]
pub struct StoreTokens {
    databases: Vec<PostgresTokens>,
    /// The read in flight; the agent hands its result to [`StoreTokens::take`].
    pub read: Background<Reads>,
    /// A table had more rows than one read takes: the next tick reads on.
    more: bool,
}

impl StoreTokens {
    /// The token tables of `stores`, none read yet.
    pub fn new(stores: &[DatabaseStore]) -> Self {
        Self {
            databases: stores.iter().map(PostgresTokens::new).collect(),
            read: Background::default(),
            more: false,
        }
    }

    /// Reads every database once and waits for it (at start, before `sensor-started` reports
    /// the recognizer's sources).
    pub async fn read_now(&mut self, recognizer: &mut Recognizer) {
        if self.start(recognizer, true) {
            let reads = self.read.finished().await;
            self.take(reads, recognizer);
        }
    }

    /// Starts a read in the background if one is `due` (or the last one left rows unread) and
    /// none runs; true if it was started. Past the recognizer's token limit, nothing is read
    /// and each database says so.
    pub fn start(&mut self, recognizer: &mut Recognizer, due: bool) -> bool {
        if self.databases.is_empty() || !(due || self.more) {
            return false;
        }
        if !recognizer.has_token_room() {
            for database in &self.databases {
                recognizer.take_postgres_tokens(&database.label, None);
            }
            return false;
        }
        let databases = self.databases.clone();
        self.read.start(move || {
            databases
                .into_iter()
                .map(|mut database| {
                    let read = database.new_tokens();
                    (database, read)
                })
                .collect()
        })
    }

    /// Takes in a read's result: the cursors move on, the tokens go to `recognizer`.
    pub fn take(&mut self, reads: Reads, recognizer: &mut Recognizer) {
        self.more = false;
        for (database, read) in reads {
            self.more |= read.as_ref().is_ok_and(|new| new.more);
            recognizer.take_postgres_tokens(&database.label, Some(read));
            if let Some(known) = self.databases.iter_mut().find(|known| known.label == database.label) {
                *known = database;
            }
        }
    }
}
