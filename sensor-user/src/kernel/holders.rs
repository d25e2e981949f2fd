//! Who holds which pipe, read from `/proc`: the catch-up of the page cache backend, whose
//! pipe-following programs are attached only once a process is tainted. Bytes a tainted
//! process wrote into a pipe before they were attached may already have been read; the
//! processes holding that pipe for reading are the ones that may have read them.

use std::{
    collections::HashSet,
    fs,
    os::{
        fd::AsRawFd,
        unix::fs::{FileTypeExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
};

use sensor_common::FileId;

use crate::state::secret_catalog::file_id_of;

/// `O_ACCMODE` values in `/proc/PID/fdinfo/N`'s `flags`.
const O_RDONLY: u32 = 0;
const O_WRONLY: u32 = 1;
const O_ACCMODE: u32 = 3;
/// The close-on-exec bit of those flags (`O_CLOEXEC`).
const O_CLOEXEC: u32 = 0o2_000_000;

/// Which end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Read,
    Write,
}

/// A process holding a pipe open for reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub pid: u32,
    pub pipe: FileId,
    /// Whether bytes wait in the pipe: they will be read under the syscall programs, which
    /// see them then. An empty pipe may have been read already.
    pub unread: bool,
    /// `/proc/PID/fd/N`.
    path: PathBuf,
    /// Whether the descriptor was close-on-exec when the walk saw it.
    cloexec: bool,
}

impl Reader {
    /// Whether the process may have read the pipe, asked again now: the walk may be seconds
    /// old, and a child that a pipe's reader forked holds its close-on-exec descriptors only
    /// until it execs, then runs something that never read the pipe. Such a descriptor gone
    /// since the walk clears the process; any other reader stays one (a reader that drained
    /// the pipe and closed it still read it).
    pub fn still_holds(&self) -> bool {
        !self.cloexec || fs::metadata(&self.path).is_ok_and(|meta| file_id_of(&meta) == self.pipe)
    }
}

/// One descriptor of a pipe or FIFO, held by some process.
#[derive(Debug, Clone)]
struct Held {
    pid: u32,
    pipe: FileId,
    /// `/proc/PID/fd/N`.
    path: PathBuf,
    read: bool,
    write: bool,
    cloexec: bool,
}

/// Every pipe and FIFO descriptor of every process, as `/proc` showed them: one walk, made
/// off the event loop ([`Holders::scan`]), then asked as often as a catch-up needs.
#[derive(Debug, Default)]
pub struct Holders {
    held: Vec<Held>,
}

impl Holders {
    /// Walks `/proc`: every process's descriptors. Slow on a busy host (a stat and an fdinfo
    /// read per pipe descriptor).
    pub fn scan() -> Self {
        let Ok(entries) = fs::read_dir("/proc") else { return Self::default() };
        let held = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .flat_map(pipes_of)
            .collect();
        Self { held }
    }

    /// Every process holding one of `pipes` open for reading, with whether bytes wait in it
    /// now (asked of the pipe itself, not of the walk).
    pub fn readers(&self, pipes: &HashSet<FileId>) -> Vec<Reader> {
        self.held
            .iter()
            .filter(|h| h.read && pipes.contains(&h.pipe))
            .map(|h| Reader {
                pid: h.pid,
                pipe: h.pipe,
                unread: unread_bytes(&h.path).is_some_and(|n| n > 0),
                path: h.path.clone(),
                cloexec: h.cloexec,
            })
            .collect()
    }

    /// The pipes and FIFOs process `pid` held with `end` open (a FIFO opened read-write
    /// counts for both ends).
    pub fn held(&self, pid: u32, end: End) -> Vec<FileId> {
        self.held
            .iter()
            .filter(|h| h.pid == pid && if end == End::Read { h.read } else { h.write })
            .map(|h| h.pipe)
            .collect()
    }
}

/// Bytes waiting in the pipe behind `/proc/PID/fd/N`, read through a descriptor of our own.
fn unread_bytes(fd_path: &Path) -> Option<usize> {
    let file = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(fd_path).ok()?;
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer; the descriptor is ours.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FIONREAD, &raw mut unread) };
    (rc == 0).then(|| usize::try_from(unread).ok()).flatten()
}

/// The pipe and FIFO descriptors process `pid` holds.
fn pipes_of(pid: u32) -> Vec<Held> {
    let dir = Path::new("/proc").join(pid.to_string());
    let Ok(fds) = fs::read_dir(dir.join("fd")) else { return Vec::new() };
    let mut found = Vec::new();
    for fd in fds.filter_map(Result::ok) {
        let Ok(meta) = fs::metadata(fd.path()) else { continue };
        if !meta.file_type().is_fifo() {
            continue;
        }
        let Some(flags) = open_flags(&dir.join("fdinfo").join(fd.file_name())) else { continue };
        let mode = flags & O_ACCMODE;
        let (read, write, cloexec) = (mode != O_WRONLY, mode != O_RDONLY, flags & O_CLOEXEC != 0);
        found.push(Held { pid, pipe: file_id_of(&meta), path: fd.path(), read, write, cloexec });
    }
    found
}

/// The open flags of a descriptor, from its fdinfo's octal `flags:` line.
fn open_flags(fdinfo: &Path) -> Option<u32> {
    let text = fs::read_to_string(fdinfo).ok()?;
    let flags = text.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
    u32::from_str_radix(flags, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe of this test process: its read end is found as read, its write end as write.
    #[test]
    fn both_ends_of_a_pipe_are_told_apart() {
        let mut fds = [0; 2];
        // SAFETY: a valid array of two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let me = std::process::id();
        let pipe = file_id_of(&fs::metadata(format!("/proc/self/fd/{}", fds[0])).unwrap());
        let holders = Holders::scan();
        assert!(holders.held(me, End::Read).contains(&pipe));
        assert!(holders.held(me, End::Write).contains(&pipe));
        let path = PathBuf::from(format!("/proc/{me}/fd/{}", fds[0]));
        let mine = |unread| Reader { pid: me, pipe, unread, path: path.clone(), cloexec: true };
        assert!(holders.readers(&HashSet::from([pipe])).contains(&mine(false)), "an empty pipe");
        // SAFETY: writing one byte from a valid buffer into our own pipe.
        assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) }, 1);
        assert!(holders.readers(&HashSet::from([pipe])).contains(&mine(true)), "a byte is waiting, now");
        assert!(mine(true).still_holds());
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert!(!mine(true).still_holds(), "a close-on-exec descriptor gone since the walk");
        let inherited = Reader { cloexec: false, ..mine(true) };
        assert!(inherited.still_holds(), "a reader that closed its inherited descriptor read before");
        assert!(!Holders::scan().held(me, End::Read).contains(&pipe));
    }

    #[test]
    fn fdinfo_flags_are_octal() {
        let dir = std::env::temp_dir().join(format!("vigie-fdinfo-{}", std::process::id()));
        fs::write(&dir, "pos:\t0\nflags:\t02000001\nmnt_id:\t15\n").unwrap();
        let flags = open_flags(&dir).unwrap();
        assert_eq!(flags & O_ACCMODE, O_WRONLY);
        assert_ne!(flags & O_CLOEXEC, 0);
        fs::remove_file(&dir).unwrap();
    }
}
