use serde_json::{json, Value};

use super::*;
use crate::format::ecs::{
    Destination, File, Host, Loss, Network, Parent, ProcessFields, ProcessSummary, SecretRef, Source, User,
};

fn summary(pid: u32, executable: &str) -> ProcessSummary {
    ProcessSummary {
        pid,
        executable: Some(executable.to_owned()),
        args: Some(vec![executable.to_owned(), "-c".to_owned()]),
    }
}

/// An alert as the pipeline writes it: curl, forked by sh, sent `/etc/shadow` off the host.
fn alert() -> Document {
    let process = ProcessFields {
        pid: 7,
        name: Some("curl".to_owned()),
        executable: Some("/usr/bin/curl".to_owned()),
        args: Some(vec!["curl".to_owned(), "--data-binary".to_owned(), "@/etc/shadow".to_owned()]),
        entity_id: Some("b-7-1".to_owned()),
        start: Some("2026-11-18T11:06:40.123456Z".to_owned()),
        parent: Some(Parent {
            pid: 6,
            name: Some("sh".to_owned()),
            executable: "/bin/sh".to_owned(),
            entity_id: "b-6-1".to_owned(),
            start: None,
        }),
    };
    let vigie = Vigie {
        secret: Some(SecretRef { kind: "file", name: "/etc/shadow".to_owned() }),
        origin: Some(summary(7, "/usr/bin/curl")),
        ancestry: Some(vec![summary(6, "/bin/sh"), summary(1, "/sbin/init")]),
        ..Vigie::default()
    };
    Document {
        rule: Some(ecs::EXFILTRATION_RULE),
        threat: Some(ecs::EXFILTRATION_THREAT),
        process: Some(process),
        user: Some(User { id: "1000".to_owned() }),
        file: Some(File { path: "/etc/shadow".to_owned(), inode: Some("817".to_owned()) }),
        source: Some(Source { bytes: 42 }),
        destination: Some(Destination { ip: "10.213.0.2".to_owned(), port: 8080 }),
        network: Some(Network { transport: "tcp" }),
        vigie: Some(vigie),
        ..Document::new(1_795_000_000_123_456_789, ecs::CREDENTIAL_EXFILTRATION, "b-1-1-9".to_owned(), host())
    }
}

fn host() -> Host {
    Host { name: "vm".to_owned() }
}

fn ocsf(document: &Document) -> Value {
    serde_json::to_value(render(document)).unwrap()
}

#[test]
fn an_alert_is_a_detection_finding_created_at_its_severity_and_time() {
    let finding = ocsf(&alert());
    assert_eq!((finding["class_uid"].clone(), finding["category_uid"].clone()), (json!(2004), json!(2)));
    assert_eq!((finding["activity_id"].clone(), finding["type_uid"].clone()), (json!(1), json!(200_401)));
    assert_eq!(finding["severity_id"], 4, "ECS 73 is high");
    assert_eq!(finding["time"], 1_795_000_000_123_i64);
    assert_eq!(finding["metadata"]["version"], OCSF_VERSION);
    assert_eq!(finding["metadata"]["product"]["name"], "Vigie");
    assert_eq!(finding["metadata"]["uid"], "b-1-1-9");
    let info = &finding["finding_info"];
    assert_eq!(info["uid"], "b-1-1-9", "the ECS event.id");
    assert_eq!(info["types"], json!(["credential-exfiltration"]));
    assert_eq!(info["analytic"]["name"], "secret-read-then-egress");
    assert_eq!(info["attacks"][0]["technique"]["uid"], "T1041");
}

#[test]
fn the_evidence_names_the_process_its_ancestry_and_user_the_secret_and_the_destination() {
    let finding = ocsf(&alert());
    let evidence = &finding["evidences"][0];
    let process = &evidence["process"];
    assert_eq!(process["pid"], 7);
    assert_eq!(process["path"], "/usr/bin/curl");
    assert_eq!(process["cmd_line"], "curl --data-binary @/etc/shadow");
    assert_eq!(process["uid"], "b-7-1");
    assert_eq!(process["user"]["uid"], "1000");
    assert_eq!(process["parent_process"]["pid"], 6);
    let ancestry: Vec<&Value> = process["ancestry"].as_array().unwrap().iter().map(|a| &a["pid"]).collect();
    assert_eq!(ancestry, [&json!(6), &json!(1)]);
    assert_eq!(process["ancestry"][1]["name"], "init");
    assert_eq!(
        evidence["file"],
        json!({"name": "shadow", "path": "/etc/shadow", "uid": "817", "type_id": 1, "type": "Regular File"})
    );
    assert_eq!(evidence["dst_endpoint"], json!({"ip": "10.213.0.2", "port": 8080}));
    assert_eq!(evidence["connection_info"]["direction_id"], 2);
    assert_eq!(evidence["connection_info"]["protocol_num"], 6);
}

