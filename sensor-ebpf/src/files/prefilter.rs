//! The kernel half of `sensor_common::prefilter`: one bit per watched secret and derived
//! file, tested before any hash lookup on the page cache read path.

use sensor_common::{prefilter::slot, FileId};

use crate::{atomic, maps::PREFILTER};

/// Whether `id` may be a secret or a derived file (false: it certainly is neither).
#[inline(always)]
pub fn may_hold(id: FileId) -> bool {
    let (word, mask) = slot(id);
    PREFILTER.get(word).is_some_and(|bits| bits & mask != 0)
}

/// Lets `id` through the filter from now on (a new derived file or channel).
#[inline(always)]
pub fn add(id: FileId) {
    let (word, mask) = slot(id);
    if let Some(bits) = PREFILTER.get_ptr_mut(word) {
        // SAFETY: a valid map value. Atomic: two CPUs adding files of one word at once keep
        // both bits.
        unsafe { atomic::or(bits, mask) };
    }
}
