//! Who may open the watched secrets without being tainted, and who takes in nothing at all.
//!
//! Allowance is narrow: an allowed reader's executable (`ALLOWED_EXES`) may open secrets, as
//! installed — not a process of it started with a loader variable that puts other code into
//! it, nor one being traced — and what it receives through a pipe, socket, pty or derived file
//! taints it like any other process. Only a trusted service's process (`TRUSTED_PIDS`, which the
//! agent recognises structurally and the kernel forgets at exec) takes in nothing at all.

use aya_ebpf::helpers::bpf_probe_read_user_str_bytes;
use sensor_common::{ANY_EXEC, START_TICK_NS};

use crate::{
    emit::current_pid,
    kernel::{current_mm, current_task, offsets, read, task_exe_id},
    maps::{ALLOWED_EXES, ENV_SCRATCH, LOADER_TAMPERED, TRUSTED_PIDS},
    taint,
};

/// Environment variables that make the dynamic loader run other code in a program.
const LOADER_VARIABLES: [&[u8]; 3] = [b"LD_PRELOAD=", b"LD_AUDIT=", b"LD_LIBRARY_PATH="];
/// Environment strings looked at per exec; a longer environment counts as tampered.
const ENV_STRINGS: u32 = 128;

/// Whether the current process is a trusted service's: nothing it takes in taints it.
#[inline(always)]
pub fn current_is_trusted_service() -> bool {
    trusted_label(current_task(), current_pid()).is_some()
}

/// The label naming the memory of `task` (thread group `pid`) if it is a trusted service's
/// process: the one the agent trusted, running the program it trusted — not a process that
/// reused its pid, nor the same process after an exec the agent had not yet seen.
#[inline(always)]
pub fn trusted_label(task: *const u8, pid: u32) -> Option<u32> {
    // SAFETY: the value is copied out at once.
    let trusted = unsafe { TRUSTED_PIDS.get(pid) }.copied()?;
    let off = offsets();
    let leader: *const u8 = read(task, off.task_struct_group_leader).ok()?;
    let start: u64 = read(leader, off.task_struct_start_time).ok()?;
    let exec_id: u64 = read(leader, off.task_struct_self_exec_id).ok()?;
    let same_program = trusted.exec_id == ANY_EXEC || trusted.exec_id == exec_id;
    (start / START_TICK_NS == trusted.start_tick && same_program).then_some(trusted.label)
}

/// Whether the current process may open the watched secrets without being tainted.
#[inline(always)]
pub fn current_may_open_secrets() -> bool {
    current_is_trusted_service() || current_is_allowed_reader()
}

/// An allowed reader's executable, started without loader variables, not traced now.
#[inline(always)]
fn current_is_allowed_reader() -> bool {
    let task = current_task();
    runs_allowed_exe(task)
        && read::<u32>(task, offsets().task_struct_ptrace) == Ok(0)
        && LOADER_TAMPERED.get_ptr(current_pid()).is_none()
}

/// Whether `task` runs an allowed reader's executable.
#[inline(always)]
fn runs_allowed_exe(task: *const u8) -> bool {
    task_exe_id(task).is_ok_and(|exe| ALLOWED_EXES.get_ptr(exe).is_some())
}

/// Process `pid` is no allowed reader until its next exec; a full map is counted
/// (`taint-map-full`), and the process stays allowed.
#[inline(always)]
fn not_allowed(pid: u32) {
    let _ = taint::counted(LOADER_TAMPERED.insert(pid, 1, 0));
}

/// The current process has just exec'd: trust in what it ran before ends here (the agent
/// may trust it again from its new program), and an allowed reader's executable started with
/// a loader variable is remembered as tampered for its lifetime (its children inherit that).
#[inline(always)]
pub fn exec_checked() {
    let pid = current_pid();
    let _ = TRUSTED_PIDS.remove(pid);
    let _ = LOADER_TAMPERED.remove(pid);
    if runs_allowed_exe(current_task()) && loader_variables_set() {
        not_allowed(pid);
    }
}

/// A tracer attached to process `pid` (`PTRACE_ATTACH`, or `PTRACE_SEIZE` where the syscall
/// programs see it): whatever it put in there before detaching stays, so the process is no
/// allowed reader until its next exec. Any process is marked; only allowed readers look.
#[inline(always)]
pub fn attached(pid: u32) {
    not_allowed(pid);
}

/// A child of a tampered process is tampered too: it runs the same loaded code.
#[inline(always)]
pub fn forked(child: u32) {
    if LOADER_TAMPERED.get_ptr(current_pid()).is_some() {
        not_allowed(child);
    }
}

/// The process exited.
#[inline(always)]
pub fn exited() {
    let _ = TRUSTED_PIDS.remove(current_pid());
    let _ = LOADER_TAMPERED.remove(current_pid());
}

/// Whether the new program's environment sets a loader variable the loader obeys. A set-id
/// program runs in secure mode, where the loader ignores them. An environment that cannot be
/// read whole counts as setting one (fail closed).
#[inline(always)]
fn loader_variables_set() -> bool {
    let off = offsets();
    let secure = read::<*const u8>(current_task(), off.task_struct_cred)
        .and_then(|cred| Ok(read::<u32>(cred, off.cred_uid)? != read::<u32>(cred, off.cred_euid)?));
    match secure {
        Ok(true) => false,
        Ok(false) => environment_has_loader_variable().unwrap_or(true),
        Err(_) => true,
    }
}

#[inline(always)]
fn environment_has_loader_variable() -> Result<bool, i32> {
    let off = offsets();
    let mm = current_mm()?;
    let mut at: u64 = read(mm, off.mm_struct_env_start)?;
    let end: u64 = read(mm, off.mm_struct_env_end)?;
    let scratch = ENV_SCRATCH.get_ptr_mut(0).ok_or(-1)?;
    // SAFETY: a per-CPU buffer, used by one program at a time on this CPU.
    let buffer = unsafe { &mut *scratch };
    for _ in 0..ENV_STRINGS {
        if at >= end {
            return Ok(false);
        }
        // SAFETY: bpf_probe_read_user_str checks the user address; failure is an error.
        let len = unsafe { bpf_probe_read_user_str_bytes(at as *const u8, buffer) }.map_err(|_| -1)?.len();
        if len + 1 >= buffer.len() {
            // Longer than the buffer: where the next string starts is unknown.
            return Err(-1);
        }
        if LOADER_VARIABLES.iter().any(|name| starts_with(buffer, name)) {
            return Ok(true);
        }
        at += len as u64 + 1;
    }
    Err(-1)
}

#[inline(always)]
fn starts_with(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && prefix.iter().enumerate().all(|(i, byte)| text[i] == *byte)
}
