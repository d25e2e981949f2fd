//! Syslog: each document as an RFC 5424 message (PRI from its kind and severity, APP-NAME
//! `vigie`, MSGID its `event.action`, structured data with its key fields, MSG the JSON
//! document) over UDP, TCP with octet-counted framing (RFC 6587), or a unix datagram socket.

use std::{
    fmt::Write as _,
    io::{self, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket},
    os::unix::net::UnixDatagram,
    time::Duration,
};

use crate::{
    config::sink_specs::SyslogAddress,
    format::{ecs::EXFILTRATION_SEVERITY, Schema},
    journal::Feed,
    sinks::{
        outgoing::Outgoing,
        remote::{Delivered, Destination, Pending, RemoteSink},
        SinkError,
    },
};

/// Facility `authpriv` (10): security messages, kept private by syslog daemons' defaults.
const FACILITY: u8 = 10;
/// SD-ID of the structured data: ours, under the enterprise number RFC 5612 reserves for
/// documentation and examples.
const SD_ID: &str = "vigie@32473";
/// Most bytes of one datagram (UDP's limit, less headers): a longer message is cut, its
/// header and structured data whole, rather than refused for ever.
const MAX_DATAGRAM: usize = 65_000;
/// How long a TCP connect or write may take before the daemon counts as down.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts a sink sending every document to the daemon at `address`.
pub fn start(address: &SyslogAddress, format: Schema, journal: Feed) -> RemoteSink {
    let name = match address {
        SyslogAddress::Udp(host) => format!("syslog+udp://{host}"),
        SyslogAddress::Tcp(host) => format!("syslog+tcp://{host}"),
        SyslogAddress::Unix(path) => format!("syslog+unix://{}", path.display()),
    };
    let syslog = Syslog {
        address: address.clone(),
        connection: None,
        pending: Pending::default(),
        procid: std::process::id(),
    };
    RemoteSink::start(name, format, |_| true, syslog, journal)
}

/// A daemon, the connection to it (made again after a failure), and what waits for it.
struct Syslog {
    address: SyslogAddress,
    connection: Option<Connection>,
    pending: Pending,
    procid: u32,
}

enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixDatagram),
}

impl Destination for Syslog {
    fn keep(&mut self, item: Outgoing) -> Result<u64, SinkError> {
        Ok(self.pending.push(item))
    }

    fn deliver(&mut self) -> Result<Delivered, SinkError> {
        let Self { address, connection, pending, procid } = self;
        pending.deliver(|item| {
            send(connection, address, message(item, *procid).as_bytes())?;
            Ok(true)
        })
    }

    fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Sends one message, connecting first if need be; a failed connection is dropped.
fn send(connection: &mut Option<Connection>, address: &SyslogAddress, message: &[u8]) -> io::Result<()> {
    if connection.is_none() {
        *connection = Some(connect(address)?);
    }
    let sent = match connection {
        Some(Connection::Udp(socket)) => socket.send(datagram(message)).map(drop),
        Some(Connection::Unix(socket)) => socket.send(datagram(message)).map(drop),
        Some(Connection::Tcp(stream)) => stream.write_all(&octet_counted(message)),
        None => Ok(()),
    };
    if sent.is_err() {
        *connection = None;
    }
    sent
}

fn connect(address: &SyslogAddress) -> io::Result<Connection> {
    let resolve = |host: &str| {
        host.to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address")))
    };
    Ok(match address {
        SyslogAddress::Udp(host) => {
            let peer = resolve(host)?;
            let local: SocketAddr =
                if peer.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let socket = UdpSocket::bind(local)?;
            socket.connect(peer)?;
            Connection::Udp(socket)
        }
        SyslogAddress::Tcp(host) => {
            let stream = TcpStream::connect_timeout(&resolve(host)?, TCP_TIMEOUT)?;
            stream.set_write_timeout(Some(TCP_TIMEOUT))?;
            Connection::Tcp(stream)
        }
        SyslogAddress::Unix(path) => {
            let socket = UnixDatagram::unbound()?;
            socket.connect(path)?;
            Connection::Unix(socket)
        }
    })
}

/// `message` cut to [`MAX_DATAGRAM`] bytes, on a character boundary.
fn datagram(message: &[u8]) -> &[u8] {
    if message.len() <= MAX_DATAGRAM {
        return message;
    }
    let cut = (0..=MAX_DATAGRAM).rev().find(|&i| std::str::from_utf8(&message[..i]).is_ok()).unwrap_or(0);
    &message[..cut]
}

/// RFC 6587 octet counting: the message's length in bytes, a space, the message.
fn octet_counted(message: &[u8]) -> Vec<u8> {
    let mut frame = format!("{} ", message.len()).into_bytes();
    frame.extend_from_slice(message);
    frame
}

/// The RFC 5424 message of `item`, sent by process `procid`.
fn message(item: &Outgoing, procid: u32) -> String {
    let pri = FACILITY * 8 + severity(item);
    let host = header_field(&item.host, 255);
    let msgid = header_field(item.action, 32);
    format!(
        "<{pri}>1 {} {host} vigie {procid} {msgid} {} {}",
        item.timestamp,
        structured_data(item),
        item.json
    )
}

/// Syslog severity: an alert is critical (1, alert, when its bytes confirmed a secret), a
/// report of loss or a failing sink a warning (4), an event a notice (5), other state
/// informational (6).
fn severity(item: &Outgoing) -> u8 {
    match (item.kind, item.action) {
        ("alert", _) if item.severity.is_some_and(|s| s > EXFILTRATION_SEVERITY) => 1,
        ("alert", _) => 2,
        (_, "events-lost" | "output-degraded") => 4,
        ("event", _) => 5,
        _ => 6,
    }
}

/// `[vigie@32473 event.id="…" …]`: the document's id, kind, severity and key fields.
fn structured_data(item: &Outgoing) -> String {
    let mut sd = format!("[{SD_ID}");
    let severity = item.severity.map(|s| s.to_string());
    let head = [
        ("event.id", Some(item.id.as_str())),
        ("event.kind", Some(item.kind)),
        ("event.severity", severity.as_deref()),
    ];
    let fields = item.fields.iter().map(|(name, value)| (*name, Some(value.as_str())));
    for (name, value) in head.into_iter().chain(fields) {
        if let Some(value) = value {
            let _ = write!(sd, " {name}=\"{}\"", escape_param(value));
        }
    }
    sd.push(']');
    sd
}

/// A PARAM-VALUE with `"`, `\` and `]` escaped by a backslash (RFC 5424, 6.3.3).
fn escape_param(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` if empty.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).take(max).collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Outgoing {
        Outgoing {
            id: "b-42-123-7".to_owned(),
            kind: "alert",
            action: "credential-exfiltration",
            severity: Some(EXFILTRATION_SEVERITY),
            timestamp: "2026-12-01T11:52:24.481857Z".to_owned(),
            host: "vm".to_owned(),
            fields: vec![("process.pid", "1095".to_owned()), ("file.path", r#"/srv/a "b"\c]d"#.to_owned())],
            format: Schema::Ecs,
            json: r#"{"event":{"id":"b-42-123-7"}}"#.to_owned(),
        }
    }

    #[test]
    fn a_message_has_every_rfc5424_header_field_then_structured_data_then_the_json() {
        assert_eq!(
            message(&alert(), 77),
            r#"<82>1 2026-12-01T11:52:24.481857Z vm vigie 77 credential-exfiltration [vigie@32473 event.id="b-42-123-7" event.kind="alert" event.severity="73" process.pid="1095" file.path="/srv/a \"b\"\\c\]d"] {"event":{"id":"b-42-123-7"}}"#
        );
    }

    #[test]
    fn severity_follows_the_documents_kind() {
        let with = |kind, action, severity| super::severity(&Outgoing { kind, action, severity, ..alert() });
        assert_eq!(with("alert", "credential-exfiltration", Some(99)), 1);
        assert_eq!(with("alert", "credential-exfiltration", Some(73)), 2);
        assert_eq!(with("state", "output-degraded", None), 4);
        assert_eq!(with("event", "secret-read", None), 5);
        assert_eq!(with("state", "sensor-started", None), 6);
    }

    #[test]
    fn header_fields_are_printable_ascii_and_bounded() {
        assert_eq!(header_field("my host\u{e9}", 255), "my_host_");
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field(&"a".repeat(40), 32).len(), 32);
    }

    #[test]
    fn a_long_datagram_is_cut_on_a_character_boundary() {
        let long = format!("{}é", "a".repeat(MAX_DATAGRAM - 1));
        assert_eq!(datagram(long.as_bytes()).len(), MAX_DATAGRAM - 1, "é does not fit whole");
        assert_eq!(datagram(b"short"), b"short");
    }

    #[test]
    fn a_unix_datagram_socket_receives_each_message() {
        let path = std::env::temp_dir().join(format!("vigie-syslog-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let daemon = UnixDatagram::bind(&path).unwrap();
        daemon.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut sink = start(&SyslogAddress::Unix(path.clone()), Schema::Ecs, Feed::default());
        let document = crate::format::ecs::Document::new(
            0,
            crate::format::ecs::SENSOR_STARTED,
            "e-9".to_owned(),
            crate::format::ecs::Host { name: "h".to_owned() },
        );
        sink.write(&Outgoing::new(&document, Schema::Ecs));
        let mut buffer = [0; 4096];
        let length = daemon.recv(&mut buffer).unwrap();
        let received = std::str::from_utf8(&buffer[..length]).unwrap().to_owned();
        assert!(received.starts_with("<86>1 1970-01-01T00:00:00.000000Z h vigie "), "{received}");
        assert!(
            received.contains(" sensor-started [vigie@32473 event.id=\"e-9\" event.kind=\"state\"] {"),
            "{received}"
        );
        sink.close(std::time::Instant::now() + Duration::from_secs(5));
        assert_eq!(sink.stats().delivered, 1);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn tcp_frames_are_octet_counted() {
        assert_eq!(octet_counted("<14>1 é".as_bytes()), "8 <14>1 é".as_bytes(), "bytes, not characters");
    }
}
