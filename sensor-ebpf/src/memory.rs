//! Reading another process's memory: `/proc/PID/mem` and `/proc/PID/environ`,
//! `process_vm_readv` and ptrace aimed at a trusted service's process taint the reader.
//!
//! Steady state: every such access locks the target's `mm` from the reader's context, so
//! `mmap_lock_start_locking` on a foreign `mm` is where it is seen; the reader's own saved
//! registers tell which syscall it is in (reading `/proc/PID/cmdline` or `maps` takes the
//! same lock and carries no secret); `PTRACE_ATTACH` alone is seen by the `SIGSTOP` it
//! sends. The syscall programs see the calls themselves.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task_btf},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use sensor_common::{EventKind, SignalEvent};

use crate::{
    allowance,
    emit::{self, current_pid, header},
    kernel::{current_syscall, fd_file, load, offset, offsets, proc_memory_pid, read, Syscall},
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

/// `signal_generate(sig, info, task, group, result)`: a signal aimed at the agent from
/// another process is reported (self-protection); `PTRACE_ATTACH` stops its target with a
/// `SIGSTOP` sent from the tracer's context, and attaching is what gives access.
#[btf_tracepoint(function = "signal_generate")]
pub fn signal_sent(ctx: BtfTracePointContext) -> i32 {
    const SIGSTOP: i32 = 19;
    let sig: i32 = ctx.arg(0);
    let task: *const u8 = ctx.arg(2);
    // SAFETY: the tracepoint's `struct task_struct *`.
    let target: u32 = unsafe { load(task, offset!(task_struct_tgid)) };
    if target == offsets().agent_pid && current_pid() != target {
        aimed_at_agent(&ctx, sig, task);
    }
    if sig != SIGSTOP || current_syscall().id != nr::PTRACE {
        return 0;
    }
    allowance::attached(target);
    if TRUSTED_PIDS.get_ptr(target).is_some() {
        let _ = taint::memory_read(target, u32::MAX);
    }
    0
}

/// Reports a signal for the agent's thread `task`, naming the current process as its sender.
#[inline(always)]
fn aimed_at_agent(ctx: &BtfTracePointContext, sig: i32, task: *const u8) {
    /// `SEND_SIG_NOINFO` and `SEND_SIG_PRIV`: no siginfo, the kernel stands in for one.
    const SEND_SIG_PRIV: usize = 1;
    const SI_USER: i32 = 0;
    const SI_KERNEL: i32 = 0x80;
    /// `si_code` follows `si_signo` and `si_errno` (uapi `siginfo_t`, the user ABI).
    const SI_CODE: u32 = 8;
    let info: *const u8 = ctx.arg(1);
    let code = match info as usize {
        0 => SI_USER,
        SEND_SIG_PRIV => SI_KERNEL,
        // The verifier takes this argument for a scalar (it may encode an error): probed.
        _ => read(info, SI_CODE).unwrap_or(i32::MIN),
    };
    let result: i32 = ctx.arg(4);
    emit::output(SignalEvent {
        header: header(EventKind::Signal),
        signal: sig as u32,
        code,
        // SAFETY: the tracepoint's `struct task_struct *`.
        target_tid: unsafe { load(task, offset!(task_struct_pid)) },
        sender_tid: bpf_get_current_pid_tgid() as u32,
        result: result as u32,
        in_ptrace: u32::from(current_syscall().id == nr::PTRACE),
    });
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
