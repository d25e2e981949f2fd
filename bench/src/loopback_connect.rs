//! Workload 3: TCP connect + close to a loopback listener, by a process that never read a
//! secret: the cost every untainted connection pays.
//!
//! One thread does everything: the handshake completes in the kernel without `accept()`,
//! and the loop empties the accept queue itself every few connects. A separate accepting
//! thread would put a wake-up and a context switch into every iteration, and on a busy
//! machine the scheduler, not the connect, would be what is measured.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::bound::{nanos, thread_cpu_ns, Bound};

const WARM_UP: u64 = 200;
/// Listen backlog; the accept queue is emptied long before it fills.
const BACKLOG: i32 = 1024;
const DRAIN_EVERY: u64 = 64;

pub fn run(iterations: u64, limit: Duration) -> Result<Value> {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    listener.bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))?;
    listener.listen(BACKLOG).context("listen on loopback")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?.as_socket().context("the listener has no inet address")?;

    for done in 1..=WARM_UP {
        connect_once(addr)?;
        if done.is_multiple_of(DRAIN_EVERY) {
            drain(&listener)?;
        }
    }
    drain(&listener)?;
    let cpu_before = thread_cpu_ns();
    let bound = Bound::start(iterations, limit);
    let mut done = 0;
    while bound.allows(done) {
        connect_once(addr)?;
        done += 1;
        if done.is_multiple_of(DRAIN_EVERY) {
            drain(&listener)?;
        }
    }
    let elapsed = bound.elapsed();
    let cpu_ns = cpu_before.zip(thread_cpu_ns()).map(|(before, after)| after.saturating_sub(before));
    Ok(json!({ "iterations": done, "elapsed_ns": nanos(elapsed), "cpu_ns": cpu_ns }))
}

fn connect_once(addr: SocketAddr) -> Result<()> {
    let stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    // Close with a reset: 100k closes would otherwise leave 100k TIME_WAIT sockets and
    // make ephemeral port search, not the connect itself, what is measured.
    SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    Ok(())
}

/// Accepts (and drops) every connection waiting in the queue.
fn drain(listener: &Socket) -> Result<()> {
    loop {
        match listener.accept() {
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == ErrorKind::ConnectionAborted => {}
            Err(error) => return Err(error).context("accept on loopback"),
        }
    }
}
