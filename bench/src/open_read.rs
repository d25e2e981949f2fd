//! Workloads 1, 2 and 7: open + read 64 B + close in a loop, the path every process pays for.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::bound::{nanos, thread_cpu_ns, Bound};
use crate::secret::{read_once, READ_BYTES};

/// Untimed iterations first: page cache, dentry cache and, on a secret, the taint settle.
const WARM_UP: u64 = 1_000;

pub fn run(path: &Path, iterations: u64, limit: Duration) -> Result<Value> {
    let mut buf = [0; READ_BYTES];
    for _ in 0..WARM_UP {
        read_once(path, &mut buf)?;
    }
    let cpu_before = thread_cpu_ns();
    let bound = Bound::start(iterations, limit);
    let mut done = 0;
    while bound.allows(done) {
        read_once(path, &mut buf)?;
        done += 1;
    }
    let elapsed = bound.elapsed();
    let cpu_ns = cpu_before.zip(thread_cpu_ns()).map(|(before, after)| after.saturating_sub(before));
    Ok(json!({ "iterations": done, "elapsed_ns": nanos(elapsed), "cpu_ns": cpu_ns }))
}
