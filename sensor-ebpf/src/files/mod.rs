//! Secret material taken in from files: a watched secret or a derived file whose data a
//! process reads. Two routes lead here: the page cache programs (or, on kernels without their
//! tracepoints, the function probes) see the data being read (every descriptor, however it was
//! obtained), the syscall programs see the open.

pub mod function_probes;
pub mod open;
pub mod page_cache;
pub mod prefilter;

use sensor_common::{via, FileId, Taint};

use crate::{
    allowance, channels,
    emit::current_pid,
    kernel::{current_start_ns, file_inode, inode_file_id, inode_generation},
    maps::{SECRETS, TAINTED_FILES},
    taint,
};

/// The current process takes in the data of `file` (through descriptor `fd`, `u32::MAX`
/// when unknown): a secret or a derived file taints it. `generation` is asked for only
/// when `file` is a watched secret or a derived file, to tell it from a new file that reuses
/// its inode number.
#[inline(always)]
pub fn took_in(file: FileId, generation: impl Fn() -> Result<u32, i32>, fd: u32) -> Result<(), i32> {
    // SAFETY: values are copied out at once.
    let source = match unsafe { SECRETS.get(file) }.copied() {
        Some(watched) if allowance::current_may_open_secrets() => {
            return taint::allowed_read(direct(watched.secret_id), fd, file)
        }
        // A watched secret of the same generation; another one is a new file that got a
        // deleted secret's inode number, which may be a derived file.
        Some(watched) if watched.generation_known == 0 || watched.generation == generation()? => {
            direct(watched.secret_id)
        }
        _ if allowance::current_is_trusted_service() => return Ok(()),
        _ => derived(file, generation)?,
    };
    taint::acquire(source, fd, file)
}

/// The current process reads regular file `file` through descriptor `fd` (the syscall
/// backend's view of a read, and io_uring reads, direct descriptors included). Inlined: on
/// kernels without private stacks a subprogram's frame adds to its caller's, and the sum must
/// stay within 512 bytes (`sensor-user`'s `call_stacks` test counts it).
#[inline(always)]
pub fn file_read(file: *const u8, fd: u32) -> Result<(), i32> {
    inode_read(file_inode(file)?, fd)
}

/// [`file_read`] as a subprogram, for `sys_enter`: it reaches it from four places, and inlined
/// in each it outgrew the verifier's 16-bit jump range (with a taint window).
#[inline(never)]
pub fn file_read_subprogram(file: *const u8, fd: u32) -> Result<(), i32> {
    file_read(file, fd)
}

/// The current process reads data of `inode` through descriptor `fd` (`u32::MAX` when
/// unknown), by probe reads: a pointer that is not BTF-typed (a kprobe's argument).
#[inline(always)]
pub fn inode_read(inode: *const u8, fd: u32) -> Result<(), i32> {
    let id = inode_file_id(inode)?;
    if !prefilter::may_hold(id) {
        return Ok(());
    }
    took_in(id, || inode_generation(inode), fd)
}

/// The taint a derived file (or FIFO) carries, if it is still the file that was written.
#[inline(always)]
fn derived(file: FileId, generation: impl Fn() -> Result<u32, i32>) -> Result<Taint, i32> {
    if !channels::anything_marked() {
        return Err(0);
    }
    // SAFETY: the value is copied out at once.
    let taint = unsafe { TAINTED_FILES.get(file) }.copied().ok_or(0)?;
    if taint.via_kind == via::FILE && taint.via_generation != generation()? {
        // The derived file was deleted and its inode number handed to a new file.
        let _ = TAINTED_FILES.remove(file);
        return Err(0);
    }
    Ok(taint)
}

/// The taint of reading secret `secret_id` oneself.
#[inline(always)]
fn direct(secret_id: u32) -> Taint {
    let now = taint::now();
    Taint {
        secret_id,
        origin_pid: current_pid(),
        read_ns: now,
        acquired_ns: now,
        via_kind: via::DIRECT,
        via_generation: 0,
        via: FileId::default(),
        origin_start_ns: current_start_ns(),
    }
}
