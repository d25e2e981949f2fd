//! Copies of what tainted processes and trusted services write out, for the agent to look
//! into: the buffer of a write call, in chunks of `OUTBOUND_CHUNK` bytes, each its own record,
//! in order. Every other process's bytes are never read. The TLS entry points are in `tls`;
//! the plain socket sends of tainted processes are taken here at the syscall's entry.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE},
    helpers::{bpf_get_current_pid_tgid, generated::bpf_probe_read_user},
};
use sensor_common::{
    counter, send_path, sender, transport, EventKind, OutboundEvent, Taint, OUTBOUND_CHUNK, OUTBOUND_CHUNKS,
    OUTBOUND_HEADER_LEN,
};

use crate::{
    allowance, channels,
    emit::{self, header},
    kernel::{fd_file, file_type, offsets, read, socket_sock, S_IFSOCK},
    maps::{COUNTERS, EVENTS, OUTBOUND_SCRATCH, SERVICE_SENDS, VECTORED},
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
/// `sendto`): copied if the current process's socket sends are ([`socket_record`]).
#[inline(always)]
pub fn socket_write(fd: u32, buf: u64, len: u64) -> Result<(), i32> {
    if let Some(record) = socket_record(fd, len)? {
        copy(record, buf, len);
    }
    Ok(())
}

/// `iov_iter.iter_type` of one user buffer (`write`, `send`, `sendto`).
const ITER_UBUF: u8 = 0;
/// `iov_iter.iter_type` of user iovecs (`writev`, `sendmsg`), the array being the kernel's copy.
const ITER_IOVEC: u8 = 1;

/// A TCP send of `msg` on `sk` (`tcp_sendmsg_locked`, once per pass of the kernel's copy loop),
/// copied if the sender is a trusted service's process, at the call's first pass: the syscall
/// programs that copy tainted processes' sends are not attached for services. Left alone:
/// sends inside a TLS write and TLS records (their plaintext was copied at the TLS write), and
/// sends to this host (the homeserver answering its reverse proxy is its job). Of user iovecs
/// the current one is copied, the bytes of the others counted.
#[inline(always)]
pub fn service_tcp_send(sk: *const u8, msg: *const u8) -> Result<(), i32> {
    if !allowance::current_is_trusted_service() || tls::in_call() {
        return Ok(());
    }
    // Sends to this host (the homeserver's answers to its proxy) leave no trace in the map.
    let peer = network::peer(sk)?;
    if channels::peer_is_local(sk, peer.family) {
        return Ok(());
    }
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: the value is compared at once.
    if unsafe { SERVICE_SENDS.get(thread) }.is_some_and(|&pass| pass == msg as u64) {
        return Ok(());
    }
    taint::counted(SERVICE_SENDS.insert(thread, msg as u64, 0))?;
    let off = offsets();
    let iter = msg.wrapping_add(off.msghdr_msg_iter as usize);
    let left: u64 = read(iter, off.iov_iter_count)?;
    let skipped: u64 = read(iter, off.iov_iter_iov_offset)?;
    let (buf, len) = match read::<u8>(iter, off.iov_iter_iter_type)? {
        ITER_UBUF => (read::<u64>(iter, off.iov_iter_ubuf)? + skipped, left),
        ITER_IOVEC => {
            let iov: *const u8 = read(iter, off.iov_iter_ubuf)?;
            let (base, segment): (u64, u64) = (read(iov, 0)?, read(iov, 8)?);
            (base + skipped, segment.saturating_sub(skipped).min(left))
        }
        _ => return Ok(()),
    };
    if is_tls_record(buf) {
        return Ok(());
    }
    let record = start(sender::TRUSTED, Taint::default(), send_path::SOCKET, left)?;
    record.transport = transport::TCP;
    set_destination(record, &peer);
    copy(record, buf, len);
    count_uncopied(left - len);
    Ok(())
}

/// A thread's TCP send is over (`sock_send_length`): its next pass of `tcp_sendmsg_locked`
/// starts a new call.
#[inline(always)]
pub fn service_send_done() {
    let thread = bpf_get_current_pid_tgid();
    if SERVICE_SENDS.get_ptr(thread).is_some() {
        let _ = SERVICE_SENDS.remove(thread);
    }
}

/// Whether the bytes at user address `buf` start a TLS record: a content type (change cipher
/// spec, alert, handshake, application data) and major version 3.
#[inline(always)]
fn is_tls_record(buf: u64) -> bool {
    user::<[u8; 2]>(buf).is_ok_and(|[kind, major]| (20..=23).contains(&kind) && major == 3)
}

/// Iovecs of one vectored call whose bytes are copied, one program run each (tail calls, so
/// the verifier walks the chunk loop once however many there are): enough for the gathers
/// senders make (HTTP head and body, framing and payload); further iovecs' bytes are counted.
const IOVECS_COPIED: u32 = 16;
/// `UIO_MAXIOV`: the most iovecs a call may have, whose lengths make the call's length.
const UIO_MAXIOV: u32 = 1024;

/// A vectored call being copied: its iovec array, how many, the next one to copy and the
/// call offset its bytes start at.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Vectored {
    iov: u64,
    count: u32,
    next: u32,
    /// Bytes of the call before the next iovec's.
    offset: u64,
    /// `struct compat_iovec` (two 32-bit words), for an ia32 caller.
    ia32: bool,
}

