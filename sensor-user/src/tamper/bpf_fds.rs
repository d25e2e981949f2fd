//! Which processes hold which BPF objects, and which kernel hooks those run on: a walk of
//! every `/proc/PID/fd` that reads the `fdinfo` of BPF fds only, and asks the kernel
//! (`BPF_TASK_FD_QUERY`) about perf events only. Made off the event loop.

use std::{collections::BTreeSet, fs, path::Path};

use super::bpf_syscall;

/// A kind of BPF object, as an fd names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Map,
    Program,
    Link,
}

impl ObjectKind {
    /// The name documents use (`vigie.tamper.object.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Map => "map",
            Self::Program => "program",
            Self::Link => "link",
        }
    }
}

/// A kernel hook a program runs on, as far as self-protection compares them: a raw
/// tracepoint and a classic one of the same name are the same hook.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Tracepoint(String),
    Uprobe { file: String, offset: u64 },
    Cgroup { cgroup_id: u64, attach_type: u32 },
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tracepoint(name) => write!(f, "tracepoint:{name}"),
            Self::Uprobe { file, offset } => write!(f, "uprobe:{file}+{offset:#x}"),
            Self::Cgroup { cgroup_id, attach_type } => write!(f, "cgroup:{cgroup_id}:{attach_type}"),
        }
    }
}

/// A BPF object one process holds an fd of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Held {
    pub pid: u32,
    pub kind: ObjectKind,
    pub id: u32,
}

/// A link as its `fdinfo` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkState {
    pub id: u32,
    pub program_id: u32,
    /// The program's tag (a hash of its instructions), where `fdinfo` shows it.
    pub program_tag: Option<u64>,
    /// Where it runs its program; `None` for hooks the agent never uses.
    pub hook: Option<Hook>,
    /// False for a link detached from its hook (`bpftool link detach`; cgroup links only).
    pub attached: bool,
}

/// A program a process's perf event runs, attached without a link (`PERF_EVENT_IOC_SET_BPF`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PerfProgram {
    pub pid: u32,
    pub program_id: u32,
    pub hook: Hook,
}

/// What one walk found.
#[derive(Debug, Default)]
pub struct FdScan {
    /// Every BPF object every process (the agent too) holds.
    pub held: BTreeSet<Held>,
    /// Every link any process holds, as it is now.
    pub links: BTreeSet<LinkState>,
    pub perf_programs: BTreeSet<PerfProgram>,
}

impl FdScan {
    /// Walks every process's fds.
    pub fn run() -> Self {
        let mut scan = Self::default();
        let Ok(entries) = fs::read_dir("/proc") else { return scan };
        for pid in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
            scan.process(pid);
        }
        scan
    }

    fn process(&mut self, pid: u32) {
        let dir = Path::new("/proc").join(pid.to_string());
        // A process gone, or fds we may not read, hold nothing we can see.
        let Ok(fds) = fs::read_dir(dir.join("fd")) else { return };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            let Some(target) = target.to_str() else { continue };
            let kind = match target {
                "anon_inode:bpf-map" => ObjectKind::Map,
                "anon_inode:bpf-prog" => ObjectKind::Program,
                "anon_inode:bpf_link" => ObjectKind::Link,
                "anon_inode:[perf_event]" => {
                    let fd = fd.file_name().to_str().and_then(|n| n.parse().ok());
                    self.perf_programs.extend(fd.and_then(|fd| perf_program(pid, fd)));
                    continue;
                }
                _ => continue,
            };
            let Ok(info) = fs::read_to_string(dir.join("fdinfo").join(fd.file_name())) else { continue };
            let key = match kind {
                ObjectKind::Map => "map_id",
                ObjectKind::Program => "prog_id",
                ObjectKind::Link => "link_id",
            };
            let Some(id) = field(&info, key).and_then(|v| v.parse().ok()) else { continue };
            self.held.insert(Held { pid, kind, id });
            if kind == ObjectKind::Link {
                self.links.extend(link_state(&info));
            }
        }
    }
}

