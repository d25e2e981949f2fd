//! Every document to every sink: the output (stdout or `--output`'s file) and the configured
//! sinks, behind one interface for the agent. The agent learns of each sink's failures and
//! recoveries from [`Output::take_news`] and reports them.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    config::{
        sink_specs::{SinkKind, SinkSpec},
        OutputTarget,
    },
    error::Error,
    format::{ecs::Document, ecs::OutputHealth, Schema},
    journal::Feed,
    metrics::Metrics,
    sinks::{file::FileSink, matrix, outgoing::Outgoing, remote::RemoteSink, syslog, webhook, SinkStats},
};

/// How long the network sinks may take, when the agent stops, to deliver what they hold
/// (a webhook's spool keeps what they could not).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What went wrong since a sink last worked.
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

impl Degradation {
    /// Counts `item` as one the sink could not take at once.
    pub fn note(&mut self, item: &Outgoing) {
        self.failed += 1;
        self.alerts_failed += u64::from(item.kind == "alert");
    }
}

/// A change in a sink's health, for the agent to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct News {
    /// The sink failed, at first or again on a retry (report it where it can still be read:
    /// stderr); false: it works again and every queued document was delivered.
    pub failing: bool,
    pub degradation: Degradation,
    /// The sink in use now (stderr after stdout went away).
    pub name: String,
}

impl News {
    /// `vigie.output` of the `output-degraded` document.
    pub fn report(&self) -> OutputHealth {
        OutputHealth {
            name: self.name.clone(),
            failed: self.degradation.sink.clone(),
            state: if self.failing { "failing" } else { "recovered" },
            documents_failed: self.degradation.failed,
            alerts_failed: self.degradation.alerts_failed,
            documents_dropped: self.degradation.dropped,
            error: self.degradation.error.clone(),
        }
    }
}

/// The output and the sinks, each document written to all of them.
pub struct Output {
    /// Stdout or `--output`'s file, unless only sinks were configured.
    primary: Option<FileSink>,
    /// `[[sink]]` and `--sink` stdout and file sinks.
    files: Vec<FileSink>,
    /// Network sinks, each on its own thread.
    remotes: Vec<RemoteSink>,
    /// The schema of the output's lines (each sink has its own).
    schema: Schema,
    /// The journal, which keeps every document written (in ECS, whatever the sinks write).
    journal: Feed,
    /// Where each document written and each sink's state are counted, if metrics are served.
    metrics: Option<Metrics>,
}

impl Output {
    /// Opens the output (if any), its lines in `schema`, and every sink; a file that cannot be
    /// opened, or a sink whose spool or token cannot be read, is an error.
    /// Each alert a sink delivers is recorded in `journal`, which also keeps every document.
    pub fn open(
        target: Option<&OutputTarget>,
        schema: Schema,
        sinks: &[SinkSpec],
        journal: &Feed,
    ) -> Result<Self, Error> {
        let mut output = Self {
            primary: target.map(|target| open_primary(target, schema)).transpose()?,
            files: Vec::new(),
            remotes: Vec::new(),
            schema,
            journal: journal.clone(),
            metrics: None,
        };
        for spec in sinks {
            match &spec.kind {
                SinkKind::Stdout => output.files.push(FileSink::stdout(spec.format)),
                SinkKind::File { path, rotation } => {
                    output.files.push(FileSink::file(path, *rotation, spec.format)?);
                }
                SinkKind::Syslog(address) => {
                    output.remotes.push(syslog::start(address, spec.format, journal.clone()));
                }
                SinkKind::Webhook(hook) => {
                    output.remotes.push(webhook::start(hook, spec.format, journal.clone())?);
                }
                SinkKind::Matrix(room) => {
                    output.remotes.push(matrix::start(room, spec.format, journal.clone())?);
                }
            }
        }
        for file in output.primary.iter_mut().chain(&mut output.files) {
            file.journal_to(journal.clone());
        }
        Ok(output)
    }

    /// Counts every document written, and each sink's state, in `metrics` from now on.
    pub fn count_in(&mut self, metrics: Option<Metrics>) {
        self.metrics = metrics;
    }

