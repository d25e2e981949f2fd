//! This host's own addresses: a connection to one of them never leaves the machine.
//!
//! The set is read with `getifaddrs` at start and read again by a thread of its own whenever
//! the kernel announces an address change (rtnetlink `RTMGRP_IPV4_IFADDR`/`RTMGRP_IPV6_IFADDR`),
//! so the event loop only ever takes a read lock; each new set is also handed to a callback
//! (the kernel's copy, for its socket followers). Loopback, the unspecified addresses (a
//! connect to `0.0.0.0` reaches this host) and IPv4-mapped forms of all of them are local too.

use std::{
    collections::HashSet,
    io,
    mem::{size_of, zeroed},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{Arc, PoisonError, RwLock},
    thread,
    time::Duration,
};

/// How often the set is read again when no rtnetlink socket could be had.
const POLL: Duration = Duration::from_secs(1);

/// A shared, live view of the host's interface addresses.
#[derive(Debug, Clone, Default)]
pub struct LocalAddresses {
    addresses: Arc<RwLock<HashSet<IpAddr>>>,
}

impl LocalAddresses {
    /// Reads the addresses now and keeps them up to date from a background thread, calling
    /// `changed` with every new set (the first one included, before this returns).
    pub fn watch(mut changed: impl FnMut(&HashSet<IpAddr>) + Send + 'static) -> io::Result<Self> {
        // Subscribed before the first read: no change falls between the two.
        let changes = subscribe();
        let local = Self::default();
        let first = interface_addresses()?;
        changed(&first);
        local.replace(first);
        let shared = local.clone();
        thread::Builder::new()
            .name("local-addresses".to_owned())
            .spawn(move || shared.follow(changes.ok().as_ref(), changed))?;
        Ok(local)
    }

    /// Whether a connection to `ip` stays on this host.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_loopback()
            || ip.is_unspecified()
            || self.addresses.read().unwrap_or_else(PoisonError::into_inner).contains(&ip)
    }

    /// How many interface addresses are known (loopback's included).
    pub fn len(&self) -> usize {
        self.addresses.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn replace(&self, addresses: HashSet<IpAddr>) {
        *self.addresses.write().unwrap_or_else(PoisonError::into_inner) = addresses;
    }

    /// Reads the set again after every announced change, or every [`POLL`] without a socket.
    fn follow(&self, changes: Option<&OwnedFd>, mut changed: impl FnMut(&HashSet<IpAddr>)) {
        let mut buffer = [0u8; 8192];
        loop {
            match changes {
                // An overrun (ENOBUFS) also means something changed: read the set again.
                Some(socket) => {
                    // SAFETY: receives into a buffer of its stated length on our own socket.
                    let _ = unsafe {
                        libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0)
                    };
                }
                None => thread::sleep(POLL),
            }
            if let Ok(addresses) = interface_addresses() {
                changed(&addresses);
                self.replace(addresses);
            }
        }
    }
}

/// IPv4-mapped IPv6 as IPv4, everything else as it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_canonical(),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// An rtnetlink socket subscribed to address changes of both families.
fn subscribe() -> io::Result<OwnedFd> {
    // SAFETY: plain socket call; the descriptor is owned at once.
    let fd =
        unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter are set below.
    let mut addr: libc::sockaddr_nl = unsafe { zeroed() };
    addr.nl_family = u16::try_from(libc::AF_NETLINK).unwrap_or_default();
    addr.nl_groups = u32::try_from(libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR).unwrap_or_default();
    let len = u32::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or_default();
    // SAFETY: binds our socket to an address of the stated length.
    if unsafe { libc::bind(socket.as_raw_fd(), (&raw const addr).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Every address of every interface, from `getifaddrs`.
fn interface_addresses() -> io::Result<HashSet<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&raw mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addresses = HashSet::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs returned, not yet freed.
        let node = unsafe { &*entry };
        // SAFETY: a non-null ifa_addr points to a sockaddr of the family it names.
        if let Some(ip) = unsafe { node.ifa_addr.as_ref() }.and_then(|sa| unsafe { ip_of(sa) }) {
            addresses.insert(canonical(ip));
        }
        entry = node.ifa_next;
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(addresses)
}

/// The IP address in `sa`, if it is an INET or INET6 one.
///
/// # Safety
/// `sa` must be the head of a socket address as long as its family requires.
#[expect(
    clippy::cast_ptr_alignment,
    reason = "getifaddrs allocates every address as a whole sockaddr of its family"
)]
unsafe fn ip_of(sa: &libc::sockaddr) -> Option<IpAddr> {
    match i32::from(sa.sa_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*std::ptr::from_ref(sa).cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*std::ptr::from_ref(sa).cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(addresses: &[&str]) -> LocalAddresses {
        let local = LocalAddresses::default();
        local.replace(addresses.iter().map(|a| a.parse().unwrap()).collect());
        local
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn interface_addresses_their_mapped_forms_loopback_and_unspecified_are_local() {
        let local = with(&["10.1.2.3", "fd00:1::5"]);
        for address in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "fd00:1::5",
            "127.0.0.1",
            "127.9.8.7",
            "::ffff:127.0.0.5",
            "::1",
            "0.0.0.0",
            "::",
        ] {
            assert!(local.contains(ip(address)), "{address}");
        }
        for address in ["10.1.2.4", "::ffff:10.1.2.4", "fd00:1::6", "::2", "::ffff:0.0.0.1"] {
            assert!(!local.contains(ip(address)), "{address}");
        }
        assert_eq!(local.len(), 2);
    }

    #[test]
    fn this_hosts_addresses_include_loopback() {
        let addresses = interface_addresses().unwrap();
        assert!(addresses.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{addresses:?}");
    }

    #[test]
    fn the_set_is_replaced_whole() {
        let local = with(&["10.1.2.3"]);
        local.replace(HashSet::from([ip("10.9.9.9")]));
        assert!(!local.contains(ip("10.1.2.3")));
        assert!(local.contains(ip("10.9.9.9")));
    }
}
