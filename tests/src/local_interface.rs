//! An interface of this host that the test owns: a veth pair, both ends in the root namespace
//! (this kernel may lack the dummy link type), whose addresses are this host's own, as a
//! server's public address would be. Dropping it deletes the pair and every address on it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU16, Ordering};

use anyhow::{ensure, Result};

use crate::netns::ip;

static NEXT_ID: AtomicU16 = AtomicU16::new(0);

/// A veth `vlcPID-N` (peer `vlcPID-Np`), up, with the addresses the test put on it.
#[derive(Debug)]
pub struct LocalInterface {
    name: String,
    id: u16,
}

impl LocalInterface {
    /// Creates the interface, without any address yet (deleting one end deletes both).
    ///
    /// # Errors
    /// When not root or `ip` fails.
    pub fn create() -> Result<Self> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let name = format!("vlc{}-{id}", std::process::id());
        let peer = format!("{name}p");
        ensure!(peer.len() <= 15, "interface name {peer} is too long");
        ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer])?;
        let interface = Self { name, id };
        ip(&["link", "set", &interface.name, "up"])?;
        Ok(interface)
    }

    /// An IPv4 address of 10.214.0.0/16 for this interface (not added yet), unique among this
    /// process's interfaces.
    #[must_use]
    pub fn ipv4(&self) -> IpAddr {
        let [pid_low, ..] = std::process::id().to_le_bytes();
        let [id_high, id_low] = self.id.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(10, 214, id_low.wrapping_add(id_high), pid_low.max(1)))
    }

    /// An IPv6 address of `fd00:5648::/32` for this interface (not added yet).
    #[must_use]
    pub fn ipv6(&self) -> IpAddr {
        let pid = std::process::id();
        let (high, low) = ((pid >> 16) as u16, (pid & 0xffff) as u16);
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x5648, high, low, self.id, 0, 0, 1))
    }

    /// Puts `address` on the interface (a host route of its own, no duplicate detection).
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn add(&self, address: IpAddr) -> Result<()> {
        match address {
            IpAddr::V4(_) => ip(&["addr", "add", &format!("{address}/32"), "dev", &self.name]),
            IpAddr::V6(_) => {
                ip(&["-6", "addr", "add", &format!("{address}/128"), "dev", &self.name, "nodad"])
            }
        }
    }
}

impl Drop for LocalInterface {
    fn drop(&mut self) {
        if let Err(error) = ip(&["link", "delete", &self.name]) {
            eprintln!("cleanup of {}: {error:#}", self.name);
        }
    }
}
