//! Lines written on the event loop: stdout, or a file (JSON lines, mode 0600, rotated by
//! size), one JSON document each, flushed at once so a reader sees alerts live.
//!
//! A file that fails never stops detection. Undelivered lines wait in a bounded queue (the
//! oldest dropped first, counted) and are retried with backoff, a file reopened at its path
//! each time; a stdout nobody will read again (`EPIPE`) is replaced by stderr. Each failure and
//! recovery is news ([`FileSink::take_news`]) for the agent to report.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Instant,
};

use crate::{
    config::sink_specs::Rotation,
    error::Error,
    format::Schema,
    journal::Feed,
    sinks::{
        outgoing::Outgoing,
        output::{Degradation, News},
        Backoff, SinkStats,
    },
};

/// Most lines kept while the sink fails: a few MiB of documents.
const QUEUE_LIMIT: usize = 4096;

/// Where lines are written now.
enum Target {
    Stdout,
    /// Stdout was closed for good; stderr took over.
    Stderr,
    File {
        path: PathBuf,
        file: File,
        /// Bytes in the file, for rotation.
        size: u64,
    },
}

impl Target {
    /// Writes what is left of `line` after `written` bytes, counting what gets through.
    fn write_from(&mut self, line: &[u8], written: &mut usize) -> io::Result<()> {
        match self {
            Self::Stdout => write_from(&mut io::stdout().lock(), line, written),
            Self::Stderr => write_from(&mut io::stderr().lock(), line, written),
            Self::File { file, size, .. } => {
                let before = *written;
                let result = write_from(file, line, written);
                *size += (*written - before) as u64;
                result
            }
        }
    }

    fn open_file(path: &Path) -> Result<Self, Error> {
        let file = open_file(path)?;
        let size = file.metadata().map_err(|source| output_error(path, source))?.len();
        Ok(Self::File { path: path.to_owned(), file, size })
    }
}

/// A stdout or file sink, with the lines it has not taken yet.
pub struct FileSink {
    target: Target,
    rotation: Option<Rotation>,
    format: Schema,
    /// Lines not yet written, oldest first, each with its alert's `event.id` (none for other
    /// documents); the first may be written in part.
    queue: VecDeque<(Vec<u8>, Option<String>)>,
    /// Where each alert written is recorded as delivered by this sink.
    journal: Feed,
    /// Bytes of the queue's first line already written.
    written: usize,
    degradation: Option<Degradation>,
    news: Option<News>,
    backoff: Backoff,
    retry_at: Instant,
    delivered: u64,
    retried: u64,
    /// Documents never delivered since start, for `sensor-stopped`.
    dropped_total: u64,
}

impl FileSink {
    /// Stdout.
    pub fn stdout(format: Schema) -> Self {
        Self::new(Target::Stdout, None, format)
    }

    /// The file in append mode (created if missing, mode 0600), rotated by `rotation`.
    pub fn file(path: &Path, rotation: Option<Rotation>, format: Schema) -> Result<Self, Error> {
        Ok(Self::new(Target::open_file(path)?, rotation, format))
    }

    fn new(target: Target, rotation: Option<Rotation>, format: Schema) -> Self {
        Self {
            target,
            rotation,
            format,
            queue: VecDeque::new(),
            journal: Feed::default(),
            written: 0,
            degradation: None,
            news: None,
            backoff: Backoff::default(),
            retry_at: Instant::now(),
            delivered: 0,
            retried: 0,
            dropped_total: 0,
        }
    }

    /// The sink's name, as documents report it.
    pub fn name(&self) -> String {
        match &self.target {
            Target::Stdout => "stdout".to_owned(),
            Target::Stderr => "stderr".to_owned(),
            Target::File { path, .. } => path.display().to_string(),
        }
    }

    /// Records in `journal` every alert this sink writes from now on.
    pub fn journal_to(&mut self, journal: Feed) {
        self.journal = journal;
    }

    /// The format its documents are rendered in.
    pub fn format(&self) -> Schema {
        self.format
    }

