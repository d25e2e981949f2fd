//! Where documents go: one JSON line each, flushed at once so a reader sees alerts live.
//!
//! A sink that fails never stops detection. Undelivered lines wait in a bounded queue (the
//! oldest dropped first, counted) and are retried with backoff, a file reopened at its path
//! each time; a stdout nobody will read again (`EPIPE`) is replaced by stderr. The agent
//! learns of each failure and recovery from [`Output::take_news`] and reports them.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    config::OutputTarget,
    error::Error,
    format::{
        ecs::{Document, OutputHealth},
        Schema,
    },
    journal::Feed,
    metrics::{Metrics, SinkStats},
};

/// Most lines kept while the sink fails: a few MiB of documents.
const QUEUE_LIMIT: usize = 4096;
/// First wait before a failed sink is tried again; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Where lines are written now.
enum Sink {
    Stdout,
    /// Stdout was closed for good; stderr took over.
    Stderr,
    File {
        path: PathBuf,
        file: File,
    },
}

impl Sink {
    /// Writes what is left of `line` after `written` bytes, counting what gets through.
    fn write_from(&mut self, line: &[u8], written: &mut usize) -> io::Result<()> {
        match self {
            Self::Stdout => write_from(&mut io::stdout().lock(), line, written),
            Self::Stderr => write_from(&mut io::stderr().lock(), line, written),
            Self::File { file, .. } => write_from(file, line, written),
        }
    }
}

/// What went wrong since the sink last worked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Degradation {
    /// Documents whose first write failed.
    pub failed: u64,
    /// Alerts among them.
    pub alerts_failed: u64,
    /// Documents dropped from the full queue: never delivered.
    pub dropped: u64,
    /// The last error, as the system describes it.
    pub error: String,
    /// The sink that failed first.
    pub sink: String,
}

/// A change in the sink's health, for the agent to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum News {
    /// The sink failed, at first or again on a retry (report it where it can still be read:
    /// stderr).
    Failing(Degradation),
    /// The sink works again and every queued line was delivered.
    Recovered(Degradation),
}

impl News {
    /// `vigie.output` of the `output-degraded` document; `output` is the one in use now.
    pub fn report(&self, output: &str) -> OutputHealth {
        let (state, degradation) = match self {
            Self::Failing(d) => ("failing", d),
            Self::Recovered(d) => ("recovered", d),
        };
        OutputHealth {
            name: output.to_owned(),
            failed: degradation.sink.clone(),
            state,
            documents_failed: degradation.failed,
            alerts_failed: degradation.alerts_failed,
            documents_dropped: degradation.dropped,
            error: degradation.error.clone(),
        }
    }
}

/// An open sink, with the lines it has not taken yet.
pub struct Output {
    sink: Sink,
    /// The schema lines are written in.
    schema: Schema,
    /// Lines not yet written, oldest first; the first may be written in part.
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the queue's first line already written.
    written: usize,
    degradation: Option<Degradation>,
    news: Option<News>,
    backoff: Duration,
    retry_at: Instant,
    /// Documents never delivered since start, for `sensor-stopped`.
    dropped_total: u64,
    /// The journal, which keeps every document written.
    journal: Feed,
    /// Retries of the failing sink since start.
    retries: u64,
    /// Where each document written and the sink's state are counted, if metrics are served.
    metrics: Option<Metrics>,
}

impl Output {
    /// Opens stdout, or the file in append mode (created if missing, mode 0600), for lines in
    /// `schema`.
    pub fn open(target: &OutputTarget, schema: Schema) -> Result<Self, Error> {
        let sink = match target {
            OutputTarget::Stdout => Sink::Stdout,
            OutputTarget::File(path) => Sink::File { path: path.clone(), file: open_file(path)? },
        };
        Ok(Self {
            sink,
            schema,
            queue: VecDeque::new(),
            written: 0,
            degradation: None,
            news: None,
            backoff: FIRST_BACKOFF,
            retry_at: Instant::now(),
            dropped_total: 0,
            journal: Feed::default(),
            retries: 0,
            metrics: None,
        })
    }

    /// The sink's name, as documents report it.
    pub fn name(&self) -> String {
        match &self.sink {
            Sink::Stdout => "stdout".to_owned(),
            Sink::Stderr => "stderr".to_owned(),
            Sink::File { path, .. } => path.display().to_string(),
        }
    }

