//! Reading kernel structures through the offsets the agent found in this kernel's BTF.

use crate::syscall_abi::Abi;
use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
    bpf_task_pt_regs,
};
use sensor_common::{FileId, KernelOffsets, NAME_PARTS, NAME_PART_MAX};

/// Set by the agent at load time from `/sys/kernel/btf/vmlinux`.
#[unsafe(no_mangle)]
pub(crate) static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
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
    pt_regs_bx: 0,
    pt_regs_cx: 0,
    pt_regs_orig_ax: 0,
    sock_common_skc_daddr: 0,
    sock_common_skc_dport: 0,
    sock_common_skc_v6_daddr: 0,
    sock_common_skc_rcv_saddr: 0,
    sock_common_skc_v6_rcv_saddr: 0,
    sock_common_skc_family: 0,
    io_kiocb_opcode: 0,
    io_kiocb_file: 0,
    file_f_path: 0,
    path_dentry: 0,
    dentry_d_name: 0,
    qstr_name: 0,
    dentry_d_parent: 0,
    super_block_s_magic: 0,
    sock_sk_protocol: 0,
    address_space_host: 0,
    kiocb_ki_filp: 0,
    kiocb_ki_flags: 0,
    mm_struct_owner: 0,
    inode_i_dentry: 0,
    dentry_d_u: 0,
    file_f_mode: 0,
    thread_info_status: 0,
    task_struct_signal: 0,
    signal_struct_live: 0,
    task_struct_cred: 0,
    cred_uid: 0,
    inode_i_rdev: 0,
    tty_file_private_tty: 0,
    tty_struct_link: 0,
    task_struct_ptrace: 0,
    mm_struct_env_start: 0,
    mm_struct_env_end: 0,
    cred_euid: 0,
    task_struct_group_leader: 0,
    agent_pid: 0,
    task_struct_self_exec_id: 0,
    sock_sk_socket: 0,
    socket_file: 0,
    msghdr_msg_iter: 0,
    iov_iter_iter_type: 0,
    iov_iter_iov_offset: 0,
    iov_iter_ubuf: 0,
    iov_iter_count: 0,
    vm_fault_vma: 0,
    vm_area_struct_vm_file: 0,
    taint_window_ns: 0,
};

/// One field of the load-time offsets, read alone: a load from frozen `.rodata`, which the
/// verifier knows as a constant, so BTF-typed pointers can be read at it directly ([`load`]).
macro_rules! offset {
    ($field:ident) => {{
        #[expect(unused_unsafe, reason = "also expanded inside unsafe blocks")]
        // SAFETY: a plain read of a field of a global; volatile so the loader's value is used.
        let value = unsafe { core::ptr::read_volatile(&raw const $crate::kernel::KERNEL_OFFSETS.$field) };
        value
    }};
}
pub(crate) use offset;

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

/// Reads a `T` at `base + offset` of a BTF-typed kernel pointer (a `tp_btf` argument, or a
/// pointer loaded through one): a plain load, checked by the verifier against the kernel's
/// BTF, with no helper call. `offset` must come from [`offset!`].
///
/// # Safety
/// `base` must be a BTF-typed pointer to a struct that has a `T` at `offset`.
#[inline(always)]
pub unsafe fn load<T: Copy>(base: *const u8, offset: u32) -> T {
    // SAFETY: the verifier rejects a load that does not match the pointer's BTF type; a bad
    // address within it is caught by the kernel's exception table and reads as zero.
    unsafe { core::ptr::read(base.wrapping_add(offset as usize).cast::<T>()) }
}

/// Device and inode of a BTF-typed `struct inode` pointer, by direct loads.
///
/// # Safety
/// `inode` must be a BTF-typed `struct inode *`.
#[inline(always)]
pub unsafe fn inode_id(inode: *const u8) -> FileId {
    // SAFETY: the caller's pointer, at offsets of `struct inode` and `struct super_block`.
    unsafe {
        let ino: u64 = load(inode, offset!(inode_i_ino));
        let sb: *const u8 = load(inode, offset!(inode_i_sb));
        FileId::new(load(sb, offset!(super_block_s_dev)), ino)
    }
}

/// The syscall the current task is in, from its saved user registers: its number and first
/// three arguments, as x86_64 numbers whichever entry it took. Outside a syscall (or in one
/// not listed in `syscall_abi`) the number is -1.
#[derive(Clone, Copy)]
pub struct Syscall {
    pub id: i64,
    pub args: [u64; 3],
}

