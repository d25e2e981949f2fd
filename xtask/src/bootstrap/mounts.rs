//! tracefs and bpffs, which this machine kind does not mount at boot: aya's tracepoint
//! attach needs tracefs, pinning maps needs bpffs.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use super::say;
use crate::command::{self, tool};

const TRACEFS: &str = "/sys/kernel/tracing";
const BPFFS: &str = "/sys/fs/bpf";

/// Mounts whichever of tracefs and bpffs is missing; needs root, so skipped otherwise.
pub fn ensure(root: bool) -> Result<()> {
    if !root {
        say("tracefs/bpffs: not root, not checking mounts");
        return Ok(());
    }
    if Path::new(TRACEFS).join("events").exists() {
        say(&format!("tracefs: mounted at {TRACEFS}"));
    } else {
        command::run(tool("mount")?.args(["-t", "tracefs", "tracefs", TRACEFS]))?;
        say(&format!("tracefs: mounted it at {TRACEFS}"));
    }

    let mounts = fs::read_to_string("/proc/mounts").context("cannot read /proc/mounts")?;
    if is_mounted(&mounts, BPFFS, "bpf") {
        say(&format!("bpffs: mounted at {BPFFS}"));
    } else {
        command::run(tool("mount")?.args(["-t", "bpf", "bpf", BPFFS]))?;
        say(&format!("bpffs: mounted it at {BPFFS}"));
    }
    Ok(())
}

/// Whether `/proc/mounts` lists a `fstype` filesystem at `mount_point`.
fn is_mounted(proc_mounts: &str, mount_point: &str, fstype: &str) -> bool {
    proc_mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(mount_point) && fields.next() == Some(fstype)
    })
}

#[cfg(test)]
mod tests {
    use super::is_mounted;

    const MOUNTS: &str = "sysfs /sys sysfs rw,nosuid 0 0\n\
                          none /sys/fs/bpf tmpfs rw 0 0\n\
                          bpf /mnt/elsewhere bpf rw,relatime 0 0\n";

    #[test]
    fn needs_both_mount_point_and_type() {
        assert!(!is_mounted(MOUNTS, "/sys/fs/bpf", "bpf"));
        assert!(is_mounted(MOUNTS, "/mnt/elsewhere", "bpf"));
        let with_bpffs = format!("{MOUNTS}bpf /sys/fs/bpf bpf rw,relatime 0 0\n");
        assert!(is_mounted(&with_bpffs, "/sys/fs/bpf", "bpf"));
    }
}