    /// Writes one document to every sink (a failing one queues it), rendered once per format,
    /// and to the journal.
    pub fn write(&mut self, document: &Document) {
        if let Some(metrics) = &self.metrics {
            metrics.observe(document);
        }
        let mut rendered = Vec::with_capacity(1);
        for file in self.primary.iter_mut().chain(&mut self.files) {
            file.write(rendered_in(&mut rendered, document, file.format()));
        }
        for remote in &mut self.remotes {
            remote.write(rendered_in(&mut rendered, document, remote.format()));
        }
        let mut line = rendered_in(&mut rendered, document, Schema::Ecs).json.clone().into_bytes();
        line.push(b'\n');
        self.journal.record(document, &line);
        self.publish();
    }

    /// Tells the metrics, if any, each sink's state.
    fn publish(&self) {
        if let Some(metrics) = &self.metrics {
            self.stats().iter().for_each(|stats| metrics.sink(stats));
        }
    }

    /// Writes every document of `documents`, in order.
    pub fn write_all(&mut self, documents: impl IntoIterator<Item = Document>) {
        documents.into_iter().for_each(|document| self.write(&document));
    }

    /// Tries failing files again once their backoff has passed, and looks at how the network
    /// sinks fare.
    pub fn retry(&mut self) {
        self.primary.iter_mut().chain(&mut self.files).for_each(FileSink::retry);
        self.remotes.iter_mut().for_each(RemoteSink::look);
        self.publish();
    }

    /// Opens every file at its path again (logrotate moved it); stdout stays as it is.
    pub fn reopen(&mut self) -> Result<(), Error> {
        self.primary.iter_mut().chain(&mut self.files).try_for_each(FileSink::reopen)
    }

    /// Writes the output to `target` from now on (what waits in its queue included), or stops
    /// writing it.
    pub fn retarget(&mut self, target: Option<&OutputTarget>) -> Result<(), Error> {
        let path = |target: &OutputTarget| match target {
            OutputTarget::Stdout => None,
            OutputTarget::File(path) => Some(path.clone()),
        };
        match (&mut self.primary, target) {
            (Some(primary), Some(target)) => primary.retarget(path(target).as_deref())?,
            (primary, target) => {
                *primary = target.map(|target| open_primary(target, self.schema)).transpose()?;
            }
        }
        Ok(())
    }

    /// The next failure or recovery not yet reported, of any sink.
    pub fn take_news(&mut self) -> Option<News> {
        let mut files = self.primary.iter_mut().chain(&mut self.files);
        files
            .find_map(FileSink::take_news)
            .or_else(|| self.remotes.iter_mut().find_map(RemoteSink::take_news))
    }

    /// Documents dropped undelivered since start, and those still waiting, over every sink.
    pub fn undelivered(&self) -> (u64, usize) {
        self.stats().iter().fold((0, 0), |(dropped, waiting), stats| {
            (dropped + stats.dropped, waiting + usize::try_from(stats.queued).unwrap_or(usize::MAX))
        })
    }

    /// Each sink's counters, the output first.
    pub fn stats(&self) -> Vec<SinkStats> {
        let files = self.primary.iter().chain(&self.files).map(FileSink::stats);
        files.chain(self.remotes.iter().map(RemoteSink::stats)).collect()
    }

    /// Writes `document` to stderr, in the output's schema, for when the sink itself is unusable.
    pub fn to_stderr(&self, document: &Document) {
        if let Ok(mut line) = self.schema.json(document) {
            line.push(b'\n');
            let _ = std::io::stderr().write_all(&line);
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let deadline = Instant::now() + CLOSE_GRACE;
        self.remotes.iter_mut().for_each(|remote| remote.close(deadline));
    }
}

/// `document` rendered in `format`, from `rendered` if it was already.
fn rendered_in<'a>(rendered: &'a mut Vec<Outgoing>, document: &Document, format: Schema) -> &'a Outgoing {
    let index = rendered.iter().position(|item| item.format == format).unwrap_or_else(|| {
        rendered.push(Outgoing::new(document, format));
        rendered.len() - 1
    });
    &rendered[index]
}

fn open_primary(target: &OutputTarget, schema: Schema) -> Result<FileSink, Error> {
    match target {
        OutputTarget::Stdout => Ok(FileSink::stdout(schema)),
        OutputTarget::File(path) => FileSink::file(Path::new(path), None, schema),
    }
}
