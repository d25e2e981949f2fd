//! Servers on the remote host that report what they received, and the agent's outbound
//! diagnostic (`VIGIE_DIAG_OUTBOUND_DIGESTS`), which prints each stream's byte count and FNV-1a
//! digest to stderr as the kernel copies it — never the bytes. Shared by the suites on what the
//! kernel copies and what the agent recognises in it.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::bpf_objects::attached_tracepoints;
use crate::host_tools::{self, quoted, KilledOnDrop};
use crate::sensor::Documents;
use crate::{alert, Lab, Sensor, ALERT_TIMEOUT};

/// The environment that turns the agent's outbound diagnostic on.
pub const DIGESTS_ENV: (&str, &str) = ("VIGIE_DIAG_OUTBOUND_DIGESTS", "1");
const POLL: Duration = Duration::from_millis(20);

/// FNV-1a (64 bits), as the agent's diagnostic and the server compute it.
#[must_use]
pub fn fnv1a(bytes: &[u8]) -> String {
    let hash = bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// An HTTP(S) server on the remote host that takes one request, answers 200, and reports the
/// length and digest of everything it received.
const SERVER: &str = r"
import socket, ssl, sys
listener = socket.create_server(('0.0.0.0', 0))
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
if sys.argv[1] != 'plain':
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    conn = context.wrap_socket(conn, server_side=True)
data = b''
while b'\r\n\r\n' not in data:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
head = data.split(b'\r\n\r\n')[0]
length = 0
for line in head.split(b'\r\n'):
    if line.lower().startswith(b'content-length:'):
        length = int(line.split(b':')[1])
while len(data) < len(head) + 4 + length:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
digest = 0xcbf29ce484222325
for byte in data:
    digest = ((digest ^ byte) * 0x100000001b3) & 0xffffffffffffffff
print(len(data), '%016x' % digest, flush=True)
";

/// The remote server, its address and the pipe it reports on.
pub struct Server {
    /// Killed if the test gives up before [`Server::received`].
    child: KilledOnDrop,
    pub addr: SocketAddr,
    report: BufReader<ChildStdout>,
}

impl Server {
    /// Starts [`SERVER`] in the remote host's namespace: TLS with `cert` unless `None`.
    /// # Errors
    /// When the server does not start or report its port.
    pub fn start(lab: &Lab, cert: Option<&(PathBuf, PathBuf)>) -> Result<Self> {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", lab.remote().namespace(), "python3", "-c", SERVER]);
        match cert {
            Some((cert, key)) => command.arg(cert).arg(key),
            None => command.arg("plain"),
        };
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().context("start the server")?;
        let mut report = BufReader::new(child.stdout.take().context("server stdout")?);
        let mut port = String::new();
        report.read_line(&mut port)?;
        let port = port.trim().parse().with_context(|| format!("the server's port: {port:?}"))?;
        Ok(Self {
            child: KilledOnDrop(child),
            addr: SocketAddr::new(lab.remote().ipv4().into(), port),
            report,
        })
    }

    /// What the server received: its length and digest.
    /// # Errors
    /// When the server does not report.
    pub fn received(mut self) -> Result<(u64, String)> {
        let mut line = String::new();
        self.report.read_line(&mut line)?;
        let _ = self.child.0.wait();
        let (len, digest) = line.trim().split_once(' ').with_context(|| format!("server report {line:?}"))?;
        Ok((len.parse()?, digest.to_owned()))
    }
}

/// A self-signed certificate and key in the lab's directory.
///
/// # Errors
/// When `openssl` fails.
pub fn certificate(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    host_tools::run(
        "openssl",
        &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=vigie-test"]
            .into_iter()
            .chain(["-keyout", &key_arg, "-out", &cert_arg])
            .collect::<Vec<_>>(),
    )?;
    Ok((cert, key))
}

/// Runs `command` (a `sh` script) in a shell that first reads the secret, waits until the
/// sensor reported that read and, on the page cache backend, attached its syscall programs,
/// and only then runs it (`exec`: same pid, still tainted). Returns that pid.
///
/// # Errors
/// When the shell fails or the sensor does not report the read.
pub fn run_tainted(lab: &Lab, sensor: &Sensor, command: &str) -> Result<u32> {
    let script = format!("read secret < {}; read go; exec {command}", quoted(lab.secret()));
    let mut shell = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = shell.id();
    sensor.expect(alert::is_secret_read_by(pid), ALERT_TIMEOUT)?;
    let deadline = Instant::now() + ALERT_TIMEOUT;
    while !attached_tracepoints(sensor.pid())?.contains("sys_enter") {
        ensure!(Instant::now() < deadline, "the syscall programs were not attached");
        thread::sleep(POLL);
    }
    shell.stdin.take().context("stdin")?.write_all(b"go\n")?;
    let status = shell.wait()?;
    ensure!(status.success(), "{command}: {status}");
    Ok(pid)
}

/// The byte count and digest the agent printed last for `pid`'s stream over `path` to `dest`.
pub fn stream_tally(
    sensor: &Sensor,
    pid: u32,
    sender: &str,
    path: &str,
    dest: SocketAddr,
) -> Option<(u64, String)> {
    let prefix = format!("vigie-outbound pid={pid} sender={sender} path={path} destination={dest}/tcp ");
    let stderr = sensor.stderr();
    let last = stderr.lines().rev().find_map(|line| line.strip_prefix(&prefix))?;
    let bytes = last.split_whitespace().find_map(|f| f.strip_prefix("bytes="))?.parse().ok()?;
    let digest = last.split_whitespace().find_map(|f| f.strip_prefix("fnv1a64="))?;
    Some((bytes, digest.to_owned()))
}

/// Waits until the agent counted `bytes` bytes for the stream (`sender` `Tainted` or
/// `TrustedService`), then returns its tally.
///
/// # Errors
/// When the stream does not reach `bytes` within [`ALERT_TIMEOUT`].
pub fn wait_for_stream(
    sensor: &Sensor,
    pid: u32,
    sender: &str,
    path: &str,
    dest: SocketAddr,
    bytes: u64,
) -> Result<(u64, String)> {
    let deadline = Instant::now() + ALERT_TIMEOUT;
    loop {
        let tally = stream_tally(sensor, pid, sender, path, dest);
        if let Some(tally) = tally.as_ref().filter(|(counted, _)| *counted >= bytes) {
            return Ok(tally.clone());
        }
        if Instant::now() >= deadline {
            bail!(
                "stream of {pid} over {path} to {dest}: {tally:?}, wanted {bytes} bytes\n{}",
                sensor.stderr()
            );
        }
        thread::sleep(POLL);
    }
}

/// A sensor on `lab` with the outbound diagnostic on, extra arguments `extra`.
///
/// # Errors
/// See [`Lab::sensor_with_env`].
pub fn sensor_with_digests(lab: &Lab, extra: &[&str]) -> Result<Sensor> {
    lab.sensor_with_env(&Documents::Stdout, extra, &[DIGESTS_ENV])
}
