//! `vigie manual DIR` (hidden): the manual pages, `vigie.8` and one `vigie-SUBCOMMAND.8` per
//! subcommand, rendered from this command line's own definitions so that they cannot drift
//! from `--help`. `cargo xtask package` runs it; an admin reads them with `man 8 vigie`.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};

use super::Cli;
use crate::error::Error;

/// The manual's section: system administration commands.
const SECTION: &str = "8";

/// Options of `vigie manual`.
#[derive(Debug, Args)]
pub struct ManualArgs {
    /// The pages' date: the release's, from the package's changelog (`01 Dec 2026`).
    #[arg(long, value_name = "DATE")]
    pub date: String,

    /// The directory the pages are written to (it must exist).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes `vigie.8` and each visible subcommand's page into the directory.
pub fn run(args: &ManualArgs) -> Result<(), Error> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    write_pages(command, &args.date, &args.dir)
}

/// `command`'s page, then its subcommands' pages.
fn write_pages(command: clap::Command, date: &str, dir: &Path) -> Result<(), Error> {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_pages(sub.clone(), date, dir)?;
    }
    let source = format!("vigie {}", env!("CARGO_PKG_VERSION"));
    let page = clap_mangen::Man::new(command).section(SECTION).date(date).source(source).manual("Vigie");
    let path = dir.join(page.get_filename());
    page.generate_to(dir).map(drop).map_err(|e| Error::system(format!("writing {}", path.display()), e))
}
