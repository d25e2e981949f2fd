//! Lines of a child's output, read on a thread so callers can wait on them with a deadline.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How often a followed file is looked at again once its end was reached.
const FOLLOW_POLL: Duration = Duration::from_millis(10);

/// Sends each line of `source` (without its newline) until end of file; the channel then
/// disconnects, which tells the receiver that the child closed its end (usually: exited).
pub(crate) fn spawn_line_reader(source: impl Read + Send + 'static) -> (Receiver<String>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (rx, handle)
}

/// Appends everything `source` says to a shared string, for error messages.
pub(crate) fn spawn_collector(source: impl Read + Send + 'static) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let handle = thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    (text, handle)
}

/// A snapshot of what a collector gathered so far.
pub(crate) fn snapshot(text: &Mutex<String>) -> String {
    text.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Sends each line appended to the file at `path`, as `tail -F` would: from its start, and
/// from the start of a new file at that path once the old one has been read to its end (a
/// rotated log). Stops at the end of the file once `stop` is set; the channel then disconnects.
pub(crate) fn spawn_file_follower(path: PathBuf, stop: Arc<AtomicBool>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut current: Option<(BufReader<File>, u64)> = None;
        let mut partial = String::new();
        loop {
            let stopping = stop.load(Ordering::Acquire);
            if current.is_none() {
                current = File::open(&path)
                    .and_then(|f| Ok((f.metadata()?.ino(), f)))
                    .ok()
                    .map(|(ino, f)| (BufReader::new(f), ino));
                partial.clear();
            }
            let mut progressed = false;
            if let Some((reader, _)) = &mut current {
                while reader.read_line(&mut partial).is_ok_and(|n| n > 0) && partial.ends_with('\n') {
                    progressed = true;
                    let line = std::mem::take(&mut partial).trim_end_matches('\n').to_owned();
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
            if progressed {
                continue;
            }
            let at_path = fs::metadata(&path).ok().map(|m| m.ino());
            if current.as_ref().is_some_and(|(_, ino)| Some(*ino) != at_path) {
                current = None;
            } else if stopping {
                return;
            } else {
                thread::sleep(FOLLOW_POLL);
            }
        }
    });
    rx
}
