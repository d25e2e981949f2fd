//! Reading kernel structures through the offsets the agent found in this kernel's BTF.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes};
use sensor_common::{FileId, KernelOffsets, NAME_PARTS, NAME_PART_MAX};

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
    inode_i_mode: 0,
    inode_i_generation: 0,
    file_private_data: 0,
    socket_sk: 0,
    unix_sock_peer: 0,
    pt_regs_di: 0,
    pt_regs_si: 0,
    pt_regs_dx: 0,
    pt_regs_orig_ax: 0,
    sock_common_skc_daddr: 0,
    sock_common_skc_dport: 0,
    sock_common_skc_v6_daddr: 0,
    sock_common_skc_family: 0,
    io_kiocb_opcode: 0,
    io_kiocb_file: 0,
    file_f_path: 0,
    path_dentry: 0,
    dentry_d_name: 0,
    qstr_name: 0,
    dentry_d_parent: 0,
    proc_dev: 0,
    sock_sk_protocol: 0,
    taint_window_ns: 0,
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

/// `S_IFMT` bits of an open file's inode mode.
#[inline(always)]
pub fn file_type(file: *const u8) -> Result<u16, i32> {
    let inode: *const u8 = read(file, offsets().file_f_inode)?;
    let mode: u16 = read(inode, offsets().inode_i_mode)?;
    Ok(mode & S_IFMT)
}

pub const S_IFMT: u16 = 0o170_000;
pub const S_IFREG: u16 = 0o100_000;
pub const S_IFIFO: u16 = 0o010_000;
pub const S_IFSOCK: u16 = 0o140_000;

/// The `struct sock` behind a socket file.
#[inline(always)]
pub fn socket_sock(file: *const u8) -> Result<*const u8, i32> {
    let socket: *const u8 = read(file, offsets().file_private_data)?;
    read(socket, offsets().socket_sk)
}

/// Device number standing for "a socket, by its `struct sock` address" in a [`FileId`]: a
/// unix socket's peer may not have a file yet (the server has not called accept), but it
/// has a `struct sock`, and that is what its reader will read from.
const SOCK_DEV: u32 = u32::MAX;

/// Identity of a socket file's `struct sock`.
#[inline(always)]
pub fn socket_id(file: *const u8) -> Result<FileId, i32> {
    Ok(FileId::new(SOCK_DEV, socket_sock(file)? as u64))
}

/// Identity of the other end of connected unix socket `sk`, whose reader gets what is written.
#[inline(always)]
pub fn unix_peer_id(sk: *const u8) -> Result<FileId, i32> {
    let peer: *const u8 = read(sk, offsets().unix_sock_peer)?;
    if peer.is_null() {
        return Err(-1);
    }
    Ok(FileId::new(SOCK_DEV, peer as u64))
}

/// The generation number of an open file's inode (new for every inode a filesystem hands
/// out, even under a reused inode number).
#[inline(always)]
pub fn inode_generation(file: *const u8) -> Result<u32, i32> {
    let inode: *const u8 = read(file, offsets().file_f_inode)?;
    read(inode, offsets().inode_i_generation)
}

/// Fills `parts` with the names of `file` and its parent directories, innermost first.
#[inline(always)]
pub fn name_parts(file: *const u8, parts: &mut [[u8; NAME_PART_MAX]; NAME_PARTS]) -> Result<(), i32> {
    let off = offsets();
    let mut dentry: *const u8 = read(file, off.file_f_path + off.path_dentry)?;
    for part in parts.iter_mut() {
        part[0] = 0;
        let name: *const u8 = read(dentry, off.dentry_d_name + off.qstr_name)?;
        // SAFETY: bpf_probe_read_kernel_str checks the address.
        unsafe { bpf_probe_read_kernel_str_bytes(name, part)? };
        let parent: *const u8 = read(dentry, off.dentry_d_parent)?;
        if parent == dentry {
            break;
        }
        dentry = parent;
    }
    Ok(())
}

/// The pid whose memory or environment `file` exposes (`/proc/PID/mem`, `/proc/PID/environ`),
/// if it is one of those.
#[inline(always)]
pub fn proc_memory_pid(file: *const u8) -> Result<u32, i32> {
    let off = offsets();
    let dentry: *const u8 = read(file, off.file_f_path + off.path_dentry)?;
    let mut name = [0u8; 8];
    let name_ptr: *const u8 = read(dentry, off.dentry_d_name + off.qstr_name)?;
    // SAFETY: bpf_probe_read_kernel_str checks the address.
    unsafe { bpf_probe_read_kernel_str_bytes(name_ptr, &mut name)? };
    if &name != b"environ\0" && &name[..4] != b"mem\0" {
        return Err(-1);
    }
    let parent: *const u8 = read(dentry, off.dentry_d_parent)?;
    let mut digits = [0u8; 12];
    let digits_ptr: *const u8 = read(parent, off.dentry_d_name + off.qstr_name)?;
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel_str_bytes(digits_ptr, &mut digits)? };
    let mut pid = 0u32;
    for &digit in &digits {
        if digit == 0 {
            break;
        }
        if !digit.is_ascii_digit() {
            return Err(-1);
        }
        pid = pid.wrapping_mul(10).wrapping_add(u32::from(digit - b'0'));
    }
    Ok(pid)
}
