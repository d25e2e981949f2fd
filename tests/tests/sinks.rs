//! Sinks against real receivers on loopback: rsyslog takes alerts over UDP and TCP as RFC 5424
//! messages with the alert in structured data; a webhook collector that was down through three
//! exfiltrations and an agent restart gets every alert once it is up, in order; a spool past
//! its limit drops its oldest documents and the agent says how many; a collector that never
//! answers holds up neither alerts nor the agent's stop; a file sink rotates by size and is
//! reopened on SIGHUP without losing a line.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use integration_tests::cli::query_journal;
use integration_tests::collector::{event_id, Collector, ReservedPort};
use integration_tests::rsyslog::{self, Input, Rsyslog};
use integration_tests::{actor_exe, alert, poll, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// The SD-ID the agent's structured data has.
const SD_ID: &str = "vigie@32473";
/// How long a sink may take to deliver once its receiver is up (its backoff is at most 4 s).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);

/// `--config PATH` for a config file in the lab holding `toml`.
fn config(lab: &Lab, name: &str, toml: &str) -> Result<Vec<String>> {
    let path = lab.dir().join(name);
    fs::write(&path, toml)?;
    Ok(vec!["--config".to_owned(), path.display().to_string()])
}

/// A webhook sink posting to the collector's `port`, spooling in `spool`.
fn webhook_config(port: u16, spool: &Path, max_mb: f64) -> String {
    format!(
        "[[sink]]\ntype = \"webhook\"\nurl = \"{}\"\nspool_dir = \"{}\"\nspool_max_mb = {max_mb}\n",
        Collector::url(port),
        spool.display()
    )
}

/// An exfiltration by the actor, and its alert.
fn exfiltrate(lab: &Lab, sensor: &Sensor) -> Result<Value> {
    let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;
    sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)
}