/// A vectored send on descriptor `fd` (`writev`, `sendmsg`) of `count` iovecs at user address
/// `iov`: if the current process's socket sends are copied ([`socket_record`]), remembered
/// for [`vectored_next`], which the caller runs next. Says whether to.
#[inline(always)]
pub fn vectored_write(fd: u32, iov: u64, count: u64, ia32: bool) -> Result<bool, i32> {
    let Some(record) = socket_record(fd, 0)? else { return Ok(false) };
    let count = count.min(u64::from(UIO_MAXIOV)) as u32;
    // A loop on the call's own count, which the compiler cannot unroll 1024 times over, and
    // last: the verifier need not walk what follows once per way out of it.
    let (mut len, mut index) = (0u64, 0);
    while index < count {
        len = len.saturating_add(iovec(iov, index, ia32)?.1);
        index += 1;
    }
    record.call_len = u32::try_from(len).unwrap_or(u32::MAX);
    let state = VECTORED.get_ptr_mut(0).ok_or(-1)?;
    // SAFETY: a per-CPU slot, used by one program at a time on this CPU.
    unsafe { *state = Vectored { iov, count, next: 0, offset: 0, ia32 } };
    Ok(count > 0)
}

/// Copies the next iovec of the vectored call [`vectored_write`] started into the scratch
/// record, its offsets following the previous iovec's; says whether another is to be copied.
/// Bytes of the iovecs left when it stops are counted.
#[inline(always)]
pub fn vectored_next() -> Result<bool, i32> {
    let state = VECTORED.get_ptr_mut(0).ok_or(-1)?;
    // SAFETY: a per-CPU slot, used by one program at a time on this CPU.
    let state = unsafe { &mut *state };
    let scratch = OUTBOUND_SCRATCH.get_ptr_mut(0).ok_or(-1)?;
    // SAFETY: the record `vectored_write` started, on this CPU, within the same syscall entry.
    let record = unsafe { &mut *scratch };
    let (base, len) = iovec(state.iov, state.next, state.ia32)?;
    copy_at(record, base, len, state.offset);
    state.offset = state.offset.saturating_add(len);
    state.next += 1;
    let more = state.next < state.count.min(IOVECS_COPIED) && state.offset < CALL_CAP;
    if !more {
        count_uncopied(u64::from(record.call_len).saturating_sub(state.offset));
    }
    Ok(more)
}

/// Base and length of iovec `index` of the array at user address `iov`.
#[inline(always)]
fn iovec(iov: u64, index: u32, ia32: bool) -> Result<(u64, u64), i32> {
    let index = u64::from(index);
    if ia32 {
        let at = iov + index * 8;
        Ok((u64::from(user::<u32>(at)?), u64::from(user::<u32>(at + 4)?)))
    } else {
        let at = iov + index * 16;
        Ok((user::<u64>(at)?, user::<u64>(at + 8)?))
    }
}

/// `msg_iov` and `msg_iovlen` of the `struct msghdr` (`struct compat_msghdr` for an ia32
/// caller) at user address `msg`.
#[inline(always)]
pub fn message_iovecs(msg: u64, ia32: bool) -> Result<(u64, u64), i32> {
    if ia32 {
        Ok((u64::from(user::<u32>(msg + 8)?), u64::from(user::<u32>(msg + 12)?)))
    } else {
        Ok((user::<u64>(msg + 16)?, user::<u64>(msg + 24)?))
    }
}

/// A `T` read from user address `at`.
#[inline(always)]
fn user<T>(at: u64) -> Result<T, i32> {
    // SAFETY: the helper checks the user address and fails on a bad one.
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(at as *const T) }.map_err(|_| -1)
}

/// The scratch record for a send of `len` bytes on descriptor `fd`, destination set, if the
/// current process is tainted and `fd` is an IP socket. A thread in a TLS write is sending
/// that write's ciphertext: its plaintext is copied in `tls`.
#[inline(always)]
fn socket_record(fd: u32, len: u64) -> Result<Option<&'static mut OutboundEvent>, i32> {
    let Some(taint) = taint::current() else { return Ok(None) };
    if tls::in_call() {
        return Ok(None);
    }
    let file = fd_file(fd)?;
    if file_type(file)? != S_IFSOCK {
        return Ok(None);
    }
    let sk = socket_sock(file)?;
    let Some(transport) = network::ip_transport(sk)? else { return Ok(None) };
    let record = start(sender::TAINTED, taint, send_path::SOCKET, len)?;
    record.transport = transport;
    // An unconnected UDP socket names its destination per datagram: left unknown here.
    if let Ok(peer) = network::peer(sk) {
        set_destination(record, &peer);
    }
    Ok(Some(record))
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
    copy_at(record, buf, len, 0);
}

/// [`copy`] of `len` bytes at `buf` that are the call's bytes from offset `start` on.
#[inline(always)]
fn copy_at(record: &mut OutboundEvent, buf: u64, len: u64, start: u64) {
    let ring_filling =
        EVENTS.query(u64::from(BPF_RB_AVAIL_DATA)) * 2 > EVENTS.query(u64::from(BPF_RB_RING_SIZE));
    let copied = if ring_filling { 0 } else { len.min(CALL_CAP.saturating_sub(start)) };
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
        record.offset = (start + offset) as u32;
        record.len = chunk;
        // SAFETY: the record's head and its first `chunk` data bytes, within it.
        emit::output_bytes(unsafe {
            core::slice::from_raw_parts((&raw const *record).cast(), OUTBOUND_HEADER_LEN + chunk as usize)
        });
        offset += u64::from(chunk);
    }
    count_uncopied(len - offset);
}

/// Counts `bytes` of outbound data not copied (`outbound-uncopied`).
#[inline(always)]
fn count_uncopied(bytes: u64) {
    if bytes == 0 {
        return;
    }
    if let Some(uncopied) = COUNTERS.get_ptr_mut(counter::OUTBOUND_UNCOPIED) {
        // SAFETY: per-CPU slot, programs do not preempt each other on one CPU.
        unsafe { *uncopied += bytes };
    }
}
