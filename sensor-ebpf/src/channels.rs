//! Secret material moving between processes before it leaves: what a tainted process writes
//! into a regular file (a derived file), a pipe, a FIFO or a unix socket carries its taint;
//! whoever opens or reads it next is tainted in turn.
//!
//! Every hook here stops at a gate (two array loads, `crate::gates`) until a process is tainted or a
//! channel marked. Marks are made before the bytes move: at taint time for what the process
//! already holds, in the sender's context for socket deliveries and wakeups, at the entry of
//! writes while the syscall programs are attached. Pipe and socket reads are followed to their
//! exit; regular files are judged by identity when read.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use sensor_common::{counter, via, DerivedEvent, EventHeader, EventKind, FileId, Taint};

use crate::{
    allowance,
    emit::{self, current_pid, header},
    files::{self, prefilter},
    gates,
    kernel::{
        current_start_ns, current_syscall, fd_file, file_dentry, file_id, file_inode, file_readable,
        file_type, file_writable, inode_dentry, inode_file_id, inode_generation, inode_type, load,
        name_parts, offset, offsets, pty, read, sock_id, sock_inode_number, socket_id, socket_sock,
        task_fd_file, task_identity, unix_peer_id, PtyEnd, S_IFCHR, S_IFIFO, S_IFREG, S_IFSOCK,
    },
    maps::{LOCAL_ADDRS, PIPE_UPSTREAM, READING, TAINTED_FILES},
    stores,
    syscall_abi::nr,
    taint,
};

/// Descriptors looked at when a process becomes tainted (see [`mark_held`]).
const HELD_SCAN: u32 = 16;

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
/// waiting. A read of a regular file is judged at once, by the file's identity: however the
/// descriptor was obtained (opened before the agent started, passed with `SCM_RIGHTS`,
/// opened by handle), reading a secret or a derived file taints.
#[inline(always)]
pub fn reading(fd: u32) -> Result<(), i32> {
    let file = fd_file(fd)?;
    match file_type(file)? {
        S_IFIFO | S_IFSOCK | S_IFCHR => taint::counted(READING.insert(bpf_get_current_pid_tgid(), fd, 0)),
        S_IFREG => files::file_read_subprogram(file, fd),
        _ => Ok(()),
    }
}

/// The read started by [`reading`] returned `ret`.
#[inline(always)]
pub fn read_done(ret: i64) -> Result<(), i32> {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let Some(fd) = (unsafe { READING.get(thread) }).copied() else { return Ok(()) };
    let _ = READING.remove(thread);
    if ret <= 0 || !sockets_marked() {
        return Ok(());
    }
    read_file(fd_file(fd)?, fd)
}

/// The current process, tainted with `taint`, wrote into `file` (descriptor `fd`, or
/// `u32::MAX` when io_uring did the write): what it wrote into carries the taint.
#[inline(always)]
pub fn written_file(file: *const u8, fd: u32, taint: &Taint) -> Result<(), i32> {
    let inode = file_inode(file)?;
    match inode_type(inode)? {
        S_IFREG => written_regular(inode, file_dentry(file)?, fd, taint),
        S_IFIFO => mark_pipe(inode_file_id(inode)?, taint),
        S_IFCHR => written_pty(file, taint),
        _ => Ok(()),
    }
}

/// Pipe or FIFO `id` now carries `taint`.
#[inline(always)]
fn mark_pipe(id: FileId, taint: &Taint) -> Result<(), i32> {
    mark(id, carried(taint, via::PIPE, id)).map(|_| ())
}

/// A write into a pty's slave side reaches whoever reads its master side.
#[inline(always)]
fn written_pty(file: *const u8, taint: &Taint) -> Result<(), i32> {
    match pty(file)? {
        Some((PtyEnd::Slave, id)) => mark(id, carried(taint, via::PTY, id)).map(|_| ()),
        _ => Ok(()),
    }
}

/// The current process, tainted with `taint`, dirtied a page of `inode` (a `write` through
/// the page cache, a `MAP_SHARED` store, `copy_file_range`, io_uring: whatever the syscall).
#[inline(always)]
pub fn written_inode(inode: *const u8, taint: &Taint) -> Result<(), i32> {
    if inode_type(inode)? != S_IFREG {
        return Ok(());
    }
    written_regular(inode, inode_dentry(inode)?, u32::MAX, taint)
}

