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

/// Why a process is tainted: which secret reached it and through which process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taint {
    /// Index of the secret in the agent's catalog.
    pub secret_id: u32,
    /// The process that opened the secret (itself, or the ancestor it inherited taint from).
    pub origin_pid: u32,
    /// When this process became tainted (`bpf_ktime_get_ns`); distinguishes reused pids.
    pub since_ns: u64,
}

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
    /// Number of counters.
    pub const COUNT: u32 = 1;
}

/// Map names, as they appear in the eBPF object.
pub mod map_name {
    pub const EVENTS: &str = "EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const SECRETS: &str = "SECRETS";
    pub const ALLOWED_EXES: &str = "ALLOWED_EXES";
    pub const TAINTED: &str = "TAINTED";
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding: every bit pattern is valid.
    unsafe impl aya::Pod for super::FileId {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Taint {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ReadSeenKey {}
}
