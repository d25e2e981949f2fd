//! The array-indexed filter in front of the watch list's hash lookups.
//!
//! Every page cache read on the host runs a kernel program; a hash lookup there costs more
//! than the rest of the program. One bit per identity, set for every watched secret and
//! derived file, lets almost every read stop after an array load (inlined by the verifier).
//! A stale or colliding bit only costs the hash lookup it was meant to save.

use crate::FileId;

/// Words of the filter (`u64` each): 2^20 bits, 128 KiB.
pub const WORDS: u32 = 1 << 14;

/// The (word, bit mask) that stands for `id`.
#[inline]
#[must_use]
pub const fn slot(id: FileId) -> (u32, u64) {
    let mixed = (id.ino ^ ((id.dev as u64) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let bit = (mixed >> 44) as u32;
    (bit >> 6, 1 << (bit & 63))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stay_inside_the_filter() {
        for ino in [0, 1, 817, u64::MAX] {
            for dev in [0, 0x0080_0001, u32::MAX] {
                let (word, mask) = slot(FileId::new(dev, ino));
                assert!(word < WORDS);
                assert_eq!(mask.count_ones(), 1);
            }
        }
    }

    #[test]
    fn neighbouring_inodes_spread_over_words() {
        let words: std::collections::BTreeSet<u32> =
            (1000..1064).map(|ino| slot(FileId::new(0x0080_0001, ino)).0).collect();
        assert!(words.len() > 48, "{}", words.len());
    }
}
