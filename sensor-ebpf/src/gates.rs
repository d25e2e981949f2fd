//! Gates: global switches that let the hooks skip a lookup until something needs it, one per
//! index of `sensor_common::counter` that names one.
//!
//! A gate is open while `GATES` and `GATES_CLOSED` differ. The programs open it, after
//! recording what needs it, by storing the time in `GATES`; the agent closes it by copying
//! into `GATES_CLOSED` the value of `GATES` it read *before* it looked and found nothing
//! that needs the gate. Whatever the look missed was recorded after that read, so the gate
//! it opened holds a later time and stays open: a close never blinds the hooks, not even
//! for the instant between a look and a store.

use crate::{
    maps::{GATES, GATES_CLOSED},
    taint,
};

/// Whether gate `index` is open (two array reads, inlined by the verifier).
#[inline(always)]
pub fn is_open(index: u32) -> bool {
    GATES.get(index).copied().unwrap_or(0) != GATES_CLOSED.get(index).copied().unwrap_or(0)
}

/// Opens gate `index`, once what needs it is recorded.
#[inline(always)]
pub fn open(index: u32) {
    if let Some(gate) = GATES.get_ptr_mut(index) {
        // SAFETY: a plain store into a valid map value. CPUs racing each store a time later
        // than any value the agent read before its look.
        unsafe { *gate = taint::now() };
    }
}
