//! The few `bpf(2)` commands aya 0.14 does not offer with what they return: walking every
//! link id, opening a link by id, and asking which program a process's perf event runs
//! (`BPF_TASK_FD_QUERY`, what `bpftool perf` shows). Layouts are the uapi `union bpf_attr`'s.

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
};

const BPF_TASK_FD_QUERY: libc::c_long = 20;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;

/// `bpf_attr` for the `*_GET_NEXT_ID` and `*_GET_FD_BY_ID` commands.
#[repr(C)]
#[derive(Default)]
struct ById {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf_attr.task_fd_query`.
#[repr(C)]
#[derive(Default)]
struct TaskFdQuery {
    pid: u32,
    fd: u32,
    flags: u32,
    buf_len: u32,
    buf: u64,
    prog_id: u32,
    fd_type: u32,
    probe_offset: u64,
    probe_addr: u64,
}

/// What `BPF_TASK_FD_QUERY` says of a perf event or raw tracepoint fd with a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdProgram {
    pub program_id: u32,
    /// `BPF_FD_TYPE_*`: 0 raw tracepoint, 1 tracepoint, 2-3 kprobe, 4-5 uprobe.
    pub fd_type: u32,
    /// The tracepoint's name, or the probed file or function.
    pub name: String,
    pub offset: u64,
}

/// Runs `bpf(cmd, attr)`.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    let size = libc::c_long::try_from(size_of::<T>()).unwrap_or_default();
    // SAFETY: `attr` is a `#[repr(C)]` prefix of `union bpf_attr` of `size` bytes; the kernel
    // reads and writes only that much of it.
    let result = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Every link id the kernel has now, in order.
pub fn link_ids() -> Vec<u32> {
    let mut ids = Vec::new();
    let mut attr = ById::default();
    while bpf(BPF_LINK_GET_NEXT_ID, &mut attr).is_ok() {
        ids.push(attr.next_id);
        attr = ById { id: attr.next_id, ..ById::default() };
    }
    ids
}

/// A new fd of link `id`, if it still exists.
pub fn link_fd(id: u32) -> io::Result<OwnedFd> {
    let mut attr = ById { id, ..ById::default() };
    let fd = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just opened this fd for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The program process `pid` runs on its fd `fd` (a perf event), if any.
pub fn task_fd_program(pid: u32, fd: u32) -> Option<FdProgram> {
    let mut name = [0u8; 256];
    let mut attr = TaskFdQuery {
        pid,
        fd,
        buf_len: u32::try_from(name.len()).unwrap_or_default(),
        buf: name.as_mut_ptr() as u64,
        ..TaskFdQuery::default()
    };
    bpf(BPF_TASK_FD_QUERY, &mut attr).ok()?;
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(FdProgram {
        program_id: attr.prog_id,
        fd_type: attr.fd_type,
        name: String::from_utf8_lossy(&name[..len]).into_owned(),
        offset: attr.probe_offset,
    })
}
