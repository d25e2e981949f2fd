//! Per-stream scanning state, so that a value split across sends is still found: each stream
//! keeps the tail of its bytes that a form or token seen in part may still need, and the
//! anchors seen whose whole form has not arrived yet. Bounded: a tail never outgrows the
//! longest form (or token), and at most [`MAX_STREAMS`] streams are kept, the least recently
//! used evicted (counted) past that.
//!
//! A tainted sender's stream is also scanned with its line breaks removed, for base64 only:
//! `base64` wraps at 76 columns and PEM at 64, so a value's base64 form is most often cut by
//! one. That second view runs only while a line break was sent within the longest form's
//! length (it doubles the cost there); a trusted service's stream has none.

use std::collections::HashMap;

use zeroize::{Zeroize, Zeroizing};

use super::{
    patterns::{Entry, PatternSet, ANCHOR},
    token_shapes::{self, TokenKind, TOKEN_MAX},
    Encoding, StreamKey,
};

/// Streams kept at once: connections of the processes that matter, not of the whole host.
pub const MAX_STREAMS: usize = 4096;
/// The buffer a stream keeps between sends at most, beyond what its tail needs: 4,096 streams
/// hold 64 MiB at worst, not the size of their largest send.
const KEPT_CAPACITY: usize = 16 * 1024;

/// Every stream's state.
#[derive(Debug, Default)]
pub struct Streams {
    by_key: HashMap<StreamKey, Views>,
    /// Ticks on every scan: a stream's last use, for eviction.
    clock: u64,
    /// Streams dropped to stay within [`MAX_STREAMS`].
    pub evicted: u64,
}

/// What one scan of a stream found: forms confirmed, and tokens by shape with their bytes.
#[derive(Default)]
pub struct Found {
    pub forms: Vec<Entry>,
    /// Each token's kind and its bytes, zeroed when dropped.
    pub tokens: Vec<(TokenKind, Zeroizing<Vec<u8>>)>,
}

/// A stream as sent, and with its line breaks removed (tainted senders only, near a break).
#[derive(Debug, Default)]
struct Views {
    sent: Stream,
    unwrapped: Stream,
    /// Whether `unwrapped` is fed, and where in `sent` the last line break ended.
    unwrapping: bool,
    last_break: u64,
    last_used: u64,
}

/// One view of a stream: its tail (bytes from absolute offset `start`), where the next anchor and
/// token searches begin, and the anchors waiting for the rest of their form.
#[derive(Default)]
struct Stream {
    tail: Zeroizing<Vec<u8>>,
    start: u64,
    anchors_from: u64,
    tokens_from: u64,
    pending: Vec<(u64, Entry)>,
}

impl Streams {
    /// Scans `bytes`, the next of `key`'s stream; for a `tainted` sender, token shapes and
    /// line-wrapped base64 too.
    pub fn scan(&mut self, key: &StreamKey, bytes: &[u8], patterns: &PatternSet, tainted: bool) -> Found {
        self.clock += 1;
        if !self.by_key.contains_key(key) && self.by_key.len() >= MAX_STREAMS {
            self.evict_oldest();
        }
        let views = self.by_key.entry(*key).or_default();
        views.last_used = self.clock;
        views.scan(bytes, patterns, tainted)
    }

    /// Forgets every stream of `pid`.
    pub fn forget_process(&mut self, pid: u32) {
        self.by_key.retain(|key, _| key.pid != pid);
    }

    /// Streams kept now.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// A linear walk: it runs only when a new stream arrives with the table full.
    fn evict_oldest(&mut self) {
        if let Some(oldest) = self.by_key.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k) {
            self.by_key.remove(&oldest);
            self.evicted += 1;
        }
    }
}

impl Views {
    fn scan(&mut self, bytes: &[u8], patterns: &PatternSet, tainted: bool) -> Found {
        let has_break = bytes.iter().any(|&b| is_break(b));
        if tainted && has_break && !self.unwrapping {
            // Seeded with what the sent view kept: every anchor still waiting for its form,
            // and the bytes a form cut inside its anchor began with. Its matches were reported.
            self.unwrapped = Stream::default();
            self.unwrapped.scan(&without_breaks(&self.sent.tail), patterns, false);
            self.unwrapping = true;
        }
        let mut found = self.sent.scan(bytes, patterns, tainted);
        if !tainted || !self.unwrapping {
            return found;
        }
        for entry in self.unwrapped.scan(&without_breaks(bytes), patterns, false).forms {
            let base64 = matches!(entry.encoding, Encoding::Base64 | Encoding::Base64Url);
            if base64 && !found.forms.contains(&entry) {
                found.forms.push(entry);
            }
        }
        let end = self.sent.start + self.sent.tail.len() as u64;
        if has_break {
            self.last_break = end;
        } else if end - self.last_break > patterns.max_len() as u64 {
            // No form can span a line break from here on until the next one.
            self.unwrapping = false;
            self.unwrapped = Stream::default();
        }
        found
    }
}

