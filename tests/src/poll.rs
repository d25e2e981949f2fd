//! Waiting for a state the test cannot be told about, only look at: kernel maps, attached
//! programs, a process's trust.

use std::{fmt::Debug, thread, time::Duration, time::Instant};

use anyhow::{bail, Result};

/// How often the state is looked at.
const POLL: Duration = Duration::from_millis(20);

/// Reads `state` until `done` accepts it, for at most `timeout`, and returns it.
///
/// # Errors
/// When reading the state fails, or `timeout` passes first: the error names `what` was
/// awaited and the last state read.
pub fn until<S: Debug>(
    what: &str,
    timeout: Duration,
    mut state: impl FnMut() -> Result<S>,
    done: impl Fn(&S) -> bool,
) -> Result<S> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = state()?;
        if done(&now) {
            return Ok(now);
        }
        if Instant::now() > deadline {
            bail!("{what}: still {now:?} after {timeout:?}");
        }
        thread::sleep(POLL);
    }
}
