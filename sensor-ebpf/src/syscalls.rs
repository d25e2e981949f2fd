//! Every syscall of interest through two raw tracepoints, `sys_enter` and `sys_exit`,
//! dispatched by number. Raw tracepoints cost a program call per syscall and nothing else;
//! the per-syscall classic tracepoints each build a perf record first, which costs more
//! than the programs themselves on the hot open/read path.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use crate::{
    channels,
    kernel::{offsets, read},
    memory, secret_open,
};

#[cfg(not(bpf_target_arch = "x86_64"))]
compile_error!("syscall numbers and argument registers are only listed for x86_64");

/// x86_64 syscall numbers (`arch/x86/entry/syscalls/syscall_64.tbl`, stable ABI).
mod nr {
    pub const READ: i64 = 0;
    pub const WRITE: i64 = 1;
    pub const OPEN: i64 = 2;
    pub const PWRITE64: i64 = 18;
    pub const READV: i64 = 19;
    pub const WRITEV: i64 = 20;
    pub const SENDFILE: i64 = 40;
    pub const RECVFROM: i64 = 45;
    pub const RECVMSG: i64 = 47;
    pub const PTRACE: i64 = 101;
    pub const OPENAT: i64 = 257;
    pub const SPLICE: i64 = 275;
    pub const PWRITEV: i64 = 296;
    pub const PROCESS_VM_READV: i64 = 310;
    pub const COPY_FILE_RANGE: i64 = 326;
    pub const PWRITEV2: i64 = 328;
    pub const OPENAT2: i64 = 437;
    pub const PIDFD_GETFD: i64 = 438;
}

/// `sys_enter(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let id: i64 = ctx.arg(1);
    let regs: *const u8 = ctx.arg(0);
    let _ = match id {
        nr::WRITE | nr::WRITEV | nr::PWRITE64 | nr::PWRITEV | nr::PWRITEV2 | nr::SENDFILE => {
            fd_at(regs, 0).and_then(channels::written)
        }
        nr::COPY_FILE_RANGE => fd_at(regs, 2).and_then(channels::written),
        nr::SPLICE => {
            let _ = fd_at(regs, 2).and_then(channels::written);
            fd_at(regs, 0).and_then(channels::reading)
        }
        nr::READ | nr::READV | nr::RECVFROM | nr::RECVMSG => fd_at(regs, 0).and_then(channels::reading),
        nr::PROCESS_VM_READV => arg(regs, 0).map(memory::vm_read),
        nr::PTRACE => arg(regs, 0).and_then(|request| arg(regs, 1).map(|pid| memory::ptrace(request, pid))),
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
    let _ = match id {
        nr::OPEN | nr::OPENAT | nr::OPENAT2 | nr::PIDFD_GETFD => match u32::try_from(ret) {
            Ok(fd) => secret_open::opened(fd),
            Err(_) => Ok(()),
        },
        nr::READ | nr::READV | nr::RECVFROM | nr::RECVMSG | nr::SPLICE => channels::read_done(ret),
        _ => Ok(()),
    };
    0
}

/// Syscall argument `index` (0-based) from the saved user registers.
#[inline(always)]
fn arg(regs: *const u8, index: usize) -> Result<u64, i32> {
    let off = offsets();
    let register = match index {
        0 => off.pt_regs_di,
        1 => off.pt_regs_si,
        _ => off.pt_regs_dx,
    };
    read(regs, register)
}

#[inline(always)]
fn fd_at(regs: *const u8, index: usize) -> Result<u32, i32> {
    u32::try_from(arg(regs, index)?).map_err(|_| -1)
}
