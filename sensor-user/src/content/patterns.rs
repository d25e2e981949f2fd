//! The index of every form of every value, holding no value at all: for each form, a rolling
//! hash of its first [`ANCHOR`] bytes (the anchor) and a keyed hash of the whole form. A
//! stream is scanned with the rolling hash at every position; where an anchor hash is known,
//! the whole form's keyed hash confirms it once its bytes are there.
//!
//! Why not Aho-Corasick: its automaton is the values themselves, in memory for the agent's
//! lifetime, in buffers the crate neither zeroes nor lets us zero. Here a memory dump yields
//! hashes under a key drawn at start; a form is compared only as a 64-bit keyed hash (`SipHash`,
//! the agent's `RandomState`), so a false match needs the exact bytes or a 2^-64 accident.

use std::{collections::hash_map::RandomState, collections::HashMap, hash::BuildHasher};

use super::encodings::Encoding;
use crate::alert::redact::fingerprints::WINDOW;

/// Bytes of a form's anchor, and the shortest value matched: [`WINDOW`], redaction's
/// shortest masked run (a 16-character password is still matched; shorter values, `true`,
/// `postgres`, a port number, turn up in ordinary traffic).
pub const ANCHOR: usize = WINDOW;
/// The anchor filter's size in bits: 2^20 bits (128 KiB) leave a few thousand anchors a
/// false-pass rate well under 1 %, so that almost every position costs one bit test.
const FILTER_LOG2: u32 = 20;

/// One form of one value, as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The form's length in bytes.
    pub len: u32,
    /// The keyed hash of the whole form.
    pub full: u64,
    /// The value's index in the recognizer's table.
    pub value: u32,
    pub encoding: Encoding,
}

/// Every form's anchor and keyed hash.
pub struct PatternSet {
    key: RandomState,
    /// The rolling hash's multiplier (odd, drawn from the key) and its power [`ANCHOR`].
    base: u64,
    base_pow: u64,
    filter: Vec<u64>,
    anchors: HashMap<u64, Vec<Entry>>,
    max_len: usize,
}

impl std::fmt::Debug for PatternSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes only, but their count says enough.
        f.debug_struct("PatternSet")
            .field("anchors", &self.anchors.len())
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl PatternSet {
    /// An empty index keyed with `key`.
    pub fn new(key: &RandomState) -> Self {
        let base = key.hash_one("vigie content rolling hash") | 1;
        let base_pow = (0..ANCHOR).fold(1u64, |pow, _| pow.wrapping_mul(base));
        Self {
            key: key.clone(),
            base,
            base_pow,
            filter: vec![0; 1 << (FILTER_LOG2 - 6)],
            anchors: HashMap::new(),
            max_len: 0,
        }
    }

    /// Adds `form` (at least [`ANCHOR`] bytes; shorter ones are ignored) of value `value`.
    pub fn insert(&mut self, form: &[u8], value: u32, encoding: Encoding) {
        if form.len() < ANCHOR {
            return;
        }
        let Ok(len) = u32::try_from(form.len()) else { return };
        let anchor = self.anchor_hash(&form[..ANCHOR]);
        let entry = Entry { len, full: self.key.hash_one(form), value, encoding };
        let entries = self.anchors.entry(anchor).or_default();
        if !entries.contains(&entry) {
            entries.push(entry);
        }
        let bit = Self::filter_bit(anchor);
        self.filter[bit / 64] |= 1 << (bit % 64);
        self.max_len = self.max_len.max(form.len());
    }

    /// Keeps only the entries of values `keep` selects (the filter is rebuilt).
    pub fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.anchors.retain(|_, entries| {
            entries.retain(|e| keep(e.value));
            !entries.is_empty()
        });
        self.filter.fill(0);
        let bits: Vec<usize> = self.anchors.keys().map(|&anchor| Self::filter_bit(anchor)).collect();
        for bit in bits {
            self.filter[bit / 64] |= 1 << (bit % 64);
        }
        self.max_len = self.anchors.values().flatten().map(|e| e.len as usize).max().unwrap_or(0);
    }

    /// The longest form: how far back a stream's tail must reach.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// How many forms are indexed.
    pub fn len(&self) -> usize {
        self.anchors.values().map(Vec::len).sum()
    }

    /// Calls `hit(position, entry)` for every window of `bytes` (starting at `from`) whose
    /// anchor hash is known; the full forms are confirmed later by [`Self::confirms`].
    pub fn anchors_in(&self, bytes: &[u8], from: usize, mut hit: impl FnMut(usize, Entry)) {
        if self.anchors.is_empty() || bytes.len() < from + ANCHOR {
            return;
        }
        let mut hash = self.anchor_hash(&bytes[from..from + ANCHOR]);
        let mut at = from;
        loop {
            let bit = Self::filter_bit(hash);
            if self.filter[bit / 64] & (1 << (bit % 64)) != 0 {
                for &entry in self.anchors.get(&hash).into_iter().flatten() {
                    hit(at, entry);
                }
            }
            let Some(&next) = bytes.get(at + ANCHOR) else { break };
            hash = hash
                .wrapping_mul(self.base)
                .wrapping_add(u64::from(next))
                .wrapping_sub(u64::from(bytes[at]).wrapping_mul(self.base_pow));
            at += 1;
        }
    }

    /// Whether `bytes` (as long as the entry's form) are that form.
    pub fn confirms(&self, entry: &Entry, bytes: &[u8]) -> bool {
        bytes.len() == entry.len as usize && self.key.hash_one(bytes) == entry.full
    }

    fn anchor_hash(&self, window: &[u8]) -> u64 {
        window.iter().fold(0u64, |hash, &b| hash.wrapping_mul(self.base).wrapping_add(u64::from(b)))
    }

    fn filter_bit(hash: u64) -> usize {
        // Fibonacci hashing spreads the polynomial hash's high bits over the filter.
        usize::try_from(hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FILTER_LOG2)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_hash_finds_every_occurrence_and_confirms_only_the_form() {
        let mut set = PatternSet::new(&RandomState::new());
        set.insert(b"0123456789abcdefXYZ", 7, Encoding::Raw);
        let text = b"--0123456789abcdefXYZ--0123456789abcdefXYQ";
        let mut hits = Vec::new();
        set.anchors_in(text, 0, |at, entry| hits.push((at, entry)));
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [2, 23]);
        assert!(set.confirms(&hits[0].1, &text[2..21]));
        assert!(!set.confirms(&hits[1].1, &text[23..42]));
        set.retain(|value| value != 7);
        assert_eq!(set.len(), 0);
    }
}
