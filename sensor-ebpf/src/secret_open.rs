//! Secret opens, recognised by the identity of the file the descriptor now refers to, so
//! hardlinks, symlinks, `..` and bind mounts all count as the secret they lead to.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::{EventKind, ReadSeenKey, SecretReadEvent, Taint};

use crate::{
    emit::{self, header},
    kernel::{current_exe_id, fd_file, file_id},
    maps::{ALLOWED_EXES, READ_SEEN, SECRETS, TAINTED},
};

/// Offset of `long ret` in every `syscalls:sys_exit_*` tracepoint.
const SYS_EXIT_RET: usize = 16;

/// `syscalls:sys_exit_open`, `sys_exit_openat` and `sys_exit_openat2` share this program.
#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    let _ = try_open(&ctx);
    0
}

fn try_open(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: every sys_exit tracepoint has `long ret` at this offset.
    let ret: i64 = unsafe { ctx.read_at(SYS_EXIT_RET)? };
    if ret < 0 {
        return Ok(());
    }
    let file = file_id(fd_file(ret as u32)?)?;
    // SAFETY: the value is copied out at once.
    let Some(secret_id) = (unsafe { SECRETS.get(file) }).copied() else {
        return Ok(());
    };
    if let Ok(exe) = current_exe_id() {
        if ALLOWED_EXES.get_ptr(exe).is_some() {
            return Ok(());
        }
    }
    let event_header = header(EventKind::SecretRead);
    let pid = event_header.pid;
    // SAFETY: the value is copied out at once.
    let taint = match unsafe { TAINTED.get(pid) }.copied() {
        Some(taint) => taint,
        None => {
            let taint = Taint { secret_id, origin_pid: pid, since_ns: event_header.ktime_ns };
            TAINTED.insert(pid, taint, 0)?;
            taint
        }
    };
    let seen = ReadSeenKey { pid, secret_id };
    // SAFETY: the value is copied out at once.
    if unsafe { READ_SEEN.get(seen) }.copied() == Some(taint.since_ns) {
        return Ok(());
    }
    READ_SEEN.insert(seen, taint.since_ns, 0)?;
    emit::output(SecretReadEvent { header: event_header, secret_id, _pad: 0, file });
    Ok(())
}
