//! Keys and values of the kernel maps that hold the watch list and the taint state.

/// A file's identity in the kernel: the superblock's device number (kernel `dev_t`
/// encoding, `major << 20 | minor`) and the inode number. Paths are for display only;
/// hardlinks, symlinks and bind mounts all lead to the same `FileId`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

impl FileId {
    #[must_use]
    pub const fn new(dev: u32, ino: u64) -> Self {
        Self { dev, _pad: 0, ino }
    }
}

/// A watched secret, the value of `SECRETS` (by file identity).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchedSecret {
    /// Index of the secret in the agent's catalog.
    pub secret_id: u32,
    /// The inode's generation when the agent looked, if `generation_known` is 1: a new file
    /// that reuses the inode number of a deleted secret has another, and is not the secret.
    pub generation: u32,
    pub generation_known: u32,
}

/// How secret material reached a process, in [`Taint::via_kind`].
pub mod via {
    /// It opened the secret itself, or inherited the taint from the parent that did.
    pub const DIRECT: u32 = 0;
    /// It opened a file that a tainted process wrote (a derived file).
    pub const FILE: u32 = 1;
    /// It read from a pipe or FIFO a tainted process wrote into.
    pub const PIPE: u32 = 2;
    /// It read from a unix socket a tainted process wrote into.
    pub const UNIX_SOCKET: u32 = 3;
    /// It read a protected process's memory or environment (`via.ino` is that pid).
    pub const PROCESS_MEMORY: u32 = 4;
    /// It read from a TCP or UDP socket a tainted process sent to over loopback.
    pub const LOOPBACK_SOCKET: u32 = 5;
    /// It read, from a pty's master side, what a tainted process wrote into the slave (a
    /// terminal session: `script`, an SSH server, a reverse shell).
    pub const PTY: u32 = 6;
    /// It read from a unix or loopback socket what a store server (the homeserver's database
    /// server, `STORE_SERVERS`) sent it: the store's data.
    pub const STORE_SOCKET: u32 = 7;
}

/// Why a process (or a pipe, socket or derived file) is tainted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taint {
    /// Index of the secret in the agent's catalog.
    pub secret_id: u32,
    /// The process that opened the secret.
    pub origin_pid: u32,
    /// When the secret was last taken in (`bpf_ktime_get_ns`): the taint window counts from here.
    pub read_ns: u64,
    /// When this holder became tainted: distinguishes a reused pid from its predecessor.
    pub acquired_ns: u64,
    /// One of [`via`].
    pub via_kind: u32,
    /// For a derived file, its inode's generation: a new file that reuses the inode number
    /// of a deleted derived file is not derived. For a socket's mark, the low half of the
    /// socket's inode number (0: unknown): a later socket at a freed one's address is not it.
    pub via_generation: u32,
    /// The derived file, pipe or socket the taint came through (zero for [`via::DIRECT`]).
    pub via: FileId,
    /// The start time of the process that opened the secret (`task_struct.start_time` of its
    /// thread group leader): with `origin_pid`, which process it was, after its pid is reused.
    pub origin_start_ns: u64,
}

/// Bytes a tainted process sent to one destination, by [`SendKey`], with what the first
/// send's record said: if that record was lost (a full ring buffer), the agent builds its
/// alert from here, late.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendTotal {
    pub bytes: u64,
    /// `Taint::acquired_ns` of the sender: a reused pid starts from zero.
    pub acquired_ns: u64,
    /// The sender's taint at its first send.
    pub taint: Taint,
    /// The sender's uid, and the transport (`transport::TCP` or `UDP`), at its first send.
    pub uid: u32,
    pub transport: u32,
}

/// A (process, destination) pair.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SendKey {
    pub pid: u32,
    /// Destination port, host byte order.
    pub port: u16,
    pub family: u16,
    /// Destination address: 4 bytes for IPv4 (rest zero), 16 for IPv6.
    pub addr: [u8; 16],
}

/// A trusted service's process, the value of `TRUSTED_PIDS` (by pid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrustedProcess {
    /// The catalog label naming its memory: reading it taints with this secret id.
    pub label: u32,
    pub _pad: u32,
    /// Its start time in ticks of [`START_TICK_NS`]: a process that reuses the pid of one
    /// that exited before the kernel learned of it is not trusted.
    pub start_tick: u64,
    /// The `self_exec_id` of the program the agent trusted ([`ANY_EXEC`]: one running before
    /// the agent started, whose id `/proc` does not tell): a process that exec'd another program
    /// before the kernel learned of its trust is not trusted.
    pub exec_id: u64,
}

/// A store server's process, the value of `STORE_SERVERS` (by pid): a database server whose
/// data is a secret store.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreServer {
    /// The catalog label naming the store ("homeserver database"): what its replies carry.
    pub secret_id: u32,
    pub _pad: u32,
    /// Its start time in ticks of [`START_TICK_NS`]: a process that reuses its pid is no server.
    pub start_tick: u64,
}

