//! `vigie-actor`: a deterministic stand-in for a credential thief, driven by the integration tests.
//!
//! ```text
//! vigie-actor [--read PATH]... [--fork] [--tcp IP:PORT]... [--udp IP:PORT]...
//! vigie-actor listen PORT
//! ```
//!
//! The first form reads each PATH fully (the bytes are discarded, never printed), then — in a
//! forked child when `--fork` is given — connects to each TCP destination, writes a few bytes and
//! closes, and sends one UDP datagram to each UDP destination. It prints
//! `{"pid":X,"child_pid":Y|null}` and exits 0. The second form is the far end that runs inside a
//! test's network namespace: it binds TCP and UDP on `0.0.0.0:PORT` and `[::]:PORT`, prints
//! `ready`, and drains whatever arrives until killed.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

const PAYLOAD: &[u8] = b"vigie-actor\n";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let outcome = if args.first().is_some_and(|a| a == "listen") {
        listen(&args[1..])
    } else {
        Plan::parse(&args).and_then(|plan| plan.carry_out())
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vigie-actor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What one run of the actor does, in order.
#[derive(Debug, Default)]
struct Plan {
    reads: Vec<PathBuf>,
    fork: bool,
    tcp: Vec<SocketAddr>,
    udp: Vec<SocketAddr>,
}

impl Plan {
    fn parse(args: &[OsString]) -> Result<Self> {
        let mut plan = Plan::default();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let flag = flag.to_string_lossy();
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_ref() {
                "--read" => plan.reads.push(PathBuf::from(value()?)),
                "--fork" => plan.fork = true,
                "--tcp" => plan.tcp.push(socket_addr(value()?)?),
                "--udp" => plan.udp.push(socket_addr(value()?)?),
                other => bail!("unknown argument {other:?}"),
            }
        }
        Ok(plan)
    }

    fn carry_out(&self) -> Result<()> {
        for path in &self.reads {
            let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
            io::copy(&mut file, &mut io::sink()).with_context(|| format!("read {}", path.display()))?;
        }
        let child_pid = if self.fork {
            Some(in_forked_child(|| self.send())?)
        } else {
            self.send()?;
            None
        };
        println!("{}", serde_json::json!({ "pid": std::process::id(), "child_pid": child_pid }));
        Ok(())
    }

    fn send(&self) -> Result<()> {
        for &dest in &self.tcp {
            let mut stream = TcpStream::connect_timeout(&dest, CONNECT_TIMEOUT)
                .with_context(|| format!("connect to {dest}"))?;
            stream.write_all(PAYLOAD).with_context(|| format!("write to {dest}"))?;
        }
        for &dest in &self.udp {
            let local: SocketAddr = match dest {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let sent = UdpSocket::bind(local)
                .and_then(|socket| socket.send_to(PAYLOAD, dest))
                .with_context(|| format!("send a datagram to {dest}"))?;
            ensure!(sent == PAYLOAD.len(), "short datagram to {dest}");
        }
        Ok(())
    }
}

fn socket_addr(text: &OsString) -> Result<SocketAddr> {
    let text = text.to_string_lossy();
    text.parse().with_context(|| format!("{text:?} is not IP:PORT (IPv6 as [addr]:port)"))
}

/// Runs `work` in a forked child, waits for it, and returns its pid once it exited 0.
fn in_forked_child(work: impl FnOnce() -> Result<()>) -> Result<u32> {
    // SAFETY: the actor is single-threaded at this point, so the child inherits no lock
    // held by another thread; it leaves with `_exit` and never returns into the parent's code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error()).context("fork");
    }
    if pid == 0 {
        let code = match work() {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("vigie-actor (child): {error:#}");
                1
            }
        };
        // SAFETY: `_exit` ends the child without running the parent's atexit handlers twice.
        unsafe { libc::_exit(code) }
    }
    let mut status = 0;
    // SAFETY: `pid` is our own child and `status` is a valid place to write its status.
    if unsafe { libc::waitpid(pid, &raw mut status, 0) } < 0 {
        return Err(io::Error::last_os_error()).context("wait for the forked child");
    }
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "forked child {pid} failed (wait status {status:#x})"
    );
    Ok(u32::try_from(pid)?)
}

/// Binds TCP and UDP on both families, says `ready`, then drains traffic until killed.
fn listen(args: &[OsString]) -> Result<()> {
    let [port] = args else {
        bail!("usage: vigie-actor listen PORT");
    };
    let port: u16 = port.to_string_lossy().parse().context("PORT must be a number from 0 to 65535")?;
    let addrs: [SocketAddr; 2] = [(Ipv4Addr::UNSPECIFIED, port).into(), (Ipv6Addr::UNSPECIFIED, port).into()];
    let mut workers = Vec::new();
    for addr in addrs {
        let tcp: TcpListener = bound(addr, Type::STREAM, Protocol::TCP)?.into();
        let udp: UdpSocket = bound(addr, Type::DGRAM, Protocol::UDP)?.into();
        workers.push(thread::spawn(move || accept_forever(&tcp)));
        workers.push(thread::spawn(move || drain_datagrams(&udp)));
    }
    println!("ready");
    for worker in workers {
        let _ = worker.join();
    }
    bail!("all listeners stopped")
}

fn bound(addr: SocketAddr, kind: Type, protocol: Protocol) -> Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if addr.is_ipv6() {
        // Without it `[::]:PORT` would also claim the IPv4 port bound beside it.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into()).with_context(|| format!("bind {addr}"))?;
    if kind == Type::STREAM {
        socket.listen(128)?;
    }
    Ok(socket)
}

fn accept_forever(listener: &TcpListener) {
    for mut stream in listener.incoming().flatten() {
        thread::spawn(move || io::copy(&mut stream, &mut io::sink()));
    }
}

fn drain_datagrams(socket: &UdpSocket) {
    let mut buf = [0u8; 2048];
    while socket.recv_from(&mut buf).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<OsString> {
        text.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn parses_every_flag_in_order() {
        let plan =
            Plan::parse(&args("--read /a --fork --tcp 10.0.0.1:1 --udp [fd00::1]:2 --read /b")).unwrap();
        assert_eq!(plan.reads, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert!(plan.fork);
        assert_eq!(plan.tcp, ["10.0.0.1:1".parse::<SocketAddr>().unwrap()]);
        assert_eq!(plan.udp, ["[fd00::1]:2".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn rejects_unknown_flags_and_missing_values() {
        assert!(Plan::parse(&args("--bogus")).is_err());
        assert!(Plan::parse(&args("--tcp")).is_err());
        assert!(Plan::parse(&args("--tcp fd00::1:2")).is_err());
    }
}
