//! What a tainted process or a trusted service wrote out: its bytes are scanned, per stream,
//! for the watched secrets' values; a value on its way off the host is an alert (the content
//! rule, `rules::content`), at critical severity.

use std::net::SocketAddr;

use sensor_common::{via, FileId};

use super::Pipeline;
use crate::{
    content::{ContentMatch, Scope, Source, StreamKey},
    format::ecs::{self, Document},
    kernel::outbound::{Destination, Outbound, OutboundBytes, Sender},
    rules::exfiltration::{Exfiltration, Transport},
    state::{outbound_streams::StreamTally, taint::Touch},
};

impl Pipeline {
    /// Takes in a record of outbound bytes; returns the alerts of the values they carried.
    pub fn outbound(&mut self, outbound: &Outbound) -> Vec<Document> {
        let mut documents = Vec::new();
        for (piece, tally) in self.outbound.record(outbound) {
            if self.outbound_digests {
                print_digest(&piece, tally);
            }
            documents.extend(self.inspect(&piece, tally));
        }
        documents
    }

    /// Prints every stream's byte count and digest to stderr as it grows: a diagnostic that
    /// shows what the kernel copied (never the bytes themselves).
    pub fn print_outbound_digests(&mut self) {
        self.outbound_digests = true;
    }

    /// Scans `piece`, bound for a known destination off this host, and reports the values it
    /// completes that were not reported yet for this sender and destination. A TLS piece whose
    /// destination is unknown (it went into a memory BIO) is not scanned.
    fn inspect(&mut self, piece: &OutboundBytes, tally: StreamTally) -> Vec<Document> {
        let Some(Destination { addr, transport }) = piece.destination else { return Vec::new() };
        let destination = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        if !self.correlator.leaves_host(destination.ip()) {
            return Vec::new();
        }
        let scope = match piece.sender {
            Sender::Tainted => Scope::Tainted,
            Sender::TrustedService => Scope::TrustedService,
        };
        let found = self.recognizer.scan(&StreamKey { pid: piece.pid, destination }, &piece.bytes, scope);
        if found.is_empty() {
            return Vec::new();
        }
        let pid = piece.pid;
        let start_ns = self.processes.get(pid).map_or(0, |p| p.start_ns);
        let touches = match piece.sender {
            Sender::Tainted => self.taint.touches(pid, &piece.taint, piece.ktime_ns),
            Sender::TrustedService => Vec::new(),
        };
        let transport = if transport == "udp" { Transport::Udp } else { Transport::Tcp };
        let time = self.kernel_time(piece.ktime_ns);
        let fresh = self.confirmations.fresh(pid, start_ns, destination, found);
        fresh
            .into_iter()
            .filter_map(|found| {
                let touch = self.touch_for(&found, &touches, pid, start_ns)?;
                let carried = if touches.is_empty() { vec![touch.secret_id] } else { secret_ids(&touches) };
                let exfiltration = Exfiltration {
                    pid,
                    start_ns,
                    uid: piece.uid,
                    carried,
                    touch,
                    destination,
                    transport,
                    bytes: tally.bytes,
                };
                let mut document =
                    self.exfiltration_document(&exfiltration, ecs::CONFIRMED_EXFILTRATION, time)?;
                if let Some(vigie) = document.vigie.as_mut() {
                    vigie.content = Some(ecs::Content {
                        confirmed: true,
                        value: found.secret,
                        encoding: found.encoding.as_str(),
                        fingerprint: found.fingerprint,
                        seen_in: piece.path.name(),
                    });
                }
                Some(document)
            })
            .collect()
    }

    /// The secret an alert about `found` names. A tainted sender's: the touch of the file the
    /// value came from if it carries that one, else what it carries (a token told by its
    /// checksum came through the secret that tainted it). A trusted service's: the watched
    /// file the value came from, held by right (the service is its own origin).
    fn touch_for(&self, found: &ContentMatch, touches: &[Touch], pid: u32, start_ns: u64) -> Option<Touch> {
        let source = match &found.source {
            Source::File(path) | Source::Database(path) => self.catalog.id_of_path(path),
            Source::TokenFormat => None,
        };
        if let Some(first) = touches.first() {
            return Some(*source.and_then(|id| touches.iter().find(|t| t.secret_id == id)).unwrap_or(first));
        }
        Some(Touch {
            secret_id: source?,
            origin_pid: pid,
            origin_start_ns: start_ns,
            read_ns: 0,
            acquired_ns: 0,
            via_kind: via::DIRECT,
            via: FileId::default(),
        })
    }
}

fn secret_ids(touches: &[Touch]) -> Vec<u32> {
    touches.iter().map(|t| t.secret_id).collect()
}

fn print_digest(piece: &OutboundBytes, tally: StreamTally) {
    let to = piece.destination.map_or("unknown".to_owned(), |d| format!("{}/{}", d.addr, d.transport));
    eprintln!(
        "vigie-outbound pid={} sender={:?} path={} destination={to} bytes={} fnv1a64={:016x}",
        piece.pid,
        piece.sender,
        piece.path.name(),
        tally.bytes,
        tally.fnv1a
    );
}
