//! Which syscall a task is in, as x86_64 numbers: a 64-bit process can also enter through
//! the ia32 gate (`int 0x80`), whose numbers and argument registers are the i386 ones.

use crate::kernel::{current_task, offsets, read};

#[cfg(not(bpf_target_arch = "x86_64"))]
compile_error!("syscall numbers and argument registers are only listed for x86_64");

/// x86_64 syscall numbers (`arch/x86/entry/syscalls/syscall_64.tbl`, stable ABI).
pub mod nr {
    pub const READ: i64 = 0;
    pub const WRITE: i64 = 1;
    pub const OPEN: i64 = 2;
    pub const PREAD64: i64 = 17;
    pub const PWRITE64: i64 = 18;
    pub const READV: i64 = 19;
    pub const WRITEV: i64 = 20;
    pub const SENDFILE: i64 = 40;
    pub const SENDTO: i64 = 44;
    pub const SENDMSG: i64 = 46;
    pub const RECVFROM: i64 = 45;
    pub const RECVMSG: i64 = 47;
    pub const EXIT: i64 = 60;
    pub const PTRACE: i64 = 101;
    pub const EXIT_GROUP: i64 = 231;
    pub const OPENAT: i64 = 257;
    pub const SPLICE: i64 = 275;
    pub const OPEN_BY_HANDLE_AT: i64 = 304;
    pub const TEE: i64 = 276;
    pub const VMSPLICE: i64 = 278;
    pub const PREADV: i64 = 295;
    pub const PWRITEV: i64 = 296;
    pub const SENDMMSG: i64 = 307;
    pub const PROCESS_VM_READV: i64 = 310;
    pub const COPY_FILE_RANGE: i64 = 326;
    pub const PREADV2: i64 = 327;
    pub const PWRITEV2: i64 = 328;
    pub const OPENAT2: i64 = 437;
    pub const PIDFD_GETFD: i64 = 438;
}

/// i386 syscall numbers (`arch/x86/entry/syscalls/syscall_32.tbl`, stable ABI) of the calls
/// above, with their x86_64 twins.
const IA32: [(i64, i64); 30] = [
    (1, nr::EXIT),
    (3, nr::READ),
    (4, nr::WRITE),
    (5, nr::OPEN),
    (26, nr::PTRACE),
    (145, nr::READV),
    (146, nr::WRITEV),
    (180, nr::PREAD64),
    (181, nr::PWRITE64),
    (187, nr::SENDFILE),
    (239, nr::SENDFILE),
    (295, nr::OPENAT),
    (313, nr::SPLICE),
    (315, nr::TEE),
    (316, nr::VMSPLICE),
    (333, nr::PREADV),
    (334, nr::PWRITEV),
    (342, nr::OPEN_BY_HANDLE_AT),
    (345, nr::SENDMMSG),
    (347, nr::PROCESS_VM_READV),
    (369, nr::SENDTO),
    (370, nr::SENDMSG),
    (371, nr::RECVFROM),
    (372, nr::RECVMSG),
    (377, nr::COPY_FILE_RANGE),
    (378, nr::PREADV2),
    (379, nr::PWRITEV2),
    (437, nr::OPENAT2),
    (438, nr::PIDFD_GETFD),
    (252, nr::EXIT_GROUP),
];

/// `TS_COMPAT` in `thread_info.status`: the task is in an ia32 syscall.
const TS_COMPAT: u32 = 0x0002;

/// The entry the current task took into the kernel.
#[derive(Clone, Copy)]
pub struct Abi {
    ia32: bool,
}

impl Abi {
    #[inline(always)]
    pub fn current() -> Self {
        // `thread_info` is the first member of `task_struct`.
        Self::from_status(read::<u32>(current_task(), offsets().thread_info_status).unwrap_or(0))
    }

    /// The entry that `thread_info.status` says the task took.
    #[inline(always)]
    pub fn from_status(status: u32) -> Self {
        Self { ia32: status & TS_COMPAT != 0 }
    }

    /// Whether the task is in an ia32 syscall.
    #[inline(always)]
    pub fn is_ia32(self) -> bool {
        self.ia32
    }

    /// The x86_64 number of syscall `id` (-1 for an ia32 call with no twin listed here).
    #[inline(always)]
    pub fn native(self, id: i64) -> i64 {
        if !self.ia32 {
            return id;
        }
        let mut native = -1;
        for (ia32, twin) in IA32 {
            if ia32 == id {
                native = twin;
            }
        }
        native
    }

    /// Byte offset of argument `index` (0-based, up to 2) in `struct pt_regs`.
    #[inline(always)]
    pub fn arg_offset(self, index: usize) -> u32 {
        let off = offsets();
        match (self.ia32, index) {
            (false, 0) => off.pt_regs_di,
            (false, 1) => off.pt_regs_si,
            (false, _) => off.pt_regs_dx,
            (true, 0) => off.pt_regs_bx,
            (true, 1) => off.pt_regs_cx,
            (true, _) => off.pt_regs_dx,
        }
    }

    /// Argument `index` (0-based, up to 2) from the saved user registers `regs`.
    #[inline(always)]
    pub fn arg(self, regs: *const u8, index: usize) -> Result<u64, i32> {
        read(regs, self.arg_offset(index))
    }
}