/// [`TrustedProcess::exec_id`] of a process whose program the agent could not name.
pub const ANY_EXEC: u64 = u64::MAX;

/// The unit of process start times that both the kernel (`task_struct.start_time`) and
/// `/proc/PID/stat` (clock ticks, `USER_HZ` = 100 on Linux) can give.
pub const START_TICK_NS: u64 = 10_000_000;

/// Key of the map that remembers which (process, secret) reads were already reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadSeenKey {
    pub pid: u32,
    pub secret_id: u32,
}

/// Indexes of the per-CPU counters array.
pub mod counter {
    /// Ring-buffer reservations that failed: events lost because the agent fell behind.
    pub const EVENTS_LOST: u32 = 0;
    /// Files, pipes and unix sockets ever marked: zero lets the open and read hooks skip
    /// their lookups.
    pub const TAINTED_CHANNELS: u32 = 1;
    /// Inserts into the taint maps that the kernel refused (a map full): a process, file or
    /// channel that should carry taint and does not.
    pub const INSERTS_FAILED: u32 = 2;
    /// Processes ever tainted since the agent last found none: zero lets every hook skip the
    /// taint lookup (a gate in `GATES`, not a counter).
    pub const TAINTED_PROCESSES: u32 = 3;
    /// Pipes or sockets marked since the agent last found no marked pipe alive and detached
    /// the channel programs: zero lets connects, sends and exits skip looking for a marked
    /// channel their process holds (a gate in `GATES`).
    pub const HELD_CHANNELS: u32 = 4;
    /// Sends whose byte count could not be kept (`SEND_TOTALS` full): the connect record
    /// still goes out, the transfer's progress is not followed.
    pub const SEND_TOTALS_FULL: u32 = 5;
    /// Threads of tainted processes or trusted services that entered a TLS write whose socket
    /// send has not been seen yet: zero lets every socket send skip looking for one (a gate in
    /// `GATES`, opened for good by the first).
    pub const TLS_CALLS: u32 = 6;
    /// Outbound bytes of tainted processes and trusted services that were not copied for the
    /// agent: beyond a call's first `OUTBOUND_CHUNKS * OUTBOUND_CHUNK`, or while the ring
    /// buffer was more than half full.
    pub const OUTBOUND_UNCOPIED: u32 = 7;
    /// Whether the agent found store servers (`STORE_SERVERS`): zero lets socket deliveries
    /// skip looking their sender up (a gate in `GATES`).
    pub const STORE_SERVERS: u32 = 8;
    /// Whether the agent has trusted a service's process (`TRUSTED_PIDS`): zero lets every
    /// TCP send skip looking its sender up (a gate in `GATES`, opened for good by the first).
    pub const TRUSTED_SERVICES: u32 = 9;
    /// Number of counters.
    pub const COUNT: u32 = 10;
}

/// Slots of the socket write copiers in `SOCKET_WRITE`, the program array `sys_enter`
/// tail-calls into for a tainted process's sends on IP sockets.
pub mod copier {
    /// `write`, `send`, `sendto`: one buffer.
    pub const PLAIN: u32 = 0;
    /// `writev`, `sendmsg`: the call's first iovec.
    pub const VECTORED: u32 = 1;
    /// The next iovec of the vectored call in progress, one per run.
    pub const VECTORED_NEXT: u32 = 2;
    /// Number of slots.
    pub const COUNT: u32 = 3;
}

/// Map names, as they appear in the eBPF object.
pub mod map_name {
    pub const EVENTS: &str = "EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const SECRETS: &str = "SECRETS";
    pub const ALLOWED_EXES: &str = "ALLOWED_EXES";
    pub const TAINTED: &str = "TAINTED";
    pub const SEND_TOTALS: &str = "SEND_TOTALS";
    pub const TRUSTED_PIDS: &str = "TRUSTED_PIDS";
    pub const LOCAL_ADDRS: &str = "LOCAL_ADDRS";
    pub const TAINTED_FILES: &str = "TAINTED_FILES";
    pub const PREFILTER: &str = "PREFILTER";
    pub const GATES: &str = "GATES";
    pub const GATES_CLOSED: &str = "GATES_CLOSED";
    pub const READ_SEEN: &str = "READ_SEEN";
    pub const LOADER_TAMPERED: &str = "LOADER_TAMPERED";
    pub const SOCKET_WRITE: &str = "SOCKET_WRITE";
    pub const STORE_SERVERS: &str = "STORE_SERVERS";
    pub const PIPE_UPSTREAM: &str = "PIPE_UPSTREAM";
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::FileId {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Taint {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ReadSeenKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SendTotal {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SendKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TrustedProcess {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::WatchedSecret {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StoreServer {}
}
