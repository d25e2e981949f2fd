//! The lab's long-lived children (the homeserver, its database server): they die with the test
//! process, and are stopped with a signal, then killed if they linger.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

/// Makes the child `command` starts die when the thread that started it ends
/// (`PR_SET_PDEATHSIG`): start it from a thread that lives as long as the test process.
pub fn dies_with_its_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Sends `signal` to `child`, waits up to `timeout` for it to exit, then kills it.
pub fn stop(child: &mut Child, signal: libc::c_int, timeout: Duration) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else { return };
    // SAFETY: plain syscall on our own child, not yet reaped.
    unsafe { libc::kill(pid, signal) };
    let deadline = Instant::now() + timeout;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
