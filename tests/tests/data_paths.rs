//! Descriptors and channels a syscall-table sensor used to miss: a descriptor opened before the
//! agent, one passed in a datagram, unix datagrams sent to a path, loopback relays, tmpfs.
//! The page cache backend sees the data being read, whatever the descriptor and however it was
//! obtained; the syscall backend (run by `cargo xtask test` as a second pass) must see them too.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use integration_tests::{actor_exe, alert, host_tools, Lab, ALERT_TIMEOUT};

/// Python run with its stdin a pipe the test writes to, and nothing read back from it.
fn python_waiting_for_a_line(script: &str) -> Result<std::process::Child> {
    Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start python3")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_descriptor_opened_before_the_sensor_started_is_seen_when_read() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let remote = lab.remote().tcp_v4();
    let script = format!(
        "import socket, sys\n\
         f = open({secret:?}, 'rb')\n\
         sys.stdin.readline()\n\
         f.read()\n\
         socket.create_connection(('{ip}', {port}), timeout=5).close()\n",
        secret = lab.secret().display().to_string(),
        ip = remote.ip(),
        port = remote.port()
    );
    let mut holder = python_waiting_for_a_line(&script)?;
    // The descriptor exists before any program is loaded.
    let sensor = lab.sensor()?;
    holder.stdin.take().context("stdin")?.write_all(b"go\n")?;
    let status = holder.wait()?;
    anyhow::ensure!(status.success(), "the holder failed: {status}");
    let alert = sensor.expect(alert::is_exfiltration_by(holder.id()), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_descriptor_passed_in_a_zero_byte_datagram_is_seen_when_read() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let remote = lab.remote().tcp_v4();
    // The parent opens but never reads; the child gets the descriptor with SCM_RIGHTS in a
    // datagram of no bytes, reads it and connects.
    let script = format!(
        "import array, os, socket\n\
         a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         pid = os.fork()\n\
         if pid == 0:\n\
         \x20   _, fds, _, _ = socket.recv_fds(b, 1, 1)\n\
         \x20   os.read(fds[0], 4096)\n\
         \x20   socket.create_connection(('{ip}', {port}), timeout=5).close()\n\
         \x20   print(os.getpid(), flush=True)\n\
         \x20   os._exit(0)\n\
         fd = os.open({secret:?}, os.O_RDONLY)\n\
         a.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd]))])\n\
         os.waitpid(pid, 0)\n",
        secret = lab.secret().display().to_string(),
        ip = remote.ip(),
        port = remote.port()
    );
    let parent = host_tools::run("python3", &["-c", &script])?;
    let alert = sensor.expect(alert::is_exfiltration, ALERT_TIMEOUT)?;
    assert_eq!(alert::parent_pid(&alert), Some(parent), "the child that read it: {alert:#}");
    assert_eq!(alert::origin_pid(&alert), alert::process_pid(&alert), "it read the secret itself: {alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_datagram_sent_to_a_unix_path_taints_its_receiver() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let remote = lab.remote().tcp_v4();
    let path = lab.dir().join("drop.sock");
    let receiver = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.bind({path:?})\n\
         print('bound', flush=True)\n\
         s.recv(65536)\n\
         socket.create_connection(('{ip}', {port}), timeout=5).close()\n",
        path = path.display().to_string(),
        ip = remote.ip(),
        port = remote.port()
    );
    // Its one line says it is bound.
    let (mut receiver, _bound) = host_tools::python_reporting_a_line(&receiver)?;
    let sender = format!(
        "import socket\n\
         data = open({secret:?}, 'rb').read()\n\
         socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(data, {path:?})\n",
        secret = lab.secret().display().to_string(),
        path = path.display().to_string()
    );
    let sender = host_tools::run("python3", &["-c", &sender])?;
    let status = receiver.wait()?;
    anyhow::ensure!(status.success(), "the receiver failed: {status}");
    let alert = sensor.expect(alert::is_exfiltration_by(receiver.id()), ALERT_TIMEOUT)?;
    assert_eq!(alert::origin_pid(&alert), Some(sender), "{alert:#}");
    assert_eq!(alert::via_kind(&alert), Some("unix-socket"), "{alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_loopback_relay_taints_the_relay_and_its_upload_is_the_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let remote = lab.remote().tcp_v4();
    let (mut relay, local) = host_tools::python_relay("127.0.0.1".parse()?, remote)?;
    let sender = lab.actor().read(lab.secret()).tcp(local).run()?;
    let status = relay.wait()?;
    anyhow::ensure!(status.success(), "the relay failed: {status}");
    let alert = sensor.expect(alert::is_exfiltration_by(relay.id()), ALERT_TIMEOUT)?;
    assert_eq!(alert::origin_pid(&alert), Some(sender.pid), "{alert:#}");
    assert_eq!(alert::via_kind(&alert), Some("loopback-socket"), "{alert:#}");
    assert!(
        sensor.lines_matching(alert::is_exfiltration_by(sender.pid)).is_empty(),
        "loopback is not off the host"
    );
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_secret_on_tmpfs_is_seen_when_read() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    // shmem has no page cache: the agent watches tmpfs secrets through fanotify instead.
    let shm = tempfile::Builder::new().prefix("vigie-it-").tempdir_in("/dev/shm")?;
    let secret = shm.path().join("token");
    std::fs::write(&secret, "tmpfs-secret-for-the-test\n")?;
    let sensor = lab.sensor_with(&[std::ffi::OsStr::new("--secret"), secret.as_os_str()])?;
    let started = sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;
    assert_eq!(
        started.pointer("/vigie/tmpfs_secrets/watched").and_then(serde_json::Value::as_u64),
        Some(1),
        "{started:#}"
    );
    let run = lab.actor().read(&secret).tcp(lab.remote().tcp_v4()).run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), secret.to_str(), "{alert:#}");
    Ok(())
}
