//! `vigie explain EVENT_ID`: the story of one alert, as a timeline, from the journal.

use std::{fmt::Write as _, path::PathBuf};

use clap::Args;

use super::{print, table};
use crate::{
    config::journal::DEFAULT_PATH,
    error::Error,
    journal::{self, queries, JournalError},
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

/// Prints the alert's story: who sent what where, then each step in time order.
pub fn run(args: &ExplainArgs) -> Result<(), Error> {
    let conn = journal::open_read_only(&args.journal)?;
    let story = queries::explain(&conn, &args.event_id).map_err(JournalError::from)?.ok_or_else(|| {
        JournalError::UnknownEvent { id: args.event_id.clone(), path: args.journal.clone() }
    })?;
    if args.json {
        return print(&serde_json::to_string_pretty(&story).unwrap_or_default());
    }
    let mut text = String::new();
    let severity = story.severity.map(|s| format!(", severity {s}")).unwrap_or_default();
    let _ = writeln!(text, "alert     {} ({}{severity}) at {}", story.event_id, story.action, story.at);
    let _ = writeln!(text, "secret    {}", story.secret);
    let user = story.user.as_deref().map(|u| format!(", user {u}")).unwrap_or_default();
    let _ = writeln!(text, "process   {}{user}", super::process(&story.process));
    if !story.ancestry.is_empty() {
        let chain: Vec<String> = story
            .ancestry
            .iter()
            .map(|a| match a.executable.as_deref().filter(|exe| !exe.is_empty()) {
                Some(exe) => format!("{} {exe}", a.pid),
                None => a.pid.to_string(),
            })
            .collect();
        let _ = writeln!(text, "ancestry  {}", chain.join(" < "));
    }
    let _ = writeln!(text, "sent to   {} ({})\n", story.destination, story.transport);
    let mut rows = vec![["TIME", "STEP", "PROCESS", "WHAT"].map(str::to_owned).to_vec()];
    rows.extend(story.timeline.iter().map(|step| {
        let process = step.process.as_ref().map_or_else(|| "-".to_owned(), super::process);
        vec![step.at.clone(), step.kind.to_owned(), process, step.what.clone()]
    }));
    if !story.timeline.iter().any(|step| step.kind == "delivered") {
        rows.push(vec![
            String::new(),
            "sinks".to_owned(),
            "-".to_owned(),
            "no sink recorded a delivery".to_owned(),
        ]);
    }
    text.push_str(&table(&rows));
    print(&text)
}
