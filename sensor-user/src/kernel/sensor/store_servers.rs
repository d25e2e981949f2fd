//! The kernel's `STORE_SERVERS`: the processes of the stores' database servers, as the agent
//! found them (`crate::store_servers`); the kernel adds their forked children itself.

use sensor_common::{counter, map_name, StoreServer, START_TICK_NS};

use super::{hash_map_mut, map_error, Sensor};
use crate::{error::Error, store_servers::Server};

impl Sensor {
    /// Tells the kernel that `servers` serve the store whose label is `secret_id`, and opens
    /// the gate that makes socket deliveries look their sender up.
    pub fn serve_store(&mut self, secret_id: u32, servers: &[Server]) -> Result<(), Error> {
        if servers.is_empty() {
            return Ok(());
        }
        let mut map = hash_map_mut::<u32, StoreServer>(&mut self.ebpf, map_name::STORE_SERVERS)?;
        for server in servers {
            let value = StoreServer { secret_id, _pad: 0, start_tick: server.start_ns / START_TICK_NS };
            map.insert(server.pid, value, 0).map_err(map_error(map_name::STORE_SERVERS))?;
        }
        self.open_gate(counter::STORE_SERVERS)
    }
}
