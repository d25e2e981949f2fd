//! On a busy host — many opens of ordinary files, many connects and datagrams, many short
//! processes, none of them tainted — the thief is still reported and nothing else is.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use integration_tests::{actor_exe, alert, Actor, Lab, ALERT_TIMEOUT};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Files the churn cycles through.
const NOISE_FILES: usize = 64;
/// Threads starting short processes (each waits for its process).
const PROCESS_CHURNERS: usize = 3;
/// Rounds every worker does before the cases run.
const WARM_UP_ROUNDS: u64 = 10;
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Untainted activity on background threads until stopped.
struct Noise {
    stop: Arc<AtomicBool>,
    workers: Vec<Worker>,
}

struct Worker {
    what: &'static str,
    rounds: Arc<AtomicU64>,
    handle: JoinHandle<Result<()>>,
}

type Work = Box<dyn FnMut() -> Result<()> + Send>;

impl Noise {
    fn start(lab: &Lab) -> Result<Self> {
        let dir = lab.dir().join("noise");
        fs::create_dir(&dir)?;
        let remote = lab.remote().tcp_v4();
        let loopback = TcpListener::bind("127.0.0.1:0")?;
        let mut next_file = 0;
        let mut work: Vec<(&'static str, Work)> = vec![
            (
                "file opens",
                Box::new(move || {
                    next_file = (next_file + 1) % NOISE_FILES;
                    churn_files(&dir, next_file)
                }),
            ),
            ("connects and datagrams", Box::new(move || churn_sockets(&loopback, remote))),
        ];
        for _ in 0..PROCESS_CHURNERS {
            let actor_exe = lab.actor_exe().to_owned();
            work.push(("short processes", Box::new(move || churn_processes(&actor_exe, remote))));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers = work.into_iter().map(|(what, work)| Worker::spawn(what, work, &stop)).collect();
        Ok(Noise { stop, workers })
    }

    /// Returns once every worker has done [`WARM_UP_ROUNDS`]: from then on the host is busy.
    fn warm_up(&self) -> Result<()> {
        let deadline = Instant::now() + WARM_UP_TIMEOUT;
        while let Some(slow) = self.workers.iter().find(|w| w.rounds.load(Ordering::Relaxed) < WARM_UP_ROUNDS)
        {
            ensure!(!slow.handle.is_finished(), "background {} stopped early", slow.what);
            ensure!(Instant::now() < deadline, "background {} not busy after {WARM_UP_TIMEOUT:?}", slow.what);
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Stops the churn; fails if any of it failed.
    fn stop(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in std::mem::take(&mut self.workers) {
            worker.handle.join().map_err(|_| anyhow!("background {} panicked", worker.what))??;
            eprintln!("background {}: {} rounds", worker.what, worker.rounds.load(Ordering::Relaxed));
        }
        Ok(())
    }
}

impl Drop for Noise {
    /// Also on a failed test: the threads end at their next round.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Worker {
    fn spawn(what: &'static str, mut work: Work, stop: &Arc<AtomicBool>) -> Self {
        let (stop, rounds) = (Arc::clone(stop), Arc::new(AtomicU64::new(0)));
        let counter = Arc::clone(&rounds);
        let handle = thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                work().with_context(|| format!("background {what}"))?;
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        Worker { what, rounds, handle }
    }
}

/// Writes, re-reads and stats an ordinary file, and reads two ordinary system files.
fn churn_files(dir: &Path, i: usize) -> Result<()> {
    let path = dir.join(format!("file-{i}"));
    fs::write(&path, format!("ordinary content {i}\n"))?;
    fs::read(&path)?;
    fs::metadata(&path)?;
    fs::read("/etc/passwd")?;
    fs::read("/etc/services")?;
    Ok(())
}

/// From this (untainted) test process: a TCP connect + write to the remote, a datagram to
/// it, and a loopback connection.
fn churn_sockets(loopback: &TcpListener, remote: SocketAddr) -> Result<()> {
    TcpStream::connect_timeout(&remote, CONNECT_TIMEOUT)?.write_all(b"noise\n")?;
    UdpSocket::bind("0.0.0.0:0")?.send_to(b"noise\n", remote)?;
    let mut client = TcpStream::connect(loopback.local_addr()?)?;
    let (mut server, _) = loopback.accept()?;
    client.write_all(b"noise\n")?;
    drop(client);
    server.read_to_end(&mut Vec::new())?;
    Ok(())
}

/// A short process that reads an ordinary file and sends to the remote.
fn churn_processes(actor_exe: &Path, remote: SocketAddr) -> Result<()> {
    Actor::new(actor_exe).read("/etc/passwd").tcp(remote).udp(remote).run().map(drop)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn thief_is_reported_and_nothing_else_during_heavy_unrelated_activity() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;
    let dest = lab.remote().tcp_v4();
    let ordinary = lab.dir().join("ordinary");
    fs::write(&ordinary, "nothing secret\n")?;
    let mut noise = Noise::start(&lab)?;
    noise.warm_up()?;

    let quiet = lab.actor().read(&ordinary).tcp(dest).run().context("negative case")?;
    let thief = lab.actor().read(lab.secret()).tcp(dest).run().context("positive case")?;
    let alert = sensor.expect(alert::is_exfiltration_by(thief.pid), ALERT_TIMEOUT);
    let stopped = noise.stop();
    let alert = alert?;
    stopped?;

    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    let others = lab.alerts_other_than(&sensor, &[thief.pid])?;
    ensure!(
        others.is_empty(),
        "alerts for untainted activity (the quiet actor was {}): {others:#?}",
        quiet.pid
    );
    let lost = sensor.lines_matching(alert::is_events_lost);
    ensure!(lost.is_empty(), "records lost under ordinary load: {lost:#?}");
    Ok(())
}
