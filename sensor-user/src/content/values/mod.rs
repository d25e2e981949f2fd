//! The secret values a watched file holds, told from its name and content: Synapse's YAML
//! configs and app-service registrations ([`synapse_yaml`]), signing keys and private keys
//! ([`key_files`]), `.env` and INI credential files, `/etc/shadow` ([`assignments`]), and
//! files of one line (the `*_path` secrets). Values are returned in buffers zeroed when
//! dropped, with names that say where they are, never what they are.

mod assignments;
mod key_files;
mod synapse_yaml;

use std::path::Path;

use zeroize::Zeroizing;

/// The header every `SQLite` 3 database file starts with.
pub const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

/// Whom a value is for, which decides which scopes count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Kept to itself by whatever holds it: seen in anyone's traffic, it leaks.
    Kept,
    /// Presented by the trusted service to its peers or clients as its job (the tokens it
    /// hands out at login, its database or SMTP password, app-service `hs_token`, OIDC client
    /// secret): seen in a tainted process's traffic only.
    HandedOut,
}

/// One value found in a file.
pub struct FoundValue {
    /// Where it is ("`form_secret` of /etc/matrix-synapse/homeserver.yaml").
    pub name: String,
    pub bytes: Zeroizing<Vec<u8>>,
    pub sharing: Sharing,
}

impl std::fmt::Debug for FoundValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoundValue")
            .field("name", &self.name)
            .field("len", &self.bytes.len())
            .field("sharing", &self.sharing)
            .finish_non_exhaustive()
    }
}

/// Why a file gave no values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoValues {
    /// Its format is none of those above.
    UnknownFormat,
    /// A YAML file that does not parse.
    BadYaml,
    /// A `SQLite` database's `-wal`/`-journal`: its tokens come from the database.
    DatabaseSideFile,
}

impl NoValues {
    /// The reason `sensor-started` gives.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownFormat => "unknown format",
            Self::BadYaml => "YAML that does not parse",
            Self::DatabaseSideFile => "database side file",
        }
    }
}

/// The values of the file at `path` whose content is `content`.
pub fn of_file(path: &Path, content: &[u8]) -> Result<Vec<FoundValue>, NoValues> {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let shown = path.display().to_string();
    if ["-wal", "-journal", "-shm"].iter().any(|suffix| name.ends_with(suffix)) {
        return Err(NoValues::DatabaseSideFile);
    }
    // The content as text: a copy, zeroed like the content.
    let text = Zeroizing::new(String::from_utf8_lossy(content).into_owned());
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        return synapse_yaml::values(&text, &shown);
    }
    if let Some(values) = key_files::values(&text, &shown) {
        return Ok(values);
    }
    let trimmed = text.trim();
    let one_line = !trimmed.is_empty() && !trimmed.contains('\n');
    // A one-line secret file (`form_secret_path`) may hold `=`, base64's padding.
    if one_line && !assignments::is_assignments_file(&name) {
        return Ok(vec![found(format!("content of {shown}"), trimmed, Sharing::Kept)]);
    }
    if let Some(values) = assignments::values(&name, &text, &shown) {
        return Ok(values);
    }
    Err(NoValues::UnknownFormat)
}

/// A value named `name`.
fn found(name: String, value: &str, sharing: Sharing) -> FoundValue {
    FoundValue { name, bytes: Zeroizing::new(value.as_bytes().to_vec()), sharing }
}

#[cfg(test)]
mod tests;
