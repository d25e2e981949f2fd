//! Checks OCSF events against the published OCSF schema, with OCSF's schema export and the
//! JSON Schema generator that packages it (`ocsf-json-schema`, from `PyPI`) and `jsonschema`,
//! installed in a virtualenv under the build folder on first use (`ocsf_validate.py`).
//!
//! OCSF's own `ocsf-lib` and `ocsf-validator` check a schema, not events (and `ocsf-lib`'s
//! model does not load the 1.8.0 export), so they are not used.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::venv::Venv;

/// The OCSF version the agent's events follow.
pub const OCSF_VERSION: &str = "1.8.0";
/// What the virtualenv holds; a change here makes a new one.
const REQUIREMENTS: [&str; 2] = ["ocsf-json-schema==1.2.0", "jsonschema==4.26.0"];
const VENV: &str = "ocsf-venv";
const VALIDATOR: &str = include_str!("ocsf_validate.py");

/// Validates `events` against OCSF [`OCSF_VERSION`]; returns the validator's summary.
///
/// # Errors
/// When the virtualenv cannot be made, or any event is invalid (every error is quoted).
pub fn validate(events: &[Value]) -> Result<String> {
    let venv = Venv::ensure(VENV, &REQUIREMENTS)?;
    let mut child = Command::new(venv.python())
        .args(["-c", VALIDATOR, OCSF_VERSION])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start the OCSF validator")?;
    let mut input = child.stdin.take().context("the validator's stdin")?;
    for event in events {
        writeln!(input, "{event}")?;
    }
    drop(input);
    let output = child.wait_with_output()?;
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "events invalid against OCSF {OCSF_VERSION}:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(report)
}
