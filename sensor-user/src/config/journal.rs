//! `[journal]`: where the agent keeps its history, and for how long.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// Where the journal is unless configured.
pub const DEFAULT_PATH: &str = "/var/lib/vigie/journal.db";
/// Entries older than this many days are deleted.
const DEFAULT_RETENTION_DAYS: u64 = 90;
/// The journal is kept under this many MiB, the oldest entries deleted first.
const DEFAULT_MAX_MB: u64 = 512;
const SECS_PER_DAY: u64 = 24 * 60 * 60;

/// `[journal]` as written in the config file; every field is optional.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct JournalFile {
    /// `false` keeps no journal.
    pub enabled: Option<bool>,
    pub path: Option<PathBuf>,
    pub retention_days: Option<u64>,
    pub max_mb: Option<u64>,
}

/// The journal the agent keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSettings {
    pub path: PathBuf,
    /// How long entries are kept.
    pub retention: Duration,
    /// The most the journal's pages may hold, in bytes.
    pub max_bytes: u64,
}

impl JournalSettings {
    /// The file's `[journal]` under the command line's `--journal PATH` and `--no-journal`;
    /// `None` when no journal is kept.
    pub fn merge(file: Option<JournalFile>, path: Option<PathBuf>, disabled: bool) -> Option<Self> {
        let file = file.unwrap_or_default();
        if disabled || (file.enabled == Some(false) && path.is_none()) {
            return None;
        }
        Some(Self {
            path: path.or(file.path).unwrap_or_else(|| PathBuf::from(DEFAULT_PATH)),
            retention: Duration::from_secs(
                file.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS).saturating_mul(SECS_PER_DAY),
            ),
            max_bytes: file.max_mb.unwrap_or(DEFAULT_MAX_MB).saturating_mul(1 << 20),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_journal_is_kept_at_its_default_path() {
        let settings = JournalSettings::merge(None, None, false).unwrap();
        assert_eq!(settings.path, PathBuf::from(DEFAULT_PATH));
        assert_eq!(settings.retention, Duration::from_secs(90 * SECS_PER_DAY));
        assert_eq!(settings.max_bytes, 512 << 20);
    }

    #[test]
    fn the_command_line_path_wins_and_no_journal_disables_it() {
        let file = JournalFile {
            path: Some("/srv/j.db".into()),
            retention_days: Some(7),
            max_mb: Some(1),
            enabled: None,
        };
        let settings = JournalSettings::merge(Some(file), Some("/tmp/j.db".into()), false).unwrap();
        assert_eq!((settings.path, settings.max_bytes), (PathBuf::from("/tmp/j.db"), 1 << 20));
        assert_eq!(settings.retention, Duration::from_secs(7 * SECS_PER_DAY));
        assert_eq!(JournalSettings::merge(None, Some("/tmp/j.db".into()), true), None);
        let off = JournalFile { enabled: Some(false), ..JournalFile::default() };
        assert_eq!(JournalSettings::merge(Some(off), None, false), None);
    }
}
