//! Byte offsets of the kernel struct fields the programs read.
//!
//! Rust eBPF has no CO-RE relocations, so the agent reads these offsets from the running
//! kernel's BTF (`/sys/kernel/btf/vmlinux`) at start-up and hands them to the programs as a
//! load-time global. Nothing here is hard-coded for one kernel.

/// Offsets, in bytes, of the fields named `<struct>_<field>`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_struct_files: u32,
    pub task_struct_mm: u32,
    pub task_struct_real_parent: u32,
    pub task_struct_tgid: u32,
    pub task_struct_pid: u32,
    pub task_struct_start_time: u32,
    pub files_struct_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_f_inode: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub super_block_s_dev: u32,
    pub mm_struct_exe_file: u32,
    pub mm_struct_arg_start: u32,
    pub mm_struct_arg_end: u32,
}

/// Name of the global that holds the offsets in the eBPF object.
pub const KERNEL_OFFSETS_GLOBAL: &str = "KERNEL_OFFSETS";

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` of `u32`s only: no padding, every bit pattern is valid.
unsafe impl aya::Pod for KernelOffsets {}