/// A regular file now carries `taint`; a file that did not before is reported, named by
/// `dentry`.
#[inline(always)]
fn written_regular(inode: *const u8, dentry: *const u8, fd: u32, taint: &Taint) -> Result<(), i32> {
    let id = inode_file_id(inode)?;
    let carried = Taint { via_generation: inode_generation(inode)?, ..carried(taint, via::FILE, id) };
    if mark(id, carried)? {
        derived(dentry, fd, carried);
    }
    Ok(())
}

/// `task`'s process just became tainted with `taint`: the pipes and FIFOs it holds open for
/// writing, and the peers of its connected unix sockets, carry what it writes next. They are
/// marked now, before any write: the hooks that follow channels are attached only while some
/// process is tainted, and the first bytes may move before they are. Standard error is left
/// to those hooks: it carries diagnostics to whoever supervises the process, and marking it
/// would taint every supervisor of a process that reads a secret.
#[inline(always)]
pub fn mark_held(task: *const u8, taint: &Taint) {
    const STDERR: u32 = 2;
    for fd in 0..HELD_SCAN {
        if fd == STDERR {
            continue;
        }
        let Ok(file) = task_fd_file(task, fd) else { return };
        if !file.is_null() {
            let _ = mark_held_file(file, taint);
        }
    }
}

#[inline(always)]
fn mark_held_file(file: *const u8, taint: &Taint) -> Result<(), i32> {
    match file_type(file)? {
        // What a write into it would mark, marked before the write (regular files are left to
        // their writes: the derived-file path would not fit every program that taints).
        S_IFIFO if file_writable(file)? => mark_pipe(file_id(file)?, taint),
        S_IFCHR if file_writable(file)? => written_pty(file, taint),
        S_IFSOCK => {
            let sk = socket_sock(file)?;
            if read::<u16>(sk, offsets().sock_common_skc_family)? != AF_UNIX {
                return Ok(());
            }
            held_unix_socket(sk, taint)
        }
        _ => Ok(()),
    }
}

pub const AF_UNIX: u16 = 1;

/// The current task wakes `wakee` (`sched_waking`). If the current process is tainted and
/// the wakeup comes from its write into a pipe or FIFO that `wakee` holds, the wakee is a
/// reader woken to read what was written: it is tainted now, before it reads, whether or not
/// the programs that follow reads are attached yet. (Sockets: `socket_fed`.) A tainted process
/// that exits wakes the readers of the pipes it closes: see [`woken_by_exit`].
#[inline(always)]
pub fn woken(wakee: *const u8) -> Result<(), i32> {
    let Some(taint) = taint::current() else { return Ok(()) };
    let call = current_syscall();
    let fd = match call.id {
        nr::TEE => call.args[1],
        nr::SPLICE => call.args[2],
        nr::EXIT | nr::EXIT_GROUP => return woken_by_exit(wakee),
        id if is_write(id) => call.args[0],
        _ => return Ok(()),
    };
    let file = fd_file(u32::try_from(fd).map_err(|_| -1)?)?;
    if file_type(file)? != S_IFIFO {
        return Ok(());
    }
    let inode = file_inode(file)?;
    if !holds(wakee, inode) {
        return Ok(());
    }
    let (pid, uid) = task_identity(wakee)?;
    if pid == current_pid() || allowance::trusted_label(wakee, pid).is_some() {
        return Ok(());
    }
    let channel = inode_file_id(inode)?;
    let header = EventHeader { pid, uid, ..header(EventKind::Taint) };
    taint::acquire_by(wakee, header, carried(&taint, via::PIPE, channel), u32::MAX, channel)
}

/// The current process, tainted, exits and wakes `wakee`: closing a pipe wakes its readers
/// (to read what is left, then end of file). A reader that did not block while the exiting
/// writer wrote (`$(cat SECRET)`: the shell forks, then reads) is seen nowhere else before
/// the programs that follow reads are attached. Its descriptors are already gone, so the
/// wakee's first ones are looked at: a marked pipe it holds for reading taints it.
#[inline(always)]
fn woken_by_exit(wakee: *const u8) -> Result<(), i32> {
    for fd in 0..HELD_SCAN {
        let Ok(file) = task_fd_file(wakee, fd) else { return Ok(()) };
        if file.is_null() || file_type(file)? != S_IFIFO || !file_readable(file)? {
            continue;
        }
        let id = file_id(file)?;
        // SAFETY: the value is copied out at once.
        let Some(source) = (unsafe { TAINTED_FILES.get(id) }).copied() else { continue };
        let (pid, uid) = task_identity(wakee)?;
        if source.via_kind != via::PIPE || allowance::trusted_label(wakee, pid).is_some() {
            return Ok(());
        }
        let header = EventHeader { pid, uid, ..header(EventKind::Taint) };
        return taint::acquire_by(wakee, header, source, fd, id);
    }
    Ok(())
}

