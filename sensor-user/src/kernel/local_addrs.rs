//! The kernel's copy of this host's interface addresses (`LOCAL_ADDRS`): the socket
//! followers treat a peer at one of them as a local channel, as they do loopback. Owned by
//! the thread that follows address changes ([`crate::local_addresses`]).

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv6Addr},
};

use aya::maps::{HashMap, Map, MapData};
use sensor_common::map_name;

use crate::error::Error;

/// `LOCAL_ADDRS`, taken out of the loaded object.
pub struct KernelLocalAddresses {
    map: HashMap<MapData, [u8; 16], u8>,
}

impl KernelLocalAddresses {
    pub(super) fn new(map: Option<Map>) -> Result<Self, Error> {
        let error = |source| Error::Map { map: map_name::LOCAL_ADDRS, source };
        let map = map.ok_or_else(|| {
            error(aya::maps::MapError::InvalidName { name: map_name::LOCAL_ADDRS.to_owned() })
        })?;
        Ok(Self { map: HashMap::try_from(map).map_err(error)? })
    }

    /// Makes the kernel's set `addresses`, IPv4 as IPv4-mapped IPv6 (as sockets hold them).
    pub fn sync(&mut self, addresses: &HashSet<IpAddr>) -> Result<(), Error> {
        let error = |source| Error::Map { map: map_name::LOCAL_ADDRS, source };
        let wanted: HashSet<[u8; 16]> = addresses
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => *v6,
            })
            .map(|ip: Ipv6Addr| ip.octets())
            .collect();
        let present: HashSet<[u8; 16]> = self.map.keys().filter_map(Result::ok).collect();
        for gone in present.difference(&wanted) {
            self.map.remove(gone).map_err(error)?;
        }
        for new in wanted.difference(&present) {
            self.map.insert(new, 1, 0).map_err(error)?;
        }
        Ok(())
    }
}
