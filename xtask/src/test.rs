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

/// How the integration tests are told which backend `vigie run` uses.
const BACKEND_ENV: &str = "VIGIE_TEST_BACKEND";
/// The suites about what is detected and how it is reported, run a second time against the
/// syscall backend.
const DETECTION_SUITES: [&str; 23] = [
    "allowance",
    "content_confirmation",
    "data_paths",
    "derived_files",
    "detects_exfiltration",
    "ecs_documents",
    "journal",
    "lineage",
    "local_destinations",
    "lost_records",
    "no_false_alerts",
    "outbound_bytes",
    "process_memory",
    "redaction",
    "restart",
    "secret_access",
    "secret_identity",
    "self_protection",
    "send_paths",
    "taint_through_ipc",
    "taint_window",
    "watch_follows_path",
    "backends",
];

pub fn run(test_args: &[OsString]) -> Result<()> {
    privilege::require_root("test", "runs the privileged integration tests")?;

    say("bootstrap");
    bootstrap::all()?;
    step(cargo()?.args(["fmt", "--all", "--check"]))?;
    step(cargo()?.args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // The integration tests drive the real binary, found through VIGIE_BIN.
    let vigie = build::vigie(Profile::Debug)?;
    // Every suite on the page cache backend, which this kernel runs (a failure to load it is a
    // failure, not a silent fallback); then the detection suites again on the syscall backend.
    step(
        cargo()?
            .args(["test", "--", "--include-ignored"])
            .args(test_args)
            .env("VIGIE_BIN", &vigie)
            .env(BACKEND_ENV, "page-cache"),
    )?;
    let mut fallback = cargo()?;
    fallback.arg("test");
    for suite in DETECTION_SUITES {
        fallback.args(["--test", suite]);
    }
    step(
        fallback
            .args(["--", "--include-ignored"])
            .args(test_args)
            .env("VIGIE_BIN", &vigie)
            .env(BACKEND_ENV, "syscalls"),
    )?;
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
