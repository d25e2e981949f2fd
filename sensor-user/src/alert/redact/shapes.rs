//! Credential-shaped text inside one argument, which may be a whole script or a file's content
//! (`sh -c '…'`, `curl -d "$(cat homeserver.yaml)"`): values of credential names, auth schemes,
//! URL passwords, and the blobs of [`blobs`]. Scanners work on bytes and cut only at ASCII
//! bytes, so every span they return lies on character boundaries.

use std::ops::Range;

use super::names;

mod blobs;

/// Byte ranges of `text` that hold a credential.
pub fn spans(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    assignments(text, &mut spans);
    schemes(bytes, &mut spans);
    url_passwords(bytes, &mut spans);
    blobs::spans(bytes, &mut spans);
    spans
}

/// Values assigned to a credential name: `PASSWORD=x`, `--token=x`, `?access_token=x&`,
/// `registration_shared_secret: "x"`, `{"password": "x"}`, `X-Api-Key: x`, `Cookie: a=b; c=d`.
/// `Authorization: Bearer x` keeps its scheme word.
fn assignments(text: &str, spans: &mut Vec<Range<usize>>) {
    let bytes = text.as_bytes();
    for (at, &separator) in bytes.iter().enumerate().filter(|(_, &c)| c == b'=' || c == b':') {
        let Some((name, quoted)) = name_before(bytes, at) else { continue };
        if !names::is_credential(&text[name.clone()]) {
            continue;
        }
        let Some(mut value) = value_after(bytes, at + 1, separator, quoted) else { continue };
        if text[name].to_ascii_lowercase().contains("authorization") {
            value.start = after_scheme(bytes, value.clone());
        }
        if !value.is_empty() {
            spans.push(value);
        }
    }
}

/// The name assigned to by the separator at `at`, and whether it is quoted (JSON).
fn name_before(bytes: &[u8], at: usize) -> Option<(Range<usize>, bool)> {
    let mut end = at;
    while end > 0 && matches!(bytes[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    let quote = end.checked_sub(1).map(|i| bytes[i]).filter(|c| matches!(c, b'"' | b'\''));
    if quote.is_some() {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && is_name_byte(bytes[start - 1]) {
        start -= 1;
    }
    let closed = quote.is_none_or(|q| start > 0 && bytes[start - 1] == q);
    (start < end && closed).then_some((start..end, quote.is_some()))
}

fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// The value that starts after `from`: a quoted string's inside, else up to where values of
/// this separator end (a `:` value is the rest of its line, as in YAML and headers).
fn value_after(bytes: &[u8], from: usize, separator: u8, json: bool) -> Option<Range<usize>> {
    let mut start = from;
    while start < bytes.len() && matches!(bytes[start], b' ' | b'\t') {
        start += 1;
    }
    let first = *bytes.get(start)?;
    // A nested object or list: its own names are scanned.
    if matches!(first, b'{' | b'[') {
        return None;
    }
    if matches!(first, b'"' | b'\'') {
        let inside = start + 1;
        let end = (inside..bytes.len())
            .find(|&i| bytes[i] == first && bytes[i - 1] != b'\\')
            .unwrap_or(bytes.len());
        return Some(inside..end);
    }
    if separator == b':' && bytes[start..].starts_with(b"//") {
        return None;
    }
    let ends = |c: u8| match separator {
        b'=' => c.is_ascii_whitespace() || matches!(c, b'&' | b';' | b'"' | b'\'' | b'`'),
        _ => matches!(c, b'\n' | b'\r' | b'"' | b'\'') || (json && matches!(c, b',' | b'}')),
    };
    let end = (start..bytes.len()).find(|&i| ends(bytes[i])).unwrap_or(bytes.len());
    Some(start..end)
}

/// Where the credential of an `Authorization` value starts: after its scheme word, if any.
fn after_scheme(bytes: &[u8], value: Range<usize>) -> usize {
    let word = bytes[value.clone()].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'-').count();
    let spaced = bytes.get(value.start + word) == Some(&b' ') && value.start + word + 1 < value.end;
    if word > 0 && spaced {
        value.start + word + 1
    } else {
        value.start
    }
}

/// Scheme words whose next word is a credential wherever they appear (`-H "$AUTH"` expanded,
/// a header built in a script): `Bearer x`, and `Basic x` when x looks encoded, not English.
fn schemes(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    let lower = bytes.to_ascii_lowercase();
    for (scheme, needs_code) in [(&b"bearer "[..], false), (&b"basic "[..], true)] {
        let starts = (0..lower.len()).filter(|&i| lower[i..].starts_with(scheme));
        for start in starts.filter(|&i| i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let from = start + scheme.len();
            let len = bytes[from..].iter().take_while(|&&c| is_token68(c)).count();
            let word = &bytes[from..from + len];
            let encoded = word.iter().any(|c| !c.is_ascii_lowercase()) && len >= 8;
            if len > 0 && (!needs_code || encoded) {
                spans.push(from..from + len);
            }
        }
    }
}

/// RFC 7235's token68: the characters of an HTTP credential.
fn is_token68(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// The password of a URL's userinfo (`https://user:pass@host`): the user stays, as evidence
/// of which account was used.
fn url_passwords(bytes: &[u8], spans: &mut Vec<Range<usize>>) {
    let schemes = (0..bytes.len()).filter(|&i| bytes[i..].starts_with(b"://"));
    for authority in schemes.map(|i| i + 3) {
        let len = bytes[authority..]
            .iter()
            .take_while(|&&c| !(c.is_ascii_whitespace() || matches!(c, b'/' | b'?' | b'#' | b'"' | b'\'')))
            .count();
        let host = &bytes[authority..authority + len];
        let Some(at) = host.iter().rposition(|&c| c == b'@') else { continue };
        if let Some(colon) = host[..at].iter().position(|&c| c == b':') {
            spans.push(authority + colon + 1..authority + at);
        }
    }
}
