//! Every syscall of interest through two raw tracepoints, `sys_enter` and `sys_exit`,
//! dispatched by number. Raw tracepoints cost a program call per syscall and nothing else;
//! the per-syscall classic tracepoints each build a perf record first, which costs more
//! than the programs themselves on the hot open/read path.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use crate::{
    channels,
    files::open as secret_open,
    kernel::{offsets, read},
    memory,
    syscall_abi::{nr, Abi},
};

/// `sys_enter(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    let abi = Abi::current();
    let id = abi.native(ctx.arg(1));
    let arg = |index| abi.arg(regs, index);
    let fd_at = |index| fd(abi.arg(regs, index)?);
    let _ = match id {
        nr::WRITE | nr::WRITEV | nr::PWRITE64 | nr::PWRITEV | nr::PWRITEV2 => {
            fd_at(0).and_then(channels::written)
        }
        nr::SENDFILE => {
            let _ = fd_at(1).and_then(channels::reading);
            fd_at(0).and_then(channels::written)
        }
        nr::COPY_FILE_RANGE => {
            let _ = fd_at(0).and_then(channels::reading);
            fd_at(2).and_then(channels::written)
        }
        nr::SPLICE => {
            let _ = fd_at(2).and_then(channels::written);
            fd_at(0).and_then(channels::reading)
        }
        nr::READ | nr::READV | nr::PREAD64 | nr::PREADV | nr::PREADV2 | nr::RECVFROM | nr::RECVMSG => {
            fd_at(0).and_then(channels::reading)
        }
        nr::PROCESS_VM_READV => arg(0).map(memory::vm_read),
        nr::PTRACE => arg(0).and_then(|request| arg(1).map(|pid| memory::ptrace(request, pid))),
        _ => Ok(()),
    };
    0
}

/// `sys_exit(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    let Ok(id) = read::<i64>(regs, offsets().pt_regs_orig_ax) else { return 0 };
    let _ = match Abi::current().native(id) {
        nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::OPEN_BY_HANDLE_AT | nr::PIDFD_GETFD => {
            match u32::try_from(ret) {
                Ok(fd) => secret_open::opened(fd),
                Err(_) => Ok(()),
            }
        }
        nr::READ | nr::READV | nr::RECVFROM | nr::RECVMSG | nr::SPLICE => channels::read_done(ret),
        _ => Ok(()),
    };
    0
}

#[inline(always)]
fn fd(arg: u64) -> Result<u32, i32> {
    u32::try_from(arg).map_err(|_| -1)
}
