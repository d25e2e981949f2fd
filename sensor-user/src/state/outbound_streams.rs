//! The bytes each process wrote to each destination, as the kernel copied them: per stream
//! (process, path, destination) a byte count and a running FNV-1a digest, for the content
//! recognizer to come. A TLS write's pieces wait, per thread, for the record that names their
//! destination; a thread's next TLS write sends the waiting ones on without one (they went
//! into a memory BIO, whose ciphertext another send carried).

use std::collections::HashMap;

use crate::kernel::outbound::{Destination, Outbound, OutboundBytes, SendPath, Sender};

/// Threads whose TLS pieces may wait at once; past it, all waiting pieces go on undirected.
const WAITING_THREADS: usize = 4096;

/// One stream: who wrote, how, to where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub pid: u32,
    pub sender: Sender,
    pub path: SendPath,
    pub destination: Option<Destination>,
}

/// What a stream carried so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTally {
    pub bytes: u64,
    /// FNV-1a (64 bits) of the bytes, in order.
    pub fnv1a: u64,
}

impl Default for StreamTally {
    fn default() -> Self {
        Self { bytes: 0, fnv1a: FNV_OFFSET }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

impl StreamTally {
    fn add(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        for &byte in bytes {
            self.fnv1a = (self.fnv1a ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    }
}

/// Streams, and the TLS pieces waiting for their destination.
#[derive(Debug, Default)]
pub struct OutboundStreams {
    streams: HashMap<StreamKey, StreamTally>,
    /// By thread: its latest TLS write's call and pieces.
    waiting: HashMap<u32, (u64, Vec<OutboundBytes>)>,
}

impl OutboundStreams {
    /// Takes in one record; returns the pieces it settled (their destination known, or never
    /// to be), in order, each with its stream's tally once it is added.
    pub fn record(&mut self, outbound: &Outbound) -> Vec<(OutboundBytes, StreamTally)> {
        let settled = match outbound {
            Outbound::Bytes(piece) if piece.destination.is_some() => vec![piece.clone()],
            Outbound::Bytes(piece) => self.wait(piece),
            Outbound::TlsDestination { tid, call, destination } => match self.waiting.remove(tid) {
                Some((waiting, mut pieces)) if waiting == *call => {
                    for piece in &mut pieces {
                        piece.destination = Some(*destination);
                    }
                    pieces
                }
                Some(other) => {
                    self.waiting.insert(*tid, other);
                    Vec::new()
                }
                None => Vec::new(),
            },
        };
        settled
            .into_iter()
            .map(|piece| {
                let tally = self.add(&piece);
                (piece, tally)
            })
            .collect()
    }

    /// Process `pid` exited: its streams end.
    pub fn exit(&mut self, pid: u32) {
        self.streams.retain(|key, _| key.pid != pid);
    }

    /// Keeps a TLS piece until its destination is known; returns what can no longer wait.
    fn wait(&mut self, piece: &OutboundBytes) -> Vec<OutboundBytes> {
        let mut undirected = Vec::new();
        if self.waiting.len() >= WAITING_THREADS {
            undirected.extend(self.waiting.drain().flat_map(|(_, (_, pieces))| pieces));
        }
        let entry = self.waiting.entry(piece.tid).or_insert_with(|| (piece.call, Vec::new()));
        if entry.0 != piece.call {
            undirected.append(&mut entry.1);
            entry.0 = piece.call;
        }
        entry.1.push(piece.clone());
        undirected
    }

    fn add(&mut self, piece: &OutboundBytes) -> StreamTally {
        let key = StreamKey {
            pid: piece.pid,
            sender: piece.sender,
            path: piece.path,
            destination: piece.destination,
        };
        let tally = self.streams.entry(key).or_default();
        tally.add(&piece.bytes);
        *tally
    }
}

#[cfg(test)]
mod tests {
    use sensor_common::Taint;

    use super::*;

    fn piece(call: u64, path: SendPath, destination: Option<Destination>, bytes: &[u8]) -> Outbound {
        Outbound::Bytes(OutboundBytes {
            pid: 7,
            tid: 8,
            uid: 0,
            ktime_ns: 0,
            taint: Taint::default(),
            call,
            sender: Sender::Tainted,
            path,
            destination,
            bytes: bytes.to_vec(),
        })
    }

    fn destination() -> Destination {
        Destination { addr: "10.213.0.2:443".parse().unwrap(), transport: "tcp" }
    }

    #[test]
    fn a_socket_streams_bytes_are_counted_and_digested_in_order() {
        let mut streams = OutboundStreams::default();
        streams.record(&piece(1, SendPath::Socket, Some(destination()), b"a"));
        let grown = streams.record(&piece(2, SendPath::Socket, Some(destination()), b""));
        // FNV-1a 64 of "a".
        assert_eq!(grown[0].1, StreamTally { bytes: 1, fnv1a: 0xaf63_dc4c_8601_ec8c });
    }

    #[test]
    fn tls_pieces_wait_for_their_destination() {
        let mut streams = OutboundStreams::default();
        assert!(streams.record(&piece(5, SendPath::OpenSsl, None, b"GET")).is_empty());
        assert!(streams.record(&piece(5, SendPath::OpenSsl, None, b" /")).is_empty());
        let named = Outbound::TlsDestination { tid: 8, call: 5, destination: destination() };
        let grown = streams.record(&named);
        assert_eq!(grown.len(), 2);
        assert_eq!(grown[1].0.destination, Some(destination()));
        assert_eq!(grown[1].1.bytes, 5);
    }

    #[test]
    fn a_tls_write_that_never_reached_a_socket_goes_on_undirected() {
        let mut streams = OutboundStreams::default();
        streams.record(&piece(5, SendPath::OpenSsl, None, b"memory bio"));
        let grown = streams.record(&piece(6, SendPath::OpenSsl, None, b"next"));
        assert_eq!(grown.len(), 1);
        assert_eq!((grown[0].0.destination, grown[0].1.bytes), (None, 10));
        let stale = Outbound::TlsDestination { tid: 8, call: 5, destination: destination() };
        assert!(streams.record(&stale).is_empty(), "call 6 still waits");
    }
}