    /// Counts every document written, and the sink's state, in `metrics` from now on.
    pub fn count_in(&mut self, metrics: Option<Metrics>) {
        self.metrics = metrics;
    }

    /// Writes one document as a line, or queues it if the sink is failing.
    pub fn write(&mut self, document: &Document) {
        if let Some(metrics) = &self.metrics {
            metrics.observe(document);
        }
        // Our own documents always serialize; one that did not would be counted as dropped.
        let Ok(mut line) = self.schema.json(document) else {
            self.dropped_total += 1;
            return;
        };
        line.push(b'\n');
        self.journal.record(document, &line);
        if self.queue.len() == QUEUE_LIMIT {
            // A line written in part is finished first, or the file would hold half a line.
            self.queue.remove(usize::from(self.written > 0));
            self.dropped_total += 1;
            self.degradation.get_or_insert_with(Degradation::default).dropped += 1;
        }
        self.queue.push_back(line);
        if self.degradation.is_none() {
            self.flush();
        }
        if let Some(degradation) = &mut self.degradation {
            degradation.failed += 1;
            degradation.alerts_failed += u64::from(document.event.class.kind == "alert");
            if let Some(News::Failing(reported)) = &mut self.news {
                reported.clone_from(degradation);
            }
        }
        self.publish();
    }

    /// Hands every document written from now on to the journal too.
    pub fn journal_to(&mut self, feed: Feed) {
        self.journal = feed;
    }

    /// Writes every document of `documents`, in order.
    pub fn write_all(&mut self, documents: impl IntoIterator<Item = Document>) {
        documents.into_iter().for_each(|document| self.write(&document));
    }

    /// Tries a failing sink again once its backoff has passed (a file is reopened first).
    pub fn retry(&mut self) {
        if self.degradation.is_none() || Instant::now() < self.retry_at {
            return;
        }
        if let Sink::File { path, file } = &mut self.sink {
            if let Ok(reopened) = open_file(path) {
                *file = reopened;
            }
        }
        self.retries += 1;
        self.flush();
        self.publish();
    }

    /// Opens the file at its path again (logrotate moved it); stdout stays as it is.
    pub fn reopen(&mut self) -> Result<(), Error> {
        if let Sink::File { path, file } = &mut self.sink {
            *file = open_file(path)?;
        }
        Ok(())
    }

    /// Writes to `target` from now on (what waits in the queue included).
    pub fn retarget(&mut self, target: &OutputTarget) -> Result<(), Error> {
        self.sink = Self::open(target, self.schema)?.sink;
        self.written = 0;
        Ok(())
    }

    /// The last failure or recovery not yet reported.
    pub fn take_news(&mut self) -> Option<News> {
        self.news.take()
    }

    /// Documents dropped undelivered since start, and those still waiting.
    pub fn undelivered(&self) -> (u64, usize) {
        (self.dropped_total, self.queue.len())
    }

    /// The sink's queue, drops and retries, for the metrics.
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name(),
            queued: u64::try_from(self.queue.len()).unwrap_or(u64::MAX),
            dropped: self.dropped_total,
            retries: self.retries,
        }
    }

    /// Tells the metrics, if any, the sink's state.
    fn publish(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.sink(&self.stats());
        }
    }

    /// Writes `document` to stderr, for when the sink itself is unusable.
    pub fn to_stderr(&self, document: &Document) {
        if let Ok(mut line) = self.schema.json(document) {
            line.push(b'\n');
            let _ = io::stderr().write_all(&line);
        }
    }

    /// Writes queued lines until the queue is empty or the sink fails.
    fn flush(&mut self) {
        while let Some(line) = self.queue.front() {
            match self.sink.write_from(line, &mut self.written) {
                Ok(()) => {
                    self.queue.pop_front();
                    self.written = 0;
                }
                Err(error) if self.failed(&error) => {}
                Err(_) => return,
            }
        }
        if let Some(degradation) = self.degradation.take() {
            self.backoff = FIRST_BACKOFF;
            self.news = Some(News::Recovered(degradation));
        }
    }

    /// Records a failure; true when another sink took over and may be written at once.
    fn failed(&mut self, error: &io::Error) -> bool {
        let sink = self.name();
        let degradation =
            self.degradation.get_or_insert_with(|| Degradation { sink, ..Degradation::default() });
        degradation.error = error.to_string();
        self.news = Some(News::Failing(degradation.clone()));
        // Nobody will ever read this stdout again: stderr takes over at once.
        if error.kind() == io::ErrorKind::BrokenPipe && matches!(self.sink, Sink::Stdout) {
            self.sink = Sink::Stderr;
            self.written = 0;
            return true;
        }
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        false
    }
}

