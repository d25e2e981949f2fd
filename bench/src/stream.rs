//! Workload 4: a tainted process streaming to the namespace host in fixed-size writes.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::bound::{nanos, Bound};
use crate::secret;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(secret: &Path, addr: SocketAddr, bytes: u64, chunk: usize, limit: Duration) -> Result<Value> {
    ensure!(chunk > 0, "chunk must be at least one byte");
    secret::taint(secret)?;
    let buf = vec![0x5a_u8; chunk];
    let writes = bytes.div_ceil(chunk as u64);

    let bound = Bound::start(writes, limit);
    let mut stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).with_context(|| format!("connect to {addr}"))?;
    stream.set_write_timeout(Some(limit))?;
    stream.set_read_timeout(Some(limit))?;
    let mut sent = 0_u64;
    let mut done = 0;
    while bound.allows(done) {
        stream.write_all(&buf).context("stream to the sink")?;
        sent += chunk as u64;
        done += 1;
    }
    stream.shutdown(Shutdown::Write)?;
    let mut ack = [0; 8];
    stream.read_exact(&mut ack).context("the sink's byte count")?;
    let elapsed = bound.elapsed();
    let received = u64::from_le_bytes(ack);
    ensure!(received == sent, "sent {sent} bytes but the sink counted {received}");
    Ok(json!({ "bytes": sent, "elapsed_ns": nanos(elapsed) }))
}
