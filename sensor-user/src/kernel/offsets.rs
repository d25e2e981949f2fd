//! Field offsets of the running kernel's structs, read from its BTF.
//!
//! The kernel programs cannot use CO-RE relocations (Rust eBPF has none), so they read
//! `struct task_struct` and friends at offsets found here and passed in as a global (which
//! also carries the taint window, set by the agent).

use std::path::Path;

use sensor_common::KernelOffsets;

use crate::{error::Error, kernel::btf::Btf};

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Reads every offset the programs need from the BTF at `path`.
pub fn from_btf(path: &Path) -> Result<KernelOffsets, Error> {
    let error = |reason: String| Error::KernelBtf { path: path.to_owned(), reason };
    let data = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let btf = Btf::parse(data).map_err(|e| error(e.to_string()))?;
    let field = |structure: &str, member: &str| {
        btf.member_offset(structure, member).ok_or_else(|| error(format!("no field {structure}.{member}")))
    };
    Ok(KernelOffsets {
        task_struct_files: field("task_struct", "files")?,
        task_struct_mm: field("task_struct", "mm")?,
        task_struct_real_parent: field("task_struct", "real_parent")?,
        task_struct_tgid: field("task_struct", "tgid")?,
        task_struct_pid: field("task_struct", "pid")?,
        task_struct_start_time: field("task_struct", "start_time")?,
        files_struct_fdt: field("files_struct", "fdt")?,
        fdtable_max_fds: field("fdtable", "max_fds")?,
        fdtable_fd: field("fdtable", "fd")?,
        file_f_inode: field("file", "f_inode")?,
        inode_i_ino: field("inode", "i_ino")?,
        inode_i_sb: field("inode", "i_sb")?,
        super_block_s_dev: field("super_block", "s_dev")?,
        mm_struct_exe_file: field("mm_struct", "exe_file")?,
        mm_struct_arg_start: field("mm_struct", "arg_start")?,
        mm_struct_arg_end: field("mm_struct", "arg_end")?,
        inode_i_mode: field("inode", "i_mode")?,
        inode_i_generation: field("inode", "i_generation")?,
        file_private_data: field("file", "private_data")?,
        socket_sk: field("socket", "sk")?,
        pt_regs_di: field("pt_regs", "di")?,
        pt_regs_si: field("pt_regs", "si")?,
        pt_regs_dx: field("pt_regs", "dx")?,
        pt_regs_bx: field("pt_regs", "bx")?,
        pt_regs_cx: field("pt_regs", "cx")?,
        pt_regs_orig_ax: field("pt_regs", "orig_ax")?,
        unix_sock_peer: field("unix_sock", "peer")?,
        sock_common_skc_daddr: field("sock_common", "skc_daddr")?,
        sock_common_skc_dport: field("sock_common", "skc_dport")?,
        sock_common_skc_v6_daddr: field("sock_common", "skc_v6_daddr")?,
        sock_common_skc_rcv_saddr: field("sock_common", "skc_rcv_saddr")?,
        sock_common_skc_v6_rcv_saddr: field("sock_common", "skc_v6_rcv_saddr")?,
        sock_common_skc_family: field("sock_common", "skc_family")?,
        io_kiocb_opcode: field("io_kiocb", "opcode")?,
        io_kiocb_file: field("io_kiocb", "file")?,
        file_f_path: field("file", "f_path")?,
        path_dentry: field("path", "dentry")?,
        dentry_d_name: field("dentry", "d_name")?,
        qstr_name: field("qstr", "name")?,
        dentry_d_parent: field("dentry", "d_parent")?,
        super_block_s_magic: field("super_block", "s_magic")?,
        sock_sk_protocol: field("sock", "sk_protocol")?,
        address_space_host: field("address_space", "host")?,
        kiocb_ki_filp: field("kiocb", "ki_filp")?,
        kiocb_ki_flags: field("kiocb", "ki_flags")?,
        mm_struct_owner: field("mm_struct", "owner")?,
        inode_i_dentry: field("inode", "i_dentry")?,
        dentry_d_u: field("dentry", "d_u")?,
        file_f_mode: field("file", "f_mode")?,
        thread_info_status: field("thread_info", "status")?,
        task_struct_signal: field("task_struct", "signal")?,
        signal_struct_live: field("signal_struct", "live")?,
        task_struct_cred: field("task_struct", "cred")?,
        cred_uid: field("cred", "uid")?,
        inode_i_rdev: field("inode", "i_rdev")?,
        tty_file_private_tty: field("tty_file_private", "tty")?,
        tty_struct_link: field("tty_struct", "link")?,
        task_struct_ptrace: field("task_struct", "ptrace")?,
        mm_struct_env_start: field("mm_struct", "env_start")?,
        mm_struct_env_end: field("mm_struct", "env_end")?,
        cred_euid: field("cred", "euid")?,
        task_struct_group_leader: field("task_struct", "group_leader")?,
        agent_pid: 0,
        task_struct_self_exec_id: field("task_struct", "self_exec_id")?,
        sock_sk_socket: field("sock", "sk_socket")?,
        socket_file: field("socket", "file")?,
        msghdr_msg_iter: field("msghdr", "msg_iter")?,
        iov_iter_iter_type: field("iov_iter", "iter_type")?,
        iov_iter_iov_offset: field("iov_iter", "iov_offset")?,
        iov_iter_ubuf: field("iov_iter", "ubuf")?,
        iov_iter_count: field("iov_iter", "count")?,
        vm_fault_vma: field("vm_fault", "vma")?,
        vm_area_struct_vm_file: field("vm_area_struct", "vm_file")?,
        taint_window_ns: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the build machine's own kernel BTF: every kernel Vigie supports has it.
    #[test]
    fn offsets_of_this_kernel_are_found_and_plausible() {
        let offsets = from_btf(Path::new(VMLINUX_BTF)).unwrap();
        assert!(offsets.task_struct_pid < offsets.task_struct_tgid + 8);
        assert!(offsets.mm_struct_arg_start < offsets.mm_struct_arg_end);
        assert_ne!(offsets.task_struct_files, 0);
        assert_ne!(offsets.mm_struct_exe_file, 0);
        // `struct sock` starts with `struct sock_common`, and a `unix_sock` with a `sock`.
        assert!(offsets.sock_common_skc_dport < offsets.sock_common_skc_v6_daddr);
        assert!(offsets.unix_sock_peer > offsets.sock_common_skc_family);
    }

    #[test]
    fn a_missing_btf_file_is_named() {
        let err = from_btf(Path::new("/nonexistent/vmlinux")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/vmlinux"), "{err}");
    }
}
