//! Copies of what tainted processes and trusted services write out, for the agent to look
//! into: the buffer of a write call, in chunks of `OUTBOUND_CHUNK` bytes, each its own record,
//! in order. Every other process's bytes are never read. The TLS entry points are in `tls`;
//! the plain socket sends of tainted processes are taken here at the syscall's entry.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE},
    helpers::{bpf_get_current_pid_tgid, generated::bpf_probe_read_user},
};
use sensor_common::{
    counter, send_path, sender, EventKind, OutboundEvent, Taint, OUTBOUND_CHUNK, OUTBOUND_CHUNKS,
    OUTBOUND_HEADER_LEN,
};

use crate::{
    allowance,
    emit::{self, header},
    kernel::{fd_file, file_type, socket_sock, S_IFSOCK},
    maps::{COUNTERS, EVENTS, OUTBOUND_SCRATCH},
    network::{self, Peer},
    taint, tls,
};

/// Bytes copied of one call at most.
const CALL_CAP: u64 = OUTBOUND_CHUNK as u64 * OUTBOUND_CHUNKS as u64;

/// Who the current process is, if its bytes are copied: a tainted process (with its taint)
/// or a trusted service's.
#[inline(always)]
pub fn current_sender() -> Option<(u8, Taint)> {
    if let Some(taint) = taint::current() {
        return Some((sender::TAINTED, taint));
    }
    allowance::current_is_trusted_service().then(Taint::default).map(|none| (sender::TRUSTED, none))
}

/// A write on descriptor `fd` of `len` bytes at user address `buf` (`write`, `send`,
/// `sendto`): copied if the current process is tainted and `fd` is an IP socket. A thread in
/// a TLS write is sending that write's ciphertext: its plaintext is copied in `tls`.
#[inline(always)]
pub fn socket_write(fd: u32, buf: u64, len: u64) -> Result<(), i32> {
    let Some(taint) = taint::current() else { return Ok(()) };
    if tls::in_call() {
        return Ok(());
    }
    let file = fd_file(fd)?;
    if file_type(file)? != S_IFSOCK {
        return Ok(());
    }
    let sk = socket_sock(file)?;
    let Some(transport) = network::ip_transport(sk)? else { return Ok(()) };
    let record = start(sender::TAINTED, taint, send_path::SOCKET, len)?;
    record.transport = transport;
    // An unconnected UDP socket names its destination per datagram: left unknown here.
    if let Ok(peer) = network::peer(sk) {
        set_destination(record, &peer);
    }
    copy(record, buf, len);
    Ok(())
}

/// The scratch record for a new call of `len` bytes on `path` by `sender`, destination
/// unknown, no bytes yet.
#[inline(always)]
pub fn start(sender: u8, taint: Taint, path: u8, len: u64) -> Result<&'static mut OutboundEvent, i32> {
    let scratch = OUTBOUND_SCRATCH.get_ptr_mut(0).ok_or(-1)?;
    // SAFETY: a per-CPU buffer, used by one program at a time on this CPU.
    let record = unsafe { &mut *scratch };
    record.header = header(EventKind::Outbound);
    record.taint = taint;
    record.call = record.header.ktime_ns;
    record.tid = bpf_get_current_pid_tgid() as u32;
    record.call_len = u32::try_from(len).unwrap_or(u32::MAX);
    record.offset = 0;
    record.len = 0;
    record.sender = sender;
    record.path = path;
    record.transport = 0;
    record.family = 0;
    record.port = 0;
    record.addr = [0; 16];
    Ok(record)
}

/// Sets `record`'s destination.
#[inline(always)]
pub fn set_destination(record: &mut OutboundEvent, peer: &Peer) {
    record.family = peer.family;
    record.port = peer.port;
    record.addr = peer.addr;
}

/// Writes `record` with no bytes: the destination of the call it names.
#[inline(always)]
pub fn emit_head(record: &OutboundEvent) {
    // SAFETY: the record's first bytes, within it.
    emit::output_bytes(unsafe {
        core::slice::from_raw_parts((&raw const *record).cast(), OUTBOUND_HEADER_LEN)
    });
}

/// Copies the call's `len` bytes at user address `buf` into records shaped like `record`, up
/// to [`CALL_CAP`]; what is not copied is counted. A ring buffer more than half full keeps its
/// room for the records alerts are built from.
#[inline(always)]
pub fn copy(record: &mut OutboundEvent, buf: u64, len: u64) {
    let ring_filling =
        EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) * 2 > EVENTS.query(u64::from(BPF_RB_RING_SIZE));
    let copied = if ring_filling { 0 } else { len.min(CALL_CAP) };
    let mut offset = 0u64;
    for _ in 0..OUTBOUND_CHUNKS {
        if offset >= copied {
            break;
        }
        let chunk = (copied - offset).min(OUTBOUND_CHUNK as u64) as u32;
        if chunk == 0 || chunk > OUTBOUND_CHUNK as u32 {
            break;
        }
        // SAFETY: at most OUTBOUND_CHUNK bytes into the record's data; the helper checks the
        // user address and fails on a bad one.
        let read = unsafe {
            bpf_probe_read_user(record.data.as_mut_ptr().cast(), chunk, (buf + offset) as *const _)
        };
        if read != 0 {
            break;
        }
        record.offset = offset as u32;
        record.len = chunk;
        // SAFETY: the record's head and its first `chunk` data bytes, within it.
        emit::output_bytes(unsafe {
            core::slice::from_raw_parts((&raw const *record).cast(), OUTBOUND_HEADER_LEN + chunk as usize)
        });
        offset += u64::from(chunk);
    }
    if len > offset {
        if let Some(uncopied) = COUNTERS.get_ptr_mut(counter::OUTBOUND_UNCOPIED) {
            // SAFETY: per-CPU slot, programs do not preempt each other on one CPU.
            unsafe { *uncopied += len - offset };
        }
    }
}
