//! The kernel copies the bytes a tainted process sends — TLS plaintext before encryption
//! (curl and Python through OpenSSL), plain HTTP — and nobody else's. The sensor runs with its
//! outbound diagnostic (`VIGIE_DIAG_OUTBOUND_DIGESTS`), which prints each stream's byte count
//! and FNV-1a digest to stderr, never the bytes; a server on the remote host reports the same
//! two figures for what it received, and they must agree.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Result};
use integration_tests::host_tools::quoted;
use integration_tests::remote_server::{
    certificate, fnv1a, run_tainted, sensor_with_digests, wait_for_stream, Server,
};
use integration_tests::{actor_exe, alert, Lab, ALERT_TIMEOUT};

/// Bytes uploaded: a few KiB, more than one kernel chunk (1 KiB), under a call's cap (16 KiB).
const PAYLOAD_BYTES: usize = 6000;

/// A known payload that is no secret: printable, so it can go in an HTTP body as is.
fn payload() -> Vec<u8> {
    (0..PAYLOAD_BYTES).map(|i| b'a' + u8::try_from(i % 26).unwrap_or(0)).collect()
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
    let sensor = sensor_with_digests(&lab, &[])?;
    let server = Server::start(&lab, cert.as_ref())?;
    let url = format!("{}://{}/", if tls { "https" } else { "http" }, server.addr);
    let dest = server.addr;
    let pid = run_tainted(&lab, &sensor, &curl_upload(&payload_file(&lab)?, &url))?;
    let received = server.received()?;
    assert!(received.0 > PAYLOAD_BYTES as u64, "the server got the request: {received:?}");
    assert_eq!(wait_for_stream(&sensor, pid, "Tainted", path, dest, received.0)?, received);
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

/// A tainted Python sends an HTTP request over plain TCP as one vectored call, `gather` (a
/// Python expression on `sock` and the list `parts`): head and a body in three iovecs whose
/// boundaries fall inside the kernel's 1 KiB chunks. The kernel copied exactly what the
/// server received, in order, on the socket path.
fn tainted_vectored_send_is_copied(gather: &str) -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = sensor_with_digests(&lab, &[])?;
    let server = Server::start(&lab, None)?;
    let dest = server.addr;
    let body = payload();
    let client = format!(
        "import os, socket\n\
         sock = socket.create_connection(('{ip}', {port}), timeout=10)\n\
         body = open({payload:?}, 'rb').read()\n\
         head = b'POST / HTTP/1.1\\r\\nHost: vigie-test\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(body)\n\
         parts = [head, body[:700], body[700:3900], body[3900:]]\n\
         sent = {gather}\n\
         assert sent == sum(map(len, parts)), sent\n\
         sock.recv(4096)\n",
        ip = dest.ip(),
        port = dest.port(),
        payload = payload_file(&lab)?.display().to_string(),
    );
    let script = lab.dir().join("client.py");
    std::fs::write(&script, client)?;
    let pid = run_tainted(&lab, &sensor, &format!("python3 {}", quoted(&script)))?;
    let received = server.received()?;
    assert!(received.0 > body.len() as u64, "the server got head and body: {received:?}");
    assert_eq!(wait_for_stream(&sensor, pid, "Tainted", "socket", dest, received.0)?, received);
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_tainted_sendmsg_of_several_buffers_is_copied_in_order() -> Result<()> {
    tainted_vectored_send_is_copied("sock.sendmsg(parts)")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_tainted_writev_on_a_socket_is_copied_in_order() -> Result<()> {
    tainted_vectored_send_is_copied("os.writev(sock.fileno(), parts)")
}

/// Python's `ssl` sends a request head while untainted, then reads the secret and sends the
/// body on the same connection: only the body is copied — the sensor saw the process's TLS
/// writes, and left the untainted one alone.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn pythons_tls_bytes_are_copied_only_once_it_is_tainted() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let cert = certificate(lab.dir())?;
    let sensor = sensor_with_digests(&lab, &[])?;
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
    let copied = wait_for_stream(&sensor, pid, "Tainted", "openssl", dest, body.len() as u64)?;
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
    let sensor = sensor_with_digests(&lab, &[])?;
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
    let copied = wait_for_stream(&sensor, pid, "Tainted", "openssl", after, body.0)?;
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
