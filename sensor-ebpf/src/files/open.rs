//! Opens of secrets and derived files, recognised by the identity of the file the new
//! descriptor refers to, so hardlinks, symlinks, `..`, `/proc/PID/root`, `/proc/self/fd`
//! and bind mounts all count as the file they lead to. io_uring opens are seen at their
//! completion. `/proc/PID/mem` and `/proc/PID/environ` of a trusted service count as the
//! secrets that service holds.

use crate::{
    channels,
    files::took_in,
    kernel::{fd_file, file_id, file_inode, inode_generation, offsets, on_procfs, proc_memory_pid, read},
    taint,
};
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

/// Offsets of `req` and `res` in `io_uring:io_uring_complete`.
const IO_URING_REQ: usize = 16;
const IO_URING_RES: usize = 32;
/// io_uring opcodes (`enum io_uring_op`, stable ABI).
mod op {
    pub const READV: u8 = 1;
    pub const WRITEV: u8 = 2;
    pub const READ_FIXED: u8 = 4;
    pub const WRITE_FIXED: u8 = 5;
    pub const OPENAT: u8 = 18;
    pub const READ: u8 = 22;
    pub const WRITE: u8 = 23;
    pub const OPENAT2: u8 = 28;
}

/// `io_uring:io_uring_complete`: opens, reads and writes done through io_uring, which the
/// syscall tracepoints never see. io-wq workers share the submitter's thread group and file
/// table, so "the current process" is the submitter here too.
#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    let _ = try_io_uring_complete(&ctx);
    0
}

fn try_io_uring_complete(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: fixed fields of this tracepoint's format.
    let (req, res) = unsafe { (ctx.read_at::<*const u8>(IO_URING_REQ)?, ctx.read_at::<i32>(IO_URING_RES)?) };
    if res < 0 {
        return Ok(());
    }
    let off = offsets();
    let opcode: u8 = read(req, off.io_kiocb_opcode)?;
    match opcode {
        op::OPENAT | op::OPENAT2 => opened(res as u32),
        op::READ | op::READV | op::READ_FIXED if res > 0 => {
            channels::read_file(read(req, off.io_kiocb_file)?, u32::MAX)
        }
        op::WRITE | op::WRITEV | op::WRITE_FIXED if res > 0 => match taint::current() {
            Some(taint) => channels::written_file(read(req, off.io_kiocb_file)?, u32::MAX, &taint),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// The current process just got descriptor `fd` (open, openat, openat2, pidfd_getfd, an
/// io_uring open): a secret, a derived file, or the memory of a trusted service's process
/// taints it.
#[inline(always)]
pub fn opened(fd: u32) -> Result<(), i32> {
    let open_file = fd_file(fd)?;
    let file = file_id(open_file)?;
    if on_procfs(open_file)? {
        return taint::memory_read(proc_memory_pid(open_file)?, fd);
    }
    took_in(file, || inode_generation(file_inode(open_file)?), fd)
}
