//! The rule: a tainted process talking to a destination off this machine is an exfiltration,
//! reported once per (process, secret, destination); repeats are counted.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use ipnet::IpNet;
use sensor_common::{family, transport, ConnectEvent, SendKey};

use crate::{local_addresses::LocalAddresses, state::taint::Touch};

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
    pub pid: u32,
    /// The sender's start time: with `pid`, which process it was.
    pub start_ns: u64,
    /// The sender's uid when it sent.
    pub uid: u32,
    /// Every secret the sender carried then (`touch` is the one this alert is about).
    pub carried: Vec<u32>,
    pub touch: Touch,
    pub destination: SocketAddr,
    pub transport: Transport,
    /// Bytes sent to the destination so far.
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AlertKey {
    pid: u32,
    start_ns: u64,
    secret_id: u32,
    destination: SocketAddr,
    transport: Transport,
}

/// What is kept of a reported exfiltration, to count repeats and follow its bytes.
#[derive(Debug, Clone)]
struct Tracked {
    exfiltration: Exfiltration,
    /// Where the kernel counts this process's bytes to this destination.
    send_key: SendKey,
    repeats: u64,
    exited: bool,
}

/// Decides which connects are exfiltrations and remembers what was already reported.
#[derive(Debug)]
pub struct Correlator {
    trusted: Vec<IpNet>,
    /// This host's own addresses: never a destination off it.
    local: LocalAddresses,
    reported: HashMap<AlertKey, Tracked>,
    /// Repeats of alerts already forgotten (their process exited).
    repeats_done: u64,
    /// Every (process, destination) a connect record named, with the sender's taint time:
    /// what the kernel's byte counts hold beyond these came from records that were lost.
    seen: HashSet<(SendKey, u64)>,
}

impl Correlator {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self {
            trusted,
            local: LocalAddresses::default(),
            reported: HashMap::new(),
            repeats_done: 0,
            seen: HashSet::new(),
        }
    }

    /// Whether a connect record named this (process, destination) since its taint at
    /// `acquired_ns`.
    pub fn has_seen(&self, key: &SendKey, acquired_ns: u64) -> bool {
        self.seen.contains(&(*key, acquired_ns))
    }

    /// Forgets the (process, destination) pairs the kernel no longer counts.
    pub fn keep_seen(&mut self, counted: &HashSet<(SendKey, u64)>) {
        self.seen.retain(|pair| counted.contains(pair));
    }

    /// The same correlator, with `local` as this host's addresses (loopback only by default).
    pub fn on_host(self, local: LocalAddresses) -> Self {
        Self { local, ..self }
    }

    /// New exfiltrations revealed by `event`, from a process started at `start_ns` that
    /// `touches` reached. Trusted destinations and repeats yield nothing.
    pub fn connect(&mut self, event: &ConnectEvent, start_ns: u64, touches: &[Touch]) -> Vec<Exfiltration> {
        let pid = event.header.pid;
        let send_key = SendKey { pid, port: event.port, family: event.family, addr: event.addr };
        self.seen.insert((send_key, event.taint.acquired_ns));
        let Some((destination, transport)) = destination(event) else { return Vec::new() };
        if self.is_trusted(destination.ip()) {
            return Vec::new();
        }
        let mut fresh = Vec::new();
        for touch in touches {
            let key = AlertKey { pid, start_ns, secret_id: touch.secret_id, destination, transport };
            if let Some(tracked) = self.reported.get_mut(&key) {
                tracked.repeats += 1;
                continue;
            }
            let exfiltration = Exfiltration {
                pid,
                start_ns,
                uid: event.header.uid,
                carried: touches.iter().map(|t| t.secret_id).collect(),
                touch: *touch,
                destination,
                transport,
                bytes: event.bytes,
            };
            fresh.push(exfiltration.clone());
            self.reported.insert(key, Tracked { exfiltration, send_key, repeats: 0, exited: false });
        }
        fresh
    }

    /// Trusts `trusted` from now on instead (a reloaded configuration).
    pub fn set_trusted(&mut self, trusted: Vec<IpNet>) {
        self.trusted = trusted;
    }

    /// The process `pid` exited: its alerts get a last progress report, then are forgotten.
    pub fn exited(&mut self, pid: u32) {
        for tracked in self.reported.values_mut().filter(|t| t.exfiltration.pid == pid) {
            tracked.exited = true;
        }
    }

    /// Alerts whose byte count grew, with the new count; `total` reads the kernel's count.
    pub fn progress(&mut self, mut total: impl FnMut(&SendKey) -> Option<u64>) -> Vec<Exfiltration> {
        let mut grown = Vec::new();
        for tracked in self.reported.values_mut() {
            if let Some(bytes) = total(&tracked.send_key).filter(|&b| b > tracked.exfiltration.bytes) {
                tracked.exfiltration.bytes = bytes;
                grown.push(tracked.exfiltration.clone());
            }
        }
        let mut repeats_done = 0;
        self.reported.retain(|_, t| {
            if t.exited {
                repeats_done += t.repeats;
            }
            !t.exited
        });
        self.repeats_done += repeats_done;
        grown
    }

    /// Sends or connects that repeated an already reported exfiltration.
    pub fn repeats(&self) -> u64 {
        self.repeats_done + self.reported.values().map(|t| t.repeats).sum::<u64>()
    }

    /// Whether `ip` is off this host and outside the trusted networks: where a secret must
    /// not go.
    pub fn leaves_host(&self, ip: IpAddr) -> bool {
        !self.is_trusted(ip)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.local.contains(ip) || self.trusted.iter().any(|net| net.contains(&ip))
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
    use sensor_common::{via, EventHeader, EventKind, FileId, Taint};

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
            bytes: 0,
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

    const TOUCH: Touch = Touch {
        secret_id: 0,
        origin_pid: 7,
        origin_start_ns: 0,
        read_ns: 0,
        acquired_ns: 0,
        via_kind: via::DIRECT,
        via: FileId::new(0, 0),
    };

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
        let two = [TOUCH, Touch { secret_id: 1, ..TOUCH }];
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

    #[test]
    fn progress_reports_growth_once_and_forgets_exited_processes() {
        let mut correlator = loopback_trusted();
        let event = connect(7, v4(10, 0, 0, 1), family::INET, transport::TCP);
        correlator.connect(&event, 1, &[TOUCH]);
        let mut kernel_total = 4_096;
        let grown = correlator.progress(|key| (key.pid == 7 && key.port == 443).then_some(kernel_total));
        assert_eq!(grown.iter().map(|e| e.bytes).collect::<Vec<_>>(), [4_096]);
        assert!(correlator.progress(|_| Some(kernel_total)).is_empty(), "no growth, no report");
        correlator.connect(&event, 1, &[TOUCH]);
        correlator.exited(7);
        kernel_total = 8_192;
        assert_eq!(correlator.progress(|_| Some(kernel_total)).len(), 1, "a last report after exit");
        assert!(correlator.progress(|_| Some(kernel_total * 2)).is_empty(), "then forgotten");
        assert_eq!(correlator.repeats(), 1);
    }
}
