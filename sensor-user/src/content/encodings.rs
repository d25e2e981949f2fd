//! The forms a value takes in traffic: as it is, and in the encodings an attacker (or an
//! ordinary HTTP client) would wrap it in. Each form is a byte string that appears verbatim
//! in the stream whenever the value was sent in that encoding, wherever it sits in the
//! encoded text.
//!
//! Base64 depends on where the value starts within a 3-byte group, so each alignment has its
//! own form: only the characters fully determined by the value's bits, which are the same
//! whatever surrounds it (padding included or not).

use zeroize::Zeroizing;

/// How a value was written in the bytes where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Raw,
    Base64,
    Base64Url,
    Hex,
    Percent,
    JsonEscaped,
}

impl Encoding {
    /// The name documents use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Base64 => "base64",
            Self::Base64Url => "base64url",
            Self::Hex => "hex",
            Self::Percent => "percent",
            Self::JsonEscaped => "json-escaped",
        }
    }
}

/// One form of a value: zeroed when dropped, since it tells the value.
pub type Form = Zeroizing<Vec<u8>>;

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Characters percent-encoding leaves alone: RFC 3986's unreserved set (curl, Python's
/// `quote(safe='')`, Go's `QueryEscape` but for spaces).
const UNRESERVED: &[u8] = b"-._~";
/// What else JavaScript's `encodeURIComponent` leaves, and Python's `quote` (its `/`).
const JS_SAFE: &[u8] = b"-._~!*'()";
const PY_SAFE: &[u8] = b"-._~/";

/// Every distinct form of `value`, each with its encoding; the first encoding wins where two
/// give the same bytes (a value of letters and digits is its own percent and JSON form).
pub fn forms(value: &[u8]) -> Vec<(Encoding, Form)> {
    let mut forms: Vec<(Encoding, Form)> = vec![(Encoding::Raw, Zeroizing::new(value.to_vec()))];
    for alignment in 0..3 {
        forms.push((Encoding::Base64, base64_middle(value, alignment, BASE64)));
        forms.push((Encoding::Base64Url, base64_middle(value, alignment, BASE64_URL)));
    }
    forms.push((Encoding::Hex, hex(value, b"0123456789abcdef")));
    forms.push((Encoding::Hex, hex(value, b"0123456789ABCDEF")));
    for safe in [UNRESERVED, JS_SAFE, PY_SAFE] {
        forms.push((Encoding::Percent, percent(value, safe, b"0123456789ABCDEF")));
        forms.push((Encoding::Percent, percent(value, safe, b"0123456789abcdef")));
    }
    forms.push((Encoding::JsonEscaped, json(value, false, false)));
    forms.push((Encoding::JsonEscaped, json(value, true, false)));
    forms.push((Encoding::JsonEscaped, json(value, false, true)));
    let mut distinct: Vec<(Encoding, Form)> = Vec::with_capacity(forms.len());
    for (encoding, form) in forms {
        if !form.is_empty() && !distinct.iter().any(|(_, known)| *known == form) {
            distinct.push((encoding, form));
        }
    }
    distinct
}

/// The base64 characters (of `alphabet`) that `value` alone determines when it starts
/// `alignment` bytes into a 3-byte group: character `i` covers bits `6i..6i+6` of the stream,
/// the value bits `8a..8a+8n`.
fn base64_middle(value: &[u8], alignment: usize, alphabet: &[u8; 64]) -> Form {
    let bits_start = 8 * alignment;
    let bits_end = bits_start + 8 * value.len();
    let first = bits_start.div_ceil(6);
    let last = bits_end / 6; // exclusive
    let bit = |at: usize| -> u8 {
        let byte = value[(at - bits_start) / 8];
        (byte >> (7 - (at - bits_start) % 8)) & 1
    };
    let mut out = Zeroizing::new(Vec::with_capacity(last.saturating_sub(first)));
    for char_index in first..last {
        let sextet = (0..6).fold(0u8, |acc, i| (acc << 1) | bit(6 * char_index + i));
        out.push(alphabet[usize::from(sextet)]);
    }
    out
}

fn hex(value: &[u8], digits: &[u8; 16]) -> Form {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 2));
    for &byte in value {
        out.extend_from_slice(&[digits[usize::from(byte >> 4)], digits[usize::from(byte & 15)]]);
    }
    out
}

/// Percent-encoding keeping letters, digits and `safe`.
fn percent(value: &[u8], safe: &[u8], digits: &[u8; 16]) -> Form {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for &byte in value {
        if byte.is_ascii_alphanumeric() || safe.contains(&byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(&[b'%', digits[usize::from(byte >> 4)], digits[usize::from(byte & 15)]]);
        }
    }
    out
}

/// The inside of a JSON string holding `value` (UTF-8; other bytes cannot be in JSON), as
/// serializers write it: `"` `\` and control characters escaped; `/` too where `slash` (PHP);
/// everything past ASCII as `\uXXXX` where `ascii` (Python's default).
fn json(value: &[u8], slash: bool, ascii: bool) -> Form {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 8));
    let Ok(text) = std::str::from_utf8(value) else { return out };
    for c in text.chars() {
        let mut units = [0u16; 2];
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' if slash => out.extend_from_slice(b"\\/"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if u32::from(c) < 0x20 || (ascii && !c.is_ascii()) => {
                for unit in c.encode_utf16(&mut units) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
            c => {
                let mut bytes = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut bytes).as_bytes());
            }
        }
    }
    out
}

/// Standard base64 with padding, for tests that encode whole streams the way clients do.
#[cfg(test)]
pub fn base64_padded(data: &[u8], alphabet_url: bool) -> String {
    let alphabet = if alphabet_url { BASE64_URL } else { BASE64 };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_forms_are_substrings_of_every_alignment() {
        let value = b"registration-secret-42";
        for prefix_len in 0..6 {
            let mut data = vec![b'x'; prefix_len];
            data.extend_from_slice(value);
            data.extend_from_slice(b"tail");
            for url in [false, true] {
                let text = base64_padded(&data, url);
                let alphabet = if url { BASE64_URL } else { BASE64 };
                let form = base64_middle(value, prefix_len % 3, alphabet);
                assert!(form.len() >= 28, "{prefix_len}");
                assert!(
                    text.as_bytes().windows(form.len()).any(|w| w == form.as_slice()),
                    "{prefix_len} {url}"
                );
            }
        }
    }

    #[test]
    fn percent_and_json_follow_the_usual_serializers() {
        assert_eq!(percent(b"a b/c*", UNRESERVED, b"0123456789ABCDEF").as_slice(), b"a%20b%2Fc%2A");
        assert_eq!(percent(b"a b/c*", JS_SAFE, b"0123456789ABCDEF").as_slice(), b"a%20b%2Fc*");
        assert_eq!(percent(b"a b/c*", PY_SAFE, b"0123456789abcdef").as_slice(), b"a%20b/c%2a");
        assert_eq!(
            json("q\"\\/\n\u{e9}".as_bytes(), false, false).as_slice(),
            "q\\\"\\\\/\\n\u{e9}".as_bytes()
        );
        assert_eq!(json("/\u{e9}".as_bytes(), true, true).as_slice(), b"\\/\\u00e9");
        assert_eq!(hex(b"\x01\xab", b"0123456789ABCDEF").as_slice(), b"01AB");
    }

    #[test]
    fn identical_forms_are_kept_once() {
        let forms = forms(b"plainLetters123");
        let raw_like = forms.iter().filter(|(_, f)| f.as_slice() == b"plainLetters123").count();
        assert_eq!(raw_like, 1);
        assert_eq!(forms[0].0, Encoding::Raw);
    }
}