/// Whether `task` holds, among its first descriptors, the pipe or FIFO whose inode is `inode`.
#[inline(always)]
fn holds(task: *const u8, inode: *const u8) -> bool {
    for fd in 0..HELD_SCAN {
        let Ok(file) = task_fd_file(task, fd) else { return false };
        if !file.is_null() && file_inode(file) == Ok(inode) {
            return true;
        }
    }
    false
}

/// The untainted current process holds the read end of a marked pipe, or a marked socket, as
/// it exits, connects or sends: it may have read from it before the programs that follow reads
/// were attached (a pipeline stage that was never blocked waiting, a relay's accepted socket),
/// and what it writes or sends may carry the secret. It is tainted now, which also marks the
/// pipes it holds for writing, so the next stage is followed; its connect or send is then
/// judged as a tainted one. With `store_replies`, sockets a store server answered on are looked
/// for too once a server is known (connects and exits: sends look at their own socket only,
/// [`sends_after_store_reply`]).
#[inline(always)]
pub fn took_from_held_channels(store_replies: bool) -> Result<(), i32> {
    if !channels_held_marked() && !(store_replies && stores::any()) {
        return Ok(());
    }
    for fd in 0..HELD_SCAN {
        let Ok(file) = fd_file(fd) else { return Ok(()) };
        if file.is_null() {
            continue;
        }
        let held = match file_type(file)? {
            S_IFIFO if file_readable(file)? => {
                let id = file_id(file)?;
                marked_upstream(id).map(|source| (carried(&source, via::PIPE, id), id))
            }
            S_IFSOCK => file_socket_mark(file)?,
            S_IFCHR => match pty(file)? {
                // SAFETY: the value is copied out at once.
                Some((PtyEnd::Master, id)) => {
                    unsafe { TAINTED_FILES.get(id) }.copied().map(|source| (source, id))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some((source, id)) = held {
            if !allowance::current_is_trusted_service() {
                return taint::acquire(source, fd, id);
            }
        }
    }
    Ok(())
}

/// Pipeline stages followed upstream from a pipe: a stage that exited before anything saw it
/// read still left its output pipe downstream of its input.
const UPSTREAM_HOPS: u32 = 4;

/// The taint of pipe `id`, or of the nearest marked pipe upstream of it (see
/// [`note_pipeline_stage`]).
#[inline(always)]
fn marked_upstream(mut id: FileId) -> Option<Taint> {
    for _ in 0..UPSTREAM_HOPS {
        // SAFETY: values are copied out at once.
        if let Some(source) = unsafe { TAINTED_FILES.get(id) }.copied() {
            return (source.via_kind == via::PIPE).then_some(source);
        }
        id = unsafe { PIPE_UPSTREAM.get(id) }.copied()?;
    }
    None
}

/// The current process just exec'd with a pipe on standard input and one on standard output:
/// a pipeline stage (`... | base64 | ...`), whose output derives from its input. The edge is
/// kept so that a later stage can be followed to a marked pipe upstream, however fast the
/// stages between ran and however they closed their descriptors before exiting.
#[inline(always)]
pub fn note_pipeline_stage() -> Result<(), i32> {
    let (input, output) = (fd_file(0)?, fd_file(1)?);
    if input.is_null() || output.is_null() || file_type(input)? != S_IFIFO || file_type(output)? != S_IFIFO {
        return Ok(());
    }
    let (input, output) = (file_id(input)?, file_id(output)?);
    if input != output {
        taint::counted(PIPE_UPSTREAM.insert(output, input, 0))?;
    }
    Ok(())
}

/// Data was queued on socket `sk` for its reader (`sk_data_ready`). When the current
/// process is tainted, or is a store server (`stores`), and is sending (unix delivery runs in
/// the sender's context, loopback delivery in its softirq), `sk` now carries the secret to
/// whoever reads it: the peer of a connected unix socket, the receiver of a datagram sent to a
/// path, the far end of a loopback TCP connection or UDP flow (to 127/8, ::1 or an address of
/// this host's interfaces, which the kernel also delivers through loopback). Other deliveries
/// (from the network) are left alone.
///
/// Cost, once the agent found a store server: every local delivery on the host looks its
/// sender's pid up in `STORE_SERVERS` (one hash lookup); a server's reply to a socket already
/// marked with its store costs one more (`TAINTED_FILES`), and writes nothing.
#[inline(always)]
pub fn socket_fed(sk: *const u8) -> Result<(), i32> {
    // The socket first (direct loads): a delivery from the network stops here.
    // SAFETY: `sk` is the tracepoint's `struct sock *`.
    let kind = match unsafe { load::<u16>(sk, offset!(sock_common_skc_family)) } {
        AF_UNIX => via::UNIX_SOCKET,
        family if peer_is_local(sk, family) => via::LOOPBACK_SOCKET,
        _ => return Ok(()),
    };
    let (taint, kind) = match taint::current() {
        Some(taint) => (taint, kind),
        None => (stores::reply().ok_or(0)?, via::STORE_SOCKET),
    };
    if !is_send(current_syscall().id) {
        return Ok(());
    }
    let id = sock_id(sk)?;
    mark(id, socket_carried(&taint, kind, id, sk)).map(|_| ())
}

/// What socket `sk` (identity `id`) carries once `taint`'s holder sent into it. A socket is
/// known by its address, which the slab hands to the next socket once it is freed (and store
/// replies and their clients' goodbyes mark many short-lived ones): the mark names the
/// socket's inode too, so that a later socket at the address is not taken for it
/// ([`socket_mark`]).
#[inline(always)]
fn socket_carried(taint: &Taint, kind: u32, id: FileId, sk: *const u8) -> Taint {
    let tag = inode_number_tag(sock_inode_number(sk).unwrap_or(0));
    Taint { via_generation: tag, ..carried(taint, kind, id) }
}

/// The low half of a socket's inode number, kept in [`Taint::via_generation`] of a socket's
/// mark (0: unknown, a connection not accepted yet).
#[inline(always)]
fn inode_number_tag(ino: u64) -> u32 {
    ino as u32
}

/// What the current process takes in by reading socket `id`, `ino` being the inode number of
/// the socket found at that address now: a mark naming another socket's inode was left by a
/// freed socket, and is dropped when it is found. A store's reply names its reader as the
/// origin: the first process that took the store's data out of its server.
#[inline(always)]
fn socket_mark(id: FileId, ino: u64) -> Option<Taint> {
    // SAFETY: the value is copied out at once.
    let source = unsafe { TAINTED_FILES.get(id) }.copied()?;
    if source.via_generation != 0 && inode_number_tag(ino) != source.via_generation {
        let _ = TAINTED_FILES.remove(id);
        return None;
    }
    if source.via_kind == via::STORE_SOCKET {
        return Some(Taint { origin_pid: current_pid(), origin_start_ns: current_start_ns(), ..source });
    }
    Some(source)
}

/// TCP socket `sk` is closed for good: its mark goes, so that the next socket the slab puts at
/// its address is not taken for it. The inode tag of [`socket_carried`] does not cover a
/// connection marked before it was accepted (no inode yet, tag 0): a tainted client that sends
/// right after its connect marks the server's socket so, and a later loopback client (`psql
/// -h 127.0.0.1`) at that address took the old taint (a CI run, 2026-12-02).
#[inline(always)]
pub fn socket_closed(sk: *const u8) -> Result<(), i32> {
    let _ = TAINTED_FILES.remove(sock_id(sk)?);
    Ok(())
}

/// The mark of the socket open as `file`, and its identity ([`socket_mark`]).
#[inline(always)]
fn file_socket_mark(file: *const u8) -> Result<Option<(Taint, FileId)>, i32> {
    let id = socket_id(file)?;
    let ino = read(file_inode(file)?, offsets().inode_i_ino)?;
    Ok(socket_mark(id, ino).map(|source| (source, id)))
}

/// The untainted current process sends on socket `sk`, which carries a store server's reply:
/// it read that reply, maybe before the programs that follow reads were attached (a database
/// client sends its next query, or its goodbye, on the socket it was answered on). One hash
/// lookup per send on the host once a store server is known.
#[inline(always)]
pub fn sends_after_store_reply(sk: *const u8) -> Result<(), i32> {
    if !stores::any() {
        return Ok(());
    }
    let id = sock_id(sk)?;
    let Some(source) = socket_mark(id, sock_inode_number(sk).unwrap_or(0)) else { return Ok(()) };
    if source.via_kind != via::STORE_SOCKET || allowance::current_is_trusted_service() {
        return Ok(());
    }
    taint::acquire(source, u32::MAX, id)
}

/// The current process received `len` bytes from socket `sk` (`sock_recv_length`): a socket
/// that carries a secret taints it.
#[inline(always)]
pub fn socket_read(sk: *const u8) -> Result<(), i32> {
    let id = sock_id(sk)?;
    let Some(source) = socket_mark(id, sock_inode_number(sk).unwrap_or(0)) else { return Ok(()) };
    if allowance::current_is_trusted_service() {
        return Ok(());
    }
    taint::acquire(source, u32::MAX, id)
}

/// A write into FIFO `inode` by the current process updated its times, or a read its access
/// time (`writeback_mark_inode_dirty`): a tainted writer marks the FIFO, a reader of a marked
/// FIFO is tainted. Named FIFOs only: pipes have no times to update.
#[inline(always)]
pub fn fifo_touched(inode: *const u8) -> Result<(), i32> {
    let id = inode_file_id(inode)?;
    let call = current_syscall().id;
    if let Some(taint) = taint::current() {
        if is_write(call) || is_send(call) {
            mark_pipe(id, &taint)?;
        }
        return Ok(());
    }
    if !is_read(call) || !anything_marked() {
        return Ok(());
    }
    // SAFETY: the value is copied out at once.
    let Some(source) = (unsafe { TAINTED_FILES.get(id) }).copied() else { return Ok(()) };
    if source.via_kind != via::PIPE || allowance::current_is_trusted_service() {
        return Ok(());
    }
    taint::acquire(source, u32::MAX, id)
}

#[inline(always)]
fn is_write(id: i64) -> bool {
    matches!(
        id,
        nr::WRITE
            | nr::WRITEV
            | nr::PWRITE64
            | nr::PWRITEV
            | nr::PWRITEV2
            | nr::SPLICE
            | nr::TEE
            | nr::VMSPLICE
            | nr::SENDFILE
    )
}

#[inline(always)]
fn is_send(id: i64) -> bool {
    matches!(id, nr::WRITE | nr::WRITEV | nr::SENDTO | nr::SENDMSG | nr::SENDMMSG | nr::SENDFILE | nr::SPLICE)
}

#[inline(always)]
fn is_read(id: i64) -> bool {
    matches!(id, nr::READ | nr::READV | nr::PREAD64 | nr::PREADV | nr::PREADV2 | nr::SPLICE | nr::TEE)
}

/// Whether the remote end of INET socket `sk` (BTF-typed) is this host: loopback, or a
/// connection between two of its interface addresses (`LOCAL_ADDRS`, the set the agent judges
/// destinations by). Both ends are asked: a socket in another network namespace (a container,
/// a test's remote host) whose peer is this host's address is not a local channel.
#[inline(always)]
pub fn peer_is_local(sk: *const u8, family: u16) -> bool {
    let Some(peer) = address(sk, family, Side::Peer) else { return false };
    let v4_mapped = peer[..10].iter().all(|&b| b == 0) && peer[10] == 0xff && peer[11] == 0xff;
    if peer == LOOPBACK6 || (v4_mapped && peer[12] == 127) {
        return true;
    }
    let own = address(sk, family, Side::Own);
    // SAFETY: the values are not kept.
    own.is_some_and(|own| unsafe { LOCAL_ADDRS.get(&peer).is_some() && LOCAL_ADDRS.get(&own).is_some() })
}

/// Which end of a socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Peer,
    Own,
}

/// The `side` address of INET socket `sk` (BTF-typed) as IPv6, IPv4 mapped.
#[inline(always)]
fn address(sk: *const u8, family: u16, side: Side) -> Option<[u8; 16]> {
    // SAFETY: `sk` is a BTF-typed `struct sock *`, read at `struct sock_common` offsets.
    unsafe {
        match family {
            sensor_common::family::INET => {
                let offset = if side == Side::Own {
                    offset!(sock_common_skc_rcv_saddr)
                } else {
                    offset!(sock_common_skc_daddr)
                };
                let a: [u8; 4] = load(sk, offset);
                Some([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]])
            }
            sensor_common::family::INET6 => {
                let offset = if side == Side::Own {
                    offset!(sock_common_skc_v6_rcv_saddr)
                } else {
                    offset!(sock_common_skc_v6_daddr)
                };
                Some(load(sk, offset))
            }
            _ => None,
        }
    }
}

const LOOPBACK6: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// A tainted process sent on unix socket `sk` (seen in `sock_sendmsg`, whatever the syscall):
/// its peer carries the taint to whoever reads from it, accepted yet or not. The mark names the
/// peer's inode ([`socket_carried`]).
#[inline(always)]
pub fn sent_to_unix_socket(sk: *const u8, taint: &Taint) -> Result<(), i32> {
    let peer = unix_peer_id(sk)?;
    let peer_sk: *const u8 = read(sk, offsets().unix_sock_peer)?;
    mark(peer, socket_carried(taint, via::UNIX_SOCKET, peer, peer_sk))?;
    Ok(())
}

/// [`sent_to_unix_socket`] before anything is sent, for a process just tainted: the mark names
/// no inode (the verifier's budget for the descriptor scan of [`mark_held`] has no room for
/// the reads), so it is the address's until the peer's socket is marked anew.
#[inline(always)]
fn held_unix_socket(sk: *const u8, taint: &Taint) -> Result<(), i32> {
    let peer = unix_peer_id(sk)?;
    mark(peer, Taint { via_generation: 0, ..carried(taint, via::UNIX_SOCKET, peer) })?;
    Ok(())
}

/// Reports a new derived file, with its name, built in place in the ring buffer (too big for
/// the stack).
#[inline(always)]
fn derived(dentry: *const u8, fd: u32, taint: Taint) {
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
        let _ = name_parts(dentry, parts);
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
    taint::counted(TAINTED_FILES.insert(id, taint, 0))?;
    if taint.via_kind == via::STORE_SOCKET {
        // Read only through sockets, which `sockets_marked` gates: no file or pipe hook needs
        // to look, so the store's steady traffic to the homeserver opens no gate.
        return Ok(true);
    }
    prefilter::add(id);
    gates::open(counter::TAINTED_CHANNELS);
    if taint.via_kind != via::FILE {
        gates::open(counter::HELD_CHANNELS);
    }
    Ok(true)
}

/// Whether any file, pipe or socket was ever marked: until then, nobody can take taint from
/// one, and the lookups are skipped (array reads, inlined by the verifier: no helper call).
#[inline(always)]
pub fn anything_marked() -> bool {
    gates::is_open(counter::TAINTED_CHANNELS)
}

/// Whether any socket may carry a secret: [`anything_marked`], or a store server is known
/// (whose replies are marked without opening that gate).
#[inline(always)]
pub fn sockets_marked() -> bool {
    anything_marked() || stores::any()
}

/// Whether any pipe or socket may be marked: until one is, and again once the agent found
/// none alive, connects and sends skip [`took_from_held_channels`].
#[inline(always)]
fn channels_held_marked() -> bool {
    gates::is_open(counter::HELD_CHANNELS)
}

/// The current process read data out of `file`: a tainted pipe or socket taints it.
#[inline(always)]
pub fn read_file(file: *const u8, fd: u32) -> Result<(), i32> {
    // SAFETY: the value is copied out at once.
    let marked = |id: FileId| unsafe { TAINTED_FILES.get(id) }.copied().map(|source| (source, id));
    let held = match file_type(file)? {
        S_IFREG => return files::file_read(file, fd),
        S_IFSOCK => file_socket_mark(file)?,
        S_IFCHR => match pty(file)? {
            Some((PtyEnd::Master, id)) => marked(id),
            _ => return Ok(()),
        },
        _ => marked(file_id(file)?),
    };
    let Some((source, id)) = held else { return Ok(()) };
    if source.via_kind == via::FILE || allowance::current_is_trusted_service() {
        // Derived files taint at open, where the opener is known.
        return Ok(());
    }
    taint::acquire(source, fd, id)
}
