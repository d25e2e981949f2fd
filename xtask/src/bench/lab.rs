//! The files the workloads touch, in a folder of the bench's own that is removed at the end:
//! an ordinary file, a watched "secret" (made-up bytes), and a copy of `vigie-load` that the
//! agent is told is an allowed reader (identity is the inode, so the copy is allowed and the
//! original is not). The agents also keep their journal and a file sink there, and send to a
//! syslog receiver on loopback that reads and drops what comes: a deployed agent's load.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;

use anyhow::{Context, Result};

use super::Binaries;

/// Size of the ordinary file; the loops read 64 bytes of it.
const PLAIN_BYTES: usize = 4096;

pub struct Lab {
    dir: PathBuf,
    /// Not watched: workload 1's file.
    pub plain: PathBuf,
    /// Watched by the agent (`--secret`).
    pub secret: PathBuf,
    /// A copy of `vigie-load` the agent allows (`--allow-reader`).
    pub allowed_load: PathBuf,
    /// Where the syslog receiver listens.
    syslog: SocketAddr,
}

impl Lab {
    pub fn create(binaries: &Binaries) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("vigie-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // From here on, an early return drops `lab`, which removes the folder.
        let lab = Self {
            plain: dir.join("plain.conf"),
            secret: dir.join("secret.env"),
            allowed_load: dir.join("vigie-load-allowed"),
            syslog: syslog_receiver()?,
            dir,
        };
        let plain: String = (0..PLAIN_BYTES).map(|i| if i % 64 == 63 { '\n' } else { 'x' }).collect();
        write(&lab.plain, plain.as_bytes())?;
        let secret = format!("BENCH_TOKEN={}\n", "0123456789abcdef".repeat(8));
        write(&lab.secret, secret.as_bytes())?;
        fs::set_permissions(&lab.secret, fs::Permissions::from_mode(0o600))?;
        fs::copy(&binaries.load, &lab.allowed_load).with_context(|| {
            format!("cannot copy {} to {}", binaries.load.display(), lab.allowed_load.display())
        })?;
        Ok(lab)
    }

    pub fn secret_arg(&self) -> String {
        self.secret.display().to_string()
    }

    pub fn allowed_arg(&self) -> String {
        self.allowed_load.display().to_string()
    }

    /// Where the agents of the bench keep their journal.
    pub fn journal_arg(&self) -> String {
        self.dir.join("journal.db").display().to_string()
    }

    /// The agents' two sinks, as `--sink` URLs: a file in the lab and the syslog receiver.
    pub fn sink_args(&self) -> [String; 2] {
        [format!("file://{}", self.dir.join("sink.jsonl").display()), format!("syslog+udp://{}", self.syslog)]
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!("[bench] cannot remove {}: {error}", self.dir.display());
        }
    }
}

/// A UDP socket on loopback that a thread reads and drops datagrams from, for the bench's
/// whole run (the process exits with it): a syslog daemon that keeps nothing.
fn syslog_receiver() -> Result<SocketAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("cannot bind the syslog receiver")?;
    let addr = socket.local_addr()?;
    thread::spawn(move || {
        let mut datagram = vec![0; 65_536];
        while socket.recv(&mut datagram).is_ok() {}
    });
    Ok(addr)
}

fn write(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}
