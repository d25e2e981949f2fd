//! Records the kernel programs write into the ring buffer.
//!
//! Every record starts with an [`EventHeader`] whose `kind` says which struct follows.
//! Records are only emitted for activity that matters: process lifecycle (so the agent's
//! process table stays true), opens of watched secrets, and outbound traffic of tainted
//! processes. Untainted network activity and non-secret opens never reach the ring buffer.

use crate::{FileId, Taint};

/// Longest executable path kept from an exec, NUL included.
pub const FILENAME_MAX: usize = 256;
/// Longest argument vector kept from an exec (NUL-separated, as in `/proc/PID/cmdline`).
pub const ARGS_MAX: usize = 512;

/// Which record follows the header.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    Taint = 4,
    Connect = 5,
    Derived = 6,
    Outbound = 7,
    /// A [`TaintEvent`] of a process that may open the secret (an allowed reader or a trusted
    /// service): reported once per process and secret, not tainting.
    AllowedRead = 8,
    /// A [`SignalEvent`]: a signal aimed at the agent by another process.
    Signal = 9,
}

impl EventKind {
    /// The kind named by a raw header value, if it is one.
    #[must_use]
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            1 => Some(Self::Exec),
            2 => Some(Self::Fork),
            3 => Some(Self::Exit),
            4 => Some(Self::Taint),
            5 => Some(Self::Connect),
            6 => Some(Self::Derived),
            7 => Some(Self::Outbound),
            8 => Some(Self::AllowedRead),
            9 => Some(Self::Signal),
            _ => None,
        }
    }
}

/// Common start of every record: who did it and when.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    pub kind: u32,
    /// Thread-group id: the process, not the thread.
    pub pid: u32,
    pub uid: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns`: monotonic nanoseconds since boot.
    pub ktime_ns: u64,
}

/// A successful execve: the process now runs `filename` with `args`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub ppid: u32,
    pub filename_len: u32,
    pub args_len: u32,
    pub _pad: u32,
    /// Task start time, nanoseconds since boot.
    pub start_ns: u64,
    /// `task_struct.self_exec_id` after this exec: which program of the process it is.
    pub exec_id: u64,
    /// The identity of the executable it now runs (`mm->exe_file`), as the kernel sees it:
    /// a path in `filename` may be relative, or replaced since.
    pub exe: FileId,
    pub filename: [u8; FILENAME_MAX],
    pub args: [u8; ARGS_MAX],
}

/// A new process (not a thread): `header.pid` forked `child_pid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub child_pid: u32,
    pub _pad: u32,
    pub child_start_ns: u64,
    /// The child's `self_exec_id`, its parent's at the fork.
    pub child_exec_id: u64,
}

/// The last thread of `header.pid` exited.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
}

/// A process gained a taint: it opened a secret or a derived file, or read a tainted pipe or
/// socket (first time per process and secret).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaintEvent {
    pub header: EventHeader,
    pub taint: Taint,
    /// The descriptor it came through, so the agent can name a derived file's path.
    pub fd: u32,
    pub _pad: u32,
    /// Identity of the file actually opened or read (a hardlink has the secret's identity).
    pub file: FileId,
}

/// A signal generated for a thread of the agent from another process's context
/// (`signal:signal_generate`); `header` names the sender.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalEvent {
    pub header: EventHeader,
    pub signal: u32,
    /// `si_code`: `SI_USER` (0) for `kill`, `SI_TKILL` (-6), `SI_QUEUE` (-1), `SI_KERNEL`
    /// (0x80) for one the kernel sends, positive for faults and child events.
    pub code: i32,
    /// The agent's thread it was sent to.
    pub target_tid: u32,
    /// The sender's thread.
    pub sender_tid: u32,
    /// The tracepoint's result: 0 delivered, 1 ignored, 2 already pending, 3-4 queue full.
    pub result: u32,
    /// 1 if the sender is in `ptrace(2)` (`PTRACE_ATTACH` stops its target with `SIGSTOP`).
    pub in_ptrace: u32,
}

/// Path components kept of a derived file, innermost first.
pub const NAME_PARTS: usize = 8;
/// Longest path component kept, NUL included.
pub const NAME_PART_MAX: usize = 64;

/// A tainted process wrote into a regular file, which is now derived from the secret.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DerivedEvent {
    pub header: EventHeader,
    /// The taint the file now carries (`via` is the file itself).
    pub taint: Taint,
    pub fd: u32,
    pub _pad: u32,
    /// The file's name and its parent directories' names (within its mount), innermost
    /// first, NUL-terminated; unused entries are empty. The root directory's name is "/".
    pub name_parts: [[u8; NAME_PART_MAX]; NAME_PARTS],
}

