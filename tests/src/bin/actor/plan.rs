//! The steps of one run, parsed from the command line and carried out in order.

use std::ffi::OsString;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::{evasion, network, reach, relay, uring};

/// One thing the actor does; see the table in `main.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Read(PathBuf),
    ReadReopened(PathBuf),
    ReadOPath(PathBuf),
    ReadIa32(PathBuf),
    ReadByHandle(PathBuf),
    Mmap(PathBuf),
    ReadDirect(PathBuf),
    MapKept(PathBuf),
    UringRead(PathBuf),
    UringReadOpenat2(PathBuf),
    UringReadFixed(PathBuf),
    Fork,
    SleepMs(u64),
    Tcp(SocketAddr),
    Udp(SocketAddr),
    Dns(SocketAddr),
    UringTcp(SocketAddr),
    OpenTcp(SocketAddr),
    Send(u64),
    Sendfile(PathBuf),
    Splice(PathBuf),
    WriteTo(PathBuf),
    UringWriteTo(PathBuf),
    UnixSend(PathBuf),
    UnixListen(PathBuf),
    UnixAccept,
}

/// What one run of the actor does, in order.
#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
}

/// What earlier steps leave for later ones.
#[derive(Debug, Default)]
struct State {
    /// The bytes the last reading step got.
    data: Vec<u8>,
    /// The connection `--open-tcp` made.
    connection: Option<TcpStream>,
    /// The socket `--unix-listen` bound.
    listener: Option<UnixListener>,
}

impl Plan {
    pub fn parse(args: &[OsString]) -> Result<Self> {
        let mut steps = Vec::new();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let flag = flag.to_string_lossy();
            let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
            let step = match flag.as_ref() {
                "--read" => Step::Read(value()?.into()),
                "--read-reopened" => Step::ReadReopened(value()?.into()),
                "--read-o-path" => Step::ReadOPath(value()?.into()),
                "--read-ia32" => Step::ReadIa32(value()?.into()),
                "--read-by-handle" => Step::ReadByHandle(value()?.into()),
                "--mmap" => Step::Mmap(value()?.into()),
                "--read-direct" => Step::ReadDirect(value()?.into()),
                "--map-kept" => Step::MapKept(value()?.into()),
                "--uring-read" => Step::UringRead(value()?.into()),
                "--uring-read-openat2" => Step::UringReadOpenat2(value()?.into()),
                "--uring-read-fixed" => Step::UringReadFixed(value()?.into()),
                "--fork" => Step::Fork,
                "--sleep-ms" => Step::SleepMs(number(value()?)?),
                "--tcp" => Step::Tcp(socket_addr(value()?)?),
                "--udp" => Step::Udp(socket_addr(value()?)?),
                "--dns" => Step::Dns(socket_addr(value()?)?),
                "--uring-tcp" => Step::UringTcp(socket_addr(value()?)?),
                "--open-tcp" => Step::OpenTcp(socket_addr(value()?)?),
                "--send" => Step::Send(number(value()?)?),
                "--sendfile" => Step::Sendfile(value()?.into()),
                "--splice" => Step::Splice(value()?.into()),
                "--write-to" => Step::WriteTo(value()?.into()),
                "--uring-write-to" => Step::UringWriteTo(value()?.into()),
                "--unix-send" => Step::UnixSend(value()?.into()),
                "--unix-listen" => Step::UnixListen(value()?.into()),
                "--unix-accept" => Step::UnixAccept,
                other => bail!("unknown argument {other:?}"),
            };
            steps.push(step);
        }
        Ok(Plan { steps })
    }

    /// Carries out every step, then prints the pid line.
    pub fn carry_out(&self) -> Result<()> {
        let mut state = State::default();
        let child_pid = if let Some(fork) = self.steps.iter().position(|step| *step == Step::Fork) {
            run_steps(&self.steps[..fork], &mut state)?;
            Some(in_forked_child(|| run_steps(&self.steps[fork + 1..], &mut state))?)
        } else {
            run_steps(&self.steps, &mut state)?;
            None
        };
        println!("{}", serde_json::json!({ "pid": std::process::id(), "child_pid": child_pid }));
        Ok(())
    }
}

