//! Ctrl-C and SIGTERM stop the bench between steps instead of killing it mid-way, so the
//! guards (namespace, audit rules, BPF stats switch, the agent) still clean up.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler; a second signal exits at once.
pub fn install() -> Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("[bench] interrupted: stopping after this step and cleaning up (again to quit now)");
    })
    .context("cannot install the Ctrl-C handler")
}

/// Fails once a signal has arrived; called between steps.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}
