//! `cargo xtask run [-- ARGS...]`: build in release and become `vigie run ARGS...`, so
//! Ctrl-C and the exit code go straight between the terminal and vigie.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{Context, Result};

use crate::build::{self, Profile};
use crate::{bootstrap, command, privilege};

/// Only returns on failure: on success this process is replaced by vigie.
pub fn run(args: &[OsString]) -> Result<()> {
    privilege::require_root("run", "loads BPF programs")?;
    bootstrap::toolchain()?;
    bootstrap::mounts()?;
    let vigie = build::vigie(Profile::Release)?;

    let mut command = Command::new(&vigie);
    command.arg("run").args(args);
    eprintln!("[run] {} ({})", command::describe(&command), vigie.display());
    let error = command.exec();
    Err(error).with_context(|| format!("cannot execute {}", vigie.display()))
}
