//! The command line: `vigie run`, `vigie history`, `vigie explain`; one file per subcommand.

pub mod run;

use clap::{Parser, Subcommand};

pub use run::RunArgs;

/// Vigie: catches credentials leaving this host.
#[derive(Debug, Parser)]
#[command(name = "vigie", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the kernel programs and print alerts as ECS JSON lines until interrupted.
    Run(RunArgs),
}
