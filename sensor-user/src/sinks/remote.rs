//! A network sink on a thread of its own: the event loop hands it documents through a bounded
//! queue and never waits (a full queue drops the document and counts it); the thread keeps
//! them (in memory or a spool), delivers them in order and retries with backoff. How it fares
//! is shared as counters the event loop reads on each tick.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc, Mutex, PoisonError,
    },
    thread,
    time::{Duration, Instant},
};

use crate::{
    format::{ecs::Document, Format},
    sinks::{
        outgoing::Outgoing,
        output::{Degradation, News},
        Backoff, SinkError, SinkStats,
    },
};

/// Documents on their way to a sink's thread; beyond this the newest is dropped.
const QUEUE_LIMIT: usize = 1024;
/// How long the thread sleeps with nothing to do; it wakes at once for a document.
const IDLE: Duration = Duration::from_secs(1);
/// How soon a sink that delivered only part of what it keeps (a rate limit) tries again.
const PAUSE: Duration = Duration::from_millis(250);

/// Where a network sink's thread delivers.
pub trait Destination: Send + 'static {
    /// Keeps `item` until it is delivered; the count of older items dropped to make room.
    ///
    /// # Errors
    /// When it cannot be kept (a spool that cannot be written): it is lost, and counted.
    fn keep(&mut self, item: Outgoing) -> Result<u64, SinkError>;

    /// Delivers what is kept, oldest first, as far as it can now; the count delivered.
    ///
    /// # Errors
    /// When the destination failed: what is not delivered stays kept, for the next try.
    fn deliver(&mut self) -> Result<u64, SinkError>;

    /// Items kept and not yet delivered.
    fn pending(&self) -> usize;
}

/// Which documents a sink takes.
pub type Filter = fn(&Document) -> bool;

/// What the thread has done, as the event loop sees it.
#[derive(Debug, Clone, Default)]
struct Health {
    delivered: u64,
    retried: u64,
    dropped: u64,
    pending: usize,
    /// The last failure, until a delivery works again.
    error: Option<String>,
}

/// The event loop's end of a network sink.
pub struct RemoteSink {
    name: String,
    format: Format,
    takes: Filter,
    sender: Option<SyncSender<Outgoing>>,
    /// Documents sent to the thread and not yet taken by it.
    queued: Arc<AtomicUsize>,
    health: Arc<Mutex<Health>>,
    finished: Receiver<()>,
    /// Documents dropped because the queue was full.
    queue_dropped: u64,
    /// The health last looked at, to tell what changed.
    seen: Health,
    degradation: Option<Degradation>,
    news: Option<News>,
}

impl RemoteSink {
    /// Starts the thread delivering to `destination` the documents `takes` accepts, rendered
    /// in `format`.
    pub fn start(name: String, format: Format, takes: Filter, destination: impl Destination) -> Self {
        let (sender, documents) = mpsc::sync_channel(QUEUE_LIMIT);
        let (done, finished) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(Mutex::new(Health { pending: destination.pending(), ..Health::default() }));
        let worker = Worker { destination, queued: Arc::clone(&queued), health: Arc::clone(&health) };
        thread::Builder::new()
            .name(format!("sink {name}"))
            .spawn(move || {
                worker.run(&documents);
                let _ = done.send(());
            })
            // Without a thread the sink delivers nothing: it reads as a failing one.
            .map_err(|error| lock(&health).error = Some(error.to_string()))
            .ok();
        Self {
            name,
            format,
            takes,
            sender: Some(sender),
            queued,
            health,
            finished,
            queue_dropped: 0,
            seen: Health::default(),
            degradation: None,
            news: None,
        }
    }

    /// Hands `document` to the thread, if the sink takes it; never waits.
    pub fn write(&mut self, document: &Document) {
        if !(self.takes)(document) {
            return;
        }
        if let Some(degradation) = &mut self.degradation {
            degradation.note(document);
        }
        let Some(sender) = &self.sender else { return };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            sender.try_send(Outgoing::new(document, self.format))
        {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.queue_dropped += 1;
            let sink = self.name.clone();
            let degradation =
                self.degradation.get_or_insert_with(|| Degradation { sink, ..Degradation::default() });
            degradation.dropped += 1;
        }
    }

    /// Turns what the thread did since the last look into news: a failure (again), or the
    /// recovery from one.
    pub fn look(&mut self) {
        let health = lock(&self.health).clone();
        let sink = self.name.clone();
        if let Some(error) = &health.error {
            if health.retried != self.seen.retried
                || health.dropped != self.seen.dropped
                || self.degradation.is_none()
            {
                let degradation =
                    self.degradation.get_or_insert_with(|| Degradation { sink, ..Degradation::default() });
                degradation.error.clone_from(error);
                degradation.dropped += health.dropped - self.seen.dropped;
                self.news =
                    Some(News { failing: true, degradation: degradation.clone(), name: self.name.clone() });
            }
        } else if let Some(mut degradation) = self.degradation.take() {
            degradation.dropped += health.dropped - self.seen.dropped;
            self.news = Some(News { failing: false, degradation, name: self.name.clone() });
        }
        self.seen = health;
    }

    /// The last failure or recovery not yet reported.
    pub fn take_news(&mut self) -> Option<News> {
        self.news.take()
    }

    /// The counters since start.
    pub fn stats(&self) -> SinkStats {
        let health = lock(&self.health).clone();
        SinkStats {
            name: self.name.clone(),
            delivered: health.delivered,
            retried: health.retried,
            dropped: health.dropped + self.queue_dropped,
            queue_depth: (health.pending + self.queued.load(Ordering::Relaxed)) as u64,
        }
    }

