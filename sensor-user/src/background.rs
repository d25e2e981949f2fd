//! Slow work (file system walks, `/proc` scans) on tokio's blocking threads, one job at a
//! time per kind, so that it never holds up the event loop; the loop awaits the result and
//! applies it in order with everything else.

use tokio::task::{spawn_blocking, JoinHandle};

/// At most one job in flight whose result is a `T`.
#[derive(Debug)]
pub struct Background<T> {
    in_flight: Option<JoinHandle<T>>,
}

impl<T> Default for Background<T> {
    fn default() -> Self {
        Self { in_flight: None }
    }
}

impl<T: Default + Send + 'static> Background<T> {
    /// Starts `job` unless one is still running; true if it was started.
    pub fn start(&mut self, job: impl FnOnce() -> T + Send + 'static) -> bool {
        if self.in_flight.is_some() {
            return false;
        }
        self.in_flight = Some(spawn_blocking(job));
        true
    }

    /// The result of the job in flight, once it is done; never, without one. Cancel-safe: a
    /// `select!` that picks another branch leaves the job running.
    pub async fn finished(&mut self) -> T {
        let Some(handle) = self.in_flight.as_mut() else { return std::future::pending().await };
        // A job that panicked found nothing; the next one starts afresh.
        let result = handle.await.unwrap_or_default();
        self.in_flight = None;
        result
    }

    /// The result of the job in flight if it is done, else `None` at once (it runs on).
    pub async fn take_finished(&mut self) -> Option<T> {
        if !self.in_flight.as_ref().is_some_and(JoinHandle::is_finished) {
            return None;
        }
        Some(self.finished().await)
    }
}
