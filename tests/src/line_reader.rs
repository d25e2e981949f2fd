//! Lines of a child's output, read on a thread so callers can wait on them with a deadline.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

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
