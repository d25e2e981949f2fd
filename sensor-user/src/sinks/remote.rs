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
    format::Schema,
    journal::Feed,
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
/// The longest a server's "come back later" is waited for before the next try.
const MAX_RETRY_AFTER: Duration = Duration::from_mins(1);

/// Where a network sink's thread delivers.
pub trait Destination: Send + 'static {
    /// Keeps `item` until it is delivered; the count of older items dropped to make room.
    ///
    /// # Errors
    /// When it cannot be kept (a spool that cannot be written): it is lost, and counted.
    fn keep(&mut self, item: Outgoing) -> Result<u64, SinkError>;

    /// Delivers what is kept, oldest first, as far as it can now.
    ///
    /// # Errors
    /// When the destination failed: what is not delivered stays kept, for the next try.
    fn deliver(&mut self) -> Result<Delivered, SinkError>;

    /// Items kept and not yet delivered.
    fn pending(&self) -> usize;
}

/// What one delivery took: how many documents, and the `event.id`s of the alerts among them
/// (the journal records which sinks each alert reached).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    pub count: u64,
    pub alerts: Vec<String>,
}

impl Delivered {
    /// Counts one document, an alert if `alert` names its `event.id`.
    pub fn add(&mut self, alert: Option<String>) {
        self.count += 1;
        self.alerts.extend(alert);
    }
}

/// Which documents a sink takes.
pub type Filter = fn(&Outgoing) -> bool;

/// What the thread has done, as the event loop sees it.
#[derive(Debug, Clone, Default)]
struct Health {
    delivered: u64,
    retried: u64,
    dropped: u64,
    pending: usize,
    /// The last failure, until a delivery works again.
    error: Option<String>,
    /// The last failure, kept after a recovery: one between two looks is still reported.
    last_error: String,
}

/// The event loop's end of a network sink.
pub struct RemoteSink {
    name: String,
    format: Schema,
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
    news: VecDeque<News>,
}

