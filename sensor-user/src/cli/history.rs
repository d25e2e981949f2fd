//! `vigie history`: who read which secret when, and what they sent where, from the journal.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::{print, table};
use crate::{
    config::journal::DEFAULT_PATH,
    error::Error,
    journal::{
        self,
        queries::{self, HistoryFilter, ProcessFilter, Read},
    },
};

/// Options of `vigie history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The journal to read.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PATH)]
    pub journal: PathBuf,

    /// Only this secret: its name as configured, or its file's path.
    #[arg(long, value_name = "PATH|NAME")]
    pub secret: Option<String>,

    /// Only this process: a pid, or an executable's path or file name.
    #[arg(long, value_name = "PID|EXE")]
    pub process: Option<String>,

    /// Only reads this recent: `24h`, `7d`, `90min`.
    #[arg(long, value_name = "DURATION", value_parser = parse_since)]
    pub since: Option<Duration>,

    /// One JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints the reads the options select, oldest first.
pub fn run(args: HistoryArgs) -> Result<(), Error> {
    let conn = journal::open_read_only(&args.journal)?;
    let since_ns = args.since.map(|since| {
        let since = i64::try_from(since.as_nanos()).unwrap_or(i64::MAX);
        journal::now_ns().saturating_sub(since)
    });
    let process = args.process.map(|p| p.parse().map_or(ProcessFilter::Executable(p), ProcessFilter::Pid));
    let filter = HistoryFilter { secret: args.secret, process, since_ns };
    let reads = queries::history(&conn, &filter).map_err(journal::JournalError::from)?;
    if args.json {
        return print(&serde_json::to_string_pretty(&reads).unwrap_or_default());
    }
    let mut rows = vec![["TIME", "SECRET", "PROCESS", "USER", "VIA", "SENT"].map(str::to_owned).to_vec()];
    rows.extend(reads.iter().map(row));
    print(&table(&rows))
}

/// One read as a table row.
fn row(read: &Read) -> Vec<String> {
    let via = read.via.as_ref().map_or_else(
        || "-".to_owned(),
        |via| via.path.as_ref().map_or_else(|| via.kind.clone(), |path| format!("{} {path}", via.kind)),
    );
    let sent: Vec<String> = read
        .sent
        .iter()
        .map(|sent| {
            let by = if sent.by.pid == read.process.pid {
                String::new()
            } else {
                format!(" by {}", super::process(&sent.by))
            };
            format!("{} {} {} B{by} [{}]", sent.destination, sent.transport, sent.bytes, sent.alert)
        })
        .collect();
    vec![
        read.at.clone(),
        read.secret.clone(),
        super::process(&read.process),
        read.user.clone().unwrap_or_else(|| "-".to_owned()),
        via,
        if sent.is_empty() { "nothing".to_owned() } else { sent.join("; ") },
    ]
}

/// `--since`: a duration (`24h`, `7d`), said back when it is not one.
fn parse_since(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration (expected e.g. 24h, 7d, 90min): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_names_what_it_refuses() {
        assert_eq!(parse_since("24h"), Ok(Duration::from_hours(24)));
        assert_eq!(parse_since("7d"), Ok(Duration::from_hours(7 * 24)));
        let err = parse_since("yesterday").unwrap_err();
        assert!(err.contains("\"yesterday\""), "{err}");
    }
}
