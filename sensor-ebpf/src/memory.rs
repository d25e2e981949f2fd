//! Reading another process's memory: `/proc/PID/mem` and `/proc/PID/environ`,
//! `process_vm_readv` and ptrace aimed at a trusted service's process taint the reader.
//!
//! Steady state: every such access locks the target's `mm` from the reader's context, so
//! `mmap_lock_start_locking` on a foreign `mm` is where it is seen; the reader's own saved
//! registers tell which syscall it is in (reading `/proc/PID/cmdline` or `maps` takes the
//! same lock and carries no secret); `PTRACE_ATTACH` alone is seen by the `SIGSTOP` it
//! sends. The syscall programs see the calls themselves.

use aya_ebpf::{helpers::bpf_get_current_task_btf, macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    allowance,
    kernel::{current_syscall, fd_file, load, offset, proc_memory_pid, Syscall},
    maps::TRUSTED_PIDS,
    syscall_abi::nr,
    taint,
};

const PTRACE_ATTACH: u64 = 16;
const PTRACE_SEIZE: u64 = 0x4206;

/// `process_vm_readv(pid, ...)`: the call is what counts, not its result.
#[inline(always)]
pub fn vm_read(pid: u64) {
    let _ = taint::memory_read(pid as u32, u32::MAX);
}

/// `ptrace(request, pid, ...)`: attaching is what gives access.
#[inline(always)]
pub fn ptrace(request: u64, pid: u64) {
    if request == PTRACE_ATTACH || request == PTRACE_SEIZE {
        allowance::attached(pid as u32);
        let _ = taint::memory_read(pid as u32, u32::MAX);
    }
}

/// `signal_generate(sig, info, task, group, result)`: `PTRACE_ATTACH` stops its target with
/// a `SIGSTOP` sent from the tracer's context; attaching is what gives access.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_sent(ctx: BtfTracePointContext) -> i32 {
    const SIGSTOP: i32 = 19;
    let sig: i32 = ctx.arg(0);
    if sig != SIGSTOP {
        return 0;
    }
    let target: *const u8 = ctx.arg(2);
    // SAFETY: the tracepoint's `struct task_struct *`.
    let target: u32 = unsafe { load(target, offset!(task_struct_tgid)) };
    if current_syscall().id != nr::PTRACE {
        return 0;
    }
    allowance::attached(target);
    if TRUSTED_PIDS.get_ptr(target).is_some() {
        let _ = taint::memory_read(target, u32::MAX);
    }
    0
}

/// `mmap_lock_start_locking(mm, write)`.
#[btf_tracepoint(function = "mmap_lock_start_locking")]
pub fn mm_locked(ctx: BtfTracePointContext) -> i32 {
    let mm: *const u8 = ctx.arg(0);
    // SAFETY: helper without preconditions; it returns the current task, BTF-typed.
    let task = unsafe { bpf_get_current_task_btf() };
    // SAFETY: `task` is a BTF-typed `struct task_struct *`.
    let own: *const u8 = unsafe { load(task.cast(), offset!(task_struct_mm)) };
    if own != mm && !own.is_null() && !mm.is_null() {
        let _ = foreign_mm(mm);
    }
    0
}

/// The current process locks the `mm` of another: if that is a trusted service's and the
/// caller is reading its memory, the caller takes in what the service holds.
#[inline(always)]
fn foreign_mm(mm: *const u8) -> Result<(), i32> {
    // SAFETY: `mm` is the tracepoint's `struct mm_struct *`, its owner a `task_struct *`.
    let target: u32 = unsafe {
        let owner: *const u8 = load(mm, offset!(mm_struct_owner));
        load(owner, offset!(task_struct_tgid))
    };
    if TRUSTED_PIDS.get_ptr(target).is_none() {
        return Ok(());
    }
    let Syscall { id, args: [first, ..] } = current_syscall();
    match id {
        nr::PROCESS_VM_READV | nr::PTRACE => taint::memory_read(target, u32::MAX),
        nr::READ | nr::PREAD64 | nr::READV | nr::PREADV | nr::PREADV2 => {
            let fd = u32::try_from(first).map_err(|_| -1)?;
            if proc_memory_pid(fd_file(fd)?)? == target {
                taint::memory_read(target, fd)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}