#[inline(always)]
pub fn current_syscall() -> Syscall {
    // SAFETY: the helpers return the current task and its user registers, BTF-typed, read by
    // direct loads at `thread_info` (the first member of `task_struct`) and `pt_regs` offsets.
    unsafe {
        let task = bpf_get_current_task_btf();
        let abi = Abi::from_status(load(task.cast(), offset!(thread_info_status)));
        let regs = bpf_task_pt_regs(task) as *const u8;
        let arg = |index| load::<u64>(regs, abi.arg_offset(index));
        Syscall { id: abi.native(load(regs, offset!(pt_regs_orig_ax))), args: [arg(0), arg(1), arg(2)] }
    }
}

/// Thread-group id and uid of `task`.
#[inline(always)]
pub fn task_identity(task: *const u8) -> Result<(u32, u32), i32> {
    let off = offsets();
    let cred: *const u8 = read(task, off.task_struct_cred)?;
    Ok((read(task, off.task_struct_tgid)?, read(cred, off.cred_uid)?))
}

#[inline(always)]
pub fn current_task() -> *const u8 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_get_current_task() as *const u8 }
}

/// The `struct file` behind descriptor `fd` of the current process.
#[inline(always)]
pub fn fd_file(fd: u32) -> Result<*const u8, i32> {
    task_fd_file(current_task(), fd)
}

/// The `struct file` behind descriptor `fd` of `task`.
#[inline(always)]
pub fn task_fd_file(task: *const u8, fd: u32) -> Result<*const u8, i32> {
    let off = offsets();
    let files: *const u8 = read(task, off.task_struct_files)?;
    let fdt: *const u8 = read(files, off.files_struct_fdt)?;
    let max_fds: u32 = read(fdt, off.fdtable_max_fds)?;
    if fd >= max_fds {
        return Err(-1);
    }
    let fd_array: *const u8 = read(fdt, off.fdtable_fd)?;
    read(fd_array, fd * 8)
}

/// Whether an open file is on procfs (any mount of it: recognised by its superblock's magic).
#[inline(always)]
pub fn on_procfs(file: *const u8) -> Result<bool, i32> {
    const PROC_SUPER_MAGIC: u64 = 0x9fa0;
    let sb: *const u8 = read(file_inode(file)?, offsets().inode_i_sb)?;
    Ok(read::<u64>(sb, offsets().super_block_s_magic)? == PROC_SUPER_MAGIC)
}

/// The inode of an open `struct file`.
#[inline(always)]
pub fn file_inode(file: *const u8) -> Result<*const u8, i32> {
    read(file, offsets().file_f_inode)
}

/// Device and inode of an open `struct file`.
#[inline(always)]
pub fn file_id(file: *const u8) -> Result<FileId, i32> {
    inode_file_id(file_inode(file)?)
}

/// Device and inode of a `struct inode`, by probe reads.
#[inline(always)]
pub fn inode_file_id(inode: *const u8) -> Result<FileId, i32> {
    let off = offsets();
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

/// When the current process started: its thread group leader's `start_time`.
#[inline(always)]
pub fn current_start_ns() -> u64 {
    let off = offsets();
    read::<*const u8>(current_task(), off.task_struct_group_leader)
        .and_then(|leader| read(leader, off.task_struct_start_time))
        .unwrap_or(0)
}

/// Identity of `task`'s executable file (an error for kernel threads).
#[inline(always)]
pub fn task_exe_id(task: *const u8) -> Result<FileId, i32> {
    let mm: *const u8 = read(task, offsets().task_struct_mm)?;
    let exe: *const u8 = read(mm, offsets().mm_struct_exe_file)?;
    file_id(exe)
}

/// `S_IFMT` bits of an open file's inode mode.
#[inline(always)]
pub fn file_type(file: *const u8) -> Result<u16, i32> {
    inode_type(file_inode(file)?)
}

/// `S_IFMT` bits of an inode's mode.
#[inline(always)]
pub fn inode_type(inode: *const u8) -> Result<u16, i32> {
    let mode: u16 = read(inode, offsets().inode_i_mode)?;
    Ok(mode & S_IFMT)
}

/// Whether an open file was opened for writing (`FMODE_WRITE`).
#[inline(always)]
pub fn file_writable(file: *const u8) -> Result<bool, i32> {
    const FMODE_WRITE: u32 = 0x2;
    Ok(read::<u32>(file, offsets().file_f_mode)? & FMODE_WRITE != 0)
}

/// Whether an open file was opened for reading (`FMODE_READ`).
#[inline(always)]
pub fn file_readable(file: *const u8) -> Result<bool, i32> {
    const FMODE_READ: u32 = 0x1;
    Ok(read::<u32>(file, offsets().file_f_mode)? & FMODE_READ != 0)
}

pub const S_IFMT: u16 = 0o170_000;
pub const S_IFREG: u16 = 0o100_000;
pub const S_IFIFO: u16 = 0o010_000;
pub const S_IFSOCK: u16 = 0o140_000;
pub const S_IFCHR: u16 = 0o020_000;

/// Device number standing for "a pty, by its master `tty_struct`" in a [`FileId`].
const PTY_DEV: u32 = u32::MAX - 1;

/// Which end of a pty an open character device is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PtyEnd {
    /// `/dev/ptmx` (5:2): what the slave's programs write is read here.
    Master,
    /// `/dev/pts/N` (majors 136–143): a session's terminal.
    Slave,
}

