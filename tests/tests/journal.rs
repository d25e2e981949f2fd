//! The journal a real run fills: `vigie history` names who read the secret and where it went,
//! `vigie explain` tells an alert's story; a restarted agent appends to the same journal, and
//! both runs stay queryable, also while an agent runs. A read that sent nothing off the host
//! is in the history too. A journal that cannot write is reported, and detection goes on. Bad
//! queries are refused, naming what is wrong, with exit code 2.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{ensure, Context, Result};
use integration_tests::cli::{query_journal, run_vigie};
use integration_tests::full_disk::FullDisk;
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// `vigie history --json` with `args` added, parsed.
fn history(journal: &Path, args: &[&str]) -> Result<Vec<Value>> {
    let exit = query_journal(journal, &[&["history", "--json"], args].concat())?;
    let reads: Value = serde_json::from_str(&exit.stdout).with_context(|| exit.stdout.clone())?;
    Ok(reads.as_array().cloned().unwrap_or_default())
}

/// The reads of process `pid` in `reads`.
fn reads_by(reads: &[Value], pid: u32) -> Vec<&Value> {
    reads.iter().filter(|r| r.pointer("/process/pid").and_then(Value::as_u64) == Some(pid.into())).collect()
}

/// The actor reads the secret and sends it to the remote host: the alert's `event.id`.
fn exfiltrate(lab: &Lab, sensor: &Sensor, dest: SocketAddr) -> Result<(u32, String)> {
    let run = lab.actor().read(lab.secret()).tcp(dest).run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    let id = alert.pointer("/event/id").and_then(Value::as_str).context("event.id")?.to_owned();
    Ok((run.pid, id))
}

/// Stops the sensor (the journal has written everything once it has exited); every document
/// it printed.
fn stop(mut sensor: Sensor) -> Result<Vec<Value>> {
    let status = sensor.stop()?;
    ensure!(status.success(), "vigie exited with {status}");
    Ok(sensor.lines())
}