    /// Writes one document as a line, or queues it if the sink is failing.
    pub fn write(&mut self, item: &Outgoing) {
        let mut line = Vec::with_capacity(item.json.len() + 1);
        line.extend_from_slice(item.json.as_bytes());
        line.push(b'\n');
        if self.queue.len() == QUEUE_LIMIT {
            // A line written in part is finished first, or the file would hold half a line.
            self.queue.remove(usize::from(self.written > 0));
            self.dropped_total += 1;
            self.degradation.get_or_insert_with(Degradation::default).dropped += 1;
        }
        self.queue.push_back((line, (item.kind == "alert").then(|| item.id.clone())));
        if self.degradation.is_none() {
            self.flush();
        }
        if let Some(degradation) = &mut self.degradation {
            degradation.note(item);
            if let Some(reported) = self.news.as_mut().filter(|news| news.failing) {
                reported.degradation.clone_from(degradation);
            }
        }
    }

    /// Tries a failing sink again once its backoff has passed (a file is reopened first).
    pub fn retry(&mut self) {
        if self.degradation.is_none() || Instant::now() < self.retry_at {
            return;
        }
        if let Target::File { path, .. } = &self.target {
            if let Ok(reopened) = Target::open_file(&path.clone()) {
                self.target = reopened;
            }
        }
        self.flush();
    }

    /// Opens the file at its path again (logrotate moved it); stdout stays as it is. A line
    /// written in part is written again whole to the new file.
    pub fn reopen(&mut self) -> Result<(), Error> {
        if let Target::File { path, .. } = &self.target {
            self.target = Target::open_file(&path.clone())?;
            self.written = 0;
        }
        self.flush();
        Ok(())
    }

    /// Writes to the file at `path` (or stdout: `None`) from now on, what waits in the queue
    /// included.
    pub fn retarget(&mut self, path: Option<&Path>) -> Result<(), Error> {
        self.target = match path {
            Some(path) => Target::open_file(path)?,
            None => Target::Stdout,
        };
        self.written = 0;
        Ok(())
    }

    /// The last failure or recovery not yet reported.
    pub fn take_news(&mut self) -> Option<News> {
        self.news.take()
    }

    /// The counters since start.
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            name: self.name(),
            delivered: self.delivered,
            retries: self.retried,
            dropped: self.dropped_total,
            queued: self.queue.len() as u64,
        }
    }

    /// Writes queued lines until the queue is empty or the sink fails.
    fn flush(&mut self) {
        while let Some(len) = self.queue.front().map(|(line, _)| line.len()) {
            let written = self
                .rotate_before(len)
                .and_then(|()| self.target.write_from(&self.queue[0].0, &mut self.written));
            match written {
                Ok(()) => {
                    if let Some((_, Some(alert))) = self.queue.pop_front() {
                        self.journal.delivered(&alert, &self.name());
                    }
                    self.written = 0;
                    self.delivered += 1;
                }
                Err(error) if self.failed(&error) => {}
                Err(_) => return,
            }
        }
        if let Some(degradation) = self.degradation.take() {
            self.backoff.reset();
            self.news = Some(News { failing: false, degradation, name: self.name() });
        }
    }

    /// Rotates the file if a new line of `len` bytes would take it past its limit.
    fn rotate_before(&mut self, len: usize) -> io::Result<()> {
        let (Some(rotation), Target::File { path, file, size }) = (self.rotation, &self.target) else {
            return Ok(());
        };
        if self.written > 0 || *size == 0 || size + len as u64 <= rotation.max_bytes {
            return Ok(());
        }
        let path = path.clone();
        // A file moved away (logrotate, before its hangup) is not ours to number: shifting the
        // rotated files would leave a gap at `path.1`.
        if is_at(file, &path)? {
            rotate(&path, rotation.keep)?;
        }
        self.target = Target::open_file(&path).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(())
    }

    /// Records a failure; true when another sink took over and may be written at once.
    fn failed(&mut self, error: &io::Error) -> bool {
        let sink = self.name();
        let degradation =
            self.degradation.get_or_insert_with(|| Degradation { sink, ..Degradation::default() });
        degradation.error = error.to_string();
        let degradation = degradation.clone();
        self.retried += 1;
        // Nobody will ever read this stdout again: stderr takes over at once.
        let taken_over = error.kind() == io::ErrorKind::BrokenPipe && matches!(self.target, Target::Stdout);
        if taken_over {
            self.target = Target::Stderr;
            self.written = 0;
        } else {
            self.retry_at = Instant::now() + self.backoff.failed();
        }
        self.news = Some(News { failing: true, degradation, name: self.name() });
        taken_over
    }
}

