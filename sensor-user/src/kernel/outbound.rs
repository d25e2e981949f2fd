//! Outbound records → what a tainted process or a trusted service wrote out: its bytes, how
//! (plain socket, OpenSSL, `GnuTLS`) and where to. The kernel writes a record's head and only as
//! many data bytes as it carries, so a record is shorter than `OutboundEvent`.

use std::{
    mem::{offset_of, size_of},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use sensor_common::{family, send_path, sender, transport, OutboundEvent, Taint, OUTBOUND_HEADER_LEN};

use super::decode::{read, DecodeError};

/// What the kernel copied of a write, or where an earlier TLS write went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Bytes(OutboundBytes),
    /// The destination of thread `tid`'s TLS write `call`, whose bytes came before.
    TlsDestination {
        tid: u32,
        call: u64,
        destination: Destination,
    },
}

/// A piece of a write call, in order after the call's earlier pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundBytes {
    pub pid: u32,
    pub tid: u32,
    /// The sender's uid when it wrote.
    pub uid: u32,
    /// When the kernel copied the piece (monotonic ns).
    pub ktime_ns: u64,
    /// The sender's taint as the kernel knew it (empty for a trusted service).
    pub taint: Taint,
    /// Which call of the thread.
    pub call: u64,
    pub sender: Sender,
    pub path: SendPath,
    /// `None` for a TLS write, until its [`Outbound::TlsDestination`] names it.
    pub destination: Option<Destination>,
    pub bytes: Vec<u8>,
}

/// Why the kernel copied a process's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    Tainted,
    TrustedService,
}

/// Where the kernel took the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendPath {
    Socket,
    OpenSsl,
    GnuTls,
}

impl SendPath {
    pub fn name(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::OpenSsl => "openssl",
            Self::GnuTls => "gnutls",
        }
    }
}

/// A destination: address, port and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    pub addr: SocketAddr,
    /// `"tcp"` or `"udp"`.
    pub transport: &'static str,
}

/// Decodes an outbound record (header already read as `EventKind::Outbound`).
pub fn decode(bytes: &[u8]) -> Result<Outbound, DecodeError> {
    if bytes.len() < OUTBOUND_HEADER_LEN {
        return Err(DecodeError::TooShort { kind: "outbound", len: bytes.len() });
    }
    // The head, read from a full-sized copy: the record's data may be shorter than the array.
    let mut full = vec![0u8; size_of::<OutboundEvent>()];
    full[..OUTBOUND_HEADER_LEN].copy_from_slice(&bytes[..OUTBOUND_HEADER_LEN]);
    let head: OutboundEvent = read(&full, "outbound")?;
    let destination = destination(&head);
    if head.path == send_path::TLS_DESTINATION {
        let destination = destination.ok_or(DecodeError::Field { kind: "outbound", field: "family" })?;
        return Ok(Outbound::TlsDestination { tid: head.tid, call: head.call, destination });
    }
    let data = &bytes[offset_of!(OutboundEvent, data)..];
    let len = head.len as usize;
    if data.len() < len {
        return Err(DecodeError::TooShort { kind: "outbound", len: bytes.len() });
    }
    Ok(Outbound::Bytes(OutboundBytes {
        pid: head.header.pid,
        tid: head.tid,
        uid: head.header.uid,
        ktime_ns: head.header.ktime_ns,
        taint: head.taint,
        call: head.call,
        sender: match head.sender {
            sender::TAINTED => Sender::Tainted,
            sender::TRUSTED => Sender::TrustedService,
            _ => return Err(DecodeError::Field { kind: "outbound", field: "sender" }),
        },
        path: match head.path {
            send_path::SOCKET => SendPath::Socket,
            send_path::OPENSSL => SendPath::OpenSsl,
            send_path::GNUTLS => SendPath::GnuTls,
            _ => return Err(DecodeError::Field { kind: "outbound", field: "path" }),
        },
        destination,
        bytes: data[..len].to_vec(),
    }))
}

/// The record's destination, if it names one.
fn destination(head: &OutboundEvent) -> Option<Destination> {
    let ip = match head.family {
        family::INET => IpAddr::V4(Ipv4Addr::new(head.addr[0], head.addr[1], head.addr[2], head.addr[3])),
        family::INET6 => IpAddr::V6(Ipv6Addr::from(head.addr)),
        _ => return None,
    };
    let transport = if head.transport == transport::UDP { "udp" } else { "tcp" };
    Some(Destination { addr: SocketAddr::new(ip, head.port), transport })
}

#[cfg(test)]
mod tests {
    use sensor_common::{EventHeader, EventKind, Taint, OUTBOUND_CHUNK};

    use super::*;

    fn record(path: u8, len: u32) -> OutboundEvent {
        OutboundEvent {
            header: EventHeader { kind: EventKind::Outbound as u32, pid: 42, uid: 0, _pad: 0, ktime_ns: 9 },
            taint: Taint::default(),
            call: 7,
            tid: 43,
            call_len: 3000,
            offset: 1024,
            len,
            sender: sender::TAINTED,
            path,
            transport: transport::TCP,
            _pad: 0,
            family: family::INET,
            port: 443,
            addr: [10, 213, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            data: [0xab; OUTBOUND_CHUNK],
        }
    }

    /// The first `len` bytes of `record`, as the kernel writes them.
    fn written(record: &OutboundEvent, len: usize) -> Vec<u8> {
        // SAFETY: `#[repr(C)]` with explicit padding: every byte is initialised.
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(record).cast::<u8>(), len) }.to_vec()
    }

    #[test]
    fn a_piece_carries_exactly_its_bytes_and_destination() {
        let raw = record(send_path::SOCKET, 5);
        let Ok(Outbound::Bytes(piece)) = decode(&written(&raw, OUTBOUND_HEADER_LEN + 5)) else {
            panic!("not bytes")
        };
        assert_eq!(piece.bytes, [0xab; 5]);
        assert_eq!((piece.pid, piece.tid, piece.call), (42, 43, 7));
        assert_eq!((piece.sender, piece.path), (Sender::Tainted, SendPath::Socket));
        let destination = piece.destination.unwrap();
        assert_eq!((destination.addr, destination.transport), ("10.213.0.2:443".parse().unwrap(), "tcp"));
    }

    #[test]
    fn a_tls_write_names_its_destination_later() {
        let mut raw = record(send_path::OPENSSL, 3);
        raw.family = 0;
        let Ok(Outbound::Bytes(piece)) = decode(&written(&raw, OUTBOUND_HEADER_LEN + 3)) else {
            panic!("not bytes")
        };
        assert_eq!((piece.path, piece.destination), (SendPath::OpenSsl, None));
        let head = record(send_path::TLS_DESTINATION, 0);
        let Ok(Outbound::TlsDestination { tid, call, destination }) =
            decode(&written(&head, OUTBOUND_HEADER_LEN))
        else {
            panic!("not a destination")
        };
        assert_eq!((tid, call, destination.addr.port()), (43, 7, 443));
    }

    #[test]
    fn a_record_shorter_than_its_length_or_with_unknown_values_is_an_error() {
        let raw = record(send_path::SOCKET, 100);
        let short = written(&raw, OUTBOUND_HEADER_LEN + 10);
        assert_eq!(decode(&short), Err(DecodeError::TooShort { kind: "outbound", len: short.len() }));
        assert!(matches!(decode(&short[..20]), Err(DecodeError::TooShort { .. })));
        let unknown = record(99, 1);
        assert_eq!(
            decode(&written(&unknown, OUTBOUND_HEADER_LEN + 1)),
            Err(DecodeError::Field { kind: "outbound", field: "path" })
        );
    }
}