#[test]
fn what_ocsf_has_no_place_for_is_unmapped_and_the_ancestry_is_not_repeated() {
    let finding = ocsf(&alert());
    let unmapped = &finding["unmapped"];
    assert_eq!(unmapped["vigie"]["secret"], json!({"kind": "file", "name": "/etc/shadow"}));
    assert_eq!(unmapped["vigie"]["origin"]["pid"], 7);
    assert!(unmapped["vigie"].get("ancestry").is_none(), "{unmapped:#}");
    assert_eq!(unmapped["source"]["bytes"], 42);
}

#[test]
fn a_content_confirmed_alert_is_critical_and_says_so() {
    let mut document = alert();
    document.event.class = ecs::CONFIRMED_EXFILTRATION;
    document.vigie.as_mut().unwrap().content = Some(ecs::Content {
        confirmed: true,
        value: "registration_shared_secret".to_owned(),
        encoding: "raw",
        fingerprint: "a1b2c3".to_owned(),
        seen_in: "socket",
    });
    let finding = ocsf(&document);
    assert_eq!(finding["severity_id"], 5);
    assert_eq!(finding["finding_info"]["title"], "Credential exfiltration confirmed by content");
    assert_eq!(finding["unmapped"]["vigie"]["content"]["fingerprint"], "a1b2c3");
}

#[test]
fn start_and_stop_are_vigies_lifecycle_and_other_state_a_base_event() {
    let started = ocsf(&Document::new(0, ecs::SENSOR_STARTED, "e-0".to_owned(), host()));
    assert_eq!((started["class_uid"].clone(), started["type_uid"].clone()), (json!(6002), json!(600_203)));
    assert_eq!(started["app"]["name"], "Vigie");
    let stopped = ocsf(&Document::new(0, ecs::SENSOR_STOPPED, "e-1".to_owned(), host()));
    assert_eq!(stopped["activity_name"], "Stop");
    let loss = Vigie {
        events_lost: Some(Loss { reason: "ring-buffer-full", new: 2, total: 2 }),
        ..Vigie::default()
    };
    let lost = Document { vigie: Some(loss), ..Document::new(0, ecs::EVENTS_LOST, "e-2".to_owned(), host()) };
    let base = ocsf(&lost);
    assert_eq!((base["class_uid"].clone(), base["type_uid"].clone()), (json!(0), json!(99)));
    assert_eq!(base["message"], "events-lost");
    assert_eq!(base["severity_id"], 1);
    assert_eq!(base["unmapped"]["vigie"]["events_lost"]["reason"], "ring-buffer-full");
    assert_eq!(base["unmapped"]["host"]["name"], "vm");
}

#[test]
fn an_agent_tampered_alert_is_a_finding_titled_so_with_what_was_done_unmapped() {
    let tamper = ecs::Tamper { kind: "ptrace", thread: Some(3), ..ecs::Tamper::default() };
    let document = Document {
        rule: Some(ecs::TAMPER_RULE),
        threat: Some(ecs::TAMPER_THREAT),
        vigie: Some(Vigie { tamper: Some(tamper), ..Vigie::default() }),
        ..alert()
    };
    let event = ocsf(&Document {
        event: ecs::EventFields { class: ecs::AGENT_TAMPERED, ..document.event },
        ..document
    });
    assert_eq!(event["class_uid"], 2004);
    assert_eq!(event["finding_info"]["title"], "Agent tampered with");
    assert_eq!(event["finding_info"]["attacks"][0]["technique"]["uid"], "T1562");
    assert_eq!(event["unmapped"]["vigie"]["tamper"], json!({"kind": "ptrace", "thread": 3}));
}
