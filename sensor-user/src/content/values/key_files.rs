//! Keys in text: Synapse signing keys (`ed25519 a_xxx BASE64SEED` lines: the seed) and PEM
//! private keys (PKCS#1, PKCS#8, SEC1, OpenSSH). A PEM key's value is each full line of its
//! base64 body, the way it travels when the file is sent; any one line is the key. An OpenSSH
//! key's body starts with its public key, which is public (`authorized_keys`, the SSH
//! handshake): lines that reach into it are left out.

use zeroize::Zeroizing;

use super::{found, FoundValue, Sharing};

/// A 32-byte ed25519 seed in unpadded base64.
const SEED_BASE64_LEN: usize = 43;
const PEM_BEGIN: &str = "-----BEGIN ";
const PEM_END: &str = "-----END ";
/// The start of an OpenSSH key's decoded body.
const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";

/// The values of `text` if it holds signing keys or private keys, named after `name`.
pub fn values(text: &str, name: &str) -> Option<Vec<FoundValue>> {
    let seeds: Vec<FoundValue> = text
        .lines()
        .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["ed25519", _version, seed] if seed.len() == SEED_BASE64_LEN => Some(seed),
            _ => None,
        })
        .map(|seed| found(format!("signing key seed of {name}"), seed, Sharing::Kept))
        .collect();
    if !seeds.is_empty() {
        return Some(seeds);
    }
    let lines = private_key_lines(text);
    (!lines.is_empty()).then(|| {
        lines.into_iter().map(|line| found(format!("private key of {name}"), line, Sharing::Kept)).collect()
    })
}

/// The full-length body lines of every private key block in `text`.
fn private_key_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find(PEM_BEGIN) {
        let block = &rest[begin..];
        let Some(header_end) = block.find('\n') else { break };
        let header = &block[..header_end];
        let Some(end) = block.find(PEM_END) else { break };
        rest = &block[end + PEM_END.len()..];
        if !header.contains("PRIVATE KEY-----") {
            continue;
        }
        let body: Vec<&str> = block[header_end + 1..end]
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.contains(':'))
            .collect();
        let Some(width) = body.first().map(|line| line.len()) else { continue };
        let public_end = if header.contains("OPENSSH") { openssh_public_end(&body.concat()) } else { 0 };
        // A line of `width` base64 characters covers `width * 3 / 4` bytes of the body.
        let mut covered = 0;
        for line in body {
            let first_byte = covered;
            covered += line.len() * 3 / 4;
            if line.len() == width && first_byte >= public_end {
                lines.push(line);
            }
        }
    }
    lines
}

/// Where an OpenSSH key body's public part ends: after its magic, cipher, KDF, KDF options,
/// key count and public keys (RFC 4251 strings: a 4-byte length, then the bytes).
fn openssh_public_end(base64: &str) -> usize {
    let Some(body) = decode_base64(base64) else { return usize::MAX };
    if !body.starts_with(OPENSSH_MAGIC) {
        return usize::MAX;
    }
    let mut at = OPENSSH_MAGIC.len();
    let skip_string = |at: &mut usize| -> Option<()> {
        let len = u32::from_be_bytes(body.get(*at..*at + 4)?.try_into().ok()?);
        *at += 4 + usize::try_from(len).ok()?;
        Some(())
    };
    let parsed = (|| {
        for _ in 0..3 {
            skip_string(&mut at)?;
        }
        let keys = u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        for _ in 0..keys.min(16) {
            skip_string(&mut at)?;
        }
        Some(at)
    })();
    parsed.unwrap_or(usize::MAX)
}

/// Standard base64 (padding ignored) to bytes; `None` on any other character.
fn decode_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() * 3 / 4));
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(sextet);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).unwrap_or(0));
        }
    }
    Some(out)
}
