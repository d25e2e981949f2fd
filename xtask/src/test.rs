//! `cargo xtask test [-- ARGS...]`: the one command CI and newcomers run. Each step is
//! announced; the first failure stops the run with a non-zero exit.
//!
//! The integration tests that need root are `#[ignore]`d so plain `cargo test` stays
//! unprivileged; this task runs them with `--include-ignored`, as root.

use std::ffi::OsString;
use std::process::Command;

use anyhow::Result;

use crate::build::{self, Profile};
use crate::command::{self, cargo};
use crate::{bootstrap, privilege};

pub fn run(test_args: &[OsString]) -> Result<()> {
    privilege::require_root("test", "runs the privileged integration tests")?;

    say("bootstrap");
    bootstrap::all()?;
    step(cargo()?.args(["fmt", "--all", "--check"]))?;
    step(cargo()?.args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The integration tests drive the real binary, found through VIGIE_BIN.
    let vigie = build::vigie(Profile::Debug)?;
    step(cargo()?.args(["test", "--", "--include-ignored"]).args(test_args).env("VIGIE_BIN", &vigie))?;
    say("all steps passed");
    Ok(())
}

fn step(command: &mut Command) -> Result<()> {
    say(&command::describe(command));
    command::run(command)
}

fn say(message: &str) {
    eprintln!("[test] {message}");
}
