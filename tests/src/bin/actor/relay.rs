//! Handing bytes to another process on this host: a file or FIFO, or a unix stream socket.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long `unix_send` waits for the listener to appear.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens `path` for writing (a FIFO blocks here until its reader opens it) and writes `data`.
pub fn write_to(path: &Path, data: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("open {} for writing", path.display()))?;
    file.write_all(data).with_context(|| format!("write {}", path.display()))
}

/// Connects to the listener at `path`, writes `data` and closes. The listener is another
/// process started at about the same time, so a missing or not-yet-listening socket is
/// retried until [`PEER_TIMEOUT`].
pub fn unix_send(path: &Path, data: &[u8]) -> Result<()> {
    let deadline = Instant::now() + PEER_TIMEOUT;
    let mut stream = loop {
        match UnixStream::connect(path) {
            Ok(stream) => break stream,
            Err(error) if is_not_listening_yet(&error) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(error) => return Err(error).with_context(|| format!("connect to {}", path.display())),
        }
    };
    stream.write_all(data).with_context(|| format!("write to {}", path.display()))?;
    stream.shutdown(Shutdown::Write).context("shut down the unix socket")
}

fn is_not_listening_yet(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
}

/// Listens at `path`; peers can connect (and write) from now on, before any accept.
pub fn unix_listen(path: &Path) -> Result<UnixListener> {
    UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))
}

/// Accepts one peer and reads until it closes.
pub fn unix_accept(listener: &UnixListener) -> Result<Vec<u8>> {
    let (mut stream, _) = listener.accept().context("accept on the unix socket")?;
    let mut data = Vec::new();
    stream.read_to_end(&mut data).context("read from the unix socket")?;
    Ok(data)
}
