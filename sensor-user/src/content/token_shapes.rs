//! Tokens recognised by their structure, without knowing them: Synapse's and Matrix
//! Authentication Service's tokens end in a CRC-32 of everything before, so text of the right
//! shape whose checksum holds is a token (a random string passes by chance once in 62^6).
//!
//! Synapse (`synapse/handlers/auth.py`): `syt_<b64 localpart>_<20 letters>_<crc>` (access),
//! `syr_` the same (refresh), `syl_<20 letters>_<crc>` (login); the localpart in unpadded
//! standard base64, the checksum `base62_encode(crc32(base), minwidth=6)`, most significant
//! digit first. MAS (`crates/data-model/src/tokens.rs`): `mat_` (access), `mar_` (refresh),
//! `mct_`/`mcr_` (compatibility access/refresh) then 30 letters or digits then `_<crc>`, its
//! `base62_encode` writing the least significant digit first, then left-padded with `0`.

use std::ops::Range;

/// The longest token: Synapse localparts are at most 255 bytes (340 base64 characters).
pub const TOKEN_MAX: usize = 4 + 340 + 1 + 20 + 1 + 6;
const LOCALPART_B64_MAX: usize = 340;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a structurally valid token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    SynapseAccess,
    SynapseRefresh,
    SynapseLogin,
    MasAccess,
    MasRefresh,
    MasCompatAccess,
    MasCompatRefresh,
}

impl TokenKind {
    /// The name a match carries.
    pub fn name(self) -> &'static str {
        match self {
            Self::SynapseAccess => "access token (syt_ checksum)",
            Self::SynapseRefresh => "refresh token (syr_ checksum)",
            Self::SynapseLogin => "login token (syl_ checksum)",
            Self::MasAccess => "access token (mat_ checksum)",
            Self::MasRefresh => "refresh token (mar_ checksum)",
            Self::MasCompatAccess => "compatibility access token (mct_ checksum)",
            Self::MasCompatRefresh => "compatibility refresh token (mcr_ checksum)",
        }
    }

    fn of_prefix(prefix: &[u8]) -> Option<Self> {
        Some(match prefix {
            b"syt_" => Self::SynapseAccess,
            b"syr_" => Self::SynapseRefresh,
            b"syl_" => Self::SynapseLogin,
            b"mat_" => Self::MasAccess,
            b"mar_" => Self::MasRefresh,
            b"mct_" => Self::MasCompatAccess,
            b"mcr_" => Self::MasCompatRefresh,
            _ => return None,
        })
    }
}

/// Tokens found in `bytes` starting at or after `from`, and the first position whose token
/// may continue past the end of `bytes` (to look at again when more bytes come).
pub fn find(bytes: &[u8], from: usize) -> (Vec<(Range<usize>, TokenKind)>, Option<usize>) {
    let mut found = Vec::new();
    let mut at = from;
    while let Some(offset) = bytes.get(at + 3..).and_then(|rest| rest.iter().position(|&b| b == b'_')) {
        let start = at + offset;
        at = start + 1;
        let Some(kind) = TokenKind::of_prefix(&bytes[start..start + 4]) else { continue };
        match parse(&bytes[start..], kind) {
            Parse::Token(len) => {
                found.push((start..start + len, kind));
                at = start + len;
            }
            Parse::NotToken => {}
            Parse::Incomplete => return (found, Some(start)),
        }
    }
    (found, None)
}

enum Parse {
    Token(usize),
    NotToken,
    Incomplete,
}

/// One part of a token after its prefix.
enum Part {
    /// Between `min` and `max` bytes that `accept` takes.
    Run(fn(u8) -> bool, usize, usize),
    Separator,
}

fn letter(b: u8) -> bool {
    b.is_ascii_alphabetic()
}

fn alphanumeric(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// Whether `text` (starting with `kind`'s 4-byte prefix) begins with a token of that kind.
fn parse(text: &[u8], kind: TokenKind) -> Parse {
    let (parts, synapse): (&[Part], bool) = match kind {
        TokenKind::SynapseAccess | TokenKind::SynapseRefresh => (
            &[
                Part::Run(base64, 1, LOCALPART_B64_MAX),
                Part::Separator,
                Part::Run(letter, 20, 20),
                Part::Separator,
            ],
            true,
        ),
        TokenKind::SynapseLogin => (&[Part::Run(letter, 20, 20), Part::Separator], true),
        _ => (&[Part::Run(alphanumeric, 30, 30), Part::Separator], false),
    };
    let mut at = 4;
    for part in parts {
        match *part {
            Part::Run(accept, min, max) => {
                let len = text[at..].iter().take(max + 1).take_while(|&&b| accept(b)).count();
                if at + len == text.len() {
                    return Parse::Incomplete;
                }
                if len < min || len > max {
                    return Parse::NotToken;
                }
                at += len;
            }
            Part::Separator => match text.get(at) {
                None => return Parse::Incomplete,
                Some(b'_') => at += 1,
                Some(_) => return Parse::NotToken,
            },
        }
    }
    let base = &text[..at - 1];
    let Some(checksum) = text.get(at..at + 6) else { return Parse::Incomplete };
    let crc = crc32fast::hash(base);
    let expected = if synapse { base62_msd_first(crc) } else { base62_lsd_first(crc) };
    if checksum == expected {
        Parse::Token(at + 6)
    } else {
        Parse::NotToken
    }
}

/// Synapse's `base62_encode(num, minwidth=6)`.
fn base62_msd_first(mut num: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(num % 62) as usize];
        num /= 62;
    }
    out
}

