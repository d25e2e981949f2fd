//! `vigie explain EVENT_ID`: the story of one alert, as a timeline, from the journal: a
//! secret's way off the host, or an act against the agent.

use std::{fmt::Write as _, path::PathBuf};

use clap::Args;

use super::{print, table};
use crate::{
    config::journal::DEFAULT_PATH,
    error::Error,
    journal::{
        self,
        queries::{self, Ancestor, ProcessRef, Step},
        JournalError,
    },
};

/// Options of `vigie explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The journal to read.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PATH)]
    pub journal: PathBuf,

    /// The story as one JSON object instead of a timeline.
    #[arg(long)]
    pub json: bool,

    /// The alert's `event.id`.
    #[arg(value_name = "EVENT_ID")]
    pub event_id: String,
}

/// Prints the alert's story: who sent what where, or what was done to the agent and by whom,
/// then each step in time order.
pub fn run(args: &ExplainArgs) -> Result<(), Error> {
    let conn = journal::open_read_only(&args.journal)?;
    let unknown = || JournalError::UnknownEvent { id: args.event_id.clone(), path: args.journal.clone() };
    if let Some(story) = queries::explain(&conn, &args.event_id).map_err(JournalError::from)? {
        if args.json {
            return print(&serde_json::to_string_pretty(&story).unwrap_or_default());
        }
        let mut text = heading(&story.event_id, &story.action, story.severity, &story.at);
        let _ = writeln!(text, "secret    {}", story.secret);
        text.push_str(&actor(Some(&story.process), story.user.as_deref(), &story.ancestry));
        let _ = writeln!(text, "sent to   {} ({})\n", story.destination, story.transport);
        text.push_str(&timeline(&story.timeline));
        return print(&text);
    }
    let act = queries::explain_act(&conn, &args.event_id).map_err(JournalError::from)?.ok_or_else(unknown)?;
    if args.json {
        return print(&serde_json::to_string_pretty(&act).unwrap_or_default());
    }
    let mut text = heading(&act.event_id, &act.action, act.severity, &act.at);
    text.push_str(&actor(act.process.as_ref(), act.user.as_deref(), &act.ancestry));
    text.push('\n');
    text.push_str(&timeline(&act.timeline));
    print(&text)
}

/// `alert     ID (ACTION, severity N) at TIME`.
fn heading(event_id: &str, action: &str, severity: Option<u8>, at: &str) -> String {
    let severity = severity.map(|s| format!(", severity {s}")).unwrap_or_default();
    format!("alert     {event_id} ({action}{severity}) at {at}\n")
}

/// The process, its user and its ancestry, a line each.
fn actor(process: Option<&ProcessRef>, user: Option<&str>, ancestry: &[Ancestor]) -> String {
    let mut text = String::new();
    let user = user.map(|u| format!(", user {u}")).unwrap_or_default();
    let process = process.map_or_else(|| "not known".to_owned(), super::process);
    let _ = writeln!(text, "process   {process}{user}");
    if !ancestry.is_empty() {
        let chain: Vec<String> = ancestry
            .iter()
            .map(|a| match a.executable.as_deref().filter(|exe| !exe.is_empty()) {
                Some(exe) => format!("{} {exe}", a.pid),
                None => a.pid.to_string(),
            })
            .collect();
        let _ = writeln!(text, "ancestry  {}", chain.join(" < "));
    }
    text
}

/// The steps as a table, and a last row if no sink recorded a delivery.
fn timeline(steps: &[Step]) -> String {
    let mut rows = vec![["TIME", "STEP", "PROCESS", "WHAT"].map(str::to_owned).to_vec()];
    rows.extend(steps.iter().map(|step| {
        let process = step.process.as_ref().map_or_else(|| "-".to_owned(), super::process);
        vec![step.at.clone(), step.kind.to_owned(), process, step.what.clone()]
    }));
    if !steps.iter().any(|step| step.kind == "delivered") {
        rows.push(vec![
            String::new(),
            "sinks".to_owned(),
            "-".to_owned(),
            "no sink recorded a delivery".to_owned(),
        ]);
    }
    table(&rows)
}
