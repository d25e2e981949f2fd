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
