//! Command lines are evidence, but they may carry a credential: `curl -H "Authorization: Bearer
//! syt_…"`, `mysql -pHunter2`, `curl -d "$(cat homeserver.yaml)"`. Every argument is masked
//! before any output, so Vigie never prints a secret's value even when a process line holds it.
//!
//! Two kinds of text are masked: credential-shaped text ([`shapes`], [`flags`]) and any run of
//! [`fingerprints::WINDOW`] bytes or more of a watched secret's content ([`fingerprints`]). Only
//! the masked span is replaced, by `[masked len=N h=XXXXXX]`: its length in bytes and the first
//! 24 bits of a hash keyed with this agent's random key, so that a responder can tell whether two
//! alerts of one agent run carry the same value without the value, nor a guessable hash of it.

pub mod fingerprints;
mod flags;
pub mod messages;
mod names;
mod shapes;

use std::{collections::hash_map::RandomState, fmt::Write, hash::BuildHasher, ops::Range};

use crate::state::secret_catalog::SecretCatalog;
pub use fingerprints::FingerprintReport;
use fingerprints::Fingerprints;

/// Masks arguments; holds the keyed fingerprints of the watched secrets' contents.
#[derive(Debug, Default)]
pub struct Redactor {
    /// The per-agent key: `RandomState` draws it from the kernel's random source at start.
    key: RandomState,
    fingerprints: Fingerprints,
}

impl Redactor {
    /// A redactor with the fingerprints of every file `catalog` watches now.
    pub fn new(catalog: &SecretCatalog) -> Self {
        let mut redactor = Self::default();
        redactor.refresh(catalog, |_| true);
        redactor
    }

    /// Fingerprints again the watched files that changed (identity, size or mtime) and that
    /// `may_read` allows; files that did not change are only `stat`ed.
    pub fn refresh(&mut self, catalog: &SecretCatalog, may_read: impl Fn(&std::path::Path) -> bool) {
        self.fingerprints.refresh(&self.key, catalog, may_read);
    }

    /// The per-agent key, which content recognition shares so that a value's fingerprint in
    /// an alert is its `h=` in a masked argument.
    pub fn key(&self) -> &RandomState {
        &self.key
    }

    /// What is fingerprinted and what was skipped, for `sensor-started`.
    pub fn report(&self) -> FingerprintReport {
        self.fingerprints.report()
    }

    /// `args` with credential-shaped text and watched secrets' contents masked.
    pub fn args(&self, args: &[String]) -> Vec<String> {
        let mut spans = flags::spans(args);
        for (arg, spans) in args.iter().zip(&mut spans) {
            spans.extend(shapes::spans(arg));
            spans.extend(self.fingerprints.spans(&self.key, arg.as_bytes()));
        }
        args.iter().zip(spans).map(|(arg, spans)| self.masked(arg, spans)).collect()
    }

    /// `text` with `spans` (byte ranges, in any order, possibly overlapping) replaced.
    fn masked(&self, text: &str, mut spans: Vec<Range<usize>>) -> String {
        spans.sort_by_key(|span| span.start);
        let mut out = String::with_capacity(text.len());
        let mut done = 0;
        let mut spans = spans.into_iter().map(|span| widen_to_chars(text, span)).peekable();
        while let Some(mut span) = spans.next() {
            while let Some(next) = spans.next_if(|next| next.start <= span.end) {
                span.end = span.end.max(next.end);
            }
            let span = span.start.max(done)..span.end;
            if span.is_empty() {
                continue;
            }
            out.push_str(&text[done..span.start]);
            let hash = fingerprint(&self.key, &text.as_bytes()[span.clone()]);
            // Writing to a String cannot fail.
            let _ = write!(out, "[masked len={} h={hash}]", span.len());
            done = span.end;
        }
        out.push_str(&text[done..]);
        out
    }
}

/// The `h=` of `bytes`: the first 24 bits of their hash keyed with `key`, in hex. It tells two
/// values of one agent run apart, and nothing about either without the key.
pub fn fingerprint(key: &RandomState, bytes: &[u8]) -> String {
    format!("{:06x}", key.hash_one(bytes) >> 40)
}

/// `span` clamped to `text` and widened to whole characters (fingerprint windows are bytes).
fn widen_to_chars(text: &str, span: Range<usize>) -> Range<usize> {
    let mut start = span.start.min(text.len());
    let mut end = span.end.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

#[cfg(test)]
mod tests;
