//! Updates of map values that two CPUs may make at the same instant, as the BPF ISA's atomic
//! instructions (`lock *(u64 *)(rX + 0) |= / += rY`). The bpfel target has no compare-and-swap,
//! so `core::sync::atomic` offers neither operation; the intrinsics lower to these single
//! instructions (atomic add on every kernel, atomic or since Linux 5.12).

use core::intrinsics::{self, AtomicOrdering};

/// `*value |= bits`, no bit another CPU sets at the same time lost.
///
/// # Safety
/// `value` points into a map value, valid for the program's run.
#[inline(always)]
pub unsafe fn or(value: *mut u64, bits: u64) {
    intrinsics::atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(value, bits);
}

/// `*value += n`, no addition another CPU makes at the same time lost.
///
/// # Safety
/// `value` points into a map value, valid for the program's run.
#[inline(always)]
pub unsafe fn add(value: *mut u64, n: u64) {
    intrinsics::atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(value, n);
}
