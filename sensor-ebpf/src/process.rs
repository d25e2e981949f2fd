//! Process lifecycle from the scheduler tracepoints: the agent's process table is built
//! from these, taint follows a process into the children it forks and ends with its thread
//! group, pipeline stages are noted at exec, and a tainted writer's wakeups reach its readers.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_buf},
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
    EbpfContext,
};
use sensor_common::{EventKind, ExecEvent, ExitEvent, ForkEvent, Taint, ARGS_MAX, FILENAME_MAX};

use crate::{
    allowance, channels,
    emit::{self, current_pid, header},
    kernel::{current_mm, current_task, offsets, read, task_exe_id},
    maps::TAINTED,
    stores, taint,
};

/// Offset of `__data_loc char[] filename` in `sched:sched_process_exec`.
const EXEC_FILENAME_LOC: usize = 8;

/// `sched:sched_process_exec`: the process now runs a new program.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn try_exec(ctx: &TracePointContext) -> Result<(), i32> {
    // Whether or not the record finds room: trust and allowance must not fail open on a
    // full ring buffer.
    allowance::exec_checked();
    stores::left();
    let _ = channels::note_pipeline_stage();
    let Some(mut entry) = emit::reserve::<ExecEvent>() else {
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    let off = offsets();
    let task = current_task();
    // SAFETY: `event` points into reserved ring-buffer memory of the right size; every
    // field is written before submit, the arrays up to their recorded lengths.
    unsafe {
        (*event).header = header(EventKind::Exec);
        let parent: *const u8 = read(task, off.task_struct_real_parent).unwrap_or(core::ptr::null());
        (*event).ppid = read(parent, off.task_struct_tgid).unwrap_or(0);
        (*event).start_ns = read(task, off.task_struct_start_time).unwrap_or(0);
        (*event).exec_id = read(task, off.task_struct_self_exec_id).unwrap_or(0);
        (*event).exe = task_exe_id(task).unwrap_or_default();
        (*event)._pad = 0;

        let loc: u32 = ctx.read_at(EXEC_FILENAME_LOC).unwrap_or(0);
        let filename = ctx.as_ptr().cast::<u8>().wrapping_add((loc & 0xffff) as usize);
        let filename_buf = &mut *(&raw mut (*event).filename);
        (*event).filename_len = bpf_probe_read_kernel_str_bytes(filename, filename_buf)
            .map_or(0, |s| s.len() as u32)
            .min(FILENAME_MAX as u32);

        (*event).args_len = read_args(&mut *(&raw mut (*event).args)).unwrap_or(0);
    }
    entry.submit(0);
    Ok(())
}

/// Copies the argument vector (`mm->arg_start..arg_end`, user memory) into `buf`.
#[inline(always)]
fn read_args(buf: &mut [u8; ARGS_MAX]) -> Result<u32, i32> {
    let off = offsets();
    let mm = current_mm()?;
    let start: u64 = read(mm, off.mm_struct_arg_start)?;
    let end: u64 = read(mm, off.mm_struct_arg_end)?;
    let len = end.saturating_sub(start) as usize;
    let len = if len > ARGS_MAX { ARGS_MAX } else { len };
    if len == 0 {
        return Ok(0);
    }
    // SAFETY: bpf_probe_read_user checks the user address; failure is an error.
    unsafe { bpf_probe_read_user_buf(start as *const u8, &mut buf[..len])? };
    Ok(len as u32)
}

/// `sched_waking(task)`: a tainted writer waking the reader of its pipe or socket taints it
/// (`channels::woken`). Every wakeup on the host runs this; until a process is tainted it
/// stops at an array read.
#[btf_tracepoint(function = "sched_waking")]
pub fn task_woken(ctx: BtfTracePointContext) -> i32 {
    if taint::anyone_tainted() {
        let _ = channels::woken(ctx.arg(0));
    }
    0
}

/// `sched_process_fork(parent, child)` as a raw tracepoint: the task pointers tell a new
/// process from a new thread, which the classic tracepoint's pids cannot.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), i32> {
    let off = offsets();
    let child: *const u8 = ctx.arg(1);
    let child_pid: u32 = read(child, off.task_struct_pid)?;
    let child_tgid: u32 = read(child, off.task_struct_tgid)?;
    if child_pid != child_tgid {
        return Ok(());
    }
    let now = taint::now();
    if let Some(parent_taint) = taint::current() {
        taint::inserted(child_tgid, Taint { acquired_ns: now, ..parent_taint })?;
    }
    allowance::forked(child_tgid);
    let child_start_ns = read(child, off.task_struct_start_time).unwrap_or(0);
    stores::forked(child_tgid, child_start_ns);
    emit::output(ForkEvent {
        header: header(EventKind::Fork),
        child_pid: child_tgid,
        _pad: 0,
        child_start_ns,
        child_exec_id: read(child, off.task_struct_self_exec_id).unwrap_or(0),
    });
    Ok(())
}

/// `sched_process_exit(task, ...)` as a raw tracepoint: reported once per process, when its
/// last thread exits — not when its leader does: a main thread that leaves first
/// (`pthread_exit`) or is replaced by an `execve` from another thread leaves the process,
/// and its taint, alive. `signal->live` has just been counted down for the exiting thread
/// (the tracepoint's `group_dead`, which older kernels do not pass).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    let off = offsets();
    let live = read::<*const u8>(current_task(), off.task_struct_signal)
        .and_then(|signal| read::<i32>(signal, off.signal_struct_live));
    if live != Ok(0) {
        return 0;
    }
    if taint::current().is_none() {
        let _ = channels::took_from_held_channels(true);
    }
    let _ = TAINTED.remove(current_pid());
    allowance::exited();
    stores::left();
    emit::output(ExitEvent { header: header(EventKind::Exit) });
    0
}
