//! Reading another process's memory without opening its `/proc` files: `process_vm_readv`
//! and ptrace attach aimed at a trusted service's process taint the caller.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use crate::taint;

/// Offset of the first syscall argument in `syscalls:sys_enter_*`; each takes 8 bytes.
const SYS_ENTER_ARGS: usize = 16;
const PTRACE_ATTACH: u64 = 16;
const PTRACE_SEIZE: u64 = 0x4206;

/// `syscalls:sys_enter_process_vm_readv(pid, ...)`.
#[tracepoint]
pub fn sys_enter_process_vm_readv(ctx: TracePointContext) -> u32 {
    // SAFETY: the first argument's slot of a sys_enter tracepoint.
    if let Ok(pid) = unsafe { ctx.read_at::<u64>(SYS_ENTER_ARGS) } {
        let _ = taint::memory_read(pid as u32, u32::MAX);
    }
    0
}

/// `syscalls:sys_enter_ptrace(request, pid, ...)`: attaching is what gives access.
#[tracepoint]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    // SAFETY: the first two argument slots of a sys_enter tracepoint.
    let args = unsafe { (ctx.read_at::<u64>(SYS_ENTER_ARGS), ctx.read_at::<u64>(SYS_ENTER_ARGS + 8)) };
    if let (Ok(request), Ok(pid)) = args {
        if request == PTRACE_ATTACH || request == PTRACE_SEIZE {
            let _ = taint::memory_read(pid as u32, u32::MAX);
        }
    }
    0
}
