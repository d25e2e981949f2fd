//! Facts about this host the agent needs: privileges, mounts, names and clocks.

use std::{fs, io, path::PathBuf};

use crate::error::Error;

/// Capability bits (from `linux/capability.h`) that allow loading BPF programs.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails early, with a clear message, when the process cannot load BPF programs.
pub fn check_bpf_permission() -> Result<(), Error> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(Error::NoBpfPermission)
    }
}

/// Mounts tracefs when it is not there: tracepoints are attached through it.
/// Where tracefs is (mounted by [`ensure_tracefs`] if it is not).
pub const TRACEFS: &str = "/sys/kernel/tracing";

pub fn ensure_tracefs() -> Result<(), Error> {
    if fs::metadata(format!("{TRACEFS}/events")).is_ok() {
        return Ok(());
    }
    mount("tracefs", TRACEFS).map_err(|e| Error::system(format!("mounting tracefs at {TRACEFS}"), e))
}

/// Where the BPF file system is (mounted by [`ensure_bpffs`] if it is not).
pub const BPFFS: &str = "/sys/fs/bpf";

pub fn ensure_bpffs() -> Result<(), Error> {
    let mounts =
        fs::read_to_string("/proc/self/mounts").map_err(|e| Error::system("reading /proc/self/mounts", e))?;
    if mounts.lines().any(|line| line.split_whitespace().nth(1) == Some(BPFFS) && line.contains(" bpf ")) {
        return Ok(());
    }
    mount("bpf", BPFFS).map_err(|e| Error::system(format!("mounting the BPF file system at {BPFFS}"), e))
}

fn mount(fstype: &str, target: &str) -> io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(io::Error::other);
    let (source, target, fstype) = (c(fstype)?, c(target)?, c(fstype)?);
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The cgroup v2 mount point (`/sys/fs/cgroup` or, on hybrid hosts, `/sys/fs/cgroup/unified`).
pub fn cgroup2_root() -> Result<PathBuf, Error> {
    let mounts =
        fs::read_to_string("/proc/self/mounts").map_err(|e| Error::system("reading /proc/self/mounts", e))?;
    mounts
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&"cgroup2"))
        .and_then(|fields| fields.get(1).map(PathBuf::from))
        .ok_or_else(|| Error::system("finding the cgroup v2 mount", io::Error::from(io::ErrorKind::NotFound)))
}

/// This host's name, for `host.name`.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// This boot's id (a UUID, in full), so process entity ids do not collide across reboots.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Reads a clock, in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Wall-clock time of boot, in ns since the epoch: adds to `bpf_ktime_get_ns` values.
pub fn boot_wall_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME).saturating_sub(clock_ns(libc::CLOCK_MONOTONIC))
}

/// The kernel's monotonic clock, the one `bpf_ktime_get_ns` reads.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The owner of `/proc/PID` (the process's effective uid), 0 if it is gone.
pub fn uid_of(pid: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}")).map_or(0, |m| m.uid())
}

/// Nanoseconds per clock tick of `/proc/PID/stat` times.
pub fn ns_per_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / u64::try_from(hz).unwrap_or(100).max(1)
}

/// Whether process `pid` is being traced (`TracerPid` in `/proc/PID/status`); a process
/// that cannot be looked at counts as traced.
pub fn is_traced(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).map_or(true, |status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("TracerPid:"))
            .is_none_or(|tracer| tracer.trim() != "0")
    })
}

/// Tells systemd the agent is watching (`READY=1` on `$NOTIFY_SOCKET`, what `sd_notify` does)
/// when a `Type=notify` unit started it; nothing otherwise. Units ordered after the agent's
/// (the homeserver) start only then.
pub fn notify_ready() -> Result<(), Error> {
    use std::os::{linux::net::SocketAddrExt, unix::ffi::OsStrExt, unix::net};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(()) };
    let error =
        |e| Error::system(format!("telling systemd the agent is ready ({})", path.to_string_lossy()), e);
    let socket = net::UnixDatagram::unbound().map_err(error)?;
    let sent = match path.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            net::SocketAddr::from_abstract_name(name).and_then(|addr| socket.send_to_addr(b"READY=1", &addr))
        }
        None => socket.send_to(b"READY=1", &path),
    };
    sent.map(drop).map_err(error)
}

/// Makes the agent undumpable: no core dump, and no other user's process may attach to it or
/// read its memory, which holds keyed fingerprints of the secrets and, while a file is read,
/// their contents.
pub fn make_undumpable() -> Result<(), Error> {
    // SAFETY: PR_SET_DUMPABLE takes integers and touches no memory of ours.
    let result = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if result == 0 {
        Ok(())
    } else {
        Err(Error::system("making the agent undumpable (PR_SET_DUMPABLE)", io::Error::last_os_error()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_agent_becomes_undumpable() {
        super::make_undumpable().expect("prctl");
        // SAFETY: PR_GET_DUMPABLE takes no pointer.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
    }
}
