//! A small tmpfs the test mounts, and fills when it wants every write there to fail with
//! `ENOSPC` (a journal on a full disk). Unmounted on drop.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::host_tools;

/// Room enough for an empty journal and its WAL.
const SIZE: &str = "1m";

/// A tmpfs of [`SIZE`] mounted at a directory of the test's.
pub struct FullDisk {
    dir: PathBuf,
}

impl FullDisk {
    /// Mounts a tmpfs at `dir` (created), private to root.
    ///
    /// # Errors
    /// When the directory cannot be made or the mount fails (needs root).
    pub fn mount(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let options = format!("size={SIZE},mode=0700");
        let at = dir.to_str().context("a mount point that is UTF-8")?;
        host_tools::run("mount", &["-t", "tmpfs", "-o", &options, "vigie-full-disk", at])?;
        Ok(Self { dir: dir.to_owned() })
    }

    /// The mount point.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes zeros until the file system is full: from now on every write there fails.
    ///
    /// # Errors
    /// When the filler cannot be created, or a write fails otherwise than for lack of room.
    pub fn fill(&self) -> Result<()> {
        let mut filler = File::create(self.dir.join("filler"))?;
        let block = [0u8; 4096];
        loop {
            match filler.write(&block) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::StorageFull => return Ok(()),
                Err(e) => bail!("filling {}: {e}", self.dir.display()),
            }
        }
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        // Lazily: a process that still holds a file there lets go of it when it exits.
        let _ = host_tools::run("umount", &[OsStr::new("-l"), self.dir.as_os_str()]);
    }
}
