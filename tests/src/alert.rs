//! Reading the sensor's JSON lines: which line is what, and the fields the tests check.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

/// `event.action` of the alert raised when a secret reader sends data out.
pub const EXFILTRATION: &str = "credential-exfiltration";

/// `event.kind == "state"` and `event.action == "sensor-started"`.
#[must_use]
pub fn is_sensor_started(line: &Value) -> bool {
    text(line, "/event/kind") == Some("state") && text(line, "/event/action") == Some("sensor-started")
}

/// An exfiltration alert, from any process.
#[must_use]
pub fn is_exfiltration(line: &Value) -> bool {
    text(line, "/event/kind") == Some("alert") && text(line, "/event/action") == Some(EXFILTRATION)
}

/// An exfiltration alert whose `process.pid` is `pid`.
pub fn is_exfiltration_by(pid: u32) -> impl Fn(&Value) -> bool {
    move |line| is_exfiltration(line) && process_pid(line) == Some(pid)
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

/// `file.path`.
#[must_use]
pub fn file_path(line: &Value) -> Option<&str> {
    text(line, "/file/path")
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
            "process": {"pid": 42, "parent": {"pid": 41}},
            "file": {"path": "/tmp/s", "inode": "7"},
            "destination": {"ip": "fd00:5647:0001:0:0:0:0:2", "port": 4242},
            "network": {"transport": "tcp"},
            "vigie": {"ancestry": [{"pid": 41}, {"pid": 1}]},
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
    }

    #[test]
    fn recognises_the_start_line() {
        let line = json!({"event": {"kind": "state", "action": "sensor-started"}});
        assert!(is_sensor_started(&line));
        assert!(!is_exfiltration(&line));
    }
}
