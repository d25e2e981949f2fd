//! Ways to get at a file's bytes through the ordinary syscalls.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::{self, NonNull};

use anyhow::{ensure, Context, Result};

/// `open` + `read` to the end.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    read_all(file, path)
}

/// Opens `path`, then reads it through a second open of `/proc/self/fd/N`: a new open file
/// whose path string never names the file.
pub fn read_reopened(path: &Path) -> Result<Vec<u8>> {
    let first = File::open(path).with_context(|| format!("open {}", path.display()))?;
    reopen_and_read(&first)
}

/// `open(O_PATH)` gives a descriptor that cannot be read; opening `/proc/self/fd/N` turns it
/// into one that can.
pub fn read_o_path(path: &Path) -> Result<Vec<u8>> {
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .with_context(|| format!("open {} with O_PATH", path.display()))?;
    reopen_and_read(&handle)
}

fn reopen_and_read(first: &File) -> Result<Vec<u8>> {
    let alias = format!("/proc/self/fd/{}", first.as_raw_fd());
    let second = File::open(&alias).with_context(|| format!("re-open {alias}"))?;
    read_all(second, Path::new(&alias))
}

fn read_all(mut file: File, path: &Path) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    file.read_to_end(&mut data).with_context(|| format!("read {}", path.display()))?;
    Ok(data)
}

/// The block size `O_DIRECT` reads are aligned to (buffer address and length).
const DIRECT_BLOCK: usize = 4096;

/// A buffer aligned for `O_DIRECT`.
#[repr(C, align(4096))]
struct DirectBlock([u8; DIRECT_BLOCK]);

/// `open(O_DIRECT)` + `read` to the end: the file system reads the disk into the actor's
/// buffer, bypassing the page cache.
pub fn read_direct(path: &Path) -> Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("open {} with O_DIRECT", path.display()))?;
    let mut block = Box::new(DirectBlock([0; DIRECT_BLOCK]));
    let mut data = Vec::new();
    loop {
        let n = file.read(&mut block.0).with_context(|| format!("read {} with O_DIRECT", path.display()))?;
        data.extend_from_slice(&block.0[..n]);
        if n < DIRECT_BLOCK {
            return Ok(data);
        }
    }
}

/// Maps `path` and copies its bytes out of the mapping: the page cache is read through page
/// faults, never through `read`.
pub fn read_mapped(path: &Path) -> Result<Vec<u8>> {
    let (base, len) = map_private(path)?;
    let data = (0..len)
        // SAFETY: every offset is inside the `len` bytes just mapped readable; volatile so
        // that each page really is touched.
        .map(|offset| unsafe { ptr::read_volatile(base.as_ptr().add(offset)) })
        .collect();
    // SAFETY: unmaps exactly the mapping made above, which nothing refers to any more.
    unsafe { libc::munmap(base.as_ptr().cast(), len) };
    Ok(data)
}

/// Maps `path` and keeps it mapped until the actor exits, as a loaded library stays.
pub fn map_kept(path: &Path) -> Result<()> {
    map_private(path).map(drop)
}

/// A private read-only mapping of the whole of `path`: its base and length.
fn map_private(path: &Path) -> Result<(NonNull<u8>, usize)> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let len = usize::try_from(file.metadata()?.len())?;
    ensure!(len > 0, "{} is empty: nothing to map", path.display());
    // SAFETY: a fresh private read-only mapping of a file we hold open; the kernel picks the
    // address, and we check for MAP_FAILED before using it.
    let mapped =
        unsafe { libc::mmap(ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
    if mapped == libc::MAP_FAILED {
        return Err(io::Error::last_os_error()).with_context(|| format!("mmap {}", path.display()));
    }
    Ok((NonNull::new(mapped.cast::<u8>()).context("mmap returned null")?, len))
}
