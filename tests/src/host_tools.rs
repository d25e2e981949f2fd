//! The host's own programs (sh, cp, tar, gzip, base64, curl), run the way someone at a shell
//! would run them, for the tests whose point is that real tools are followed too.

use std::ffi::OsStr;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};

/// Runs `program ARGS` to completion and returns its pid once it exited 0.
///
/// # Errors
/// When it cannot start or exits non-zero; the error quotes its stderr.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<u32> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {program}"))?;
    let pid = child.id();
    let output = child.wait_with_output().with_context(|| format!("wait for {program}"))?;
    ensure!(
        output.status.success(),
        "{program} {:?} failed ({}): {}",
        args.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(pid)
}

/// `sh -c SCRIPT`; returns the shell's pid.
///
/// # Errors
/// See [`run`].
pub fn sh(script: &str) -> Result<u32> {
    run("sh", &["-c", script])
}

/// `curl` posting the file at `path` to `dest`; returns curl's pid.
///
/// # Errors
/// See [`run`].
pub fn curl_upload(path: &Path, dest: SocketAddr) -> Result<u32> {
    let data = format!("@{}", path.display());
    run("curl", &["-sS", "-o", "/dev/null", "--max-time", "10", "--data-binary", &data, &url(dest)])
}

/// `http://IP:PORT/`, with the brackets an IPv6 address needs.
#[must_use]
pub fn url(dest: SocketAddr) -> String {
    format!("http://{dest}/")
}

/// Quotes `path` for a `sh -c` script (single quotes; our paths never contain one).
///
/// # Panics
/// When `path` contains a single quote, which no test path does.
#[must_use]
pub fn quoted(path: &Path) -> String {
    let text = path.to_string_lossy();
    assert!(!text.contains('\''), "{text} cannot be single-quoted");
    format!("'{text}'")
}

/// Whether `executable` (a `process.executable` value) is the program `name`.
#[must_use]
pub fn is_program(executable: Option<&str>, name: &str) -> bool {
    executable.is_some_and(|exe| Path::new(exe).file_name() == Some(OsStr::new(name)))
}

/// A child process killed (and reaped) when this is dropped: a test that gives up must not leave
/// it behind, holding the test's output open.
#[derive(Debug)]
pub struct KilledOnDrop(pub std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python running `script`, and the one line it prints first (printed before it holds anything
/// tainted, so reading it is safe).
///
/// # Errors
/// When python3 cannot start or says nothing.
pub fn python_reporting_a_line(script: &str) -> Result<(std::process::Child, String)> {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start python3")?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().context("stdout")?),
        &mut line,
    )?;
    Ok((child, line))
}

/// A python listener on `listen` (any port) that forwards the first bytes one connection
/// brings to `forward_to`, then exits; and the address it listens on.
///
/// # Errors
/// When python3 cannot start or does not report its port.
pub fn python_relay(listen: IpAddr, forward_to: SocketAddr) -> Result<(std::process::Child, SocketAddr)> {
    let relay = format!(
        "import socket\n\
         l = socket.create_server(('{listen}', 0))\n\
         print(l.getsockname()[1], flush=True)\n\
         c, _ = l.accept()\n\
         data = c.recv(65536)\n\
         socket.create_connection(('{ip}', {port}), timeout=5).sendall(data)\n",
        ip = forward_to.ip(),
        port = forward_to.port()
    );
    let (relay, port) = python_reporting_a_line(&relay)?;
    let port = port.trim().parse().with_context(|| format!("the relay's port: {port:?}"))?;
    Ok((relay, SocketAddr::new(listen, port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_quoting() {
        assert_eq!(url("10.0.0.1:80".parse().unwrap()), "http://10.0.0.1:80/");
        assert_eq!(url("[fd00::2]:80".parse().unwrap()), "http://[fd00::2]:80/");
        assert_eq!(quoted(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert!(is_program(Some("/usr/bin/curl"), "curl"));
        assert!(!is_program(Some("/usr/bin/curlx"), "curl") && !is_program(None, "curl"));
    }
}
