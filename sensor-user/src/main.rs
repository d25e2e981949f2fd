//! `vigie`: the agent. See the README for what it watches and what it prints.

mod agent;
mod alert;
mod background;
mod catch_up;
mod cli;
mod config;
mod content;
mod error;
mod format;
mod journal;
mod kernel;
mod local_addresses;
mod metrics;
mod pipeline;
mod reload;
mod rules;
mod sinks;
mod state;
mod store_servers;
mod store_tokens;
mod stores;
mod system;
mod tamper;
mod tls_mappings;
mod tmpfs_reads;

use std::process::ExitCode;

use clap::Parser;

use crate::{
    cli::{Cli, Command},
    config::Settings,
};

/// Exit code for every error that stops the agent (usage errors from clap use it too).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let result = match command {
        Command::Run(args) => run(args),
        Command::History(args) => cli::history::run(args),
        Command::Explain(args) => cli::explain::run(&args),
        Command::CheckConfig(args) => cli::check_config::run(&args),
        Command::Unload(args) => cli::unload::run(&args),
        Command::Manual(args) => cli::manual::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vigie: {}", error::describe(&err));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(args: cli::RunArgs) -> Result<(), error::Error> {
    system::make_undumpable()?;
    let settings = Settings::from_args(args.clone())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| error::Error::system("starting the async runtime", e))?;
    runtime.block_on(agent::run(settings, move || Settings::from_args(args.clone())))
}
