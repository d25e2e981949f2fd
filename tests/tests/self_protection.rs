//! Self-protection: each act against the running agent — a signal, a tracer, a process
//! holding its maps, a write to its maps, a detach of its links, a program on its hooks — is
//! an `agent-tampered` alert naming who did it; a signal between two other processes, which
//! the same kernel program sees, is none.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use integration_tests::bpf_objects::{self, map_has_u32_key};
use integration_tests::cli::query_journal;
use integration_tests::host_tools::{is_program, python_reporting_a_line, sh, KilledOnDrop};
use integration_tests::{actor_exe, alert, Lab, ALERT_TIMEOUT};
use serde_json::Value;

/// How long the agent may take to see what its periodic checks look for (maps every 2 s,
/// twice in a row; fds every 3 s).
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Python that seizes (`PTRACE_SEIZE`: no signal) process `argv[1]` and holds on.
const SEIZE: &str = "import ctypes, sys, time\n\
    libc = ctypes.CDLL(None, use_errno=True)\n\
    if libc.ptrace(0x4206, int(sys.argv[1]), None, None) != 0:\n\
    \x20   raise OSError(ctypes.get_errno(), 'PTRACE_SEIZE')\n\
    print('seized', flush=True)\n\
    time.sleep(120)\n";

/// Python that attaches to process `argv[1]` (`PTRACE_ATTACH`: a `SIGSTOP`), waits for it to
/// stop, and detaches.
const ATTACH: &str = "import ctypes, os, sys\n\
    libc = ctypes.CDLL(None, use_errno=True)\n\
    pid = int(sys.argv[1])\n\
    if libc.ptrace(16, pid, None, None) != 0:\n\
    \x20   raise OSError(ctypes.get_errno(), 'PTRACE_ATTACH')\n\
    os.waitpid(pid, 0)\n\
    libc.ptrace(17, pid, None, None)\n\
    print('detached', flush=True)\n";

/// Python that opens map `argv[1]` by id (`BPF_MAP_GET_FD_BY_ID`) and holds its fd.
const HOLD_MAP: &str = "import ctypes, struct, sys, time\n\
    libc = ctypes.CDLL(None, use_errno=True)\n\
    attr = ctypes.create_string_buffer(struct.pack('III', int(sys.argv[1]), 0, 0))\n\
    fd = libc.syscall(321, 14, attr, 12)\n\
    if fd < 0:\n\
    \x20   raise OSError(ctypes.get_errno(), 'BPF_MAP_GET_FD_BY_ID')\n\
    print(fd, flush=True)\n\
    time.sleep(120)\n";

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn signals_from_another_process_name_it_and_the_stop_is_reported_as_one() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor()?;
    let agent = sensor.pid();
    let shell = sh(&format!("kill -USR1 {agent} && kill -CONT {agent}"))?;

    let mut alerts = Vec::new();
    for name in ["SIGUSR1", "SIGCONT"] {
        let found = sensor.expect(
            |line| alert::is_tampering("signal")(line) && signal_name(line) == Some(name),
            ALERT_TIMEOUT,
        )?;
        ensure!(alert::process_pid(&found) == Some(shell), "sent by the shell: {found:#}");
        ensure!(is_program(alert::process_executable(&found), "sh"), "{found:#}");
        ensure!(alert::ancestry_pids(&found).first() == Some(&std::process::id()), "{found:#}");
        ensure!(found.pointer("/user/id").and_then(Value::as_str) == Some("0"), "{found:#}");
        ensure!(alert::severity(&found) == Some(73), "{found:#}");
        ensure!(number(&found, "/vigie/tamper/thread") == Some(agent), "{found:#}");
        alerts.push(found);
    }

    let status = sensor.stop()?;
    ensure!(status.success(), "a SIGUSR1 does not end the agent: {status}");
    let lines = sensor.lines();
    let stop = lines
        .iter()
        .position(|line| alert::is_tampering("stop-signal")(line) && signal_name(line) == Some("SIGTERM"))
        .context("the stop was not reported")?;
    ensure!(alert::process_pid(&lines[stop]) == Some(std::process::id()), "{:#}", lines[stop]);
    ensure!(alert::severity(&lines[stop]) == Some(21), "a stop is low severity: {:#}", lines[stop]);
    ensure!(lines[stop..].iter().any(alert::is_sensor_stopped), "reported before sensor-stopped");
    explained_from_the_journal(&lab, &alerts[0], shell)
}