/// MAS's `base62_encode`: the digits least significant first, padded with `0` on the left.
fn base62_lsd_first(mut num: u32) -> [u8; 6] {
    let mut digits = Vec::with_capacity(6);
    while num > 0 {
        digits.push(BASE62[(num % 62) as usize]);
        num /= 62;
    }
    let mut out = [b'0'; 6];
    out[6 - digits.len()..].copy_from_slice(&digits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Synapse 1.163.2's own `AuthHandler.generate_access_token`/`_refresh_token`/
    /// `generate_login_token` in the venv the tests install (`target/synapse-venv`).
    const SYNAPSE: &[(&str, TokenKind)] = &[
        ("syt_YWRtaW4_hphggrTyVrHnOIUuDGsS_1hCggm", TokenKind::SynapseAccess),
        ("syt_YWxpY2UuYm9i_yoJjhGUcoCiuzlrQFSAY_2jICbP", TokenKind::SynapseAccess),
        ("syt_dQ_eoesbqYFAoSlMuzFeEkT_3asJLE", TokenKind::SynapseAccess),
        ("syr_YWRtaW4_NsRoGXSbRAjRcRTlJvpI_4Mb9HV", TokenKind::SynapseRefresh),
        ("syl_pnnSWSBUVKiBPZdwCjJZ_46KlMP", TokenKind::SynapseLogin),
    ];
    /// Made by MAS's `TokenType::generate` algorithm (its source, transcribed in Python).
    const MAS: &[(&str, TokenKind)] = &[
        ("mat_3zMSylqsx13XQTMpgezNBH3YPSPA32_ji2F04", TokenKind::MasAccess),
        ("mar_fjxMRpSK7wkV5brq0yz8EMeBCg63br_0K16go", TokenKind::MasRefresh),
        ("mct_3rpLj96QMgPfNc5p6txTjQxLPNKnWE_i4P7d2", TokenKind::MasCompatAccess),
        ("mcr_u8reJeTzOUVmSZ5FrqYMPUQbHivRba_Hjary2", TokenKind::MasCompatRefresh),
    ];

    #[test]
    fn tokens_made_by_the_real_algorithms_are_recognised() {
        for &(token, kind) in SYNAPSE.iter().chain(MAS) {
            let text = format!("Authorization: Bearer {token}\r\n");
            let (found, pending) = find(text.as_bytes(), 0);
            assert_eq!(pending, None, "{token}");
            assert_eq!(found, [(22..22 + token.len(), kind)], "{token}");
        }
    }

    #[test]
    fn near_misses_are_rejected() {
        for &(token, _) in SYNAPSE.iter().chain(MAS) {
            let bytes = token.as_bytes();
            // Every single-character change (in the part the checksum covers, or the checksum).
            for at in 4..bytes.len() {
                if bytes[at] == b'_' {
                    continue;
                }
                let mut changed = bytes.to_vec();
                changed[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
                let text = [b" ".as_slice(), &changed, b" "].concat();
                assert_eq!(find(&text, 0).0, [], "{token} changed at {at}");
            }
            // One character inserted, and a checksum made for another prefix.
            let short = token.replacen('_', "_x", 1);
            assert_eq!(find(format!(" {short} ").as_bytes(), 0).0, []);
        }
        let swapped = SYNAPSE[0].0.replacen("syt_", "syr_", 1);
        assert_eq!(find(format!(" {swapped} ").as_bytes(), 0).0, []);
    }

    #[test]
    fn a_token_cut_by_the_end_of_the_bytes_is_left_for_later() {
        let token = SYNAPSE[0].0;
        for cut in 1..token.len() {
            let text = format!("x {}", &token[..cut]);
            let (found, pending) = find(text.as_bytes(), 0);
            assert_eq!(found, []);
            if cut >= 4 {
                assert_eq!(pending, Some(2), "{cut}");
            }
        }
    }
}