/// The `event.id`s of the `secret-read` documents among `documents`.
fn read_ids(documents: &[Value]) -> BTreeSet<String> {
    documents
        .iter()
        .filter(|d| d.pointer("/event/action").and_then(Value::as_str) == Some("secret-read"))
        .filter_map(|d| d.pointer("/event/id").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The one read of `pid` says which secret and what it sent where, in the alert `alert_id`.
fn assert_sent(reads: &[Value], pid: u32, lab: &Lab, dest: SocketAddr, alert_id: &str) -> Result<()> {
    let by_pid = reads_by(reads, pid);
    ensure!(by_pid.len() == 1, "one read by {pid}: {reads:#?}");
    let read = by_pid[0];
    ensure!(read["secret"].as_str() == lab.secret().to_str(), "{read:#}");
    ensure!(
        read.pointer("/process/executable").and_then(Value::as_str) == lab.actor_exe().to_str(),
        "{read:#}"
    );
    let sent = read["sent"].as_array().context("sent")?;
    ensure!(sent.len() == 1, "one transfer: {read:#}");
    ensure!(sent[0]["destination"].as_str() == Some(dest.to_string().as_str()), "{read:#}");
    ensure!(sent[0]["alert"].as_str() == Some(alert_id), "{read:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn history_and_explain_tell_what_was_read_and_sent_across_a_restart() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let dest = lab.remote().tcp_v4();
    let sensor = lab.sensor()?;
    let (first, first_alert) = exfiltrate(&lab, &sensor, dest)?;
    let printed = stop(sensor)?;

    let reads = history(lab.journal(), &[])?;
    assert_sent(&reads, first, &lab, dest, &first_alert)?;
    let journaled: BTreeSet<String> =
        reads.iter().filter_map(|r| r["event_id"].as_str().map(str::to_owned)).collect();
    ensure!(journaled == read_ids(&printed), "the journal has the reads the output got: {journaled:?}");
    let table = query_journal(lab.journal(), &["history"])?.stdout;
    let row = table.lines().find(|l| l.contains(&format!(" {first} "))).context(table.clone())?;
    for expected in [lab.secret().to_str().unwrap_or_default(), &dest.to_string(), &first_alert] {
        ensure!(row.contains(expected), "the row names {expected}: {table}");
    }

    let story = query_journal(lab.journal(), &["explain", "--json", &first_alert])?.stdout;
    let story: Value = serde_json::from_str(&story).context(story)?;
    let steps: Vec<(&str, Option<u64>)> = story["timeline"]
        .as_array()
        .context("timeline")?
        .iter()
        .map(|s| (s["kind"].as_str().unwrap_or(""), s.pointer("/process/pid").and_then(Value::as_u64)))
        .collect();
    ensure!(steps.first() == Some(&("read", Some(first.into()))), "the read comes first: {story:#}");
    ensure!(steps.contains(&("connect", Some(first.into()))), "then the connect: {story:#}");
    ensure!(story["destination"].as_str() == Some(dest.to_string().as_str()), "{story:#}");
    let reached = |sink: &str| {
        story["timeline"].as_array().into_iter().flatten().any(|s| {
            s["kind"] == "delivered"
                && s["what"].as_str().is_some_and(|what| what.ends_with(&format!("sink {sink}")))
        })
    };
    ensure!(reached("stdout"), "the sinks it reached end the story: {story:#}");
    let timeline = query_journal(lab.journal(), &["explain", &first_alert])?.stdout;
    ensure!(
        timeline.contains("read") && timeline.contains("connect") && timeline.contains(&dest.to_string()),
        "{timeline}"
    );

    // Restarted: the first run stays readable while the second writes, and its events append.
    let sensor = lab.sensor()?;
    assert_sent(&history(lab.journal(), &[])?, first, &lab, dest, &first_alert)?;
    let (second, second_alert) = exfiltrate(&lab, &sensor, dest)?;
    stop(sensor)?;
    let reads = history(lab.journal(), &["--secret", lab.secret().to_str().unwrap_or_default()])?;
    assert_sent(&reads, first, &lab, dest, &first_alert)?;
    assert_sent(&reads, second, &lab, dest, &second_alert)?;
    let run_of = |id: &str| id.rsplit_once('-').map(|(run, _)| run.to_owned());
    ensure!(run_of(&first_alert) != run_of(&second_alert), "two runs: {first_alert} {second_alert}");
    let by_process = history(lab.journal(), &["--process", &second.to_string()])?;
    ensure!(by_process.len() == 1, "--process {second}: {by_process:#?}");
    query_journal(lab.journal(), &["explain", &second_alert])?;

    let unknown = run_vigie(
        &[
            OsStr::new("explain"),
            OsStr::new("--journal"),
            lab.journal().as_os_str(),
            OsStr::new("no-such-id"),
        ],
        None,
    )?;
    ensure!(unknown.code == Some(2) && unknown.stderr.contains("no-such-id"), "{unknown:#?}");
    ensure!(!unknown.panicked(), "{unknown:#?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_read_that_sent_nothing_off_the_host_is_in_the_history() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;

    let run = lab.actor().read(lab.secret()).tcp(listener.local_addr()?).run()?;

    // The sensor saw the read, and stayed silent about the loopback connect.
    sensor.expect(alert::is_secret_read_by(run.pid), ALERT_TIMEOUT)?;
    lab.assert_no_alert_for(&sensor, run.pid)?;
    stop(sensor)?;
    let reads = history(lab.journal(), &["--since", "1h"])?;
    let read = reads_by(&reads, run.pid);
    ensure!(read.len() == 1, "one read by {}: {reads:#?}", run.pid);
    ensure!(read[0]["sent"].as_array().is_some_and(Vec::is_empty), "nothing sent: {:#}", read[0]);
    ensure!(read[0]["secret"].as_str() == lab.secret().to_str(), "{:#}", read[0]);
    Ok(())
}

/// An allowed reader's read taints nothing and raises nothing, and is in the history all the
/// same, its way in named `allowed`: who read a secret, whether or not it was allowed to.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_allowed_readers_read_is_in_the_history() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor_with(&[OsStr::new("--allow-reader"), lab.actor_exe().as_os_str()])?;

    let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;

    sensor.expect(alert::is_allowed_read_by(run.pid), ALERT_TIMEOUT)?;
    lab.assert_no_alert_for(&sensor, run.pid)?;
    stop(sensor)?;
    let reads = history(lab.journal(), &["--secret", lab.secret().to_str().context("path")?])?;
    let read = reads_by(&reads, run.pid);
    ensure!(read.len() == 1, "one read by {}: {reads:#?}", run.pid);
    ensure!(read[0].pointer("/via/kind").and_then(Value::as_str) == Some("allowed"), "{:#}", read[0]);
    ensure!(read[0]["sent"].as_array().is_some_and(Vec::is_empty), "no alert: {:#}", read[0]);
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_journal_on_a_full_disk_is_reported_and_detection_goes_on() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let disk = FullDisk::mount(&lab.dir().join("full"))?;
    let journal = disk.dir().join("journal.db");
    let mut sensor = lab.sensor_with(&[OsStr::new("--journal"), journal.as_os_str()])?;
    disk.fill()?;
    let dest = lab.remote().tcp_v4();

    exfiltrate(&lab, &sensor, dest)?;

    let degraded = sensor.expect(|line| alert::is_state(line, "journal-degraded"), ALERT_TIMEOUT)?;
    let failed = degraded.pointer("/vigie/journal/writes_failed").and_then(Value::as_u64);
    ensure!(failed.is_some_and(|n| n > 0), "{degraded:#}");
    let error = degraded.pointer("/vigie/journal/error").and_then(Value::as_str).unwrap_or_default();
    ensure!(error.contains("full"), "{degraded:#}");
    ensure!(sensor.stop()?.success(), "vigie stops");
    let stopped = sensor.expect(alert::is_sensor_stopped, ALERT_TIMEOUT)?;
    let counted = stopped.pointer("/vigie/counters/journal_writes_failed").and_then(Value::as_u64);
    ensure!(counted >= failed, "{stopped:#}");
    Ok(())
}

#[test]
fn a_missing_journal_and_a_bad_since_are_refused_with_exit_code_2() -> Result<()> {
    let missing = run_vigie(&["history", "--journal", "/nonexistent/vigie/journal.db"], None)?;
    ensure!(
        missing.code == Some(2) && missing.stderr.contains("/nonexistent/vigie/journal.db"),
        "{missing:#?}"
    );
    let since = run_vigie(&["history", "--journal", "/nonexistent/j.db", "--since", "yesterday"], None)?;
    ensure!(since.code == Some(2) && since.stderr.contains("yesterday"), "{since:#?}");
    let explain = run_vigie(&["explain", "--journal", "/nonexistent/vigie/journal.db", "some-id"], None)?;
    ensure!(explain.code == Some(2) && explain.stderr.contains("does not exist"), "{explain:#?}");
    for exit in [missing, since, explain] {
        ensure!(!exit.panicked(), "{exit:#?}");
    }
    Ok(())
}