/// Transport protocol numbers used in [`ConnectEvent::transport`].
pub mod transport {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// Address families used in [`ConnectEvent::family`].
pub mod family {
    pub const INET: u16 = 2;
    pub const INET6: u16 = 10;
}

/// A tainted process started talking to a destination: a TCP SYN, a UDP send or connect,
/// or its first send on a socket connected before it was tainted.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectEvent {
    pub header: EventHeader,
    /// The kernel's taint record of the process at the time of the connect.
    pub taint: Taint,
    pub family: u16,
    /// Destination port, host byte order.
    pub port: u16,
    pub transport: u8,
    pub _pad: [u8; 3],
    /// Destination address: 4 bytes for IPv4 (rest zero), 16 for IPv6, network order.
    pub addr: [u8; 16],
    /// Bytes sent by this first send (0 for a connect); later ones add up in `SEND_TOTALS`.
    pub bytes: u64,
}

/// Bytes copied into one [`OutboundEvent`]: 1 KiB keeps a record (with its 128-byte head) at
/// about a thousandth of the default 1 MiB ring, and one `bpf_probe_read_user` of at most this
/// much per loop step is what the verifier checks.
pub const OUTBOUND_CHUNK: usize = 1024;
/// Records per write call: the first 16 KiB of a call (a whole TLS record) are copied; bytes
/// beyond are counted in `counter::OUTBOUND_UNCOPIED`, as are those of calls made while the
/// ring buffer is more than half full (room is kept for the records alerts are built from).
pub const OUTBOUND_CHUNKS: u32 = 16;

/// Who sent the bytes of an [`OutboundEvent`], in its `sender`.
pub mod sender {
    /// A tainted process (`OutboundEvent::taint` is its taint).
    pub const TAINTED: u8 = 1;
    /// A trusted service's process (its taint is empty).
    pub const TRUSTED: u8 = 2;
}

/// Where the bytes of an [`OutboundEvent`] were taken, in its `path`.
pub mod send_path {
    /// No bytes: the destination of the TLS write of the same `tid` and `call`.
    pub const TLS_DESTINATION: u8 = 0;
    /// A plain `write`/`send*` on an IP socket, at the syscall's entry.
    pub const SOCKET: u8 = 1;
    /// OpenSSL's `SSL_write`/`SSL_write_ex`, before encryption.
    pub const OPENSSL: u8 = 2;
    /// `GnuTLS`'s `gnutls_record_send`, before encryption.
    pub const GNUTLS: u8 = 3;
}

/// A piece of what a tainted process or a trusted service writes out: bytes `offset ..
/// offset + len` of one write call of `call_len` bytes. The pieces of a call are written in
/// order, one after the other, by the thread that makes it, so each stream arrives in order.
/// A TLS write's pieces carry no destination (`family` 0): the socket is known only when the
/// library sends inside the call, and then a record with `len` 0 and the same `tid` and
/// `call` names it (`path` `send_path::TLS_DESTINATION`). Only the first `OUTBOUND_HEADER_LEN + len` bytes are written.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OutboundEvent {
    pub header: EventHeader,
    /// The sender's taint (empty for a trusted service).
    pub taint: Taint,
    /// Which call of the thread: `bpf_ktime_get_ns` at its start.
    pub call: u64,
    /// The thread that made the call.
    pub tid: u32,
    /// The call's length (saturated at `u32::MAX`).
    pub call_len: u32,
    pub offset: u32,
    pub len: u32,
    /// One of [`sender`].
    pub sender: u8,
    /// One of [`send_path`].
    pub path: u8,
    /// `transport::TCP` or `UDP`, where the destination is known.
    pub transport: u8,
    pub _pad: u8,
    /// `family::INET`/`INET6`, or 0 while the destination is unknown.
    pub family: u16,
    /// Destination port, host byte order.
    pub port: u16,
    /// Destination address: 4 bytes for IPv4 (rest zero), 16 for IPv6, network order.
    pub addr: [u8; 16],
    pub data: [u8; OUTBOUND_CHUNK],
}

/// Bytes of an [`OutboundEvent`] before its data.
pub const OUTBOUND_HEADER_LEN: usize = core::mem::size_of::<OutboundEvent>() - OUTBOUND_CHUNK;
