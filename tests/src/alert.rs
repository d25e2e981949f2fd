//! Reading the sensor's JSON lines: which line is what, and the fields the tests check.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde_json::Value;

/// `event.action` of the alert raised when a secret reader sends data out.
pub const EXFILTRATION: &str = "credential-exfiltration";
/// `event.action` of the updates to an alert's byte count while the transfer goes on.
pub const PROGRESS: &str = "exfiltration-progress";

/// `event.kind == "state"` and `event.action == "sensor-started"`; in OCSF (`--format ocsf`),
/// Vigie's Application Lifecycle Start.
#[must_use]
pub fn is_sensor_started(line: &Value) -> bool {
    is_state(line, "sensor-started") || (line["type_uid"] == 600_203 && line["app"]["name"] == "Vigie")
}

/// The state line the sensor prints last, on SIGTERM or SIGINT.
#[must_use]
pub fn is_sensor_stopped(line: &Value) -> bool {
    is_state(line, "sensor-stopped")
}

/// A report that the kernel dropped records because the ring buffer was full.
#[must_use]
pub fn is_events_lost(line: &Value) -> bool {
    is_state(line, "events-lost")
}

/// `vigie.events_lost` of an [`is_events_lost`] line.
#[must_use]
pub fn loss(line: &Value) -> Option<Loss> {
    let count = |field: &str| line.pointer(&format!("/vigie/events_lost/{field}"))?.as_u64();
    Some(Loss { new: count("new")?, total: count("total")? })
}

/// `vigie.counters.events_lost` of the [`is_sensor_stopped`] line: the total since start.
#[must_use]
pub fn lost_at_stop(line: &Value) -> Option<u64> {
    line.pointer("/vigie/counters/events_lost")?.as_u64()
}

/// The counts of an `events-lost` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// Records dropped since the previous report.
    pub new: u64,
    /// Records dropped since the sensor started.
    pub total: u64,
}

/// An exfiltration alert, from any process.
#[must_use]
pub fn is_exfiltration(line: &Value) -> bool {
    text(line, "/event/kind") == Some("alert") && text(line, "/event/action") == Some(EXFILTRATION)
}

/// A `secret-read` line whose `process.pid` is `pid`.
pub fn is_secret_read_by(pid: u32) -> impl Fn(&Value) -> bool {
    move |line| text(line, "/event/action") == Some("secret-read") && process_pid(line) == Some(pid)
}

/// A `secret-read-allowed` line of process `pid`: it may open secrets, and did.
pub fn is_allowed_read_by(pid: u32) -> impl Fn(&Value) -> bool {
    move |line| text(line, "/event/action") == Some("secret-read-allowed") && process_pid(line) == Some(pid)
}

/// An exfiltration alert whose bytes carried a secret's value (`vigie.content`).
#[must_use]
pub fn is_confirmed(line: &Value) -> bool {
    is_exfiltration(line) && line.pointer("/vigie/content/confirmed") == Some(&Value::Bool(true))
}

/// A confirmed exfiltration alert whose `process.pid` is `pid`.
pub fn is_confirmed_by(pid: u32) -> impl Fn(&Value) -> bool {
    move |line| is_confirmed(line) && process_pid(line) == Some(pid)
}

/// `event.severity`.
#[must_use]
pub fn severity(line: &Value) -> Option<u64> {
    line.pointer("/event/severity").and_then(Value::as_u64)
}

/// `vigie.content.encoding` of a confirmed alert: how the value was written in the bytes.
#[must_use]
pub fn content_encoding(line: &Value) -> Option<&str> {
    text(line, "/vigie/content/encoding")
}

/// `vigie.content.value` of a confirmed alert: which value (a name, never the value).
#[must_use]
pub fn content_value(line: &Value) -> Option<&str> {
    text(line, "/vigie/content/value")
}

/// An exfiltration alert whose `process.pid` is `pid`.
pub fn is_exfiltration_by(pid: u32) -> impl Fn(&Value) -> bool {
    move |line| is_exfiltration(line) && process_pid(line) == Some(pid)
}

/// An exfiltration alert sent to `dest`, from any process.
pub fn is_exfiltration_to(dest: SocketAddr) -> impl Fn(&Value) -> bool {
    move |line| is_exfiltration(line) && destination(line) == Some(dest)
}

