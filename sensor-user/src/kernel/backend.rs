//! The hook set this kernel runs, chosen at start-up by probing what it offers.
//!
//! - `page-cache` (Linux 6.11+): secret reads are seen where the data is read, by BTF-typed
//!   page cache tracepoints; no syscall tracepoint is attached in the steady state. The
//!   syscall programs, which follow pipes and other channels, are attached only while some
//!   process is tainted.
//! - `syscalls` (every kernel with BTF): the same detection through the `sys_enter` and
//!   `sys_exit` raw tracepoints, always attached, at the cost of the syscall slow path for
//!   every task.
//!
//! Both share the process, network and `io_uring` programs; the rules above never see which
//! backend produced a record.

use std::{fmt, path::Path};

use sensor_common::copier;
use serde::Deserialize;

/// What the user asked for (`--backend`, `backend =` in the config file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    /// The page cache backend where this kernel can run it, the syscall backend elsewhere.
    #[default]
    Auto,
    /// Only the page cache backend: refuse to start without it.
    PageCache,
    /// The syscall backend, even where the page cache one would run.
    Syscalls,
}

/// A hook set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    PageCache,
    Syscalls,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::PageCache => "page-cache",
            Self::Syscalls => "syscalls",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The backend that runs, and why, for `sensor-started`.
#[derive(Debug, Clone)]
pub struct Selected {
    pub backend: Backend,
    pub reason: String,
}

/// A BTF-typed tracepoint program: (program, tracepoint category, tracepoint).
pub type BtfProgram = (&'static str, &'static str, &'static str);

/// Classic tracepoints of both backends: (program, category, tracepoint).
pub const TRACEPOINTS: [(&str, &str, &str); 2] = [
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("io_uring_complete", "io_uring", "io_uring_complete"),
];
/// Raw tracepoints of both backends: (program, tracepoint).
pub const RAW_TRACEPOINTS: [(&str, &str); 4] = [
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exit", "sched_process_exit"),
    ("inet_sock_set_state", "inet_sock_set_state"),
    ("sock_send_length", "sock_send_length"),
];
/// cgroup socket-address hooks of both backends, attached to the cgroup v2 root.
pub const CGROUP_SOCK_ADDR: [&str; 4] = ["udp_sendmsg4", "udp_sendmsg6", "udp_connect4", "udp_connect6"];
/// The syscall programs: always attached by the syscall backend, while anything is tainted
/// by the page cache backend.
pub const SYSCALL_HOOKS: [(&str, &str); 2] = [("sys_enter", "sys_enter"), ("sys_exit", "sys_exit")];
/// The programs `sys_enter` tail-calls to copy a tainted process's socket sends, with their
/// slots in `SOCKET_WRITE`.
pub const SOCKET_WRITE_COPIERS: [(&str, u32); copier::COUNT as usize] = [
    ("sys_enter_socket_write", copier::PLAIN),
    ("sys_enter_vectored_write", copier::VECTORED),
    ("sys_enter_vectored_next", copier::VECTORED_NEXT),
];
/// The page cache backend's own programs.
pub const PAGE_CACHE: [BtfProgram; 9] = [
    ("page_cache_read", "filemap", "mm_filemap_get_pages"),
    ("page_cache_map", "filemap", "mm_filemap_map_pages"),
    ("page_cache_fault", "filemap", "mm_filemap_fault"),
    ("direct_io", "iomap", "iomap_dio_rw_begin"),
    ("page_dirtied", "writeback", "writeback_dirty_folio"),
    ("inode_dirtied", "writeback", "writeback_mark_inode_dirty"),
    ("mm_locked", "mmap_lock", "mmap_lock_start_locking"),
    ("signal_sent", "signal", "signal_generate"),
    ("task_woken", "sched", "sched_waking"),
];
/// Socket deliveries (unix datagrams sent to a path, loopback relays) followed without
/// syscall programs, where the kernel has their tracepoints (`sk_data_ready` appeared in Linux
/// 6.4): the delivery program runs always, in both backends; the read program with the
/// channel programs (a reader that sends first is caught holding the marked socket).
pub const SOCKET_FOLLOWERS: [BtfProgram; 2] =
    [("socket_fed", "sock", "sk_data_ready"), ("socket_received", "sock", "sock_recv_length")];
/// A trusted service's TCP sends, with their buffer, where the kernel has the tracepoint
/// (`tcp_sendmsg_locked` appeared in Linux 6.7): attached always, in both backends; until a
/// service is trusted it returns at a gate.
pub const SERVICE_SENDS: BtfProgram = ("service_send", "tcp", "tcp_sendmsg_locked");
/// How many of [`SOCKET_FOLLOWERS`], from the first, stay attached in the steady state.
pub const SOCKET_FOLLOWERS_ALWAYS: usize = 1;

/// Why `programs` cannot run here, if they cannot: a tracepoint they need is missing from
/// `tracefs` (the kernel predates it).
pub fn missing_tracepoint(tracefs: &Path, programs: &[BtfProgram]) -> Option<String> {
    programs.iter().find_map(|(_, category, name)| {
        let path = tracefs.join("events").join(category).join(name);
        (!path.exists()).then(|| format!("this kernel has no tracepoint {category}:{name}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_the_page_cache_tracepoints_is_named() {
        let empty = std::env::temp_dir().join("vigie-no-tracefs");
        let reason = missing_tracepoint(&empty, &PAGE_CACHE).unwrap();
        assert!(reason.contains("filemap:mm_filemap_get_pages"), "{reason}");
    }

    #[test]
    fn backends_are_named_as_in_the_config() {
        assert_eq!(Backend::PageCache.to_string(), "page-cache");
        let choice: Choice =
            toml::from_str::<std::collections::HashMap<String, Choice>>("b = \"syscalls\"").unwrap()["b"];
        assert_eq!(choice, Choice::Syscalls);
    }
}
