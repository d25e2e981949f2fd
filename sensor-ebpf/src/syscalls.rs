//! Every syscall of interest through two raw tracepoints, `sys_enter` and `sys_exit`,
//! dispatched by number. Raw tracepoints cost a program call per syscall and nothing else;
//! the per-syscall classic tracepoints each build a perf record first, which costs more
//! than the programs themselves on the hot open/read path.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use sensor_common::copier;

use crate::{
    channels,
    files::open as secret_open,
    kernel::{offsets, read},
    maps::SOCKET_WRITE,
    memory, outbound,
    syscall_abi::{nr, Abi},
    taint,
};

/// `sys_enter(struct pt_regs *regs, long id)`. Inlined into the entry point the macro wraps it
/// in: a frame of its own would cost 32 bytes of the 512 that it and `files::file_read_subprogram`
/// share on kernels without private stacks.
#[raw_tracepoint(tracepoint = "sys_enter")]
#[inline(always)]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    let abi = Abi::current();
    let id = abi.native(ctx.arg(1));
    let arg = |index| abi.arg(regs, index);
    let fd_at = |index| fd(abi.arg(regs, index)?);
    let _ = match id {
        // One arm, so that `channels::written` is inlined once.
        nr::WRITE | nr::WRITEV | nr::PWRITE64 | nr::PWRITEV | nr::PWRITEV2 => {
            let _ = fd_at(0).and_then(channels::written);
            match id {
                nr::WRITE => socket_write(&ctx, copier::PLAIN),
                nr::WRITEV => socket_write(&ctx, copier::VECTORED),
                _ => Ok(()),
            }
        }
        nr::SENDTO => socket_write(&ctx, copier::PLAIN),
        nr::SENDMSG => socket_write(&ctx, copier::VECTORED),
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

/// A send while anything is tainted goes on in the copier at `slot` of `SOCKET_WRITE` (a
/// tail call, which does not return).
#[inline(always)]
fn socket_write(ctx: &RawTracePointContext, slot: u32) -> Result<(), i32> {
    if taint::anyone_tainted() {
        // SAFETY: the context of the running program, handed on to one of the same type.
        unsafe { SOCKET_WRITE.tail_call(ctx, slot) };
    }
    Ok(())
}

/// `sys_enter` of a `write` or `sendto`, tail-called from [`sys_enter`]: copies what a tainted
/// process sends on an IP socket (`outbound::socket_write`). A program of its own, so that the
/// verifier walks the copy loop once, not after every path of `sys_enter`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter_socket_write(ctx: RawTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    let abi = Abi::current();
    let arg = |index| abi.arg(regs, index);
    let _ = arg(0).and_then(fd).and_then(|fd| outbound::socket_write(fd, arg(1)?, arg(2)?));
    0
}

/// `sys_enter` of a `writev` or `sendmsg`, tail-called from [`sys_enter`]: starts copying what
/// a tainted process sends on an IP socket (`outbound::vectored_write`), one iovec per run of
/// [`sys_enter_vectored_next`].
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter_vectored_write(ctx: RawTracePointContext) -> i32 {
    let regs: *const u8 = ctx.arg(0);
    let abi = Abi::current();
    let arg = |index| abi.arg(regs, index);
    let iovecs = match abi.native(ctx.arg(1)) {
        nr::SENDMSG => arg(1).and_then(|msg| outbound::message_iovecs(msg, abi.is_ia32())),
        _ => arg(1).and_then(|iov| Ok((iov, arg(2)?))),
    };
    let started =
        iovecs.and_then(|(iov, count)| outbound::vectored_write(fd(arg(0)?)?, iov, count, abi.is_ia32()));
    if started == Ok(true) {
        // SAFETY: the context of the running program, handed on to one of the same type.
        unsafe { SOCKET_WRITE.tail_call(&ctx, copier::VECTORED_NEXT) };
    }
    0
}

/// The next iovec of the vectored call [`sys_enter_vectored_write`] started; runs again for
/// the one after (a tail call of itself).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter_vectored_next(ctx: RawTracePointContext) -> i32 {
    if outbound::vectored_next() == Ok(true) {
        // SAFETY: the context of the running program, handed on to one of the same type.
        unsafe { SOCKET_WRITE.tail_call(&ctx, copier::VECTORED_NEXT) };
    }
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
