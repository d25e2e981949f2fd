//! Ways out: connects, datagrams, and sends on a connection that is already open.

use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::ptr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

pub const PAYLOAD: &[u8] = b"vigie-actor\n";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes moved per `write`/`splice`.
const CHUNK: usize = 64 * 1024;

/// Connects, writes a few bytes, closes.
pub fn tcp(dest: SocketAddr) -> Result<()> {
    let mut stream = connect(dest)?;
    stream.write_all(PAYLOAD).with_context(|| format!("write to {dest}"))
}

pub fn connect(dest: SocketAddr) -> Result<TcpStream> {
    TcpStream::connect_timeout(&dest, CONNECT_TIMEOUT).with_context(|| format!("connect to {dest}"))
}

/// One datagram from an unconnected socket (`sendto` with the destination).
pub fn udp(dest: SocketAddr) -> Result<()> {
    send_datagram(dest, PAYLOAD)
}

/// A DNS query for an A record, as a resolver on port 53 would receive it; tunnels put their
/// data in the labels of such names.
pub fn dns_query(dest: SocketAddr) -> Result<()> {
    send_datagram(dest, &dns_query_packet(0x5647, &["exfil", "vigie-test", "invalid"]))
}

fn send_datagram(dest: SocketAddr, datagram: &[u8]) -> Result<()> {
    let local: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sent = UdpSocket::bind(local)
        .and_then(|socket| socket.send_to(datagram, dest))
        .with_context(|| format!("send a datagram to {dest}"))?;
    ensure!(sent == datagram.len(), "short datagram to {dest}");
    Ok(())
}

/// RFC 1035 §4.1: header (id, RD flag, one question), then QNAME, QTYPE A, QCLASS IN.
fn dns_query_packet(id: u16, labels: &[&str]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    for field in [id, 0x0100, 1, 0, 0, 0] {
        packet.extend_from_slice(&field.to_be_bytes());
    }
    for label in labels {
        let len = u8::try_from(label.len()).expect("labels are short constants");
        packet.push(len);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet
}

/// Writes `bytes` bytes of filler on `stream`.
pub fn send(stream: &mut TcpStream, bytes: u64) -> Result<()> {
    let chunk = vec![b'v'; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let len = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
        stream.write_all(&chunk[..len]).context("write on the kept connection")?;
        left -= len as u64;
    }
    Ok(())
}

/// `sendfile` from `path` into `stream` until the end of the file: no byte passes through
/// this process's memory.
pub fn sendfile(stream: &mut TcpStream, path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    loop {
        // SAFETY: both fds are open for the whole call; a null offset uses the file position.
        let sent = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), ptr::null_mut(), CHUNK) };
        if sent == 0 {
            return Ok(());
        }
        if sent < 0 {
            return Err(io::Error::last_os_error()).context("sendfile into the kept connection");
        }
    }
}

/// `splice` from `path` into a pipe, and from the pipe into `stream`.
pub fn splice(stream: &mut TcpStream, path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let (pipe_read, pipe_write) = pipe()?;
    loop {
        let filled =
            splice_fds(file.as_raw_fd(), pipe_write.as_raw_fd(), CHUNK).context("splice file → pipe")?;
        if filled == 0 {
            return Ok(());
        }
        let mut left = filled;
        while left > 0 {
            left -= splice_fds(pipe_read.as_raw_fd(), stream.as_raw_fd(), left)
                .context("splice pipe → socket")?;
        }
    }
}

fn splice_fds(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both fds are open for the whole call; null offsets use the file positions.
    let moved = unsafe { libc::splice(from, ptr::null_mut(), to, ptr::null_mut(), len, libc::SPLICE_F_MOVE) };
    usize::try_from(moved).map_err(|_| io::Error::last_os_error())
}

/// A pipe's read and write ends.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error()).context("pipe2");
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_well_formed_dns_query() {
        let packet = dns_query_packet(0x1234, &["a", "bc"]);
        let expected: &[u8] = &[
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // header: id, RD, 1 question
            1, b'a', 2, b'b', b'c', 0, // a.bc.
            0, 1, 0, 1, // A, IN
        ];
        assert_eq!(packet, expected);
    }
}
