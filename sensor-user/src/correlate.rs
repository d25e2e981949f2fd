//! The rule: a tainted process talking to a destination off this machine is an exfiltration,
//! reported once per (process, secret, destination); repeats are counted.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use ipnet::IpNet;
use sensor_common::{family, transport, ConnectEvent};

use crate::taint::Touch;

/// `network.transport` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A secret heading off the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exfiltration {
    pub touch: Touch,
    pub destination: SocketAddr,
    pub transport: Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AlertKey {
    pid: u32,
    start_ns: u64,
    secret_id: u32,
    destination: SocketAddr,
    transport: Transport,
}

/// Decides which connects are exfiltrations and remembers what was already reported.
#[derive(Debug)]
pub struct Correlator {
    trusted: Vec<IpNet>,
    reported: HashMap<AlertKey, u64>,
}

impl Correlator {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted, reported: HashMap::new() }
    }

    /// New exfiltrations revealed by `event`, from a process started at `start_ns` that
    /// `touches` reached. Trusted destinations and repeats yield nothing.
    pub fn connect(&mut self, event: &ConnectEvent, start_ns: u64, touches: &[Touch]) -> Vec<Exfiltration> {
        let Some((destination, transport)) = destination(event) else { return Vec::new() };
        if self.is_trusted(destination.ip()) {
            return Vec::new();
        }
        let mut fresh = Vec::new();
        for touch in touches {
            let key = AlertKey {
                pid: event.header.pid,
                start_ns,
                secret_id: touch.secret_id,
                destination,
                transport,
            };
            let count = self.reported.entry(key).or_insert(0);
            *count += 1;
            if *count == 1 {
                fresh.push(Exfiltration { touch: *touch, destination, transport });
            }
        }
        fresh
    }

    /// Connects that repeated an already reported exfiltration.
    pub fn repeats(&self) -> u64 {
        self.reported.values().map(|n| n - 1).sum()
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        ip.is_unspecified() || self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// The destination and transport of a connect record, IPv4-mapped IPv6 shown as IPv4.
pub fn destination(event: &ConnectEvent) -> Option<(SocketAddr, Transport)> {
    let ip = match event.family {
        family::INET => IpAddr::V4(Ipv4Addr::new(event.addr[0], event.addr[1], event.addr[2], event.addr[3])),
        family::INET6 => Ipv6Addr::from(event.addr).to_canonical(),
        _ => return None,
    };
    let transport = match event.transport {
        transport::TCP => Transport::Tcp,
        transport::UDP => Transport::Udp,
        _ => return None,
    };
    Some((SocketAddr::new(ip, event.port), transport))
}

#[cfg(test)]
mod tests {
    use sensor_common::{EventHeader, EventKind, Taint};

    use super::*;

    fn connect(pid: u32, addr: [u8; 16], fam: u16, proto: u8) -> ConnectEvent {
        ConnectEvent {
            header: EventHeader { kind: EventKind::Connect as u32, pid, uid: 0, _pad: 0, ktime_ns: 0 },
            taint: Taint::default(),
            family: fam,
            port: 443,
            transport: proto,
            _pad: [0; 3],
            addr,
        }
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&[a, b, c, d]);
        addr
    }

    fn loopback_trusted() -> Correlator {
        Correlator::new(vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()])
    }

    const TOUCH: Touch = Touch { secret_id: 0, origin_pid: 7 };

    #[test]
    fn an_off_host_destination_alerts_once_and_counts_repeats() {
        let mut correlator = loopback_trusted();
        let event = connect(7, v4(10, 213, 1, 2), family::INET, transport::TCP);
        let first = correlator.connect(&event, 1, &[TOUCH]);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].destination, "10.213.1.2:443".parse().unwrap());
        assert_eq!(first[0].transport, Transport::Tcp);
        assert!(correlator.connect(&event, 1, &[TOUCH]).is_empty());
        assert_eq!(correlator.repeats(), 1);
    }

    #[test]
    fn each_secret_and_each_destination_is_its_own_alert() {
        let mut correlator = loopback_trusted();
        let two = [TOUCH, Touch { secret_id: 1, origin_pid: 7 }];
        assert_eq!(
            correlator.connect(&connect(7, v4(10, 0, 0, 1), family::INET, transport::TCP), 1, &two).len(),
            2
        );
        assert_eq!(
            correlator.connect(&connect(7, v4(10, 0, 0, 1), family::INET, transport::UDP), 1, &two).len(),
            2
        );
        assert_eq!(
            correlator.connect(&connect(7, v4(10, 0, 0, 2), family::INET, transport::TCP), 1, &[TOUCH]).len(),
            1
        );
    }

    #[test]
    fn a_reused_pid_is_a_new_process() {
        let mut correlator = loopback_trusted();
        let event = connect(7, v4(10, 0, 0, 1), family::INET, transport::TCP);
        assert_eq!(correlator.connect(&event, 1, &[TOUCH]).len(), 1);
        assert_eq!(correlator.connect(&event, 2, &[TOUCH]).len(), 1);
    }

    #[test]
    fn loopback_unspecified_and_trusted_nets_are_silent() {
        let mut correlator = loopback_trusted();
        correlator.trusted.push("10.0.0.0/8".parse().unwrap());
        let mut mapped_loopback = [0u8; 16];
        mapped_loopback[10..].copy_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
        for (addr, fam) in [
            (v4(127, 0, 0, 1), family::INET),
            (v4(0, 0, 0, 0), family::INET),
            (v4(10, 9, 9, 9), family::INET),
            (Ipv6Addr::LOCALHOST.octets(), family::INET6),
            (mapped_loopback, family::INET6),
        ] {
            assert!(
                correlator.connect(&connect(7, addr, fam, transport::TCP), 1, &[TOUCH]).is_empty(),
                "{addr:?}"
            );
        }
    }

    #[test]
    fn ipv6_destinations_keep_their_address() {
        let mut correlator = loopback_trusted();
        let ip: Ipv6Addr = "fd00:5647:1::2".parse().unwrap();
        let found = correlator.connect(&connect(7, ip.octets(), family::INET6, transport::TCP), 1, &[TOUCH]);
        assert_eq!(found[0].destination, SocketAddr::new(ip.into(), 443));
    }
}
