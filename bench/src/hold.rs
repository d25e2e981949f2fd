//! Workload 9's bystander: reads the secret once, so that with the sensor on it is tainted,
//! then stays alive doing nothing (no output, no traffic) until killed or `limit` has passed.

use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::Result;

use crate::secret;

pub fn run(secret: &Path, limit: Duration) -> Result<()> {
    secret::taint(secret)?;
    thread::sleep(limit);
    Ok(())
}
