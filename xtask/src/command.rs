//! Child processes: every tool xtask starts goes through here, so all of them see the
//! same PATH and every failure names the command that failed.

use std::env;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::workspace;

/// PATH with `$CARGO_HOME/bin` on it: aya-build finds bpf-linker through PATH, and
/// `sudo` usually drops `~/.cargo/bin` from it.
pub fn search_path() -> Result<OsString> {
    let cargo_bin = workspace::cargo_bin_dir()?;
    let current = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<_> = env::split_paths(&current).collect();
    if !dirs.contains(&cargo_bin) {
        dirs.insert(0, cargo_bin);
    }
    env::join_paths(dirs).context("cannot build a PATH that includes $CARGO_HOME/bin")
}

/// A command for `program`, looked up on [`search_path`].
pub fn tool(program: impl AsRef<OsStr>) -> Result<Command> {
    let mut command = Command::new(program);
    command.env("PATH", search_path()?);
    Ok(command)
}

/// A cargo command on the workspace, with the same cargo that runs xtask and an explicit
/// target directory so the binary paths we compute are the ones cargo wrote.
pub fn cargo() -> Result<Command> {
    let mut command = tool(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))?;
    command.current_dir(workspace::root()?).env("CARGO_TARGET_DIR", workspace::target_dir()?);
    Ok(command)
}

/// Runs `command` with inherited stdio; fails if it cannot start or exits non-zero.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("cannot start `{}`", describe(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// Runs `command` and returns its trimmed stdout; stderr goes into the error on failure.
pub fn output(command: &mut Command) -> Result<String> {
    let stdout = bytes(command)?;
    String::from_utf8(stdout)
        .map(|stdout| stdout.trim().to_owned())
        .with_context(|| format!("`{}` printed non-UTF-8 output", describe(command)))
}

/// Runs `command` and returns its stdout as it is; stderr goes into the error on failure.
pub fn bytes(command: &mut Command) -> Result<Vec<u8>> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(command)))?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// The command line as a user would type it, for messages: `cargo build`, not
/// `/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/bin/cargo build`.
pub fn describe(command: &Command) -> String {
    let program = command.get_program();
    let program = Path::new(program).file_name().unwrap_or(program);
    std::iter::once(program)
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}
