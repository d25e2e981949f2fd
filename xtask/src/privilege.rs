//! Whether we run as root: loading BPF programs, mounting and apt-get need it.

use std::fs;

use anyhow::{bail, Context, Result};

/// True when the effective user id is 0.
pub fn is_root() -> Result<bool> {
    // Read from procfs rather than calling geteuid(2), to stay free of `unsafe` and libc.
    let status = fs::read_to_string("/proc/self/status")
        .context("cannot read /proc/self/status to learn our user id")?;
    effective_uid(&status).map(|uid| uid == 0).context("/proc/self/status has no readable Uid line")
}

/// Fails with a message telling how to rerun `cargo xtask <task>` as root.
pub fn require_root(task: &str, why: &str) -> Result<()> {
    if !is_root()? {
        bail!("cargo xtask {task} {why}: run it as root (e.g. sudo -E cargo xtask {task})");
    }
    Ok(())
}

/// The effective uid from `/proc/<pid>/status` (`Uid: real effective saved fs`).
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::effective_uid;

    #[test]
    fn reads_the_effective_not_the_real_uid() {
        let status = "Name:\tcat\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
    }

    #[test]
    fn missing_or_garbled_uid_line_is_none() {
        assert_eq!(effective_uid("Name:\tcat\n"), None);
        assert_eq!(effective_uid("Uid:\t1000\n"), None);
        assert_eq!(effective_uid("Uid:\t1000\tx\t0\t0\n"), None);
    }
}
