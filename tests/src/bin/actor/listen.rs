//! `vigie-actor listen PORT [--udp PORT]...`: the far end inside a test's network namespace.
//!
//! Binds TCP and UDP on `0.0.0.0:PORT` and `[::]:PORT`, and UDP only on each extra `--udp`
//! port (53, for DNS), prints `ready`, and drains whatever arrives until killed. A TCP peer
//! that speaks HTTP (curl) gets its request read to the end and a `204 No Content`, so that
//! real clients finish cleanly; any other peer is read until it closes.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

const HTTP_METHODS: [&[u8]; 4] = [b"GET ", b"POST", b"PUT ", b"HEAD"];
const HEADERS_END: &[u8] = b"\r\n\r\n";
/// More header bytes than any test client sends; beyond it the peer is just drained.
const MAX_HEADERS: usize = 64 * 1024;

pub fn run(args: &[OsString]) -> Result<()> {
    let usage = "usage: vigie-actor listen PORT [--udp PORT]...";
    let mut args = args.iter().map(|arg| arg.to_string_lossy());
    let port = port(&args.next().context(usage)?)?;
    let mut udp_only = Vec::new();
    while let Some(flag) = args.next() {
        match (flag.as_ref(), args.next()) {
            ("--udp", Some(value)) => udp_only.push(self::port(&value)?),
            _ => bail!("{usage}"),
        }
    }
    let mut workers = Vec::new();
    for addr in both_families(port) {
        let tcp: TcpListener = bound(addr, Type::STREAM, Protocol::TCP)?.into();
        workers.push(thread::spawn(move || accept_forever(&tcp)));
    }
    for addr in std::iter::once(port).chain(udp_only).flat_map(both_families) {
        let udp: UdpSocket = bound(addr, Type::DGRAM, Protocol::UDP)?.into();
        workers.push(thread::spawn(move || drain_datagrams(&udp)));
    }
    println!("ready");
    for worker in workers {
        let _ = worker.join();
    }
    bail!("all listeners stopped")
}

fn port(text: &str) -> Result<u16> {
    text.parse().with_context(|| format!("{text:?}: PORT must be a number from 0 to 65535"))
}

fn both_families(port: u16) -> [SocketAddr; 2] {
    [(Ipv4Addr::UNSPECIFIED, port).into(), (Ipv6Addr::UNSPECIFIED, port).into()]
}

fn bound(addr: SocketAddr, kind: Type, protocol: Protocol) -> Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        // Without it `[::]:PORT` would also claim the IPv4 port bound beside it.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into()).with_context(|| format!("bind {addr}"))?;
    if kind == Type::STREAM {
        socket.listen(128)?;
    }
    Ok(socket)
}

fn accept_forever(listener: &TcpListener) {
    for stream in listener.incoming().flatten() {
        thread::spawn(move || serve(stream));
    }
}

fn drain_datagrams(socket: &UdpSocket) {
    let mut buf = [0u8; 2048];
    while socket.recv_from(&mut buf).is_ok() {}
}

/// Answers an HTTP request once its body is in, then reads until the peer closes.
fn serve(mut stream: TcpStream) -> io::Result<u64> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let is_http = loop {
        let got = stream.read(&mut buf)?;
        if got == 0 {
            return Ok(0);
        }
        head.extend_from_slice(&buf[..got]);
        if head.len() >= 4 {
            break HTTP_METHODS.iter().any(|method| head.starts_with(method));
        }
    };
    if is_http {
        answer_http(&mut stream, head)?;
    }
    io::copy(&mut stream, &mut io::sink())
}

fn answer_http(stream: &mut TcpStream, mut received: Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let headers_len = loop {
        if let Some(at) = find(&received, HEADERS_END) {
            break at + HEADERS_END.len();
        }
        if received.len() > MAX_HEADERS {
            return Ok(());
        }
        let got = stream.read(&mut buf)?;
        if got == 0 {
            return Ok(());
        }
        received.extend_from_slice(&buf[..got]);
    };
    let headers = String::from_utf8_lossy(&received[..headers_len]).to_ascii_lowercase();
    if headers.contains("\r\nexpect: 100-continue") {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body_len = header_value(&headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body_seen = received.len() - headers_len;
    while body_seen < body_len {
        let got = stream.read(&mut buf)?;
        if got == 0 {
            return Ok(());
        }
        body_seen += got;
    }
    stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")?;
    stream.shutdown(Shutdown::Write)
}

fn header_value<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_header_values_case_insensitively_lowered() {
        let headers = "post / http/1.1\r\nhost: x\r\ncontent-length: 42\r\n\r\n";
        assert_eq!(header_value(headers, "content-length"), Some("42"));
        assert_eq!(header_value(headers, "expect"), None);
        assert_eq!(find(b"ab\r\n\r\ncd", HEADERS_END), Some(2));
    }
}
