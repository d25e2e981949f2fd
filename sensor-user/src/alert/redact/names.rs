//! Which names (flags, variables, settings, headers, JSON keys) hold a credential.

/// Substrings that make a name a credential's wherever they appear (`clientSecret`,
/// `AWS_SECRET_ACCESS_KEY`, `x-auth-token`, `registration_shared_secret`).
const CREDENTIAL_PARTS: [&str; 11] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "authorization",
    "cookie",
];
/// Words that make a name a credential's only as a whole word (`DB_PASS`, `--auth`, `sig=` of a
/// signed URL, `--oauth2-bearer`), so that `author`, `passive` and `signal` are not.
const CREDENTIAL_WORDS: [&str; 6] = ["pass", "auth", "bearer", "sig", "signature", "pwd"];
/// Last words of names that hold something else: where a credential is (`password_file`,
/// `signing_key_path`, `--password-stdin`), what it is called or how long it lives
/// (`secret_name`, `token_ttl`), what provides it (`--credential-helper`).
const NOT_A_VALUE: [&str; 20] = [
    "file", "path", "dir", "env", "stdin", "fd", "name", "id", "type", "kind", "length", "len", "url", "uri",
    "endpoint", "ttl", "lifetime", "expiry", "helper", "command",
];

/// Whether `name` names a credential: `--password`, `MYSQL_PWD`, `"apiKey"`, `X-Api-Key`, `*_KEY`.
pub fn is_credential(name: &str) -> bool {
    let lower = name.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_ascii_lowercase();
    let words: Vec<&str> =
        lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let (Some(first), Some(last)) = (words.first(), words.last()) else { return false };
    // `PWD` alone is the shell's working directory; `--no-password` asks for none.
    if lower == "pwd" || *first == "no" || NOT_A_VALUE.contains(last) || words.contains(&"public") {
        return false;
    }
    let joined = words.concat();
    CREDENTIAL_PARTS.iter().any(|part| joined.contains(part))
        || words.iter().any(|word| CREDENTIAL_WORDS.contains(word))
        || *last == "key"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names_and_others() {
        for name in [
            "--password",
            "AWS_SECRET_ACCESS_KEY",
            "GITHUB_TOKEN",
            "DB_PASS",
            "MYSQL_PWD",
            "apiKey",
            "X-Api-Key",
            "Authorization",
            "Cookie",
            "registration_shared_secret",
            "--client-secret",
            "--auth",
            "sig",
            "macaroon_secret_key",
            "SIGNING_KEY",
        ] {
            assert!(is_credential(name), "{name}");
        }
        for name in [
            "PWD",
            "--author",
            "--password-file",
            "signing_key_path",
            "--no-password",
            "secret_name",
            "user",
            "--data-binary",
            "public_key",
            "AWS_ACCESS_KEY_ID",
            "HOME",
            "monkey",
        ] {
            assert!(!is_credential(name), "{name}");
        }
    }
}
