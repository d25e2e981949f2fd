//! The command line: `vigie run`, `vigie history`, `vigie explain`, `vigie check-config`,
//! `vigie unload`; one file per subcommand.

pub mod check_config;
pub mod explain;
pub mod history;
pub mod manual;
pub mod run;
pub mod unload;

use std::io::{self, Write};

use clap::{Parser, Subcommand};

pub use run::RunArgs;

use crate::{error::Error, journal::queries::ProcessRef};

/// Vigie: catches credentials leaving this host.
#[derive(Debug, Parser)]
#[command(name = "vigie", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "one command, parsed once at start")]
pub enum Command {
    /// Load the kernel programs and print alerts as ECS JSON lines until interrupted.
    Run(RunArgs),
    /// Who read which secret when, and what they sent where, from the journal.
    History(history::HistoryArgs),
    /// The story of one alert, as a timeline, from the journal.
    Explain(explain::ExplainArgs),
    /// Check a config file as `vigie run --config FILE` would load it, without loading the kernel
    /// programs: a one-line summary, or each problem as `FILE:LINE:COLUMN: what is wrong` and
    /// exit code 2.
    CheckConfig(check_config::CheckConfigArgs),
    /// Detach and remove the kernel programs and maps that agents left pinned with
    /// `keep_loaded` (stop the agent first: a running one pins its own again only at start).
    Unload(unload::UnloadArgs),
    /// Write the manual pages into a directory (for packaging).
    #[command(hide = true)]
    Manual(manual::ManualArgs),
}

/// `PID EXECUTABLE`, or the pid alone for a process never seen.
fn process(process: &ProcessRef) -> String {
    process
        .executable
        .as_ref()
        .map_or_else(|| process.pid.to_string(), |exe| format!("{} {exe}", process.pid))
}

/// `rows` in columns as wide as their widest cell, two spaces apart; the last column is not
/// padded.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|row| row.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| if c + 1 == row.len() { cell.clone() } else { format!("{cell:<0$}", widths[c]) })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// Writes `text` to stdout (with a final newline); a reader that went away (`| head`) is no
/// error.
fn print(text: &str) -> Result<(), Error> {
    let mut stdout = io::stdout().lock();
    let written = stdout.write_all(text.as_bytes()).and_then(|()| {
        if text.ends_with('\n') {
            Ok(())
        } else {
            stdout.write_all(b"\n")
        }
    });
    match written.and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::system("writing to stdout", e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let rows = [
            vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()],
            vec!["AAA".to_owned(), "B".to_owned(), "CC".to_owned()],
        ];
        assert_eq!(table(&rows), "A    BB  C\nAAA  B   CC\n");
    }
}
