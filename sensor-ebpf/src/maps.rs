//! The kernel-side state shared between programs and with the agent.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::{counter, FileId, ReadSeenKey, Taint};

/// Records for the agent. The agent resizes it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Per-CPU counters, indexed by `sensor_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Watched secrets: file identity → secret id. Filled by the agent.
#[map]
pub static SECRETS: HashMap<FileId, u32> = HashMap::with_max_entries(16_384, 0);

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
