//! Secret material moving between processes before it leaves: what a tainted process writes
//! into a regular file (a derived file), a pipe, a FIFO or a unix socket carries its taint;
//! whoever opens or reads it next is tainted in turn.
//!
//! The write hooks cost untainted processes one map lookup. The read hooks look at the
//! descriptor's type; only pipe and socket reads are followed to their exit, where nothing
//! more happens until the first pipe or socket is ever tainted (`GATES`).

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use sensor_common::{counter, via, DerivedEvent, EventKind, FileId, Taint};

use crate::{
    emit::{self, header},
    kernel::{
        fd_file, file_id, file_type, inode_generation, name_parts, socket_id, unix_peer_id, S_IFIFO, S_IFREG,
        S_IFSOCK,
    },
    maps::{GATES, READING, TAINTED_FILES},
    taint,
};

/// A write into descriptor `fd` (write, writev, pwrite*, sendfile's out_fd, splice's and
/// copy_file_range's fd_out) that may land in a regular file or a pipe. What goes into a
/// socket is seen in `sock_sendmsg` instead (`network::sock_send_length`).
#[inline(always)]
pub fn written(fd: u32) -> Result<(), i32> {
    let Some(taint) = taint::current() else { return Ok(()) };
    written_file(fd_file(fd)?, fd, &taint)
}

/// A read from descriptor `fd` starts (read, readv, recvfrom, recvmsg, splice's fd_in). A
/// pipe's or socket's descriptor is kept for the syscall's exit: a reader blocked on an
/// empty pipe must be judged by what the pipe carries when data arrives, not when it started
/// waiting. Reads of regular files (derived files taint at open) keep nothing.
#[inline(always)]
pub fn reading(fd: u32) -> Result<(), i32> {
    let kind = file_type(fd_file(fd)?)?;
    if kind == S_IFIFO || kind == S_IFSOCK {
        READING.insert(bpf_get_current_pid_tgid(), fd, 0)?;
    }
    Ok(())
}

/// The read started by [`reading`] returned `ret`.
#[inline(always)]
pub fn read_done(ret: i64) -> Result<(), i32> {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let Some(fd) = (unsafe { READING.get(thread) }).copied() else { return Ok(()) };
    let _ = READING.remove(thread);
    if ret <= 0 || !anything_marked() {
        return Ok(());
    }
    read_file(fd_file(fd)?, fd)
}

/// The current process, tainted with `taint`, wrote into `file` (descriptor `fd`, or
/// `u32::MAX` when io_uring did the write): what it wrote into carries the taint.
#[inline(always)]
pub fn written_file(file: *const u8, fd: u32, taint: &Taint) -> Result<(), i32> {
    match file_type(file)? {
        S_IFREG => {
            let id = file_id(file)?;
            let carried = Taint { via_generation: inode_generation(file)?, ..carried(taint, via::FILE, id) };
            if mark(id, carried)? {
                derived(file, fd, carried);
            }
        }
        S_IFIFO => {
            let id = file_id(file)?;
            mark(id, carried(taint, via::PIPE, id))?;
        }
        _ => {}
    }
    Ok(())
}

/// A tainted process sent on unix socket `sk` (seen in `sock_sendmsg`, whatever the syscall):
/// its peer carries the taint to whoever reads from it, accepted yet or not.
#[inline(always)]
pub fn sent_to_unix_socket(sk: *const u8, taint: &Taint) -> Result<(), i32> {
    let peer = unix_peer_id(sk)?;
    mark(peer, carried(taint, via::UNIX_SOCKET, peer))?;
    Ok(())
}

/// Reports a new derived file, with its name, built in place in the ring buffer (too big for
/// the stack).
#[inline(always)]
fn derived(file: *const u8, fd: u32, taint: Taint) {
    let Some(mut entry) = emit::reserve::<DerivedEvent>() else { return };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at reserved ring-buffer memory of the right size; every field
    // is written before submit (name parts by `name_parts`, which terminates each).
    unsafe {
        (*event).header = header(EventKind::Derived);
        (*event).taint = taint;
        (*event).fd = fd;
        (*event)._pad = 0;
        let parts = &mut *(&raw mut (*event).name_parts);
        for part in parts.iter_mut() {
            part[0] = 0;
        }
        let _ = name_parts(file, parts);
    }
    entry.submit(0);
}

/// The taint a file, pipe or socket `id` carries once `taint`'s holder wrote into it.
#[inline(always)]
fn carried(taint: &Taint, kind: u32, id: FileId) -> Taint {
    Taint { via_kind: kind, via: id, ..*taint }
}

/// Records that `id` carries `taint`; true if it did not carry this secret before (a
/// deleted file's inode number reused by a new file counts as before: not carried).
#[inline(always)]
fn mark(id: FileId, taint: Taint) -> Result<bool, i32> {
    // SAFETY: the value is copied out at once.
    let held = unsafe { TAINTED_FILES.get(id) };
    if held.is_some_and(|t| t.secret_id == taint.secret_id && t.via_generation == taint.via_generation) {
        return Ok(false);
    }
    TAINTED_FILES.insert(id, taint, 0)?;
    open_gate();
    Ok(true)
}

/// Whether any file, pipe or socket was ever marked: until then, nobody can take taint from
/// one, and the lookups are skipped (an array read, inlined by the verifier: no helper call).
#[inline(always)]
pub fn anything_marked() -> bool {
    GATES.get(counter::TAINTED_CHANNELS).copied().unwrap_or(0) != 0
}

#[inline(always)]
fn open_gate() {
    if let Some(gate) = GATES.get_ptr_mut(counter::TAINTED_CHANNELS) {
        // SAFETY: a plain store of a flag; a lost race still stores 1.
        unsafe { *gate = 1 };
    }
}

/// The current process read data out of `file`: a tainted pipe or socket taints it.
#[inline(always)]
pub fn read_file(file: *const u8, fd: u32) -> Result<(), i32> {
    let id = if file_type(file)? == S_IFSOCK { socket_id(file)? } else { file_id(file)? };
    // SAFETY: the value is copied out at once.
    let Some(source) = (unsafe { TAINTED_FILES.get(id) }).copied() else { return Ok(()) };
    if source.via_kind == via::FILE || taint::current_is_trusted() {
        // Derived files taint at open, where the opener is known.
        return Ok(());
    }
    taint::acquire(source, fd, id)
}
