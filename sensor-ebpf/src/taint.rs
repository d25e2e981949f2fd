//! The taint state machine shared by every hook: who holds secret material, since when, and
//! the one record per (process, secret) that tells the agent.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use sensor_common::{counter, via, EventHeader, EventKind, FileId, ReadSeenKey, Taint, TaintEvent};

use crate::{
    allowance, channels,
    emit::{self, current_pid, header},
    gates,
    kernel::{current_start_ns, current_task, offsets},
    maps::{COUNTERS, READ_SEEN, TAINTED, TRUSTED_PIDS},
    stores,
};

/// Passes on a map insert's result, counting a refusal (the map is full) for the agent.
#[inline(always)]
pub fn counted(result: Result<(), i32>) -> Result<(), i32> {
    counted_as(counter::INSERTS_FAILED, result)
}

/// [`counted`], in counter `index` of `COUNTERS`.
#[inline(always)]
pub fn counted_as(index: u32, result: Result<(), i32>) -> Result<(), i32> {
    result.map_err(|_| {
        if let Some(failed) = COUNTERS.get_ptr_mut(index) {
            // SAFETY: per-CPU slot, programs do not preempt each other on one CPU.
            unsafe { *failed += 1 };
        }
        -1
    })
}

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Whether `taint` still counts at `now`, given the configured taint window.
#[inline(always)]
pub fn is_live(taint: &Taint, now: u64) -> bool {
    let window = offsets().taint_window_ns;
    window == 0 || now.saturating_sub(taint.read_ns) <= window
}

/// The current process's live taint, if any; an expired one is dropped.
#[inline(always)]
pub fn current() -> Option<Taint> {
    if !anyone_tainted() {
        return None;
    }
    let pid = current_pid();
    // SAFETY: the value is copied out at once.
    let taint = unsafe { TAINTED.get(pid) }.copied()?;
    if is_live(&taint, now()) {
        Some(taint)
    } else {
        let _ = TAINTED.remove(pid);
        None
    }
}

/// The current process reads the memory of `target`: if that is a trusted service's
/// process, the reader takes in what the service holds.
#[inline(always)]
pub fn memory_read(target: u32, fd: u32) -> Result<(), i32> {
    // SAFETY: the value is copied out at once.
    let Some(label) = (unsafe { TRUSTED_PIDS.get(target) }).map(|trusted| trusted.label) else {
        return Ok(());
    };
    if target == current_pid() || allowance::current_is_trusted_service() {
        return Ok(());
    }
    let now = now();
    let source = Taint {
        secret_id: label,
        origin_pid: current_pid(),
        read_ns: now,
        acquired_ns: now,
        via_kind: via::PROCESS_MEMORY,
        via_generation: 0,
        via: FileId::new(0, u64::from(target)),
        origin_start_ns: current_start_ns(),
    };
    acquire(source, fd, FileId::new(0, u64::from(target)))
}

/// The current process takes in secret material described by `source`, through descriptor
/// `fd` on `file`. Keeps an existing live taint (its origin came first) and reports each
/// (process, secret) once, and again whenever the take-in renews the taint window. The
/// window counts from now: a derived file or a pipe hands over the material when it is read,
/// however old it is, and every read renews it.
#[inline(always)]
pub fn acquire(source: Taint, fd: u32, file: FileId) -> Result<(), i32> {
    let header = header(EventKind::Taint);
    acquire_by(current_task(), header, source, fd, file)
}

/// A taint window is renewed, and the renewal reported, once it is this fraction old: a
/// process that keeps reading a secret is reported at most this many times per window.
const RENEWAL_STEPS: u64 = 8;

/// [`acquire`] for `task`, whose thread group and uid `header` names (the current task, or
/// one a tainted writer wakes).
#[inline(always)]
pub fn acquire_by(
    task: *const u8,
    header: EventHeader,
    source: Taint,
    fd: u32,
    file: FileId,
) -> Result<(), i32> {
    let pid = header.pid;
    // A store server takes in nothing: its clients' queries would keep it tainted for good.
    if pid == offsets().agent_pid || stores::served_by(task, pid).is_some() {
        return Ok(());
    }
    let now = now();
    let source = Taint { read_ns: now, ..source };
    let window = offsets().taint_window_ns;
    // SAFETY: the value is copied out at once.
    let (held, renewed) = match unsafe { TAINTED.get(pid) }.copied() {
        Some(held) if is_live(&held, now) => {
            if window != 0 && now - held.read_ns > window / RENEWAL_STEPS {
                let renewed = Taint { read_ns: now, ..held };
                counted(TAINTED.insert(pid, renewed, 0))?;
                (renewed, true)
            } else {
                (held, false)
            }
        }
        _ => {
            let fresh = Taint { acquired_ns: now, ..source };
            inserted(pid, fresh)?;
            channels::mark_held(task, &fresh);
            (fresh, false)
        }
    };
    let seen = ReadSeenKey { pid, secret_id: source.secret_id };
    // SAFETY: the value is copied out at once.
    if !renewed && unsafe { READ_SEEN.get(seen) }.copied() == Some(held.acquired_ns) {
        return Ok(());
    }
    counted(READ_SEEN.insert(seen, held.acquired_ns, 0))?;
    emit::output(TaintEvent {
        header,
        taint: Taint { acquired_ns: held.acquired_ns, ..source },
        fd,
        _pad: 0,
        file,
    });
    Ok(())
}

/// The current process, which may open secrets, took in `source`'s secret through `fd` from
/// `file`: reported once per process (by its start time) and secret, for the record of who
/// reads the secrets; it taints nothing.
#[inline(always)]
pub fn allowed_read(source: Taint, fd: u32, file: FileId) -> Result<(), i32> {
    let header = header(EventKind::AllowedRead);
    let seen = ReadSeenKey { pid: header.pid, secret_id: source.secret_id };
    let process = source.origin_start_ns;
    // SAFETY: the value is copied out at once.
    if unsafe { READ_SEEN.get(seen) }.copied() == Some(process) {
        return Ok(());
    }
    counted(READ_SEEN.insert(seen, process, 0))?;
    emit::output(TaintEvent { header, taint: source, fd, _pad: 0, file });
    Ok(())
}

/// Records that process `pid` is tainted with `taint`, and opens the gate of every hook that
/// looks for tainted processes.
#[inline(always)]
pub fn inserted(pid: u32, taint: Taint) -> Result<(), i32> {
    counted(TAINTED.insert(pid, taint, 0))?;
    gates::open(counter::TAINTED_PROCESSES);
    Ok(())
}

/// Whether any process may be tainted: until one is, and again once the agent found none,
/// the hooks skip their taint lookup (an array read, inlined by the verifier).
#[inline(always)]
pub fn anyone_tainted() -> bool {
    gates::is_open(counter::TAINTED_PROCESSES)
}
