//! The hook set this kernel runs, chosen at start-up by probing what it offers.
//!
//! - `page-cache` (Linux 6.11+): secret reads are seen where the data is read, by BTF-typed
//!   page cache tracepoints; no syscall tracepoint is attached in the steady state. The
//!   syscall programs, which follow pipes and other channels, are attached only while some
//!   process is tainted.
//! - `fentry` (kernels with BTF and trampolines but without the page cache tracepoints, e.g.
//!   Linux 6.1): the page cache backend, with its read programs replaced by fentry programs on
//!   the kernel functions those tracepoints sit in (`filemap_read`, `filemap_fault`, ...).
//! - `kprobe` (kernels that refuse trampolines but have kprobes): the same functions, probed
//!   by kprobes, which read their arguments with helper calls.
//! - `syscalls` (every kernel with BTF): the same detection through the `sys_enter` and
//!   `sys_exit` raw tracepoints, always attached, at the cost of the syscall slow path for
//!   every task.
//!
//! All share the process, network and `io_uring` programs; the rules above never see which
//! backend produced a record.

use std::{fmt, path::Path};

use sensor_common::copier;
use serde::Deserialize;

/// What the user asked for (`--backend`, `backend =` in the config file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    /// The first of page cache, fentry, kprobe and syscall backends this kernel can run.
    #[default]
    Auto,
    /// Only the page cache backend: refuse to start without it.
    PageCache,
    /// Only the fentry backend: refuse to start without it.
    Fentry,
    /// Only the kprobe backend: refuse to start without it.
    Kprobe,
    /// The syscall backend, even where the page cache one would run.
    Syscalls,
}

/// A hook set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    PageCache,
    Fentry,
    Kprobe,
    Syscalls,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::PageCache => "page-cache",
            Self::Fentry => "fentry",
            Self::Kprobe => "kprobe",
            Self::Syscalls => "syscalls",
        }
    }

    /// Whether the channel programs come and go with taint (every backend but `syscalls`).
    pub fn channel_hooks_on_demand(self) -> bool {
        self != Self::Syscalls
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
pub const RAW_TRACEPOINTS: [(&str, &str); 3] = [
    ("sched_process_fork", "sched_process_fork"),
    ("sched_process_exit", "sched_process_exit"),
    ("inet_sock_set_state", "inet_sock_set_state"),
];
/// Every socket send, in the sender's context, where the kernel has the tracepoint
/// (`sock_send_length` appeared in Linux 6.3): a raw tracepoint of every backend, as
/// (program, category, tracepoint).
pub const SOCKET_SENDS: BtfProgram = ("sock_send_length", "sock", "sock_send_length");
/// A socket family's send function, where the sends are seen when the kernel lacks that
/// tracepoint (`sock_sendmsg` itself is inlined into the syscalls there): by an fexit program of
/// its own on the fentry backend, by [`SEND_PROBES`] on the kprobe backend. `required: false`:
/// watched where the kernel's BTF has the function (IPv6 and unix sockets may be modules), and
/// `sensor-started` names the sends not seen otherwise.
pub struct SendFunction {
    pub function: &'static str,
    pub fexit: &'static str,
    pub sends: &'static str,
    pub required: bool,
}
pub const SEND_FUNCTIONS: [SendFunction; 4] = [
    SendFunction { function: "inet_sendmsg", fexit: "inet_send_exit", sends: "IPv4", required: true },
    SendFunction { function: "inet6_sendmsg", fexit: "inet6_send_exit", sends: "IPv6", required: false },
    SendFunction {
        function: "unix_stream_sendmsg",
        fexit: "unix_stream_send_exit",
        sends: "unix stream",
        required: false,
    },
    SendFunction {
        function: "unix_dgram_sendmsg",
        fexit: "unix_dgram_send_exit",
        sends: "unix datagram",
        required: false,
    },
];
/// The kprobe and kretprobe programs attached to every one of [`SEND_FUNCTIONS`] by the kprobe
/// backend.
pub const SEND_PROBES: (&str, &str) = ("family_send_entry", "family_send_return");
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
/// The page cache backend's read programs.
pub const PAGE_CACHE: [BtfProgram; 4] = [
    ("page_cache_read", "filemap", "mm_filemap_get_pages"),
    ("page_cache_map", "filemap", "mm_filemap_map_pages"),
    ("page_cache_fault", "filemap", "mm_filemap_fault"),
    ("direct_io", "iomap", "iomap_dio_rw_begin"),
];
/// A read program of the fentry and kprobe backends: the kernel function it probes, its
/// fentry and its kprobe program, and whether the backend needs it (false: the function is
/// probed where the kernel has it).
pub struct FunctionProbe {
    pub function: &'static str,
    pub fentry: &'static str,
    pub kprobe: &'static str,
    pub required: bool,
}
/// The read programs of the fentry and kprobe backends, at the functions [`PAGE_CACHE`]'s
/// tracepoints sit in (`filemap_splice_read` appeared in Linux 6.5; before, splice reads
/// went through `filemap_read`).
pub const FUNCTION_PROBES: [FunctionProbe; 5] = [
    FunctionProbe {
        function: "filemap_read",
        fentry: "fentry_file_read",
        kprobe: "kprobe_file_read",
        required: true,
    },
    FunctionProbe {
        function: "filemap_splice_read",
        fentry: "fentry_splice_read",
        kprobe: "kprobe_splice_read",
        required: false,
    },
    FunctionProbe {
        function: "filemap_fault",
        fentry: "fentry_fault",
        kprobe: "kprobe_fault",
        required: true,
    },
    FunctionProbe {
        function: "filemap_map_pages",
        fentry: "fentry_map_pages",
        kprobe: "kprobe_map_pages",
        required: true,
    },
    FunctionProbe {
        function: "__iomap_dio_rw",
        fentry: "fentry_direct_io",
        kprobe: "kprobe_direct_io",
        required: true,
    },
];
/// The programs the page cache, fentry and kprobe backends share: writes, and the wake-ups
/// that follow channels without syscall programs (tracepoints older than Linux 6.1).
pub const DATA_FOLLOWERS: [BtfProgram; 5] = [
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
/// Signals generated for the agent and `PTRACE_ATTACH`'s `SIGSTOP`: one of [`PAGE_CACHE`],
/// attached on the syscall backend too, for self-protection (`crate::tamper`).
pub const AGENT_SIGNALS: BtfProgram = ("signal_sent", "signal", "signal_generate");
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
        assert_eq!(Backend::Fentry.to_string(), "fentry");
        let choice: Choice =
            toml::from_str::<std::collections::HashMap<String, Choice>>("b = \"fentry\"").unwrap()["b"];
        assert_eq!(choice, Choice::Fentry);
        let choice: Choice =
            toml::from_str::<std::collections::HashMap<String, Choice>>("b = \"syscalls\"").unwrap()["b"];
        assert_eq!(choice, Choice::Syscalls);
    }
}