/// An `exfiltration-progress` line whose `process.pid` is `pid`.
pub fn is_progress_by(pid: u32) -> impl Fn(&Value) -> bool {
    move |line| {
        text(line, "/event/kind") == Some("event")
            && text(line, "/event/action") == Some(PROGRESS)
            && process_pid(line) == Some(pid)
    }
}

/// The state line saying that the configured secret `path` now leads to a new file.
pub fn is_watch_updated_for(path: &Path) -> impl Fn(&Value) -> bool + '_ {
    move |line| is_state(line, "watch-updated") && file_path(line) == path.to_str()
}

/// `process.pid`.
#[must_use]
pub fn process_pid(line: &Value) -> Option<u32> {
    pid_at(line, "/process/pid")
}

/// `process.parent.pid`.
#[must_use]
pub fn parent_pid(line: &Value) -> Option<u32> {
    pid_at(line, "/process/parent/pid")
}

/// The pids listed in `vigie.ancestry`, nearest first.
#[must_use]
pub fn ancestry_pids(line: &Value) -> Vec<u32> {
    line.pointer("/vigie/ancestry")
        .and_then(Value::as_array)
        .map(|ancestors| ancestors.iter().filter_map(|a| pid_at(a, "/pid")).collect())
        .unwrap_or_default()
}

/// `process.executable`.
#[must_use]
pub fn process_executable(line: &Value) -> Option<&str> {
    text(line, "/process/executable")
}

/// `vigie.origin.pid`: the process that opened the secret.
#[must_use]
pub fn origin_pid(line: &Value) -> Option<u32> {
    pid_at(line, "/vigie/origin/pid")
}

/// `vigie.origin.executable`.
#[must_use]
pub fn origin_executable(line: &Value) -> Option<&str> {
    text(line, "/vigie/origin/executable")
}

/// `vigie.via.kind`: `file`, `pipe` or `unix-socket` when the taint came through one; `None`
/// for a direct read or fork inheritance.
#[must_use]
pub fn via_kind(line: &Value) -> Option<&str> {
    text(line, "/vigie/via/kind")
}

/// `vigie.via.path`: the derived file the taint came through.
#[must_use]
pub fn via_path(line: &Value) -> Option<&str> {
    text(line, "/vigie/via/path")
}

/// `file.inode`, a decimal string.
#[must_use]
pub fn file_inode(line: &Value) -> Option<u64> {
    text(line, "/file/inode")?.parse().ok()
}

/// `source.bytes`: what the process sent to the destination so far.
#[must_use]
pub fn source_bytes(line: &Value) -> Option<u64> {
    line.pointer("/source/bytes")?.as_u64()
}

/// `file.path`.
#[must_use]
pub fn file_path(line: &Value) -> Option<&str> {
    text(line, "/file/path")
}

/// `vigie.secret.kind`: `file` or `process-memory`.
#[must_use]
pub fn secret_kind(line: &Value) -> Option<&str> {
    text(line, "/vigie/secret/kind")
}

/// `vigie.secret.name`: the configured path, or the label of a process's memory.
#[must_use]
pub fn secret_name(line: &Value) -> Option<&str> {
    text(line, "/vigie/secret/name")
}

/// `network.transport`.
#[must_use]
pub fn transport(line: &Value) -> Option<&str> {
    text(line, "/network/transport")
}

/// `destination.ip` and `destination.port`, compared as an address rather than as text so
/// that any valid spelling of an IPv6 address matches.
#[must_use]
pub fn destination(line: &Value) -> Option<SocketAddr> {
    let ip: IpAddr = text(line, "/destination/ip")?.parse().ok()?;
    let port = line.pointer("/destination/port")?.as_u64()?;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

/// `event.action` of the alerts about acts against the agent itself.
pub const TAMPERED: &str = "agent-tampered";

/// An `agent-tampered` alert whose `vigie.tamper.kind` is `kind` (`signal`, `ptrace`, …).
pub fn is_tampering(kind: &str) -> impl Fn(&Value) -> bool + '_ {
    move |line| {
        text(line, "/event/kind") == Some("alert")
            && text(line, "/event/action") == Some(TAMPERED)
            && text(line, "/vigie/tamper/kind") == Some(kind)
    }
}