/// The end of a pty that `file` is, and the identity of the pty (its master `tty_struct`);
/// `None` for any other file.
#[inline(always)]
pub fn pty(file: *const u8) -> Result<Option<(PtyEnd, FileId)>, i32> {
    const PTMX: u32 = (5 << 20) | 2;
    let inode = file_inode(file)?;
    if inode_type(inode)? != S_IFCHR {
        return Ok(None);
    }
    let off = offsets();
    let rdev: u32 = read(inode, off.inode_i_rdev)?;
    let end = match rdev {
        PTMX => PtyEnd::Master,
        _ if (136..=143).contains(&(rdev >> 20)) => PtyEnd::Slave,
        _ => return Ok(None),
    };
    let private: *const u8 = read(file, off.file_private_data)?;
    let tty: *const u8 = read(private, off.tty_file_private_tty)?;
    let master: *const u8 = if end == PtyEnd::Master { tty } else { read(tty, off.tty_struct_link)? };
    if master.is_null() {
        return Ok(None);
    }
    Ok(Some((end, FileId::new(PTY_DEV, master as u64))))
}

/// The `struct sock` behind a socket file.
#[inline(always)]
pub fn socket_sock(file: *const u8) -> Result<*const u8, i32> {
    socket_sk(read(file, offsets().file_private_data)?)
}

/// The `struct sock` of a `struct socket`.
#[inline(always)]
pub fn socket_sk(socket: *const u8) -> Result<*const u8, i32> {
    read(socket, offsets().socket_sk)
}

/// Device number standing for "a socket, by its `struct sock` address" in a [`FileId`]: a
/// unix socket's peer may not have a file yet (the server has not called accept), but it
/// has a `struct sock`, and that is what its reader will read from.
const SOCK_DEV: u32 = u32::MAX;

/// The inode number of the socket `sk` belongs to: new for every socket, unlike the sock's
/// address, which the slab hands to the next socket once this one is freed. An error for a
/// socket without a file (the kernel's own).
#[inline(always)]
pub fn sock_inode_number(sk: *const u8) -> Result<u64, i32> {
    let off = offsets();
    let socket: *const u8 = read(sk, off.sock_sk_socket)?;
    let file: *const u8 = read(socket, off.socket_file)?;
    read(file_inode(file)?, off.inode_i_ino)
}

/// Identity of a `struct sock` (see [`SOCK_DEV`]), BTF-typed or not.
#[inline(always)]
pub fn sock_id(sk: *const u8) -> Result<FileId, i32> {
    Ok(FileId::new(SOCK_DEV, address_of(sk)?))
}

/// The address `pointer` holds, as a plain number: the verifier allows no arithmetic but
/// adding offsets on a BTF-typed pointer, and a copy read back through a helper is a number.
#[inline(always)]
pub fn address_of(pointer: *const u8) -> Result<u64, i32> {
    let slot = pointer;
    // SAFETY: reads the eight bytes of a local.
    unsafe { bpf_probe_read_kernel((&raw const slot).cast::<u64>()) }.map_err(|e| e as i32)
}

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
pub fn inode_generation(inode: *const u8) -> Result<u32, i32> {
    read(inode, offsets().inode_i_generation)
}

/// The dentry an open file was opened through.
#[inline(always)]
pub fn file_dentry(file: *const u8) -> Result<*const u8, i32> {
    let off = offsets();
    read(file, off.file_f_path + off.path_dentry)
}

/// A dentry of `inode` (the first of its aliases: any of its hardlinks' names).
#[inline(always)]
pub fn inode_dentry(inode: *const u8) -> Result<*const u8, i32> {
    let off = offsets();
    let alias: *const u8 = read(inode, off.inode_i_dentry)?;
    if alias.is_null() {
        return Err(-1);
    }
    Ok(alias.wrapping_sub(off.dentry_d_u as usize))
}

/// Fills `parts` with the names of `dentry` and its parent directories, innermost first.
#[inline(always)]
pub fn name_parts(mut dentry: *const u8, parts: &mut [[u8; NAME_PART_MAX]; NAME_PARTS]) -> Result<(), i32> {
    let off = offsets();
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
    let dentry = file_dentry(file)?;
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
