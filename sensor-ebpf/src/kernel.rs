//! Reading kernel structures through the offsets the agent found in this kernel's BTF.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use sensor_common::{FileId, KernelOffsets};

/// Set by the agent at load time from `/sys/kernel/btf/vmlinux`.
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    task_struct_files: 0,
    task_struct_mm: 0,
    task_struct_real_parent: 0,
    task_struct_tgid: 0,
    task_struct_pid: 0,
    task_struct_start_time: 0,
    files_struct_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    file_f_inode: 0,
    inode_i_ino: 0,
    inode_i_sb: 0,
    super_block_s_dev: 0,
    mm_struct_exe_file: 0,
    mm_struct_arg_start: 0,
    mm_struct_arg_end: 0,
};

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: a plain read of a global; volatile so the loader's value is not constant-folded.
    unsafe { core::ptr::read_volatile(&raw const KERNEL_OFFSETS) }
}

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    if base.is_null() {
        return Err(-1);
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error, not a fault.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()) }
}

#[inline(always)]
pub fn current_task() -> *const u8 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_get_current_task() as *const u8 }
}

/// The `struct file` behind descriptor `fd` of the current process.
#[inline(always)]
pub fn fd_file(fd: u32) -> Result<*const u8, i32> {
    let off = offsets();
    let files: *const u8 = read(current_task(), off.task_struct_files)?;
    let fdt: *const u8 = read(files, off.files_struct_fdt)?;
    let max_fds: u32 = read(fdt, off.fdtable_max_fds)?;
    if fd >= max_fds {
        return Err(-1);
    }
    let fd_array: *const u8 = read(fdt, off.fdtable_fd)?;
    read(fd_array, fd * 8)
}

/// Device and inode of an open `struct file`.
#[inline(always)]
pub fn file_id(file: *const u8) -> Result<FileId, i32> {
    let off = offsets();
    let inode: *const u8 = read(file, off.file_f_inode)?;
    let ino: u64 = read(inode, off.inode_i_ino)?;
    let sb: *const u8 = read(inode, off.inode_i_sb)?;
    let dev: u32 = read(sb, off.super_block_s_dev)?;
    Ok(FileId::new(dev, ino))
}

/// The current process's `mm_struct`, null for kernel threads.
#[inline(always)]
pub fn current_mm() -> Result<*const u8, i32> {
    read(current_task(), offsets().task_struct_mm)
}

/// Identity of the current process's executable file.
#[inline(always)]
pub fn current_exe_id() -> Result<FileId, i32> {
    let exe: *const u8 = read(current_mm()?, offsets().mm_struct_exe_file)?;
    file_id(exe)
}