fn is_break(byte: u8) -> bool {
    byte == b'\r' || byte == b'\n'
}

/// `bytes` without line breaks, in a buffer zeroed when dropped.
fn without_breaks(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    out.extend(bytes.iter().copied().filter(|&b| !is_break(b)));
    out
}

impl Stream {
    fn scan(&mut self, bytes: &[u8], patterns: &PatternSet, tokens: bool) -> Found {
        self.append(bytes);
        let end = self.start + self.tail.len() as u64;
        let local = |at: u64| usize::try_from(at - self.start).unwrap_or(usize::MAX);
        let mut found = Found::default();

        let mut pending = std::mem::take(&mut self.pending);
        patterns.anchors_in(&self.tail, local(self.anchors_from), |at, entry| {
            pending.push((self.start + at as u64, entry));
        });
        self.anchors_from = end.saturating_sub(ANCHOR as u64 - 1).max(self.anchors_from);
        pending.retain(|&(at, entry)| {
            let from = local(at);
            let Some(form) = self.tail.get(from..from + entry.len as usize) else { return true };
            if patterns.confirms(&entry, form) && !found.forms.contains(&entry) {
                found.forms.push(entry);
            }
            false
        });
        self.pending = pending;

        if tokens {
            let (shapes, resume) = token_shapes::find(&self.tail, local(self.tokens_from.max(self.start)));
            for (range, kind) in shapes {
                found.tokens.push((kind, Zeroizing::new(self.tail[range].to_vec())));
            }
            // With no token cut short, the last 3 bytes may still begin one's prefix.
            let resume = resume.map_or(end.saturating_sub(3), |at| self.start + at as u64);
            self.tokens_from = resume.max(end.saturating_sub(TOKEN_MAX as u64));
        } else {
            self.tokens_from = end;
        }

        let keep_from = self
            .pending
            .iter()
            .map(|&(at, _)| at)
            .chain([self.anchors_from, self.tokens_from])
            .min()
            .unwrap_or(end)
            .max(end.saturating_sub(patterns.max_len().max(TOKEN_MAX) as u64));
        self.pending.retain(|&(at, _)| at >= keep_from);
        self.cut(local(keep_from));
        found
    }

    /// Appends `bytes` to the tail; a tail that must grow moves to a new buffer, the old one
    /// zeroed (a plain reallocation would free it as it is).
    fn append(&mut self, bytes: &[u8]) {
        let needed = self.tail.len() + bytes.len();
        if needed > self.tail.capacity() {
            let mut grown = Zeroizing::new(Vec::with_capacity(needed.next_power_of_two()));
            grown.extend_from_slice(&self.tail);
            self.tail = grown;
        }
        self.tail.extend_from_slice(bytes);
    }

    /// Drops the first `count` bytes of the tail, zeroing what the move leaves behind; a
    /// buffer grown for a large send is given back (zeroed) once its tail is small again.
    fn cut(&mut self, count: usize) {
        let count = count.min(self.tail.len());
        let len = self.tail.len();
        self.tail.copy_within(count.., 0);
        self.tail[len - count..].zeroize();
        self.tail.truncate(len - count);
        self.start += count as u64;
        if self.tail.capacity() > KEPT_CAPACITY && self.tail.len() * 4 < self.tail.capacity() {
            let mut smaller = Zeroizing::new(Vec::with_capacity(self.tail.len().max(KEPT_CAPACITY / 4)));
            smaller.extend_from_slice(&self.tail);
            self.tail = smaller;
        }
    }
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<TokenKind> = self.tokens.iter().map(|(kind, _)| *kind).collect();
        f.debug_struct("Found").field("forms", &self.forms).field("tokens", &kinds).finish()
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tail is traffic that may hold a secret: its length only.
        f.debug_struct("Stream")
            .field("tail_len", &self.tail.len())
            .field("start", &self.start)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}
