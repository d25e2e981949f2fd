//! The stores the agent watches: the homeserver's Postgres databases, each a secret of the
//! catalog ("homeserver database") whose server's processes the kernel is told of. Looked for
//! at start, then again every few ticks in the background, so that a server started or
//! restarted later is found.

use crate::{
    background::Background,
    config::synapse_database::{DatabaseStore, STORE_NAME},
    format::ecs::StoreReport,
    kernel::Sensor,
    state::secret_catalog::SecretCatalog,
    store_servers::Found,
};

/// One store, with what was last found of its server.
#[derive(Debug)]
struct Watched {
    store: DatabaseStore,
    /// Its catalog label.
    name: String,
    secret_id: u32,
    found: Found,
}

/// Every configured store.
#[derive(Debug)]
pub struct Stores {
    watched: Vec<Watched>,
    /// The look in flight; the agent hands its result to [`Stores::found`].
    pub look: Background<Vec<Found>>,
    ns_per_tick: u64,
}

impl Stores {
    /// A label in `catalog` for each of `configured` (`ns_per_tick`: the `/proc` clock).
    pub fn new(configured: &[DatabaseStore], catalog: &mut SecretCatalog, ns_per_tick: u64) -> Self {
        let watched = configured
            .iter()
            .map(|store| {
                let name = if store.setting == "database" {
                    STORE_NAME.to_owned()
                } else {
                    format!("{STORE_NAME} ({})", store.setting)
                };
                let secret_id = catalog.add_store(name.clone());
                Watched { store: store.clone(), name, secret_id, found: Found::default() }
            })
            .collect();
        Self { watched, look: Background::default(), ns_per_tick }
    }

    /// Looks for every store's server now (at start, before `sensor-started` reports them);
    /// returns how many kernel updates failed.
    pub fn look_now(&mut self, sensor: &mut Sensor) -> u64 {
        let looks = self.watched.iter().map(|w| Found::look(&w.store.endpoint, self.ns_per_tick)).collect();
        self.found(looks, sensor)
    }

    /// Starts a look in the background, unless one runs: a server still listening where it
    /// was is not looked for again (the kernel follows its forks).
    pub fn start_look(&mut self) {
        if self.watched.is_empty() {
            return;
        }
        let known: Vec<_> =
            self.watched.iter().map(|w| (w.store.endpoint.clone(), w.found.clone())).collect();
        let ns_per_tick = self.ns_per_tick;
        self.look.start(move || {
            known
                .into_iter()
                .map(|(endpoint, found)| {
                    if found.still_listening(&endpoint, ns_per_tick) {
                        found
                    } else {
                        Found::look(&endpoint, ns_per_tick)
                    }
                })
                .collect()
        });
    }

    /// Takes in a look's result (one [`Found`] per store, in order) and tells the kernel of
    /// servers found anew; returns how many kernel updates failed (counted, never fatal).
    pub fn found(&mut self, looks: Vec<Found>, sensor: &mut Sensor) -> u64 {
        let mut failed = 0;
        for (watched, found) in self.watched.iter_mut().zip(looks) {
            if found == watched.found {
                continue;
            }
            if sensor.serve_store(watched.secret_id, &found.servers).is_err() {
                failed += 1;
            }
            watched.found = found;
        }
        failed
    }

    /// `vigie.stores` of `sensor-started`.
    pub fn report(&self) -> Vec<StoreReport> {
        self.watched
            .iter()
            .map(|w| StoreReport {
                name: w.name.clone(),
                endpoint: w.store.endpoint.to_string(),
                database: w.store.dbname.clone(),
                server_pids: w.found.servers.iter().map(|s| s.pid).collect(),
                reason: w.found.reason.clone(),
            })
            .collect()
    }
}
