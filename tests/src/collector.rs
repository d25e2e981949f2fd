//! An HTTP collector on loopback for webhook sinks: Python's `http.server`, answering every
//! POST of a JSON array with 200 and appending each document, as one line, to a file the test
//! reads. It can be started late, on a port chosen before, to play a collector that was down.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::host_tools::{python_reporting_a_line, KilledOnDrop};

/// How often a wait looks at what arrived.
const POLL: Duration = Duration::from_millis(100);

/// A loopback port nothing listens on now.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// A loopback port held for a collector that is down: bound (so no other test is given it)
/// but not listening (so a connection to it is refused, as to a collector that is down).
pub struct ReservedPort(socket2::Socket);

impl ReservedPort {
    /// Binds a port with `SO_REUSEADDR`, which the collector's own bind sets too.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn new() -> Result<Self> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
        Ok(Self(socket))
    }

    /// The port.
    ///
    /// # Errors
    /// When the socket has no address.
    pub fn port(&self) -> Result<u16> {
        self.0.local_addr()?.as_socket().map(|a| a.port()).context("the reserved port")
    }
}

/// The running collector.
pub struct Collector {
    _server: KilledOnDrop,
    received: PathBuf,
    port: u16,
}

impl Collector {
    /// Starts the collector on the port `reserved` held, appending what it receives to
    /// `received`.
    ///
    /// # Errors
    /// When python3 cannot start or bind the port.
    pub fn start(reserved: ReservedPort, received: &Path) -> Result<Self> {
        let port = reserved.port()?;
        let script = format!(
            "import http.server, json\n\
             out = open({path:?}, 'a')\n\
             class Handler(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_POST(self):\n\
             \x20       body = self.rfile.read(int(self.headers['Content-Length']))\n\
             \x20       for document in json.loads(body):\n\
             \x20           out.write(json.dumps(document) + '\\n')\n\
             \x20       out.flush()\n\
             \x20       self.send_response(200)\n\
             \x20       self.send_header('Content-Length', '0')\n\
             \x20       self.end_headers()\n\
             \x20   def log_message(self, *args):\n\
             \x20       pass\n\
             server = http.server.HTTPServer(('127.0.0.1', {port}), Handler)\n\
             print('ready', flush=True)\n\
             server.serve_forever()\n",
            path = received.display().to_string(),
        );
        let (server, line) = python_reporting_a_line(&script)?;
        drop(reserved);
        let server = KilledOnDrop(server);
        ensure!(line.trim() == "ready", "the collector did not start: {line:?}");
        Ok(Self { _server: server, received: received.to_owned(), port })
    }

    /// The URL documents are posted to.
    #[must_use]
    pub fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}/ingest")
    }

    /// Where it listens.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Every document received so far, in the order received.
    ///
    /// # Errors
    /// When a received line is not JSON.
    pub fn documents(&self) -> Result<Vec<Value>> {
        let text = fs::read_to_string(&self.received).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).context("a received document")).collect()
    }

    /// Waits until what was received satisfies `done`, and returns it.
    ///
    /// # Errors
    /// When it does not within `timeout`.
    pub fn wait_for(&self, done: impl Fn(&[Value]) -> bool, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let documents = self.documents()?;
            if done(&documents) {
                return Ok(documents);
            }
            if Instant::now() > deadline {
                let ids: Vec<_> = documents.iter().filter_map(event_id).collect();
                bail!("the collector did not get what was expected in {timeout:?}; it got {ids:?}");
            }
            std::thread::sleep(POLL);
        }
    }
}

/// `event.id` of a document.
#[must_use]
pub fn event_id(document: &Value) -> Option<&str> {
    document.pointer("/event/id").and_then(Value::as_str)
}
