//! Reading another process's memory without opening its `/proc` files: `process_vm_readv`
//! and ptrace attach aimed at a trusted service's process taint the caller.

use crate::taint;

const PTRACE_ATTACH: u64 = 16;
const PTRACE_SEIZE: u64 = 0x4206;

/// `process_vm_readv(pid, ...)`: the call is what counts, not its result.
#[inline(always)]
pub fn vm_read(pid: u64) {
    let _ = taint::memory_read(pid as u32, u32::MAX);
}

/// `ptrace(request, pid, ...)`: attaching is what gives access.
#[inline(always)]
pub fn ptrace(request: u64, pid: u64) {
    if request == PTRACE_ATTACH || request == PTRACE_SEIZE {
        let _ = taint::memory_read(pid as u32, u32::MAX);
    }
}
