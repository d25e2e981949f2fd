//! Every loop's limits: a count and a wall-clock budget, whichever ends first.

use std::time::{Duration, Instant};

/// The clock is read once per this many iterations, so timing costs the loop nothing.
const CLOCK_EVERY: u64 = 256;

/// At most `count` iterations and `limit` of wall-clock time, from [`Bound::start`].
pub struct Bound {
    count: u64,
    limit: Duration,
    start: Instant,
}

impl Bound {
    pub fn start(count: u64, limit: Duration) -> Self {
        Self { count, limit, start: Instant::now() }
    }

    /// Whether another iteration may run after `done` of them.
    #[inline]
    pub fn allows(&self, done: u64) -> bool {
        done < self.count && (!done.is_multiple_of(CLOCK_EVERY) || self.start.elapsed() < self.limit)
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// CPU time this thread has used, in ns (`/proc/thread-self/schedstat`), softirq work done
/// on its behalf included; `None` where the kernel does not keep it.
pub fn thread_cpu_ns() -> Option<u64> {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds as a JSON-friendly integer.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Bound;

    #[test]
    fn stops_at_the_count() {
        let bound = Bound::start(3, Duration::from_mins(1));
        assert!((0..3).all(|done| bound.allows(done)));
        assert!(!bound.allows(3));
    }

    #[test]
    fn stops_when_time_is_up() {
        let bound = Bound::start(u64::MAX, Duration::ZERO);
        assert!(!bound.allows(0));
    }
}
