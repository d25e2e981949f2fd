//! Tracers of the agent: `PTRACE_SEIZE` sends no signal, so the agent's threads'
//! `TracerPid` is read on the periodic tick (a few small `/proc` files per check).

use std::fs;

/// (tracer pid, traced thread) for each thread of this process a tracer is attached to.
pub fn of_this_process() -> Vec<(u32, u32)> {
    let Ok(threads) = fs::read_dir("/proc/self/task") else { return Vec::new() };
    threads
        .flatten()
        .filter_map(|thread| {
            let tid = thread.file_name().to_str()?.parse().ok()?;
            let status = fs::read_to_string(thread.path().join("status")).ok()?;
            tracer(&status).map(|tracer| (tracer, tid))
        })
        .collect()
}

/// The `TracerPid` of a `status` text, if not 0.
fn tracer(status: &str) -> Option<u32> {
    let pid: u32 = status.lines().find_map(|line| line.strip_prefix("TracerPid:"))?.trim().parse().ok()?;
    (pid != 0).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracer_pid_zero_is_no_tracer() {
        assert_eq!(tracer("Name:\tvigie\nTracerPid:\t0\n"), None);
        assert_eq!(tracer("Name:\tvigie\nTracerPid:\t4242\n"), Some(4242));
        assert!(of_this_process().is_empty(), "the unit tests run untraced");
    }
}