/// [`Sink::write_from`] on any writer.
fn write_from(writer: &mut impl Write, line: &[u8], written: &mut usize) -> io::Result<()> {
    while *written < line.len() {
        match writer.write(&line[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    writer.flush()
}

fn open_file(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Output { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::format::ecs::{Host, SENSOR_STARTED};
    use crate::metrics::tests::value;

    fn document() -> Document {
        Document::new(0, SENSOR_STARTED, "e-0".to_owned(), Host { name: "test".to_owned() })
    }

    /// An output whose file is `/dev/full` (every write fails with ENOSPC) until it is
    /// reopened at `path`.
    fn full_until_reopened(path: &Path) -> Output {
        let mut output = Output::open(&OutputTarget::File(path.to_owned()), Schema::Ecs).unwrap();
        output.sink = Sink::File { path: path.to_owned(), file: open_file(Path::new("/dev/full")).unwrap() };
        output
    }

    #[test]
    fn a_full_sink_queues_reports_and_delivers_everything_once_it_works_again() {
        let path = std::env::temp_dir().join(format!("vigie-output-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut output = full_until_reopened(&path);
        output.write(&document());
        let Some(News::Failing(failing)) = output.take_news() else { panic!("no failure reported") };
        assert_eq!((failing.failed, failing.dropped), (1, 0));
        assert!(failing.error.contains("No space left"), "{}", failing.error);
        output.write(&document());
        output.retry();
        assert_eq!(output.take_news(), None, "not retried before its backoff");

        output.retry_at = Instant::now();
        output.retry();
        let Some(News::Recovered(recovered)) = output.take_news() else { panic!("no recovery reported") };
        assert_eq!((recovered.failed, recovered.dropped), (2, 0));
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(lines.lines().count(), 2, "both documents delivered, in full");
        assert!(lines.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{lines}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_counts_them() {
        let mut output = full_until_reopened(Path::new("/dev/full"));
        for _ in 0..QUEUE_LIMIT + 3 {
            output.write(&document());
        }
        assert_eq!(output.undelivered(), (3, QUEUE_LIMIT));
        let degradation = output.degradation.clone().unwrap();
        assert_eq!((degradation.failed, degradation.dropped), (u64::try_from(QUEUE_LIMIT).unwrap() + 3, 3));
    }

    #[test]
    fn the_metrics_count_each_document_and_see_the_queue_drops_and_retries() {
        let metrics = Metrics::default();
        let mut output = full_until_reopened(Path::new("/dev/full"));
        output.count_in(Some(metrics.clone()));
        for _ in 0..QUEUE_LIMIT + 2 {
            output.write(&document());
        }
        output.retry_at = Instant::now();
        output.retry();
        let text = metrics.exposition();
        let series = |name: &str| value(&text, &format!("{name}{{sink=\"/dev/full\"}}"));
        assert_eq!(
            series("vigie_sink_queue_depth"),
            Some(f64::from(u32::try_from(QUEUE_LIMIT).unwrap())),
            "{text}"
        );
        assert_eq!(series("vigie_sink_dropped_total"), Some(2.0), "{text}");
        assert_eq!(series("vigie_sink_retries_total"), Some(1.0), "{text}");
        let documents = value(&text, r#"vigie_documents_total{kind="state",action="sensor-started"}"#);
        assert_eq!(documents, Some(f64::from(u32::try_from(QUEUE_LIMIT).unwrap() + 2)), "{text}");
    }

    #[test]
    fn a_partly_written_line_is_finished_not_repeated() {
        struct Taking(Vec<u8>, usize);
        impl Write for Taking {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.1 == 0 {
                    return Err(io::ErrorKind::StorageFull.into());
                }
                let n = buf.len().min(self.1);
                self.0.extend_from_slice(&buf[..n]);
                self.1 -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut writer = Taking(Vec::new(), 3);
        let mut written = 0;
        assert!(write_from(&mut writer, b"abcdef\n", &mut written).is_err());
        assert_eq!(written, 3);
        writer.1 = 100;
        write_from(&mut writer, b"abcdef\n", &mut written).unwrap();
        assert_eq!(writer.0, b"abcdef\n");
    }
}
