//! The same opens, reads and connects through `io_uring`, where no syscall tracepoint sees them
//! (the kernel runs them in `io_uring_enter` or in an io-wq worker thread).

use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use io_uring::{opcode, squeue, types, IoUring};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::network::PAYLOAD;

const ENTRIES: u32 = 4;
const CHUNK: u32 = 64 * 1024;

/// Which `io_uring` open operation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// `IORING_OP_OPENAT`.
    At,
    /// `IORING_OP_OPENAT2`.
    At2,
}

/// Opens `path` with `how`, then `IORING_OP_READ` until the end of the file.
pub fn read(path: &Path, how: Open) -> Result<Vec<u8>> {
    let mut ring = IoUring::new(ENTRIES).context("set up an io_uring")?;
    let name = CString::new(path.as_os_str().as_bytes())?;
    let flags = libc::O_RDONLY | libc::O_CLOEXEC;
    let open_how = types::OpenHow::new().flags(u64::try_from(flags)?);
    let open = match how {
        Open::At => opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), name.as_ptr()).flags(flags).build(),
        Open::At2 => {
            opcode::OpenAt2::new(types::Fd(libc::AT_FDCWD), name.as_ptr(), &raw const open_how).build()
        }
    };
    let fd = submit(&mut ring, &open).with_context(|| format!("{how:?} {}", path.display()))?;
    // SAFETY: the completion's result is the new descriptor, which nothing else owns.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut data = Vec::new();
    let mut buf = vec![0u8; CHUNK as usize];
    loop {
        let read = opcode::Read::new(types::Fd(file.as_raw_fd()), buf.as_mut_ptr(), CHUNK)
            .offset(data.len() as u64)
            .build();
        let got = submit(&mut ring, &read).with_context(|| format!("IORING_OP_READ {}", path.display()))?;
        if got == 0 {
            return Ok(data);
        }
        data.extend_from_slice(&buf[..usize::try_from(got)?]);
    }
}

/// Opens `path` into a direct descriptor (a slot of the ring's file table, no process
/// descriptor at all) and reads it with `IOSQE_FIXED_FILE`.
pub fn read_fixed(path: &Path) -> Result<Vec<u8>> {
    let mut ring = IoUring::new(ENTRIES).context("set up an io_uring")?;
    ring.submitter().register_files_sparse(1).context("register a sparse file table")?;
    let name = CString::new(path.as_os_str().as_bytes())?;
    let slot = types::DestinationSlot::try_from_slot_target(0).map_err(|_| anyhow::anyhow!("slot 0"))?;
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), name.as_ptr())
        .flags(libc::O_RDONLY)
        .file_index(Some(slot))
        .build();
    submit(&mut ring, &open).with_context(|| format!("IORING_OP_OPENAT into a slot {}", path.display()))?;
    let mut data = Vec::new();
    let mut buf = vec![0u8; CHUNK as usize];
    loop {
        let read =
            opcode::Read::new(types::Fixed(0), buf.as_mut_ptr(), CHUNK).offset(data.len() as u64).build();
        let got =
            submit(&mut ring, &read).with_context(|| format!("fixed IORING_OP_READ {}", path.display()))?;
        if got == 0 {
            return Ok(data);
        }
        data.extend_from_slice(&buf[..usize::try_from(got)?]);
    }
}

/// Creates `path` with `IORING_OP_OPENAT` and writes `data` into it with `IORING_OP_WRITE`.
pub fn write_to(path: &Path, data: &[u8]) -> Result<()> {
    let mut ring = IoUring::new(ENTRIES).context("set up an io_uring")?;
    let name = CString::new(path.as_os_str().as_bytes())?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), name.as_ptr()).flags(flags).mode(0o600).build();
    let fd = submit(&mut ring, &open).with_context(|| format!("IORING_OP_OPENAT {}", path.display()))?;
    // SAFETY: the completion's result is the new descriptor, which nothing else owns.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut written = 0;
    while written < data.len() {
        let chunk = &data[written..];
        let len = u32::try_from(chunk.len()).unwrap_or(CHUNK).min(CHUNK);
        let write = opcode::Write::new(types::Fd(file.as_raw_fd()), chunk.as_ptr(), len)
            .offset(written as u64)
            .build();
        let done =
            submit(&mut ring, &write).with_context(|| format!("IORING_OP_WRITE {}", path.display()))?;
        ensure!(done > 0, "IORING_OP_WRITE {} wrote nothing", path.display());
        written += usize::try_from(done)?;
    }
    Ok(())
}

/// `IORING_OP_CONNECT` to `dest` and `IORING_OP_SEND` of a few bytes, on a fresh TCP socket.
pub fn connect_and_send(dest: SocketAddr) -> Result<()> {
    let mut ring = IoUring::new(ENTRIES).context("set up an io_uring")?;
    let socket = Socket::new(Domain::for_address(dest), Type::STREAM, None).context("socket")?;
    let addr = SockAddr::from(dest);
    let connect =
        opcode::Connect::new(types::Fd(socket.as_raw_fd()), addr.as_ptr().cast(), addr.len()).build();
    submit(&mut ring, &connect).with_context(|| format!("IORING_OP_CONNECT to {dest}"))?;
    let len = u32::try_from(PAYLOAD.len())?;
    let send = opcode::Send::new(types::Fd(socket.as_raw_fd()), PAYLOAD.as_ptr(), len).build();
    let sent = submit(&mut ring, &send).with_context(|| format!("IORING_OP_SEND to {dest}"))?;
    ensure!(usize::try_from(sent)? == PAYLOAD.len(), "short send to {dest}");
    Ok(())
}

/// Submits one entry, waits for its completion and returns its result (an fd or a count).
fn submit(ring: &mut IoUring, entry: &squeue::Entry) -> Result<RawFd> {
    // SAFETY: every buffer and path the entry points at outlives this call, which waits for
    // the entry's completion before returning.
    unsafe { ring.submission().push(entry) }.context("the submission queue is full")?;
    ring.submit_and_wait(1).context("io_uring_enter")?;
    let completion = ring.completion().next().context("no completion after waiting for one")?;
    let result = completion.result();
    if result < 0 {
        return Err(io::Error::from_raw_os_error(-result).into());
    }
    Ok(result)
}
