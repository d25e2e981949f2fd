//! Secrets on tmpfs (`/dev/shm`, `/run`, containers' `/run/secrets`): shmem has no page cache
//! tracepoints, so their reads are seen through fanotify permission events on their inodes.
//! The opener (or reader) waits in the kernel until the agent has tainted it and allowed the
//! access: there is no window in which it could send first. Only the marked inodes pay the
//! round trip (tens of microseconds); other files of the filesystem pay fanotify's check.

use std::{
    collections::HashMap,
    ffi::CString,
    fs::File,
    io,
    mem::ManuallyDrop,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use sensor_common::FileId;

use crate::state::secret_catalog::file_id_of;

/// Events asked for on each secret: its opens and its reads.
const MASK: u64 = libc::FAN_OPEN_PERM | libc::FAN_ACCESS_PERM;
/// Room for a few dozen events per read of the fanotify descriptor.
const BUFFER: usize = 4096;

/// Whether the file at `path` lives on tmpfs.
pub fn on_tmpfs(path: &Path) -> bool {
    let Ok(name) = CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `stat` is a valid out-pointer and `name` a NUL-terminated path.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(name.as_ptr(), &raw mut stat) };
    rc == 0 && stat.f_type == libc::TMPFS_MAGIC
}

/// A process that opened or read a watched tmpfs secret, waiting for the agent's answer.
#[derive(Debug)]
pub struct Access {
    pub pid: u32,
    pub secret_id: u32,
    pub file: FileId,
    /// The event's descriptor: answering closes it and lets the process go on.
    fd: OwnedFd,
}

impl AsRawFd for TmpfsWatch {
    fn as_raw_fd(&self) -> i32 {
        self.group.as_raw_fd()
    }
}

/// The fanotify group that holds the marks on tmpfs secrets.
#[derive(Debug)]
pub struct TmpfsWatch {
    group: OwnedFd,
    secrets: HashMap<FileId, u32>,
}

impl TmpfsWatch {
    /// A fanotify group for permission events (needs `CAP_SYS_ADMIN`).
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain flags; the result is checked.
        let fd = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK,
                u32::try_from(libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC).unwrap_or(0),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just gave us, owned from now on.
        Ok(Self { group: unsafe { OwnedFd::from_raw_fd(fd) }, secrets: HashMap::new() })
    }

    /// Marks the tmpfs file at `path`, which is secret `secret_id` with identity `file`.
    pub fn watch(&mut self, path: &Path, secret_id: u32, file: FileId) -> io::Result<()> {
        let name = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: a valid group descriptor and NUL-terminated path.
        let rc = unsafe {
            libc::fanotify_mark(
                self.group.as_raw_fd(),
                libc::FAN_MARK_ADD,
                MASK,
                libc::AT_FDCWD,
                name.as_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.secrets.insert(file, secret_id);
        Ok(())
    }

    /// The accesses waiting for an answer (none when the group has nothing to read).
    pub fn pending(&self) -> io::Result<Vec<Access>> {
        let mut buffer = [0u8; BUFFER];
        let mut accesses = Vec::new();
        loop {
            // SAFETY: reading into a local buffer of its size.
            let got = unsafe { libc::read(self.group.as_raw_fd(), buffer.as_mut_ptr().cast(), BUFFER) };
            if got < 0 {
                let error = io::Error::last_os_error();
                return if error.kind() == io::ErrorKind::WouldBlock { Ok(accesses) } else { Err(error) };
            }
            let got = usize::try_from(got).unwrap_or(0);
            if got == 0 {
                return Ok(accesses);
            }
            self.parse(&buffer[..got], &mut accesses);
        }
    }

    fn parse(&self, mut events: &[u8], accesses: &mut Vec<Access>) {
        const HEADER: usize = std::mem::size_of::<libc::fanotify_event_metadata>();
        while events.len() >= HEADER {
            // SAFETY: at least HEADER bytes; read unaligned from the byte buffer.
            let event: libc::fanotify_event_metadata =
                unsafe { std::ptr::read_unaligned(events.as_ptr().cast()) };
            let len = usize::try_from(event.event_len).unwrap_or(0).max(HEADER).min(events.len());
            events = &events[len..];
            if event.fd < 0 || event.vers != libc::FANOTIFY_METADATA_VERSION {
                continue;
            }
            // SAFETY: the event's descriptor is ours to answer and close.
            let fd = unsafe { OwnedFd::from_raw_fd(event.fd) };
            // SAFETY: a view of the descriptor `fd` owns, never closed through it.
            let view = ManuallyDrop::new(unsafe { File::from_raw_fd(fd.as_raw_fd()) });
            let identity = view.metadata().map(|m| file_id_of(&m)).unwrap_or_default();
            let secret_id = self.secrets.get(&identity).copied().unwrap_or(u32::MAX);
            accesses.push(Access {
                pid: u32::try_from(event.pid).unwrap_or(0),
                secret_id,
                file: identity,
                fd,
            });
        }
    }

    /// Lets a waiting access go on.
    pub fn allow(&self, access: Access) -> io::Result<()> {
        let response = libc::fanotify_response { fd: access.fd.as_raw_fd(), response: libc::FAN_ALLOW };
        let size = std::mem::size_of::<libc::fanotify_response>();
        // SAFETY: writing one response struct of its size to our group.
        let wrote = unsafe { libc::write(self.group.as_raw_fd(), (&raw const response).cast(), size) };
        let result = if wrote < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
        // The event's descriptor is closed once answered.
        drop(access.fd);
        result
    }
}