impl RemoteSink {
    /// Starts the thread delivering to `destination` the documents `takes` accepts, rendered
    /// in `format`, recording in `journal` each alert it delivered.
    pub fn start(
        name: String,
        format: Schema,
        takes: Filter,
        destination: impl Destination,
        journal: Feed,
    ) -> Self {
        let (sender, documents) = mpsc::sync_channel(QUEUE_LIMIT);
        let (done, finished) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let health = Arc::new(Mutex::new(Health { pending: destination.pending(), ..Health::default() }));
        let worker = Worker {
            name: name.clone(),
            destination,
            queued: Arc::clone(&queued),
            health: Arc::clone(&health),
            journal,
        };
        thread::Builder::new()
            .name(format!("sink {name}"))
            .spawn(move || {
                worker.run(&documents);
                let _ = done.send(());
            })
            // Without a thread the sink delivers nothing: it reads as a failing one.
            .map_err(|error| {
                let mut health = lock(&health);
                health.last_error = error.to_string();
                health.error = Some(health.last_error.clone());
            })
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
            news: VecDeque::new(),
        }
    }

    /// The format its documents are rendered in.
    pub fn format(&self) -> Schema {
        self.format
    }

    /// Hands `item` to the thread, if the sink takes it; never waits.
    pub fn write(&mut self, item: &Outgoing) {
        if !(self.takes)(item) {
            return;
        }
        if let Some(degradation) = &mut self.degradation {
            degradation.note(item);
        }
        let Some(sender) = &self.sender else { return };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sender.try_send(item.clone()) {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.queue_dropped += 1;
            let sink = self.name.clone();
            let degradation =
                self.degradation.get_or_insert_with(|| Degradation { sink, ..Degradation::default() });
            degradation.dropped += 1;
        }
    }

    /// Turns what the thread did since the last look into news: a failure (again), or the
    /// recovery from one; a failure that came and went between two looks is both.
    pub fn look(&mut self) {
        let health = lock(&self.health).clone();
        let dropped = health.dropped - self.seen.dropped;
        let failed_again = health.retried != self.seen.retried || dropped > 0;
        if failed_again || (health.error.is_some() && self.degradation.is_none()) {
            let sink = self.name.clone();
            let degradation =
                self.degradation.get_or_insert_with(|| Degradation { sink, ..Degradation::default() });
            degradation.error.clone_from(&health.last_error);
            degradation.dropped += dropped;
            self.news.push_back(News {
                failing: true,
                degradation: degradation.clone(),
                name: self.name.clone(),
            });
        }
        if health.error.is_none() {
            if let Some(degradation) = self.degradation.take() {
                self.news.push_back(News { failing: false, degradation, name: self.name.clone() });
            }
        }
        self.seen = health;
    }

    /// The oldest failure or recovery not yet reported.
    pub fn take_news(&mut self) -> Option<News> {
        self.news.pop_front()
    }

    /// The counters since start.
    pub fn stats(&self) -> SinkStats {
        let health = lock(&self.health).clone();
        SinkStats {
            name: self.name.clone(),
            delivered: health.delivered,
            retries: health.retried,
            dropped: health.dropped + self.queue_dropped,
            queued: (health.pending + self.queued.load(Ordering::Relaxed)) as u64,
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
    name: String,
    destination: D,
    queued: Arc<AtomicUsize>,
    health: Arc<Mutex<Health>>,
    journal: Feed,
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
            Ok(0) => {}
            Ok(dropped) => {
                health.dropped += dropped;
                // A destination that works did not keep up: that is the failure to report.
                if health.error.is_none() {
                    "no room left: the oldest documents were dropped".clone_into(&mut health.last_error);
                }
            }
            Err(error) => {
                health.dropped += 1;
                health.last_error = error.to_string();
                health.error = Some(health.last_error.clone());
            }
        }
    }

    /// One delivery; how long to wait before the next.
    fn attempt(&mut self, backoff: &mut Backoff) -> Duration {
        let delivered = self.destination.deliver();
        let mut health = lock(&self.health);
        match delivered {
            Ok(delivered) => {
                health.delivered += delivered.count;
                for alert in &delivered.alerts {
                    self.journal.delivered(alert, &self.name);
                }
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
                health.last_error = error.to_string();
                health.error = Some(health.last_error.clone());
                // Retrying sooner would only be refused again.
                let wait = backoff.failed();
                error.retry_after().map_or(wait, |asked| asked.clamp(wait, MAX_RETRY_AFTER))
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

    /// Delivers with `send`, oldest first, until it fails or returns false (not now).
    ///
    /// # Errors
    /// The first failure of `send`: that item and those after it stay.
    pub fn deliver(
        &mut self,
        mut send: impl FnMut(&Outgoing) -> Result<bool, SinkError>,
    ) -> Result<Delivered, SinkError> {
        let mut delivered = Delivered::default();
        while let Some(item) = self.items.front() {
            if !send(item)? {
                break;
            }
            delivered.add((item.kind == "alert").then(|| item.id.clone()));
            self.items.pop_front();
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
    use crate::format::ecs::{Document, Host, SENSOR_STARTED};

    /// A destination that fails while `down` is set.
    struct Flaky {
        down: Arc<AtomicBool>,
        pending: Pending,
    }

    impl Destination for Flaky {
        fn keep(&mut self, item: Outgoing) -> Result<u64, SinkError> {
            Ok(self.pending.push(item))
        }

        fn deliver(&mut self) -> Result<Delivered, SinkError> {
            let down = self.down.load(Ordering::Relaxed);
            self.pending.deliver(|_| if down { Err(std::io::Error::other("down").into()) } else { Ok(true) })
        }

        fn pending(&self) -> usize {
            self.pending.len()
        }
    }

    /// Looks at the sink until it has news of a failure (`failing`) or a recovery, for at most
    /// ten seconds.
    fn news(sink: &mut RemoteSink, failing: bool) -> News {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            sink.look();
            if let Some(news) = std::iter::from_fn(|| sink.take_news()).find(|news| news.failing == failing) {
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
        let mut sink = RemoteSink::start("flaky".to_owned(), Schema::Ecs, |_| true, flaky, Feed::default());
        let document = Document::new(0, SENSOR_STARTED, "e-0".to_owned(), Host { name: "h".to_owned() });
        let document = Outgoing::new(&document, Schema::Ecs);
        sink.write(&document);
        let failing = news(&mut sink, true);
        assert!(failing.failing, "{failing:?}");
        assert_eq!(
            (failing.degradation.sink.as_str(), failing.degradation.error.as_str()),
            ("flaky", "down")
        );
        sink.write(&document);

        down.store(false, Ordering::Relaxed);
        let recovered = news(&mut sink, false);
        assert!(!recovered.failing, "{recovered:?}");
        assert_eq!(recovered.degradation.failed, 1, "the document written while it failed");
        let stats = sink.stats();
        assert_eq!((stats.delivered, stats.dropped, stats.queued), (2, 0, 0));
        assert!(stats.retries >= 1, "{stats:?}");
    }

    /// A destination that is always rate limited for `wait`.
    struct Limited {
        wait: Duration,
        pending: Pending,
    }

    impl Destination for Limited {
        fn keep(&mut self, item: Outgoing) -> Result<u64, SinkError> {
            Ok(self.pending.push(item))
        }

        fn deliver(&mut self) -> Result<Delivered, SinkError> {
            Err(SinkError::RateLimited(self.wait))
        }

        fn pending(&self) -> usize {
            self.pending.len()
        }
    }

    #[test]
    fn a_rate_limited_sink_waits_what_the_server_asked_within_its_backoff_and_a_minute() {
        let wait_after = |asked: Duration| {
            let destination = Limited { wait: asked, pending: Pending::default() };
            let health = Arc::new(Mutex::new(Health::default()));
            let mut worker = Worker {
                name: "limited".to_owned(),
                destination,
                queued: Arc::new(AtomicUsize::new(0)),
                health: Arc::clone(&health),
                journal: Feed::default(),
            };
            let wait = worker.attempt(&mut Backoff::default());
            assert_eq!(
                lock(&health).error.as_deref(),
                Some(&*format!("HTTP status 429, rate limited for {} ms", asked.as_millis()))
            );
            wait
        };
        assert_eq!(wait_after(Duration::from_secs(7)), Duration::from_secs(7));
        assert_eq!(
            wait_after(Duration::from_millis(1)),
            Backoff::default().failed(),
            "never sooner than its backoff"
        );
        assert_eq!(wait_after(Duration::from_hours(1)), MAX_RETRY_AFTER);
    }

    #[test]
    fn a_failure_over_before_the_next_look_is_still_reported_and_its_recovery_too() {
        let down = Arc::new(AtomicBool::new(true));
        let flaky = Flaky { down: Arc::clone(&down), pending: Pending::default() };
        let mut sink = RemoteSink::start("brief".to_owned(), Schema::Ecs, |_| true, flaky, Feed::default());
        let document = Document::new(0, SENSOR_STARTED, "e-0".to_owned(), Host { name: "h".to_owned() });
        sink.write(&Outgoing::new(&document, Schema::Ecs));
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.stats().retries == 0 {
            assert!(Instant::now() < deadline, "never tried");
            thread::sleep(Duration::from_millis(5));
        }
        down.store(false, Ordering::Relaxed);
        while sink.stats().delivered == 0 {
            assert!(Instant::now() < deadline, "never delivered");
            thread::sleep(Duration::from_millis(5));
        }
        sink.look();
        let (failing, recovered) = (sink.take_news().unwrap(), sink.take_news().unwrap());
        assert!(failing.failing && !recovered.failing, "{failing:?} {recovered:?}");
        assert_eq!(recovered.degradation.error, "down");
    }
}
