//! Credentials recognised by their own shape, whatever name they go by: private key blocks,
//! JWTs, tokens with a known prefix, and long random-looking hex or base64.

use std::ops::Range;

/// Token prefixes and the shortest tail that makes one: Matrix access, refresh and admin tokens
/// (`syt_`, `syr_`, `mat_`), GitHub, GitLab and Slack tokens, AWS access key ids.
const TOKEN_PREFIXES: [(&[u8], usize); 12] = [
    (b"syt_", 6),
    (b"syr_", 6),
    (b"mat_", 6),
    (b"ghp_", 6),
    (b"gho_", 6),
    (b"ghu_", 6),
    (b"ghs_", 6),
    (b"github_pat_", 6),
    (b"glpat-", 6),
    (b"xoxb-", 6),
    (b"xoxp-", 6),
    (b"AKIA", 16),
];

/// Hex runs this long or longer are masked: 32 digits is 128 bits, the smallest key size in use,
/// and many API keys are 32 or 40 hex digits. A git commit id (40) or a SHA-256 digest (64) is
/// masked too: by shape it cannot be told from a key, and its `len`/`h` still let a responder
/// match it across alerts.
const MIN_HEX: usize = 32;
/// Base64 (standard or URL-safe) runs this long or longer are masked when they look random: 32
/// characters is 24 bytes, shorter than the 32-byte keys that matter; shorter random ids
/// (container names, request ids) are common in arguments and are left alone.
const MIN_BASE64: usize = 32;
/// Random base64 changes character class (lower, upper, digit) between about 60 % of its
/// neighbouring alphanumerics; paths and identifiers made of words, about 20 %.
const MIN_CLASS_CHANGES_PERCENT: usize = 30;

/// Pushes the span of every shaped credential in `bytes`.
pub fn spans(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    private_keys(bytes, spans);
    jwts(bytes, spans);
    prefixed_tokens(bytes, spans);
    hex_runs(bytes, spans);
    base64_runs(bytes, spans);
}

/// The body of each `-----BEGIN … PRIVATE KEY-----` block, up to its `-----END` line (or the
/// end of the text); the markers stay, to say what was there.
fn private_keys(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    let mut from = 0;
    while let Some(begin) = find(bytes, from, b"-----BEGIN ") {
        let label = begin + b"-----BEGIN ".len();
        let Some(label_end) = find(bytes, label, b"-----") else { return };
        let body = label_end + b"-----".len();
        let end = find(bytes, body, b"-----END").unwrap_or(bytes.len());
        if find(&bytes[label..label_end], 0, b"PRIVATE").is_some() {
            spans.push(body..end);
        }
        from = end.max(body);
    }
}

/// JSON Web Tokens: `eyJ` (base64 of `{"`) header, a payload, an optional signature.
fn jwts(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    let mut from = 0;
    while let Some(start) = find(bytes, from, b"eyJ") {
        from = start + 1;
        if start > 0 && is_base64url(bytes[start - 1]) {
            continue;
        }
        let header = run(bytes, start, is_base64url);
        if header - start < 10 || bytes.get(header) != Some(&b'.') {
            continue;
        }
        let payload = run(bytes, header + 1, is_base64url);
        if payload - header - 1 < 4 {
            continue;
        }
        let end =
            if bytes.get(payload) == Some(&b'.') { run(bytes, payload + 1, is_base64url) } else { payload };
        spans.push(start..end);
        from = end;
    }
}

/// Tokens that begin with a known prefix at the start of a word.
fn prefixed_tokens(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    for (prefix, min_tail) in TOKEN_PREFIXES {
        let mut from = 0;
        while let Some(start) = find(bytes, from, prefix) {
            let tail = start + prefix.len();
            let end = run(bytes, tail, |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
            if (start == 0 || !bytes[start - 1].is_ascii_alphanumeric()) && end - tail >= min_tail {
                spans.push(start..end);
            }
            from = end.max(start + 1);
        }
    }
}

/// Whole words of [`MIN_HEX`] hex digits or more.
fn hex_runs(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    for word in runs(bytes, |c: u8| c.is_ascii_alphanumeric()) {
        let text = &bytes[word.clone()];
        if text.len() >= MIN_HEX
            && text.iter().all(u8::is_ascii_hexdigit)
            && text.iter().any(u8::is_ascii_digit)
        {
            spans.push(word);
        }
    }
}

/// Base64 runs of [`MIN_BASE64`] characters or more (with their `=` padding) that mix lower
/// case, upper case and digits the way random bytes do.
fn base64_runs(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    for word in runs(bytes, |c| is_base64url(c) || matches!(c, b'+' | b'/')) {
        let text = &bytes[word.clone()];
        if text.len() >= MIN_BASE64 && looks_random(text) {
            let end = run(bytes, word.end, |c| c == b'=').min(word.end + 2);
            spans.push(word.start..end);
        }
    }
}

fn looks_random(text: &[u8]) -> bool {
    let class = |c: &u8| match c {
        b'a'..=b'z' => Some(0),
        b'A'..=b'Z' => Some(1),
        b'0'..=b'9' => Some(2),
        _ => None,
    };
    let classes: Vec<Option<u8>> = text.iter().map(class).collect();
    let has = |wanted| classes.contains(&Some(wanted));
    let pairs = classes.windows(2).filter_map(|pair| Some((pair[0]?, pair[1]?)));
    let (changes, total) =
        pairs.fold((0, 0), |(changes, total), (a, b)| (changes + usize::from(a != b), total + 1));
    has(0) && has(1) && has(2) && changes * 100 >= total * MIN_CLASS_CHANGES_PERCENT
}

fn is_base64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// The maximal runs of bytes that `keep` accepts.
fn runs<'a>(
    bytes: &'a [u8],
    keep: impl Fn(u8) -> bool + Copy + 'a,
) -> impl Iterator<Item = Range<usize>> + 'a {
    let mut from = 0;
    std::iter::from_fn(move || {
        let start = from + bytes.get(from..)?.iter().position(|&c| keep(c))?;
        let end = run(bytes, start, keep);
        from = end;
        Some(start..end)
    })
}

/// Where the run of bytes that `keep` accepts, starting at `start`, ends.
fn run(bytes: &[u8], start: usize, keep: impl Fn(u8) -> bool) -> usize {
    start + bytes.get(start..).map_or(0, |rest| rest.iter().take_while(|&&c| keep(c)).count())
}

/// The first occurrence of `needle` in `bytes` at or after `from`.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let rest = bytes.get(from..)?;
    rest.windows(needle.len()).position(|w| w == needle).map(|i| from + i)
}
