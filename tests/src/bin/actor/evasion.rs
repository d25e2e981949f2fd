//! Ways to get at a file's bytes that bypass the syscalls a syscall-table sensor decodes: the
//! ia32 gate, and file handles.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{ensure, Context, Result};

/// i386 syscall numbers (`arch/x86/entry/syscalls/syscall_32.tbl`).
const IA32_READ: u32 = 3;
const IA32_OPEN: u32 = 5;
const IA32_CLOSE: u32 = 6;

/// `open` + `read` of `path` through `int 0x80` from this 64-bit process: the kernel numbers
/// these calls from the i386 table (open is 5, read is 3). Its pointers must fit in 32 bits,
/// so the path and the buffer live in a `MAP_32BIT` mapping.
pub fn read_ia32(path: &Path) -> Result<Vec<u8>> {
    const LEN: usize = 1 << 16;
    let name = CString::new(path.as_os_str().as_bytes()).context("path with a NUL")?;
    // SAFETY: an anonymous private mapping; checked for failure below.
    let low = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    ensure!(low != libc::MAP_FAILED, "mmap(MAP_32BIT): {}", std::io::Error::last_os_error());
    let base = low.cast::<u8>();
    let name = name.as_bytes_with_nul();
    ensure!(name.len() < LEN / 2, "path too long");
    // SAFETY: `base` is a fresh mapping of LEN bytes; the name fits in its first half.
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr(), base, name.len()) };
    let address = |offset: usize| u32::try_from(base as usize + offset).context("mapping above 4 GiB");
    let fd = ia32_call(IA32_OPEN, address(0)?, 0, 0);
    ensure!(fd >= 0, "ia32 open: errno {}", -fd);
    let mut data = Vec::new();
    loop {
        let got = ia32_call(IA32_READ, fd.unsigned_abs(), address(LEN / 2)?, u32::try_from(LEN / 2)?);
        ensure!(got >= 0, "ia32 read: errno {}", -got);
        if got == 0 {
            break;
        }
        // SAFETY: the kernel wrote `got` bytes at the buffer's start, inside the mapping.
        data.extend_from_slice(unsafe {
            std::slice::from_raw_parts(base.add(LEN / 2), got.unsigned_abs() as usize)
        });
    }
    ia32_call(IA32_CLOSE, fd.unsigned_abs(), 0, 0);
    // SAFETY: our own mapping, no longer used.
    unsafe { libc::munmap(low, LEN) };
    Ok(data)
}

/// One syscall through the ia32 gate; returns eax (negative errno on failure).
fn ia32_call(number: u32, first: u32, second: u32, third: u32) -> i32 {
    let ret: i32;
    // SAFETY: `int 0x80` with i386 syscall conventions; rbx, which LLVM reserves, is saved
    // and restored around the call. The arguments are 32-bit values the kernel checks.
    unsafe {
        std::arch::asm!(
            "xchg {first:r}, rbx",
            "int 0x80",
            "xchg {first:r}, rbx",
            first = inout(reg) u64::from(first) => _,
            inlateout("eax") number => ret,
            in("ecx") second,
            in("edx") third,
        );
    }
    ret
}

/// `name_to_handle_at` + `open_by_handle_at`: an open that names no path.
pub fn read_by_handle(path: &Path) -> Result<Vec<u8>> {
    const MAX_HANDLE_SZ: u32 = 128;
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        data: [u8; MAX_HANDLE_SZ as usize],
    }
    let name = CString::new(path.as_os_str().as_bytes()).context("path with a NUL")?;
    let mut handle = Handle { bytes: MAX_HANDLE_SZ, kind: 0, data: [0; MAX_HANDLE_SZ as usize] };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: valid NUL-terminated path and out-pointers of the sizes the call expects.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            name.as_ptr(),
            (&raw mut handle).cast::<libc::c_void>(),
            &raw mut mount_id,
            0,
        )
    };
    ensure!(rc == 0, "name_to_handle_at: {}", std::io::Error::last_os_error());
    let parent = path.parent().context("no parent")?;
    let mount = File::open(parent).with_context(|| format!("open {}", parent.display()))?;
    // SAFETY: a valid directory descriptor on the same mount and the handle just filled in.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            std::os::fd::AsRawFd::as_raw_fd(&mount),
            (&raw mut handle).cast::<libc::c_void>(),
            libc::O_RDONLY,
        )
    };
    ensure!(fd >= 0, "open_by_handle_at: {}", std::io::Error::last_os_error());
    // SAFETY: a descriptor the kernel just gave us, owned by the File from now on.
    let mut file = unsafe { File::from_raw_fd(i32::try_from(fd)?) };
    let mut data = Vec::new();
    file.read_to_end(&mut data).context("read by handle")?;
    Ok(data)
}