/// `vigie explain` on the journal tells the act of alert `alert`: what was done, by `actor`,
/// and that stdout took the alert.
fn explained_from_the_journal(lab: &Lab, alert: &Value, actor: u32) -> Result<()> {
    let id = alert.pointer("/event/id").and_then(Value::as_str).context("event.id")?;
    let story: Value =
        serde_json::from_str(&query_journal(lab.journal(), &["explain", "--json", id])?.stdout)?;
    assert_eq!(story["tamper"], alert["vigie"]["tamper"], "{story:#}");
    assert_eq!(number(&story, "/process/pid"), Some(actor), "{story:#}");
    assert_eq!(story["severity"], 73, "{story:#}");
    let steps: Vec<&str> =
        story["timeline"].as_array().into_iter().flatten().filter_map(|s| s["kind"].as_str()).collect();
    assert_eq!(steps, ["act", "delivered"], "{story:#}");
    let text = query_journal(lab.journal(), &["explain", id])?.stdout;
    ensure!(text.contains("signal name=SIGUSR1 number=10 sent_with=kill"), "{text}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_tracer_that_seizes_the_agent_is_named() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let (tracer, said) = python(SEIZE, sensor.pid())?;
    ensure!(said.trim() == "seized", "{said}");

    let found = sensor.expect(alert::is_tampering("ptrace"), CHECK_TIMEOUT)?;
    ensure!(alert::process_pid(&found) == Some(tracer.0.id()), "{found:#}");
    ensure!(number(&found, "/vigie/tamper/thread") == Some(sensor.pid()), "{found:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_signal_between_two_other_processes_is_seen_by_the_kernel_and_not_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let target = KilledOnDrop(Command::new("sleep").arg("60").stdin(Stdio::null()).spawn()?);
    let (tracer, said) = python(ATTACH, target.0.id())?;
    ensure!(said.trim() == "detached", "{said}");
    // The agent's signal program saw the SIGSTOP the attach sent: it marked the target as
    // traced (on the page cache backend nothing else could have: nothing is tainted, so the
    // syscall programs, which see the ptrace call itself, are not attached).
    ensure!(map_has_u32_key(sensor.pid(), "LOADER_TAMPERED", target.0.id())?, "the kernel saw no SIGSTOP");

    lab.barrier(&sensor)?;
    let tampered = sensor.lines_matching(|line| line["event"]["action"] == alert::TAMPERED);
    let about_them =
        tampered.iter().filter(|line| alert::process_pid(line).is_some_and(|pid| pid == tracer.0.id()));
    ensure!(about_them.count() == 0, "a signal the agent was not sent is none of its alerts: {tampered:#?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_process_holding_an_agent_map_is_named_once() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let secrets = bpf_objects::map_id(sensor.pid(), "SECRETS")?;
    let (holder, _) = python(HOLD_MAP, secrets)?;

    let held = |map: u32, by: u32| {
        move |line: &Value| {
            alert::is_tampering("bpf-object-held")(line)
                && number(line, "/vigie/tamper/object/id") == Some(map)
                && alert::process_pid(line) == Some(by)
        }
    };
    let found = sensor.expect(held(secrets, holder.0.id()), CHECK_TIMEOUT)?;
    ensure!(
        found.pointer("/vigie/tamper/object/name").and_then(Value::as_str) == Some("SECRETS"),
        "{found:#}"
    );
    ensure!(found.pointer("/vigie/tamper/object/kind").and_then(Value::as_str) == Some("map"), "{found:#}");

    // A second holder, reported by a later walk, which saw the first still holding its map.
    let allowed = bpf_objects::map_id(sensor.pid(), "ALLOWED_EXES")?;
    let (second, _) = python(HOLD_MAP, allowed)?;
    sensor.expect(held(allowed, second.0.id()), CHECK_TIMEOUT)?;
    ensure!(sensor.lines_matching(held(secrets, holder.0.id())).len() == 1, "a holder is reported once");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_allowed_reader_written_into_the_agent_map_is_reported_and_removed() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let allowed = bpf_objects::map_id(sensor.pid(), "ALLOWED_EXES")?;
    let before = bpf_objects::map_keys(allowed)?.len();
    // An executable identity no file has: device 1, inode 2.
    let key = "01 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00";
    bpftool(&format!("map update id {allowed} key hex {key} value hex 01"))?;
    ensure!(bpf_objects::map_keys(allowed)?.len() == before + 1, "bpftool added no entry");

    let found = sensor.expect(alert::is_tampering("map-changed"), CHECK_TIMEOUT)?;
    let map = found.pointer("/vigie/tamper/map").context("no map")?;
    ensure!(map["name"] == "ALLOWED_EXES" && map["entries_foreign"] == 1, "{found:#}");
    ensure!(found.pointer("/vigie/tamper/restored") == Some(&Value::Bool(true)), "{found:#}");
    ensure!(bpf_objects::map_keys(allowed)?.len() == before, "the foreign entry is still there");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn taint_removed_from_a_live_process_is_reported_and_put_back() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let reader = lab.actor().read(lab.secret()).sleep(Duration::from_mins(1)).spawn()?;
    sensor.expect(alert::is_secret_read_by(reader.pid), ALERT_TIMEOUT)?;
    ensure!(map_has_u32_key(sensor.pid(), "TAINTED", reader.pid)?, "the kernel did not taint the reader");
    let tainted = bpf_objects::map_id(sensor.pid(), "TAINTED")?;
    let key: Vec<String> = reader.pid.to_ne_bytes().iter().map(|b| format!("{b:02x}")).collect();
    bpftool(&format!("map delete id {tainted} key hex {}", key.join(" ")))?;

    let found = sensor.expect(alert::is_tampering("taint-removed"), CHECK_TIMEOUT)?;
    ensure!(number(&found, "/vigie/tamper/tainted_pid") == Some(reader.pid), "{found:#}");
    ensure!(found.pointer("/vigie/tamper/restored") == Some(&Value::Bool(true)), "{found:#}");
    ensure!(map_has_u32_key(sensor.pid(), "TAINTED", reader.pid)?, "the taint was not put back");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_link_of_the_agent_detached_by_bpftool_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let link = *bpf_objects::links_of_type(sensor.pid(), "cgroup")?.first().context("no cgroup link")?;
    bpftool(&format!("link detach id {link}"))?;

    let found = sensor.expect(alert::is_tampering("link-detached"), CHECK_TIMEOUT)?;
    ensure!(number(&found, "/vigie/tamper/object/id") == Some(link), "{found:#}");
    let program = found.pointer("/vigie/tamper/program/name").and_then(Value::as_str);
    ensure!(program.is_some_and(|name| name.starts_with("udp_")), "{found:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_foreign_program_on_a_hook_of_the_agent_is_named_with_its_holder() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let mut bpftrace = KilledOnDrop(
        Command::new("bpftrace")
            .args(["-e", "tracepoint:sched:sched_process_exec { @execs = count(); }"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start bpftrace (`cargo xtask bootstrap` installs it)")?,
    );
    let mut attaching = String::new();
    BufReader::new(bpftrace.0.stdout.take().context("stdout")?).read_line(&mut attaching)?;
    ensure!(attaching.starts_with("Attaching"), "bpftrace said {attaching:?}");

    let theirs = |line: &Value| {
        alert::is_tampering("foreign-program")(line) && alert::process_pid(line) == Some(bpftrace.0.id())
    };
    let found = sensor.expect(theirs, CHECK_TIMEOUT)?;
    let hook = found.pointer("/vigie/tamper/hook").and_then(Value::as_str);
    ensure!(hook == Some("tracepoint:sched_process_exec"), "{found:#}");
    ensure!(alert::process_executable(&found) == Some("/usr/bin/bpftrace"), "{found:#}");
    ensure!(number(&found, "/vigie/tamper/program/id").is_some(), "{found:#}");
    Ok(())
}

/// Python running `script` with `pid` as its argument, and its first line.
fn python(script: &str, pid: u32) -> Result<(KilledOnDrop, String)> {
    let with_argument = format!("import sys\nsys.argv = ['-', '{pid}']\n{script}");
    let (child, line) = python_reporting_a_line(&with_argument)?;
    Ok((KilledOnDrop(child), line))
}

/// `bpftool ARGS`, which must succeed.
fn bpftool(args: &str) -> Result<()> {
    let output = Command::new("bpftool").args(args.split(' ')).stdin(Stdio::null()).output()?;
    ensure!(output.status.success(), "bpftool {args}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}

fn signal_name(line: &Value) -> Option<&str> {
    line.pointer("/vigie/tamper/signal/name").and_then(Value::as_str)
}

fn number(line: &Value, pointer: &str) -> Option<u32> {
    u32::try_from(line.pointer(pointer)?.as_u64()?).ok()
}
