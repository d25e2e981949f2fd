//! Reading a file the way every loop here does: open, read 64 bytes, close.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{ensure, Context, Result};

/// Bytes read per open: a small config-file read.
pub const READ_BYTES: usize = 64;

/// open + read [`READ_BYTES`] + close. On a watched secret this taints the process.
#[inline]
pub fn read_once(path: &Path, buf: &mut [u8; READ_BYTES]) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let read = file.read(buf).with_context(|| format!("read {}", path.display()))?;
    ensure!(read == READ_BYTES, "{} is shorter than {READ_BYTES} bytes", path.display());
    Ok(())
}

/// Reads `secret` once so that, with the sensor on, this process is tainted.
pub fn taint(secret: &Path) -> Result<()> {
    read_once(secret, &mut [0; READ_BYTES])
}
