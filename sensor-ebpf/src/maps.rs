//! The kernel-side state shared between programs and with the agent.

use crate::outbound::Vectored;
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use sensor_common::{
    copier, counter, prefilter, FileId, OutboundEvent, ReadSeenKey, SendKey, SendTotal, StoreServer, Taint,
    TrustedProcess, WatchedSecret,
};

/// Records for the agent. The agent resizes it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Per-CPU counters, indexed by `sensor_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Global switches, indexed like `COUNTERS` (those that name a gate): when each was last
/// opened, a value all CPUs see, unlike the per-CPU counters (`crate::gates`).
#[map]
pub static GATES: Array<u64> = Array::with_max_entries(counter::COUNT, 0);

/// The value of `GATES` at which the agent last closed each gate (`crate::gates`).
#[map]
pub static GATES_CLOSED: Array<u64> = Array::with_max_entries(counter::COUNT, 0);

/// One bit per watched secret and derived file (`sensor_common::prefilter`), tested before
/// `SECRETS` and `TAINTED_FILES` on the page cache read path. Filled by the agent and by
/// the programs that mark derived files.
#[map]
pub static PREFILTER: Array<u64> = Array::with_max_entries(prefilter::WORDS, 0);

/// Watched secrets, by file identity. Filled by the agent, which removes a secret whose path
/// leads nowhere any more.
#[map]
pub static SECRETS: HashMap<FileId, WatchedSecret> = HashMap::with_max_entries(16_384, 0);

/// Executables whose reads of secrets are normal: identity of the exe file. Filled by the agent.
#[map]
pub static ALLOWED_EXES: HashMap<FileId, u8> = HashMap::with_max_entries(1_024, 0);

/// Tainted processes, by thread-group id.
#[map]
pub static TAINTED: HashMap<u32, Taint> = HashMap::with_max_entries(65_536, 0);

/// (process, secret) reads already reported, with the taint's `since_ns` at that time, so
/// a reused pid does not inherit a dead process's "already reported".
#[map]
pub static READ_SEEN: LruHashMap<ReadSeenKey, u64> = LruHashMap::with_max_entries(65_536, 0);

/// Derived files, pipes, FIFOs and unix sockets that carry secret material, by identity.
#[map]
pub static TAINTED_FILES: LruHashMap<FileId, Taint> = LruHashMap::with_max_entries(65_536, 0);

/// Pipeline stages: a pipe a process exec'd with on standard output → the pipe on its
/// standard input. Evicting an old edge only shortens how far back a stage is followed.
#[map]
pub static PIPE_UPSTREAM: LruHashMap<FileId, FileId> = LruHashMap::with_max_entries(16_384, 0);

/// Bytes each tainted process sent to each destination; the agent reads it for progress.
#[map]
pub static SEND_TOTALS: LruHashMap<SendKey, SendTotal> = LruHashMap::with_max_entries(16_384, 0);

/// Descriptor of each thread's pipe or socket read in progress, by pid_tgid.
#[map]
pub static READING: HashMap<u64, u32> = HashMap::with_max_entries(16_384, 0);

/// The socket (`struct sock *`) of each thread's send in progress, by pid_tgid: from the kprobe
/// on a socket family's send function to its kretprobe (the kprobe backend's sends, where the
/// kernel lacks `sock_send_length`). LRU: a return the kernel missed (kretprobe instances run
/// out) leaves an entry that the next sends push out.
#[map]
pub static SENDING: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16_384, 0);

/// This host's interface addresses (IPv4 as IPv4-mapped IPv6): a socket whose peer is one of
/// them is a local channel, like loopback. Kept up to date by the agent.
#[map]
pub static LOCAL_ADDRS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(1_024, 0);

/// Processes of trusted services, by pid. Nothing they take in taints them; reading their
/// memory does. Filled by the agent; emptied for a pid at its exec and exit.
#[map]
pub static TRUSTED_PIDS: HashMap<u32, TrustedProcess> = HashMap::with_max_entries(4_096, 0);

/// Processes of store servers (the homeserver's database server), by pid: what they send on a
/// local socket carries the store. Filled by the agent (the listeners it finds); a server's
/// children inherit it at fork; emptied for a pid at its exec and exit.
#[map]
pub static STORE_SERVERS: HashMap<u32, StoreServer> = HashMap::with_max_entries(4_096, 0);

/// Processes of allowed readers' executables started with a loader variable (`LD_PRELOAD`,
/// ...), and their children, and processes a tracer attached to, by pid: they are not allowed
/// readers (until their next exec).
#[map]
pub static LOADER_TAMPERED: HashMap<u32, u8> = HashMap::with_max_entries(4_096, 0);

/// Where the exec program copies one environment string at a time.
#[map]
pub static ENV_SCRATCH: PerCpuArray<[u8; ENV_STRING_MAX]> = PerCpuArray::with_max_entries(1, 0);

/// Longest environment string the exec program can step over.
pub const ENV_STRING_MAX: usize = 4096;

/// Where outbound bytes are copied, one chunk at a time, before they go into `EVENTS`.
#[map]
pub static OUTBOUND_SCRATCH: PerCpuArray<OutboundEvent> = PerCpuArray::with_max_entries(1, 0);

/// TLS writes in progress whose socket is not known yet: by pid_tgid, the `call` of the
/// thread's latest TLS write. LRU: a write that never reached a socket (a memory BIO) is
/// replaced by the thread's next one, or evicted.
#[map]
pub static TLS_CALLS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16_384, 0);

/// The socket write copiers `sys_enter` tail-calls, at their `copier` slots. Filled by the agent.
#[map]
pub static SOCKET_WRITE: ProgramArray = ProgramArray::with_max_entries(copier::COUNT, 0);

/// Trusted services' TCP sends under way: by pid_tgid, the `struct msghdr` of the thread's
/// call whose first pass was copied; removed when the call returns. LRU: an entry whose call
/// never returned through `sock_sendmsg` is evicted.
#[map]
pub static SERVICE_SENDS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(16_384, 0);

/// The vectored call being copied on this CPU, between the tail calls of one syscall entry.
#[map]
pub static VECTORED: PerCpuArray<Vectored> = PerCpuArray::with_max_entries(1, 0);
