//! Every kind of document the agent writes, one per `event.action`, with its ECS
//! categorisation: `event.type` holds, for each category, a type ECS expects with it.

use super::{Event, CONFIRMED_EXFILTRATION_SEVERITY, EXFILTRATION_SEVERITY, TAMPER_SEVERITY};

/// Every program is attached and the watch list is loaded.
pub const SENSOR_STARTED: Event = of("state", "sensor-started", &["host"], &["start"]);
/// The agent stops, with its counters.
pub const SENSOR_STOPPED: Event = of("state", "sensor-stopped", &["host"], &["end"]);
/// The kernel dropped records or refused a taint.
pub const EVENTS_LOST: Event = of("state", "events-lost", &["host"], &["info"]);
/// The output failed, or works again.
pub const OUTPUT_DEGRADED: Event = of("state", "output-degraded", &["host"], &["info"]);
/// The journal dropped documents (its channel was full) or failed to write them.
pub const JOURNAL_DEGRADED: Event = of("state", "journal-degraded", &["host"], &["info"]);
/// SIGHUP: the configuration was read again and applied.
pub const CONFIG_RELOADED: Event = of("state", "config-reloaded", &["configuration"], &["change"]);
/// SIGHUP: the configuration did not load; the running one stays.
pub const CONFIG_RELOAD_FAILED: Event = of("state", "config-reload-failed", &["configuration"], &["info"]);
/// A watched path now leads to a new file.
pub const WATCH_UPDATED: Event = of("state", "watch-updated", &["file"], &["change"]);
/// TLS code a trusted service maps (beyond the system libraries) got write probes, or failed to.
pub const TLS_LIBRARY_PROBED: Event = of("state", "tls-library-probed", &["host"], &["change"]);

/// A process took in a secret that is a file.
pub const SECRET_READ: Event = of("event", "secret-read", &["file"], &["access"]);
/// An allowed reader or a trusted service opened a secret file (once per process and secret).
pub const SECRET_READ_ALLOWED: Event = of("event", "secret-read-allowed", &["file"], &["access"]);
/// A process took in a secret that is a trusted process's memory.
pub const SECRET_MEMORY_READ: Event = of("event", "secret-read", &["process"], &["access"]);
/// A process took in a secret store's data from its database server.
pub const SECRET_DATABASE_READ: Event = of("event", "secret-read", &["database"], &["access"]);
/// A tainted process wrote a file, which now carries the secret.
pub const SECRET_DERIVED: Event = of("event", "secret-derived", &["file"], &["change"]);
/// An alerted transfer sent more bytes.
pub const EXFILTRATION_PROGRESS: Event = of("event", "exfiltration-progress", &["network"], &["connection"]);

/// A tainted process sent traffic off this host.
pub const CREDENTIAL_EXFILTRATION: Event = Event {
    kind: "alert",
    action: "credential-exfiltration",
    severity: Some(EXFILTRATION_SEVERITY),
    category: &["network", "intrusion_detection"],
    types: &["connection", "info"],
};

/// A secret's value itself was recognised in the bytes a process sent off this host: from a
/// tainted process it confirms a `credential-exfiltration` alert; from a trusted service (which
/// holds its secrets by right) it is the only sign.
pub const CONFIRMED_EXFILTRATION: Event =
    Event { severity: Some(CONFIRMED_EXFILTRATION_SEVERITY), ..CREDENTIAL_EXFILTRATION };

/// Another process acted on the agent or its kernel state: a signal, a tracer, its BPF
/// objects, maps, links or hooks.
pub const AGENT_TAMPERED: Event = Event {
    kind: "alert",
    action: "agent-tampered",
    severity: Some(TAMPER_SEVERITY),
    category: &["process", "intrusion_detection"],
    types: &["change", "info"],
};

/// The agent was told to stop or to reload (SIGTERM, SIGINT, SIGHUP), by whom: what an
/// administrator does, and what an attacker would do first.
pub const AGENT_CONTROLLED: Event = Event { severity: Some(CONTROL_SEVERITY), ..AGENT_TAMPERED };

/// ECS severity of a stop or reload request (low).
const CONTROL_SEVERITY: u8 = 21;

const fn of(
    kind: &'static str,
    action: &'static str,
    category: &'static [&'static str],
    types: &'static [&'static str],
) -> Event {
    Event { kind, action, severity: None, category, types }
}