fn run_steps(steps: &[Step], state: &mut State) -> Result<()> {
    for step in steps {
        run_step(step, state).with_context(|| format!("step {step:?}"))?;
    }
    Ok(())
}

fn run_step(step: &Step, state: &mut State) -> Result<()> {
    match step {
        Step::Read(path) => state.data = reach::read(path)?,
        Step::ReadReopened(path) => state.data = reach::read_reopened(path)?,
        Step::ReadOPath(path) => state.data = reach::read_o_path(path)?,
        Step::ReadIa32(path) => state.data = evasion::read_ia32(path)?,
        Step::ReadByHandle(path) => state.data = evasion::read_by_handle(path)?,
        Step::Mmap(path) => state.data = reach::read_mapped(path)?,
        Step::ReadDirect(path) => state.data = reach::read_direct(path)?,
        Step::MapKept(path) => reach::map_kept(path)?,
        Step::UringRead(path) => state.data = uring::read(path, uring::Open::At)?,
        Step::UringReadOpenat2(path) => state.data = uring::read(path, uring::Open::At2)?,
        Step::UringReadFixed(path) => state.data = uring::read_fixed(path)?,
        Step::Fork => bail!("only one --fork per run"),
        Step::SleepMs(ms) => thread::sleep(Duration::from_millis(*ms)),
        Step::Tcp(dest) => network::tcp(*dest)?,
        Step::Udp(dest) => network::udp(*dest)?,
        Step::Dns(dest) => network::dns_query(*dest)?,
        Step::UringTcp(dest) => uring::connect_and_send(*dest)?,
        Step::OpenTcp(dest) => state.connection = Some(network::connect(*dest)?),
        Step::Send(bytes) => network::send(kept(state)?, *bytes)?,
        Step::Sendfile(path) => network::sendfile(kept(state)?, path)?,
        Step::Splice(path) => network::splice(kept(state)?, path)?,
        Step::WriteTo(path) => relay::write_to(path, &state.data)?,
        Step::UringWriteTo(path) => uring::write_to(path, &state.data)?,
        Step::UnixSend(path) => relay::unix_send(path, &state.data)?,
        Step::UnixListen(path) => state.listener = Some(relay::unix_listen(path)?),
        Step::UnixAccept => {
            let listener = state.listener.as_ref().context("no socket: --unix-listen must come first")?;
            state.data = relay::unix_accept(listener)?;
        }
    }
    Ok(())
}

fn kept(state: &mut State) -> Result<&mut TcpStream> {
    state.connection.as_mut().context("no connection: --open-tcp must come first")
}

fn socket_addr(text: &OsString) -> Result<SocketAddr> {
    let text = text.to_string_lossy();
    text.parse().with_context(|| format!("{text:?} is not IP:PORT (IPv6 as [addr]:port)"))
}

fn number(text: &OsString) -> Result<u64> {
    let text = text.to_string_lossy();
    text.parse().with_context(|| format!("{text:?} is not a number"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<OsString> {
        text.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn parses_every_flag_in_order() {
        let plan = Plan::parse(&args(
            "--read /a --fork --tcp 10.0.0.1:1 --udp [fd00::1]:2 --open-tcp 10.0.0.1:3 --send 9 --sleep-ms 5",
        ))
        .unwrap();
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert_eq!(
            plan.steps,
            [
                Step::Read("/a".into()),
                Step::Fork,
                Step::Tcp(addr("10.0.0.1:1")),
                Step::Udp(addr("[fd00::1]:2")),
                Step::OpenTcp(addr("10.0.0.1:3")),
                Step::Send(9),
                Step::SleepMs(5),
            ]
        );
    }

    #[test]
    fn rejects_unknown_flags_and_missing_or_bad_values() {
        assert!(Plan::parse(&args("--bogus")).is_err());
        assert!(Plan::parse(&args("--tcp")).is_err());
        assert!(Plan::parse(&args("--tcp fd00::1:2")).is_err());
        assert!(Plan::parse(&args("--send many")).is_err());
    }

    #[test]
    fn sending_without_a_kept_connection_fails() {
        let error = run_step(&Step::Send(1), &mut State::default()).unwrap_err();
        assert!(format!("{error:#}").contains("--open-tcp"), "{error:#}");
    }
}