/// The state of the link whose `fdinfo` text is `info`.
pub fn link_state(info: &str) -> Option<LinkState> {
    let id = field(info, "link_id")?.parse().ok()?;
    let program_id = field(info, "prog_id").and_then(|v| v.parse().ok()).unwrap_or_default();
    let program_tag = field(info, "prog_tag").and_then(|v| u64::from_str_radix(v, 16).ok());
    let tracepoint = || field(info, "tp_name").map(|name| Hook::Tracepoint(name.to_owned()));
    let (hook, attached) = match (field(info, "link_type")?, field(info, "event_type")) {
        ("raw_tracepoint", _) | ("perf", Some("tracepoint")) => (tracepoint(), true),
        ("perf", Some("uprobe" | "uretprobe")) => {
            let offset =
                field(info, "offset").and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok());
            let hook = field(info, "name")
                .zip(offset)
                .map(|(file, offset)| Hook::Uprobe { file: file.to_owned(), offset });
            (hook, true)
        }
        ("cgroup", _) => {
            let cgroup_id: u64 = field(info, "cgroup_id")?.parse().ok()?;
            let attach_type = field(info, "attach_type")?.parse().ok()?;
            // A detached cgroup link keeps its fd and loses its cgroup.
            (Some(Hook::Cgroup { cgroup_id, attach_type }).filter(|_| cgroup_id != 0), cgroup_id != 0)
        }
        _ => (None, true),
    };
    Some(LinkState { id, program_id, program_tag, hook, attached })
}

/// The program perf event `fd` of `pid` runs and where, if it runs one on a hook we compare.
fn perf_program(pid: u32, fd: u32) -> Option<PerfProgram> {
    const RAW_TRACEPOINT: u32 = 0;
    const TRACEPOINT: u32 = 1;
    const UPROBE: u32 = 4;
    const URETPROBE: u32 = 5;
    let found = bpf_syscall::task_fd_program(pid, fd)?;
    let hook = match found.fd_type {
        RAW_TRACEPOINT | TRACEPOINT => Hook::Tracepoint(found.name),
        UPROBE | URETPROBE => Hook::Uprobe { file: found.name, offset: found.offset },
        _ => return None,
    };
    Some(PerfProgram { pid, program_id: found.program_id, hook })
}

/// The value of `key:` in `fdinfo` text.
fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_fdinfo_names_the_hook_and_whether_it_is_attached() {
        let raw = "link_type:\traw_tracepoint\nlink_id:\t7\nprog_tag:\tab\nprog_id:\t9\ntp_name:\tsignal_generate\n";
        let perf = "link_type:\tperf\nlink_id:\t8\nprog_id:\t10\ntp_name:\tsched_process_exec\nevent_type:\ttracepoint\n";
        let uprobe = "link_type:\tperf\nlink_id:\t9\nprog_id:\t11\nname:\t/lib/libssl.so.3\noffset:\t0x35996\nevent_type:\tuprobe\n";
        let cgroup = "link_type:\tcgroup\nlink_id:\t10\nprog_id:\t12\ncgroup_id:\t0\nattach_type:\t14\n";
        let exec = Some(Hook::Tracepoint("sched_process_exec".into()));
        assert_eq!(link_state(raw).unwrap().hook, Some(Hook::Tracepoint("signal_generate".into())));
        assert_eq!(link_state(raw).unwrap().program_tag, Some(0xab));
        assert_eq!(link_state(perf).unwrap().hook, exec);
        let probe = Hook::Uprobe { file: "/lib/libssl.so.3".into(), offset: 0x35996 };
        assert_eq!(link_state(uprobe).unwrap().hook, Some(probe));
        let detached = link_state(cgroup).unwrap();
        assert_eq!((detached.id, detached.program_id, detached.attached), (10, 12, false));
        assert_eq!(field("cgroup_id:\t1\n", "cgroup_id"), Some("1"));
    }

    #[test]
    fn this_process_holds_what_it_opened_and_no_bpf_object_here() {
        // The unit tests open no BPF object: the walk of our own fds finds none.
        let scan = FdScan::run();
        let own = std::process::id();
        assert!(scan.held.iter().all(|held| held.pid != own), "{scan:?}");
    }
}
