//! Filling the sensor's ring buffer on purpose: with the agent paused, short processes'
//! exec records take the smallest ring's room, so what runs next finds it full.

use anyhow::Result;

use crate::{host_tools, Sensor};

/// The smallest ring the agent accepts (`--ring-buffer-bytes`): it overflows on a handful of
/// exec records.
pub const SMALLEST_RING: &str = "4096";
/// Short processes run while the agent is paused, to fill the ring before `then` runs.
const PROCESSES: u32 = 200;

/// Pauses `sensor`, runs [`PROCESSES`] `/bin/true`s, runs `then` (whose records find the ring
/// full), resumes the sensor and returns what `then` returned.
///
/// # Errors
/// When the sensor cannot be paused or resumed, the shell fails, or `then` does.
pub fn while_full<T>(sensor: &Sensor, then: impl FnOnce() -> Result<T>) -> Result<T> {
    sensor.pause()?;
    host_tools::sh(&format!("i=0; while [ $i -lt {PROCESSES} ]; do /bin/true; i=$((i+1)); done"))?;
    let outcome = then();
    sensor.resume()?;
    outcome
}