/// A state document (`event.kind == "state"`) whose `event.action` is `action`.
#[must_use]
pub fn is_state(line: &Value, action: &str) -> bool {
    text(line, "/event/kind") == Some("state") && text(line, "/event/action") == Some(action)
}

fn text<'a>(line: &'a Value, pointer: &str) -> Option<&'a str> {
    line.pointer(pointer).and_then(Value::as_str)
}

fn pid_at(line: &Value, pointer: &str) -> Option<u32> {
    u32::try_from(line.pointer(pointer)?.as_u64()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert() -> Value {
        json!({
            "event": {"kind": "alert", "action": EXFILTRATION, "severity": 73},
            "process": {"pid": 42, "executable": "/usr/bin/curl", "parent": {"pid": 41}},
            "file": {"path": "/tmp/s", "inode": "7"},
            "source": {"bytes": 12},
            "destination": {"ip": "fd00:5647:0001:0:0:0:0:2", "port": 4242},
            "network": {"transport": "tcp"},
            "vigie": {
                "secret": {"kind": "file", "name": "/tmp/s"},
                "origin": {"pid": 40, "executable": "/usr/bin/cat"},
                "via": {"kind": "file", "path": "/tmp/x", "inode": "9"},
                "ancestry": [{"pid": 41}, {"pid": 1}],
            },
        })
    }

    #[test]
    fn reads_the_contract_fields() {
        let line = alert();
        assert!(is_exfiltration_by(42)(&line));
        assert!(!is_exfiltration_by(41)(&line));
        assert!(!is_sensor_started(&line));
        assert_eq!(parent_pid(&line), Some(41));
        assert_eq!(ancestry_pids(&line), [41, 1]);
        assert_eq!(file_path(&line), Some("/tmp/s"));
        assert_eq!(transport(&line), Some("tcp"));
        assert_eq!(destination(&line), Some("[fd00:5647:1::2]:4242".parse().unwrap()));
        assert!(is_exfiltration_to("[fd00:5647:1::2]:4242".parse().unwrap())(&line));
        assert_eq!(source_bytes(&line), Some(12));
        assert_eq!((secret_kind(&line), secret_name(&line)), (Some("file"), Some("/tmp/s")));
        assert_eq!(process_executable(&line), Some("/usr/bin/curl"));
        assert_eq!((origin_pid(&line), origin_executable(&line)), (Some(40), Some("/usr/bin/cat")));
        assert_eq!((via_kind(&line), via_path(&line)), (Some("file"), Some("/tmp/x")));
        assert_eq!(file_inode(&line), Some(7));
    }

    #[test]
    fn recognises_progress_and_watch_updates() {
        let progress = json!({"event": {"kind": "event", "action": PROGRESS}, "process": {"pid": 42}});
        assert!(is_progress_by(42)(&progress) && !is_progress_by(41)(&progress));
        assert!(!is_exfiltration(&progress));
        let updated = json!({
            "event": {"kind": "state", "action": "watch-updated"},
            "file": {"path": "/tmp/s", "inode": "8"},
        });
        assert!(is_watch_updated_for(Path::new("/tmp/s"))(&updated));
        assert!(!is_watch_updated_for(Path::new("/tmp/t"))(&updated));
        assert_eq!(file_inode(&updated), Some(8));
    }

    #[test]
    fn recognises_the_start_line() {
        let line = json!({"event": {"kind": "state", "action": "sensor-started"}});
        assert!(is_sensor_started(&line));
        assert!(!is_exfiltration(&line));
    }

    #[test]
    fn reads_the_loss_counts() {
        let lost = json!({
            "event": {"kind": "state", "action": "events-lost"},
            "vigie": {"events_lost": {"new": 3, "total": 5}},
        });
        assert!(is_events_lost(&lost) && !is_sensor_stopped(&lost));
        assert_eq!(loss(&lost), Some(Loss { new: 3, total: 5 }));
        let stopped = json!({"event": {"kind": "state", "action": "sensor-stopped"}, "vigie": {"counters": {"events_lost": 5}}});
        assert!(is_sensor_stopped(&stopped) && !is_events_lost(&stopped));
        assert_eq!(lost_at_stop(&stopped), Some(5));
        assert_eq!(loss(&stopped), None);
    }
}
