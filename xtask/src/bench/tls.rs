//! Workloads 10 and 11, what every TLS write of the host pays for the TLS uprobes (entry
//! probes on `SSL_write`/`SSL_write_ex`/`gnutls_record_send` of every process, which return
//! at once for one neither tainted nor trusted): 10, an untainted client writing small
//! records through libssl (Python's `ssl`, to a Python TLS sink on loopback, which only
//! reads), in ns per write; 11, nginx serving its 2 KiB files over HTTPS to wrk (`Site`, with a self-signed
//! certificate of this module's).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};

use super::child::Guarded;
use super::load::{parse, timed, Timed};
use super::Env;
use crate::command::{self, tool};

/// Bytes per write of workload 10: a small record (an HTTP header, a chat message).
const WRITE_BYTES: &str = "256";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past its expected run the client may take.
const CLIENT_SLACK: Duration = Duration::from_mins(1);

/// Workload 10's server: takes one TLS connection on port `argv[3]` and reads it to its end.
const SINK: &str = r#"
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
listener = socket.create_server(("127.0.0.1", int(sys.argv[3])))
tls = context.wrap_socket(listener.accept()[0], server_side=True)
while tls.recv(65536):
    pass
"#;

/// Workload 10's client: connects, writes `N` records of `SIZE` bytes, prints its timings.
const CLIENT: &str = r#"
import json, socket, ssl, sys, time
count, size, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
deadline = time.monotonic() + 10
while True:
    try:
        tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port)))
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.02)
data = b"x" * size
start, cpu = time.perf_counter_ns(), time.thread_time_ns()
for _ in range(count):
    tls.sendall(data)
elapsed, cpu = time.perf_counter_ns() - start, time.thread_time_ns() - cpu
print(json.dumps({"iterations": count, "elapsed_ns": elapsed, "cpu_ns": cpu}))
"#;

/// A self-signed certificate and its key.
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certificate {
    /// Makes one in `dir` (readable by nginx's master, which reads it as root).
    pub fn create(dir: &Path) -> Result<Self> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let mut req = tool("openssl")?;
        req.args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=vigie-bench"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null());
        command::run(&mut req).context("cannot make the bench's TLS certificate")?;
        Ok(Self { cert, key })
    }
}

/// Workload 10 once: ns per 256-byte TLS write of an untainted client.
pub fn writes(env: &Env<'_>) -> Result<Timed> {
    let port = super::nginx::free_port()?.to_string();
    let certificate = env.site.certificate();
    let mut server = tool("python3")?;
    server.args(["-c", SINK]).arg(&certificate.cert).arg(&certificate.key).arg(&port);
    let server =
        Guarded::spawn("TLS sink", server.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()))?;
    let mut client = tool("python3")?;
    client.args(["-c", CLIENT, &env.plan.tls_writes.to_string(), WRITE_BYTES, &port]);
    let client = Guarded::spawn(
        "TLS client",
        client.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()),
    )?;
    let result = timed(&parse(&client.finish(READY_TIMEOUT + CLIENT_SLACK)?)?);
    server.stop()?;
    result
}
