//! Byte offsets of the kernel struct fields the programs read.
//!
//! Rust eBPF has no CO-RE relocations, so the agent reads these offsets from the running
//! kernel's BTF (`/sys/kernel/btf/vmlinux`) at start-up and hands them to the programs as a
//! load-time global. Nothing here is hard-coded for one kernel.

/// Offsets, in bytes, of the fields named `<struct>_<field>`, plus the load-time settings
/// the programs need.
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
    pub inode_i_mode: u32,
    pub inode_i_generation: u32,
    pub file_private_data: u32,
    pub socket_sk: u32,
    pub pt_regs_di: u32,
    pub pt_regs_si: u32,
    pub pt_regs_dx: u32,
    pub pt_regs_bx: u32,
    pub pt_regs_cx: u32,
    pub pt_regs_orig_ax: u32,
    pub unix_sock_peer: u32,
    pub sock_common_skc_daddr: u32,
    pub sock_common_skc_dport: u32,
    pub sock_common_skc_v6_daddr: u32,
    pub sock_common_skc_rcv_saddr: u32,
    pub sock_common_skc_v6_rcv_saddr: u32,
    pub sock_common_skc_family: u32,
    pub io_kiocb_opcode: u32,
    pub io_kiocb_file: u32,
    pub file_f_path: u32,
    pub path_dentry: u32,
    pub dentry_d_name: u32,
    pub qstr_name: u32,
    pub dentry_d_parent: u32,
    pub super_block_s_magic: u32,
    pub sock_sk_protocol: u32,
    pub address_space_host: u32,
    pub kiocb_ki_filp: u32,
    pub kiocb_ki_flags: u32,
    pub mm_struct_owner: u32,
    pub inode_i_dentry: u32,
    /// `dentry.d_u`, whose `d_alias` links a dentry into its inode's `i_dentry` list.
    pub dentry_d_u: u32,
    pub file_f_mode: u32,
    pub thread_info_status: u32,
    pub task_struct_signal: u32,
    pub signal_struct_live: u32,
    pub task_struct_cred: u32,
    pub cred_uid: u32,
    pub inode_i_rdev: u32,
    pub tty_file_private_tty: u32,
    pub tty_struct_link: u32,
    pub task_struct_ptrace: u32,
    pub mm_struct_env_start: u32,
    pub mm_struct_env_end: u32,
    pub cred_euid: u32,
    pub task_struct_group_leader: u32,
    /// Not an offset: the agent's own pid, which is never tainted (it looks into pipes).
    pub agent_pid: u32,
    pub task_struct_self_exec_id: u32,
    pub sock_sk_socket: u32,
    pub socket_file: u32,
    pub msghdr_msg_iter: u32,
    pub iov_iter_iter_type: u32,
    pub iov_iter_iov_offset: u32,
    /// `ubuf` and `__iov` share this offset (a union).
    pub iov_iter_ubuf: u32,
    pub iov_iter_count: u32,
    pub vm_fault_vma: u32,
    pub vm_area_struct_vm_file: u32,
    /// Not an offset: taint older than this stops counting (0: the process's lifetime).
    pub taint_window_ns: u64,
}

/// Name of the global that holds the offsets in the eBPF object.
pub const KERNEL_OFFSETS_GLOBAL: &str = "KERNEL_OFFSETS";

#[cfg(feature = "user")]
// SAFETY: `#[repr(C)]` integers, 68 `u32`s then a `u64`: no padding, any bit pattern is valid.
unsafe impl aya::Pod for KernelOffsets {}
