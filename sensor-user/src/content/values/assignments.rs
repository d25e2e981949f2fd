//! Files of `NAME=value` or `name = value` lines: `.env` files, INI credentials
//! (`~/.aws/credentials`: `aws_secret_access_key`, `aws_session_token`), and `/etc/shadow`
//! (`user:$6$salt$hash:...`: the hash). Only names that say secret are taken: an `.env` also
//! holds `APP_URL=https://example.org`, which its service sends all day.

use super::{found, FoundValue, Sharing};

/// Words that make a name a secret's (compared in upper case).
const SECRET_WORDS: &[&str] =
    &["SECRET", "PASSWORD", "PASSWD", "PASS", "TOKEN", "KEY", "CREDENTIAL", "AUTH", "PRIVATE", "SALT", "DSN"];

/// The values of `text` (of the file named `file_name`, shown as `path`) if it is made of
/// assignments or shadow lines; `None` if it is not.
pub fn values(file_name: &str, text: &str, path: &str) -> Option<Vec<FoundValue>> {
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with(['#', ';'])).collect();
    if lines.is_empty() {
        return None;
    }
    if file_name == "shadow" || file_name == "gshadow" {
        return Some(shadow(&lines, path));
    }
    let assignments: Vec<(&str, &str)> = lines
        .iter()
        .filter(|line| !(line.starts_with('[') && line.ends_with(']')))
        .map(|line| assignment(line))
        .collect::<Option<_>>()?;
    let values = assignments
        .into_iter()
        .filter(|(name, value)| is_secret_name(name) || value.contains("://") && value.contains('@'))
        .map(|(name, value)| found(format!("{name} of {path}"), value, Sharing::Kept))
        .collect();
    Some(values)
}

/// Whether a file named `file_name` is one of assignments even when it has one line.
pub fn is_assignments_file(file_name: &str) -> bool {
    let env_extension =
        std::path::Path::new(file_name).extension().is_some_and(|e| e.eq_ignore_ascii_case("env"));
    file_name.starts_with(".env") || env_extension || file_name == "credentials"
}

/// `NAME=value`, `export NAME="value"`, `name = value`.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
        return None;
    }
    let value = value.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|&q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
        .unwrap_or(value);
    Some((name, unquoted))
}

fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    // An access key id names a key, it does not unlock it (AWS sends it in every request).
    !upper.ends_with("_ID") && SECRET_WORDS.iter().any(|word| upper.contains(word))
}

/// The password hashes of shadow lines (`!`, `*` and empty fields are no password).
fn shadow(lines: &[&str], path: &str) -> Vec<FoundValue> {
    lines
        .iter()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let user = fields.next()?;
            let hash = fields.next().filter(|h| h.starts_with('$'))?;
            Some(found(format!("password hash of {user} in {path}"), hash, Sharing::Kept))
        })
        .collect()
}