/// Moves `path` to `path.1`, `path.1` to `path.2`, … keeping `keep` rotated files.
///
/// The file is taken off the path first, under a name of its own: one moved away meanwhile
/// (logrotate, between [`is_at`] and here) leaves the numbered files as they were, not shifted
/// around a gap at `path.1`.
fn rotate(path: &Path, keep: u32) -> io::Result<()> {
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
    let taken = PathBuf::from(format!("{}.rotating", path.display()));
    match fs::rename(path, &taken) {
        // The file opened next at the path is new anyway.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        moved => moved?,
    }
    if keep == 0 {
        return fs::remove_file(taken);
    }
    for n in (1..keep).rev() {
        match fs::rename(numbered(n), numbered(n + 1)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    fs::rename(taken, numbered(1))
}

/// Whether `file` is the file at `path` still.
fn is_at(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(at_path) => Ok((at_path.dev(), at_path.ino()) == (open.dev(), open.ino())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

/// [`Target::write_from`] on any writer.
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
        .map_err(|source| output_error(path, source))
}

fn output_error(path: &Path, source: io::Error) -> Error {
    Error::Output { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::format::ecs::{Document, Host, SENSOR_STARTED};

    fn document() -> Outgoing {
        let document = Document::new(0, SENSOR_STARTED, "e-0".to_owned(), Host { name: "test".to_owned() });
        Outgoing::new(&document, Schema::Ecs)
    }

    /// A sink whose file is `/dev/full` (every write fails with ENOSPC) until it is reopened
    /// at `path`.
    fn full_until_reopened(path: &Path) -> FileSink {
        let mut output = FileSink::file(path, None, Schema::Ecs).unwrap();
        output.target =
            Target::File { path: path.to_owned(), file: open_file(Path::new("/dev/full")).unwrap(), size: 0 };
        output
    }

    fn temp_path(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("vigie-{name}-{}", std::process::id()));
        let _ = fs::remove_file(&path);
        path
    }

    #[test]
    fn a_full_sink_queues_reports_and_delivers_everything_once_it_works_again() {
        let path = temp_path("output");
        let mut output = full_until_reopened(&path);
        output.write(&document());
        let Some(News { failing: true, degradation: failing, .. }) = output.take_news() else {
            panic!("no failure reported")
        };
        assert_eq!((failing.failed, failing.dropped), (1, 0));
        assert!(failing.error.contains("No space left"), "{}", failing.error);
        output.write(&document());
        output.retry();
        assert_eq!(output.take_news(), None, "not retried before its backoff");

        output.retry_at = Instant::now();
        output.retry();
        let Some(News { failing: false, degradation: recovered, .. }) = output.take_news() else {
            panic!("no recovery reported")
        };
        assert_eq!((recovered.failed, recovered.dropped), (2, 0));
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(lines.lines().count(), 2, "both documents delivered, in full");
        assert!(lines.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{lines}");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(output.stats().delivered, 2);
        assert_eq!(output.stats().retries, 1);
    }

    #[test]
    fn a_file_past_its_limit_is_rotated_between_lines_keeping_the_newest() {
        let path = temp_path("rotated");
        let line_len = document().json.len() as u64 + 1;
        let rotation = Rotation { max_bytes: line_len * 2, keep: 2 };
        let mut output = FileSink::file(&path, Some(rotation), Schema::Ecs).unwrap();
        for _ in 0..7 {
            output.write(&document());
        }
        let lines = |n: &str| fs::read_to_string(format!("{}{n}", path.display())).map(|t| t.lines().count());
        assert_eq!((lines("").unwrap(), lines(".1").unwrap(), lines(".2").unwrap()), (1, 2, 2));
        assert!(lines(".3").is_err(), "only `keep` rotated files are kept");
        assert_eq!(output.stats().delivered, 7);
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        for n in ["", ".1", ".2"] {
            fs::remove_file(format!("{}{n}", path.display())).unwrap();
        }
    }

    #[test]
    fn a_file_moved_away_before_its_rotation_leaves_the_rotated_files_numbered_as_they_were() {
        let path = temp_path("moved-rotated");
        let moved = PathBuf::from(format!("{}.moved", path.display()));
        let line_len = document().json.len() as u64 + 1;
        let rotation = Rotation { max_bytes: line_len * 2, keep: 3 };
        let mut output = FileSink::file(&path, Some(rotation), Schema::Ecs).unwrap();
        for _ in 0..3 {
            output.write(&document());
        }
        fs::rename(&path, &moved).unwrap();
        // The first goes to the moved file, the second opens a new one at the path.
        output.write(&document());
        output.write(&document());
        let lines = |p: &str| fs::read_to_string(p).map(|t| t.lines().count()).ok();
        let at = |n: &str| format!("{}{n}", path.display());
        assert_eq!(
            (lines(&at(".1")), lines(&at(".2")), lines(&at(".moved")), lines(&at(""))),
            (Some(2), None, Some(2), Some(1)),
            "no rotated file shifted for a file that was not at the path"
        );
        for n in ["", ".1", ".moved"] {
            fs::remove_file(at(n)).unwrap();
        }
    }

    #[test]
    fn a_rotation_of_a_file_moved_away_meanwhile_shifts_no_rotated_file() {
        let path = temp_path("moved-while-rotating");
        let at = |n: &str| PathBuf::from(format!("{}{n}", path.display()));
        for (n, text) in [(".1", "newer\n"), (".2", "older\n")] {
            fs::write(at(n), text).unwrap();
        }
        rotate(&path, 3).unwrap();
        let text = |n: &str| fs::read_to_string(at(n)).ok();
        assert_eq!(
            (text(".1").as_deref(), text(".2").as_deref(), text(".3")),
            (Some("newer\n"), Some("older\n"), None),
            "the rotated files keep their numbers, with no gap at .1"
        );
        for n in [".1", ".2"] {
            fs::remove_file(at(n)).unwrap();
        }
    }

    #[test]
    fn reopening_after_a_move_writes_to_a_new_file_at_the_path() {
        let path = temp_path("moved");
        let moved = PathBuf::from(format!("{}.old", path.display()));
        let mut output = FileSink::file(&path, None, Schema::Ecs).unwrap();
        output.write(&document());
        fs::rename(&path, &moved).unwrap();
        output.write(&document());
        output.reopen().unwrap();
        output.write(&document());
        let count = |p: &Path| fs::read_to_string(p).unwrap().lines().count();
        assert_eq!((count(&moved), count(&path)), (2, 1), "every line in one file or the other");
        fs::remove_file(&path).unwrap();
        fs::remove_file(&moved).unwrap();
    }

    #[test]
    fn a_full_queue_drops_its_oldest_and_counts_them() {
        let mut output = full_until_reopened(Path::new("/dev/full"));
        for _ in 0..QUEUE_LIMIT + 3 {
            output.write(&document());
        }
        assert_eq!((output.stats().dropped, output.stats().queued), (3, QUEUE_LIMIT as u64));
        let degradation = output.degradation.clone().unwrap();
        assert_eq!((degradation.failed, degradation.dropped), (u64::try_from(QUEUE_LIMIT).unwrap() + 3, 3));
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