    /// Tells the thread no more documents come and waits until `deadline` for it to deliver
    /// what it holds.
    pub fn close(&mut self, deadline: Instant) {
        if self.sender.take().is_some() {
            let _ = self.finished.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

/// The thread's end: takes documents, keeps them, delivers them.
struct Worker<D> {
    destination: D,
    queued: Arc<AtomicUsize>,
    health: Arc<Mutex<Health>>,
}

impl<D: Destination> Worker<D> {
    fn run(mut self, documents: &Receiver<Outgoing>) {
        let mut backoff = Backoff::default();
        let mut retry_at = Instant::now();
        loop {
            let wait = if self.destination.pending() == 0 {
                IDLE
            } else {
                retry_at.saturating_duration_since(Instant::now())
            };
            let closing = match documents.recv_timeout(wait) {
                Ok(first) => {
                    self.take(first);
                    while let Ok(next) = documents.try_recv() {
                        self.take(next);
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            // Closing: one last try, whatever the backoff says.
            if self.destination.pending() > 0 && (closing || Instant::now() >= retry_at) {
                retry_at = Instant::now() + self.attempt(&mut backoff);
            }
            lock(&self.health).pending = self.destination.pending();
            if closing {
                return;
            }
        }
    }

    fn take(&mut self, item: Outgoing) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let kept = self.destination.keep(item);
        let mut health = lock(&self.health);
        match kept {
            Ok(dropped) => health.dropped += dropped,
            Err(error) => {
                health.dropped += 1;
                health.error = Some(error.to_string());
            }
        }
    }

    /// One delivery; how long to wait before the next.
    fn attempt(&mut self, backoff: &mut Backoff) -> Duration {
        let delivered = self.destination.deliver();
        let mut health = lock(&self.health);
        match delivered {
            Ok(count) => {
                health.delivered += count;
                health.error = None;
                backoff.reset();
                if self.destination.pending() == 0 {
                    Duration::ZERO
                } else {
                    PAUSE
                }
            }
            Err(error) => {
                health.retried += 1;
                health.error = Some(error.to_string());
                backoff.failed()
            }
        }
    }
}

/// A bounded queue in memory, oldest first, for sinks without a spool.
#[derive(Debug, Default)]
pub struct Pending {
    items: VecDeque<Outgoing>,
}

/// Items a sink without a spool keeps while its destination fails.
const PENDING_LIMIT: usize = 4096;

impl Pending {
    /// Keeps `item`, dropping the oldest if full; the count dropped.
    pub fn push(&mut self, item: Outgoing) -> u64 {
        let full = self.items.len() >= PENDING_LIMIT;
        if full {
            self.items.pop_front();
        }
        self.items.push_back(item);
        u64::from(full)
    }

    /// Delivers with `send`, oldest first, until it fails or returns false (not now); the count
    /// delivered.
    ///
    /// # Errors
    /// The first failure of `send`: that item and those after it stay.
    pub fn deliver(
        &mut self,
        mut send: impl FnMut(&Outgoing) -> Result<bool, SinkError>,
    ) -> Result<u64, SinkError> {
        let mut delivered = 0;
        while let Some(item) = self.items.front() {
            if !send(item)? {
                break;
            }
            self.items.pop_front();
            delivered += 1;
        }
        Ok(delivered)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

fn lock(health: &Mutex<Health>) -> std::sync::MutexGuard<'_, Health> {
    health.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::format::ecs::{Host, SENSOR_STARTED};

    /// A destination that fails while `down` is set.
    struct Flaky {
        down: Arc<AtomicBool>,
        pending: Pending,
    }

    impl Destination for Flaky {
        fn keep(&mut self, item: Outgoing) -> Result<u64, SinkError> {
            Ok(self.pending.push(item))
        }

        fn deliver(&mut self) -> Result<u64, SinkError> {
            let down = self.down.load(Ordering::Relaxed);
            self.pending.deliver(|_| if down { Err(std::io::Error::other("down").into()) } else { Ok(true) })
        }

        fn pending(&self) -> usize {
            self.pending.len()
        }
    }

    /// Looks at the sink until it has news, for at most ten seconds.
    fn news(sink: &mut RemoteSink) -> News {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            sink.look();
            if let Some(news) = sink.take_news() {
                return news;
            }
            assert!(Instant::now() < deadline, "no news");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_failing_destination_is_news_and_its_recovery_delivers_everything_kept() {
        let down = Arc::new(AtomicBool::new(true));
        let flaky = Flaky { down: Arc::clone(&down), pending: Pending::default() };
        let mut sink = RemoteSink::start("flaky".to_owned(), Format::Ecs, |_| true, flaky);
        let document = Document::new(0, SENSOR_STARTED, "e-0".to_owned(), Host { name: "h".to_owned() });
        sink.write(&document);
        let failing = news(&mut sink);
        assert!(failing.failing, "{failing:?}");
        assert_eq!(
            (failing.degradation.sink.as_str(), failing.degradation.error.as_str()),
            ("flaky", "down")
        );
        sink.write(&document);

        down.store(false, Ordering::Relaxed);
        let recovered = news(&mut sink);
        assert!(!recovered.failing, "{recovered:?}");
        assert_eq!(recovered.degradation.failed, 1, "the document written while it failed");
        let stats = sink.stats();
        assert_eq!((stats.delivered, stats.dropped, stats.queue_depth), (2, 0, 0));
        assert!(stats.retried >= 1, "{stats:?}");
    }
}