fn id(document: &Value) -> Result<String> {
    event_id(document).map(str::to_owned).context("a document without event.id")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn rsyslog_receives_alerts_over_udp_and_tcp_as_rfc5424_with_the_alert_in_structured_data() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let rsyslog = Rsyslog::start(&lab.dir().join("rsyslog"))?;
    let sensor = lab.sensor_with(&[
        "--sink".to_owned(),
        format!("syslog+udp://{}", rsyslog.udp),
        "--sink".to_owned(),
        format!("syslog+tcp://{}", rsyslog.tcp),
    ])?;
    let alert = exfiltrate(&lab, &sensor)?;
    let alert_id = id(&alert)?;

    for input in [Input::Udp, Input::Tcp] {
        let line = rsyslog.wait_for(input, &alert_id, DELIVERY_TIMEOUT)?;
        let message = rsyslog::parse(&line).with_context(|| format!("{input:?}: {line}"))?;
        assert_eq!(message.priority, 10 * 8 + 2, "authpriv, critical: {line}");
        assert_eq!((message.app_name.as_str(), message.msg_id.as_str()), ("vigie", alert::EXFILTRATION));
        assert_eq!(message.proc_id, sensor.pid().to_string());
        assert_eq!(Some(message.timestamp.as_str()), alert["@timestamp"].as_str());
        assert_eq!(Some(message.hostname.as_str()), alert.pointer("/host/name").and_then(Value::as_str));
        let param = |name| message.param(SD_ID, name);
        assert_eq!(param("event.id"), Some(alert_id.as_str()), "{line}");
        assert_eq!(param("event.kind"), Some("alert"));
        assert_eq!(
            param("process.pid").map(str::to_owned),
            alert::process_pid(&alert).map(|p| p.to_string())
        );
        assert_eq!(param("file.path"), Some(lab.secret().to_str().context("path")?));
        assert_eq!(param("destination.port"), Some(lab.remote().port().to_string().as_str()));
        let document: Value = serde_json::from_str(&message.msg).context("MSG is the JSON document")?;
        assert_eq!(document, alert, "MSG is the alert as the output has it");
    }
    // Every message of the run is valid RFC 5424, the secret-read and sensor-started included.
    for input in [Input::Udp, Input::Tcp] {
        let lines = rsyslog.lines(input);
        ensure!(lines.len() >= 3, "{input:?}: {lines:?}");
        for line in lines {
            rsyslog::parse(&line).with_context(|| format!("{input:?}: {line}"))?;
        }
    }
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_webhook_down_through_three_alerts_and_an_agent_restart_gets_every_alert_once_in_order() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let reserved = ReservedPort::new()?;
    let port = reserved.port()?;
    let spool = lab.dir().join("spool");
    let args = config(&lab, "webhook.toml", &webhook_config(port, &spool, 64.0))?;

    let mut first = lab.sensor_with(&args)?;
    let alerts = [exfiltrate(&lab, &first)?, exfiltrate(&lab, &first)?];
    first.stop()?;
    let stopped = first.expect(alert::is_sensor_stopped, ALERT_TIMEOUT)?;
    ensure!(
        fs::read_dir(&spool)?.count() >= 5,
        "the first run's documents wait in the spool: {:?}",
        fs::read_dir(&spool)?.collect::<Vec<_>>()
    );
    let mut second = lab.sensor_with(&args)?;
    let third = exfiltrate(&lab, &second)?;
    let started_again = second.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;

    let collector = Collector::start(reserved, &lab.dir().join("received.jsonl"))?;
    let wanted = [id(&alerts[0])?, id(&alerts[1])?, id(&third)?];
    let received = collector.wait_for(
        |documents| wanted.iter().all(|w| documents.iter().any(|d| event_id(d) == Some(w))),
        DELIVERY_TIMEOUT,
    )?;
    let ids: Vec<&str> = received.iter().filter_map(event_id).collect();
    let position = |wanted: &str| ids.iter().position(|id| *id == wanted);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no document delivered twice: {ids:?}");
    let order =
        [&wanted[0], &wanted[1], &id(&stopped)?, &id(&started_again)?, &wanted[2]].map(|w| position(w));
    ensure!(order.iter().all(Option::is_some), "every document of both runs arrives: {order:?} in {ids:?}");
    ensure!(order.is_sorted(), "in the order written, across the restart: {order:?}");
    let document = received.iter().find(|d| event_id(d) == Some(&wanted[2])).context("the third alert")?;
    assert_eq!(document, &third, "the document as the output has it");
    // The journal says which sinks each alert reached: the first run's alert, the webhook too,
    // by the second run, from the spool.
    second.stop()?;
    second.expect(alert::is_sensor_stopped, ALERT_TIMEOUT)?;
    let story = query_journal(lab.journal(), &["explain", "--json", &wanted[0]])?;
    let story: Value = serde_json::from_str(&story.stdout).with_context(|| format!("{story:#?}"))?;
    let sinks: Vec<&str> = story["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|step| step["kind"] == "delivered")
        .filter_map(|step| step["what"].as_str())
        .collect();
    ensure!(
        sinks.iter().any(|what| what.contains("http://127.0.0.1")),
        "the webhook delivered it: {sinks:?}"
    );
    ensure!(sinks.iter().any(|what| what.ends_with("sink stdout")), "and stdout: {sinks:?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_full_spool_drops_its_oldest_documents_and_the_agent_says_how_many() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let reserved = ReservedPort::new()?;
    let port = reserved.port()?;
    let spool = lab.dir().join("spool");
    // About two alerts' worth: three exfiltrations do not fit, what comes once the collector
    // is up and takes each document as it comes does.
    let args = config(&lab, "webhook.toml", &webhook_config(port, &spool, 0.008))?;
    let sensor = lab.sensor_with(&args)?;
    for _ in 0..3 {
        exfiltrate(&lab, &sensor)?;
    }
    let started = sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;

    let collector = Collector::start(reserved, &lab.dir().join("received.jsonl"))?;
    let recovered = sensor.expect(|l| alert::is_state(l, "output-degraded"), DELIVERY_TIMEOUT)?;
    assert_eq!(
        recovered.pointer("/vigie/output/state").and_then(Value::as_str),
        Some("recovered"),
        "{recovered}"
    );
    assert_eq!(
        recovered.pointer("/vigie/output/name").and_then(Value::as_str),
        Some(Collector::url(port).as_str())
    );
    let dropped =
        recovered.pointer("/vigie/output/documents_dropped").and_then(Value::as_u64).context("dropped")?;
    let recovered_id = id(&recovered)?;
    let received = collector
        .wait_for(|d| d.iter().any(|d| event_id(d) == Some(&recovered_id)), DELIVERY_TIMEOUT)
        .with_context(|| format!("waiting for {recovered_id}; stderr {}", sensor.stderr()))?;

    let received: Vec<&str> = received.iter().filter_map(event_id).collect();
    let written: Vec<Value> =
        sensor.lines().into_iter().take_while(|l| event_id(l) != Some(&recovered_id)).collect();
    let written: Vec<&str> = written.iter().filter_map(event_id).collect();
    let story = format!("received {received:?}, written {written:?}, stderr {}", sensor.stderr());
    ensure!(!received.contains(&id(&started)?.as_str()), "the oldest, sensor-started, was dropped: {story}");
    let kept =
        written.iter().position(|w| received.contains(w)).context("none of the written documents arrived")?;
    assert_eq!(&received[..written.len() - kept], &written[kept..], "the newest were kept, in order");
    assert_eq!(
        dropped,
        kept as u64,
        "the count dropped is the count that never arrived, of {}",
        written.len()
    );
    let failing = sensor.stderr();
    ensure!(failing.contains("\"state\":\"failing\"") && failing.contains("Connection refused"), "{failing}");
    Ok(())
}

/// The `event.id`s of the JSON lines of `path`, and whether every line is JSON.
fn ids_in(path: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .map(|line| id(&serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?))
        .collect()
}

/// What the files `alerts.jsonl*` in `dir` hold, together.
fn in_sink_files(dir: &Path) -> Result<String> {
    let mut text = String::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("alerts.jsonl")) {
            match fs::read_to_string(&path) {
                Ok(held) => text.push_str(&held),
                // Rotated since the directory was listed: read at its new name next time.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(text)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_file_sink_rotates_by_size_and_reopens_on_a_hangup_losing_no_line() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let path = lab.dir().join("alerts.jsonl");
    let max_bytes = 8_000;
    // Room for every document: the alerts, their reads, and the signals the test sends the
    // agent (each an `agent-tampered` alert).
    let keep = 50;
    let toml = format!(
        "[[sink]]\ntype = \"file\"\npath = \"{}\"\nmax_bytes = {max_bytes}\nkeep = {keep}\n",
        path.display()
    );
    let mut sensor = lab.sensor_with(&config(&lab, "file.toml", &toml)?)?;
    exfiltrate(&lab, &sensor)?;
    let second = id(&exfiltrate(&lab, &sensor)?)?;
    // Moved once the sink has written the alert the output showed: the move is logrotate's,
    // between the sink's lines, not in the middle of a rotation of the sink's own.
    let dir = lab.dir().to_owned();
    poll::until(
        "the second alert in the file sink",
        ALERT_TIMEOUT,
        || in_sink_files(&dir),
        |text| text.contains(&second),
    )?;
    let moved = lab.dir().join("alerts.jsonl.moved");
    fs::rename(&path, &moved)?;
    sensor.signal(libc::SIGHUP)?;
    sensor.expect(|l| alert::is_state(l, "config-reloaded"), ALERT_TIMEOUT)?;
    let last = exfiltrate(&lab, &sensor)?;
    // Stopped, so that no document comes between reading the files and the output.
    sensor.stop()?;
    sensor.expect(alert::is_sensor_stopped, ALERT_TIMEOUT)?;

    let numbered = |n: usize| lab.dir().join(format!("alerts.jsonl.{n}"));
    let rotated = (1..=keep).take_while(|&n| numbered(n).exists()).count();
    ensure!(rotated >= 1, "{max_bytes} bytes hold fewer documents than two alerts and their reads");
    let files: Vec<_> = (1..=rotated).map(numbered).chain([moved.clone(), path.clone()]).collect();
    let sequence = |id: &String| id.rsplit('-').next().and_then(|n| n.parse::<u64>().ok());
    let mut in_files = Vec::new();
    for file in &files {
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(file)?.permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        let ids = ids_in(file)?;
        ensure!(
            ids.len() == 1 || fs::metadata(file)?.len() <= max_bytes,
            "{} is over its limit",
            file.display()
        );
        ensure!(ids.is_sorted_by_key(sequence), "{} holds its lines in order: {ids:?}", file.display());
        in_files.extend(ids);
    }
    let mut written: Vec<String> = sensor.lines().iter().filter_map(event_id).map(str::to_owned).collect();
    in_files.sort_by_key(sequence);
    written.sort_by_key(sequence);
    assert_eq!(in_files, written, "every document once, across rotations and the hangup");
    ensure!(!ids_in(&moved)?.contains(&id(&last)?), "the alert after the hangup is not in the moved file");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_collector_that_never_answers_holds_up_neither_alerts_nor_the_stop() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    // Connections are taken into its backlog and never answered: each POST waits its timeout.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = black_hole.local_addr()?.port();
    let args = config(&lab, "webhook.toml", &webhook_config(port, &lab.dir().join("spool"), 64.0))?;
    let mut sensor = lab.sensor_with(&args)?;
    exfiltrate(&lab, &sensor)?;
    exfiltrate(&lab, &sensor)?;

    let status = sensor.stop()?;
    ensure!(status.success(), "vigie stopped on SIGTERM, its sink still waiting: {status}");
    let stopped = sensor.expect(alert::is_sensor_stopped, ALERT_TIMEOUT)?;
    let sinks =
        stopped.pointer("/vigie/counters/sinks").and_then(Value::as_array).context("sink counters")?;
    let webhook =
        sinks.iter().find(|s| s["name"] == Collector::url(port)).context("the webhook's counters")?;
    assert_eq!(webhook["delivered"], 0, "the collector took nothing: {webhook}");
    ensure!(webhook["queued"].as_u64() >= Some(3), "the alerts wait in its spool: {webhook}");
    Ok(())
}
