//! A running `vigie run`, its stdout read on a thread that stamps each line with the
//! wall-clock time (`CLOCK_REALTIME`) it arrived, before doing anything else with it.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::command::{self, tool};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);

/// One output line and when the bench read it, in ns since the epoch.
pub struct Line {
    pub arrived_ns: u64,
    pub text: String,
}

type Shared<T> = Arc<Mutex<T>>;

pub struct Agent {
    child: Option<Child>,
    pid: u32,
    lines: Shared<Vec<Line>>,
    stderr: Shared<String>,
    readers: Vec<JoinHandle<()>>,
}

impl Agent {
    /// Starts `vigie run ARGS` and waits for its `sensor-started` line.
    pub fn start(vigie: &Path, args: &[String]) -> Result<Self> {
        let mut child = Command::new(vigie)
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", vigie.display()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            stamp_lines(child.stdout.take().context("vigie stdout")?, Arc::clone(&lines)),
            collect(child.stderr.take().context("vigie stderr")?, Arc::clone(&stderr)),
        ];
        let pid = child.id();
        let mut agent = Self { child: Some(child), pid, lines, stderr, readers };
        agent.wait_until_started()?;
        Ok(agent)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits up to `timeout` until `done` holds for the lines so far; says whether it did.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Line]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&lock(&self.lines)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL);
        }
    }

    /// SIGTERM, then SIGKILL if it lingers; returns every line it printed, parsed.
    pub fn stop(mut self) -> Result<Transcript> {
        let mut child = self.child.take().context("agent already stopped")?;
        let _ = command::output(tool("kill")?.args(["-TERM", &self.pid.to_string()]));
        let deadline = Instant::now() + STOP_TIMEOUT;
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                child.wait()?;
                bail!("vigie did not exit within {STOP_TIMEOUT:?} of SIGTERM and was killed");
            }
            thread::sleep(POLL);
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let lines = std::mem::take(&mut *lock(&self.lines));
        Ok(Transcript::parse(lines))
    }

    fn wait_until_started(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if lock(&self.lines).iter().any(|line| line.text.contains("\"sensor-started\"")) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().map(Child::try_wait).transpose()?.flatten() {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                bail!("vigie exited ({status}) before sensor-started: {}", lock(&self.stderr).trim());
            }
            if Instant::now() >= deadline {
                bail!("vigie did not report sensor-started within {START_TIMEOUT:?}");
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Everything an agent printed, parsed, with arrival times.
pub struct Transcript {
    pub documents: Vec<(u64, Value)>,
}

impl Transcript {
    fn parse(lines: Vec<Line>) -> Self {
        let documents = lines
            .into_iter()
            .map(|line| {
                (line.arrived_ns, serde_json::from_str(&line.text).unwrap_or(Value::String(line.text)))
            })
            .collect();
        Self { documents }
    }

    /// Documents whose `event.action` is `action`, with their arrival times.
    pub fn with_action<'a>(&'a self, action: &'a str) -> impl Iterator<Item = (u64, &'a Value)> + 'a {
        self.documents
            .iter()
            .filter(move |(_, doc)| action_of(doc) == Some(action))
            .map(|(at, doc)| (*at, doc))
    }

    pub fn count(&self, action: &str) -> u64 {
        self.with_action(action).count() as u64
    }

    /// `secret-read` lines of processes that opened the secret themselves, and of those the
    /// sensor saw take it in some other way (a pipe, a socket, a derived file: `vigie.via`).
    pub fn secret_reads(&self) -> (u64, u64) {
        let (direct, derived): (Vec<_>, Vec<_>) =
            self.with_action("secret-read").partition(|(_, doc)| doc["vigie"]["via"].is_null());
        (direct.len() as u64, derived.len() as u64)
    }

    /// Who the agent said read a secret, by a line that arrived before `ns` (since the epoch):
    /// pid, executable and how (`vigie.via.kind`, or `direct`).
    pub fn secret_readers_before(&self, ns: u64) -> Vec<String> {
        self.with_action("secret-read")
            .filter(|(arrived, _)| *arrived < ns)
            .map(|(_, doc)| {
                let process = &doc["process"];
                let via = doc["vigie"]["via"]["kind"].as_str().unwrap_or("direct");
                format!("pid {} {} ({via})", process["pid"], process["executable"].as_str().unwrap_or("?"))
            })
            .collect()
    }

    /// A counter of the final `sensor-stopped` line (`vigie.counters.<name>`).
    pub fn stopped_counter(&self, name: &str) -> Option<u64> {
        self.with_action("sensor-stopped").last().and_then(|(_, doc)| doc["vigie"]["counters"][name].as_u64())
    }

    /// The highest loss total the agent reported.
    pub fn events_lost(&self) -> u64 {
        // `outbound-uncopied` counts bytes the kernel did not copy, not records.
        let reported = self
            .with_action("events-lost")
            .filter(|(_, doc)| doc["vigie"]["events_lost"]["reason"] != "outbound-uncopied")
            .filter_map(|(_, doc)| doc["vigie"]["events_lost"]["total"].as_u64());
        reported.chain(self.stopped_counter("events_lost")).max().unwrap_or(0)
    }
}

/// `event.action` of a document.
pub fn action_of(document: &Value) -> Option<&str> {
    document["event"]["action"].as_str()
}

fn stamp_lines(source: impl Read + Send + 'static, lines: Shared<Vec<Line>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        loop {
            let mut text = String::new();
            match reader.read_line(&mut text) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let arrived_ns = now_ns();
                    text.truncate(text.trim_end().len());
                    lock(&lines).push(Line { arrived_ns, text });
                }
            }
        }
    })
}

fn collect(source: impl Read + Send + 'static, text: Shared<String>) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            let mut text = lock(&text);
            text.push_str(&line);
            text.push('\n');
        }
    })
}

/// Wall-clock ns since the epoch, the clock `vigie-load` stamps its connects with.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
}

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}
