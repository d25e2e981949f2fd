//! Booting the guest: `qemu-system-x86_64 -accel tcg` (this machine's `/dev/kvm` belongs to
//! its own nested mode and hangs guests), serial console on stdout, no network device, the
//! lab disk as a virtio drive; and a fresh ext4 lab disk for each boot.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;

use anyhow::{Context, Result};

use crate::command::{self, tool};

/// Guest memory: the initramfs (tens of MiB, unpacked into tmpfs) and the agent's maps.
const MEMORY_MIB: &str = "2048";
/// The lab disk's size: the secret, copies, the journal.
const LAB_DISK_BYTES: u64 = 128 << 20;

/// What to boot.
pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    pub lab_disk: &'a Path,
    /// `vigie.*` parameters for the init script, after the console settings.
    pub parameters: &'a str,
}

/// A running guest; dropping it kills qemu.
pub struct Guest {
    child: Child,
    /// The console, line by line; disconnected once qemu has exited.
    pub console: Receiver<String>,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes an empty ext4 file system in `path`, replacing what was there.
pub fn fresh_lab_disk(path: &Path) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.set_len(LAB_DISK_BYTES).with_context(|| format!("cannot size {}", path.display()))?;
    drop(file);
    command::output(tool("mkfs.ext4")?.args(["-q", "-F", "-L", "vigie-lab"]).arg(path)).map(drop)
}

/// Starts qemu on `boot`.
pub fn start(boot: &Boot) -> Result<Guest> {
    let mut qemu = qemu_command(boot)?;
    let mut child = qemu.spawn().with_context(|| format!("cannot start `{}`", command::describe(&qemu)))?;
    let stdout = child.stdout.take().context("qemu's stdout")?;
    let (lines, console) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            // The console ends lines with CR LF and the firmware writes escape codes.
            if lines.send(String::from_utf8_lossy(&line).trim_end_matches('\r').to_owned()).is_err() {
                break;
            }
        }
    });
    Ok(Guest { child, console })
}

fn qemu_command(boot: &Boot) -> Result<Command> {
    let mut qemu = tool("qemu-system-x86_64")?;
    qemu.args(["-accel", "tcg", "-smp", "2", "-m", MEMORY_MIB])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(boot.vmlinuz)
        .arg("-initrd")
        .arg(boot.initramfs)
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", boot.lab_disk.display()))
        .arg("-append")
        .arg(format!("console=ttyS0 quiet panic=-1 {}", boot.parameters))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    Ok(qemu)
}
