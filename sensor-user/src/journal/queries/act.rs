//! `vigie explain` on an act against the agent (`agent-tampered`): what was done to it, by
//! whom, and which sinks delivered the alert.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    story::{deliveries, Step},
    Ancestor, ProcessRef,
};

/// The action of the alerts about the agent itself.
const ACTION: &str = "agent-tampered";

/// An act against the agent, as its alert told it.
#[derive(Debug, Serialize)]
pub struct Act {
    pub event_id: String,
    pub at: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<u8>,
    /// The alert's `vigie.tamper`: a signal, a tracer, a BPF object held, a map changed, a
    /// link detached, a foreign program on a hook.
    pub tamper: Value,
    /// The process that did it, where the agent could know it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub ancestry: Vec<Ancestor>,
    /// The act, then each delivery of its alert.
    pub timeline: Vec<Step>,
}

/// What the stored document says, for [`Act`].
#[derive(Deserialize)]
struct Document {
    event: EventView,
    process: Option<ProcessRef>,
    user: Option<UserView>,
    vigie: VigieView,
}

#[derive(Deserialize)]
struct EventView {
    severity: Option<u8>,
}

#[derive(Deserialize)]
struct UserView {
    id: String,
}

#[derive(Deserialize)]
struct VigieView {
    tamper: Value,
    ancestry: Option<Vec<Ancestor>>,
}

/// The act alerted as `event_id`; `None` if the journal has no such alert about the agent.
pub fn explain_act(conn: &Connection, event_id: &str) -> rusqlite::Result<Option<Act>> {
    let found: Option<(String, i64, String)> = conn
        .query_row(
            "SELECT at, at_ns, document FROM states WHERE event_id = ?1 AND action = ?2",
            [event_id, ACTION],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((at, at_ns, document)) = found else { return Ok(None) };
    let document: Document = serde_json::from_str(&document).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let mut timeline = vec![Step {
        at: at.clone(),
        kind: "act",
        event_id: Some(event_id.to_owned()),
        process: document.process.clone(),
        what: described(&document.vigie.tamper),
        at_ns,
    }];
    timeline.extend(deliveries(conn, event_id)?);
    timeline.sort_by_key(|step| step.at_ns);
    Ok(Some(Act {
        event_id: event_id.to_owned(),
        at,
        action: ACTION.to_owned(),
        severity: document.event.severity,
        tamper: document.vigie.tamper,
        process: document.process,
        user: document.user.map(|u| u.id),
        ancestry: document.vigie.ancestry.unwrap_or_default(),
        timeline,
    }))
}

/// `vigie.tamper` in a line: its kind, then each of its fields (`stop-signal: signal
/// name=SIGTERM number=15 sent_with=kill; thread 4242`).
fn described(tamper: &Value) -> String {
    let kind = tamper.get("kind").and_then(Value::as_str).unwrap_or("act");
    let fields: Vec<String> = tamper
        .as_object()
        .into_iter()
        .flat_map(Map::iter)
        .filter(|(name, _)| *name != "kind")
        .map(|(name, value)| match value.as_object() {
            Some(parts) => {
                let parts: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={}", scalar(v))).collect();
                format!("{name} {}", parts.join(" "))
            }
            None => format!("{name} {}", scalar(value)),
        })
        .collect();
    if fields.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", fields.join("; "))
    }
}

/// A JSON scalar as text: a string without its quotes.
fn scalar(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_act_is_told_by_its_kind_and_fields() {
        let tamper = json!({"kind": "stop-signal", "signal": {"name": "SIGTERM", "number": 15, "sent_with": "kill"}, "thread": 4242});
        assert_eq!(
            described(&tamper),
            "stop-signal: signal name=SIGTERM number=15 sent_with=kill; thread 4242"
        );
        assert_eq!(described(&json!({"kind": "ptrace"})), "ptrace");
    }
}
