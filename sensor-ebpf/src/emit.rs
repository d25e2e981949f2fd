//! Writing records into the ring buffer, counting every one that does not fit.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns},
    maps::ring_buf::RingBufEntry,
};
use sensor_common::{counter, EventHeader, EventKind};

use crate::maps::{COUNTERS, EVENTS};

/// Reserves room for a `T` in the ring buffer, or counts the loss.
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        count_lost();
    }
    entry
}

/// Writes a small record in one go.
#[inline(always)]
pub fn output<T: 'static>(record: T) {
    if let Some(mut entry) = reserve::<T>() {
        entry.write(record);
        entry.submit(0);
    }
}

/// Writes the first bytes of a record, counting the loss if they do not fit.
#[inline(always)]
pub fn output_bytes(record: &[u8]) {
    if EVENTS.output::<[u8]>(record, 0).is_err() {
        count_lost();
    }
}

#[inline(always)]
fn count_lost() {
    if let Some(lost) = COUNTERS.get_ptr_mut(counter::EVENTS_LOST) {
        // SAFETY: per-CPU slot, programs do not preempt each other on one CPU.
        unsafe { *lost += 1 };
    }
}

/// The current process's thread-group id.
#[inline(always)]
pub fn current_pid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// A header for the current process.
#[inline(always)]
pub fn header(kind: EventKind) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        pid: current_pid(),
        uid: bpf_get_current_uid_gid() as u32,
        _pad: 0,
        // SAFETY: helper without preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
    }
}
