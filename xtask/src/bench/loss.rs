//! Workload 6: tainted processes connecting as fast as they can. Events produced (counted by
//! the load generator: one secret read per worker, one connect record per attempt) against
//! events consumed (secret-read and alert lines, plus the repeats the agent counts instead
//! of re-alerting) and events the agent reported lost; the agent's CPU and peak memory.
//! Then the same with a 4 KiB ring buffer, to show that forced loss is counted and said.

use std::thread;
use std::time::Duration;

use anyhow::Result;

use super::agent::Agent;
use super::load::{self, field};
use super::proc_usage::{self, CpuUse};
use super::{interrupt, say, Env};

/// The agent reads its loss counter every second; this lets the last reading come out.
const DRAIN: Duration = Duration::from_millis(2_500);
/// The smallest ring buffer the agent accepts.
pub const FORCED_RING_BYTES: u32 = 4096;

/// One flood: how the workers connect, how fast, into which ring buffer, for how long.
#[derive(Debug, Clone, Copy)]
pub struct FloodSpec {
    /// `tcp` (a blocking connect the reset ends) or `udp` (`connect()` on a UDP socket).
    pub transport: &'static str,
    /// Connects per second, all workers together; `None`: as fast as they can.
    pub rate: Option<u64>,
    /// `None`: the agent's default ring buffer.
    pub ring_bytes: Option<u32>,
    pub time: Duration,
}

#[derive(Debug, Clone)]
pub struct FloodRun {
    pub spec: FloodSpec,
    pub seconds: f64,
    pub workers: u32,
    pub secret_reads: u64,
    pub connects: u64,
    /// Attempts that ended some other way than a refusal (should be 0).
    pub other_errors: u64,
    /// `secret-read` lines of processes that opened the secret (the workers).
    pub read_lines: u64,
    /// `secret-read` lines of processes tainted through a pipe (the load generator and the
    /// bench, reading the workers' reports); not part of the produced events.
    pub derived_read_lines: u64,
    pub alert_lines: u64,
    pub repeats: u64,
    /// The highest `events-lost` total the agent reported, and in how many lines.
    pub lost: u64,
    pub loss_lines: u64,
    /// Every record the agent took off the ring buffer (lifecycle records included).
    pub records: Option<u64>,
    pub cpu: CpuUse,
    pub peak_rss_kib: u64,
}

#[expect(clippy::cast_precision_loss, reason = "event counts are far below 2^52")]
impl FloodRun {
    pub fn produced(&self) -> u64 {
        self.secret_reads + self.connects
    }

    pub fn consumed(&self) -> u64 {
        self.read_lines + self.alert_lines + self.repeats
    }

    pub fn produced_per_second(&self) -> f64 {
        self.produced() as f64 / self.seconds.max(f64::EPSILON)
    }

    /// Produced events neither consumed nor counted as lost; 0 when loss is never silent.
    /// (The loss count also holds lost lifecycle records, so it may exceed the gap.)
    pub fn unaccounted(&self) -> u64 {
        self.produced().saturating_sub(self.consumed() + self.lost)
    }
}

#[derive(Debug, Clone)]
pub struct Loss {
    /// TCP connects as fast as the workers can: the workload as the issue states it.
    pub unpaced: FloodRun,
    /// UDP connects paced at [`PACED_RATE`]: the rate the target names, reached on a small
    /// machine because a UDP connect costs the generator one syscall.
    pub paced: FloodRun,
    /// TCP as fast as they can into a 4 KiB ring buffer.
    pub forced: FloodRun,
}

/// Above the 50,000 events/s of the target, with a margin for pacing jitter.
pub const PACED_RATE: u64 = 55_000;

pub fn measure(env: &Env<'_>) -> Result<Loss> {
    let time = env.plan.flood_time;
    let unpaced = flood(env, FloodSpec { transport: "tcp", rate: None, ring_bytes: None, time })?;
    let paced = flood(env, FloodSpec { transport: "udp", rate: Some(PACED_RATE), ring_bytes: None, time })?;
    let forced = FloodSpec {
        transport: "tcp",
        rate: None,
        ring_bytes: Some(FORCED_RING_BYTES),
        time: env.plan.forced_loss_time,
    };
    Ok(Loss { unpaced, paced, forced: flood(env, forced)? })
}

fn flood(env: &Env<'_>, spec: FloodSpec) -> Result<FloodRun> {
    interrupt::check()?;
    say(&format!(
        "loss: {} workers, {} connects {} for {:?}, ring buffer {}",
        env.plan.flood_workers,
        spec.transport,
        spec.rate.map_or_else(|| "as fast as they can".to_owned(), |rate| format!("at {rate}/s")),
        spec.time,
        spec.ring_bytes.map_or_else(|| "default".to_owned(), |bytes| format!("{bytes} B")),
    ));
    let mut args = env.agent_args();
    if let Some(bytes) = spec.ring_bytes {
        args.extend(["--ring-buffer-bytes".to_owned(), bytes.to_string()]);
    }
    let agent = Agent::start(&env.binaries.vigie, &args)?;
    let pid = agent.pid();
    let measured = (|| {
        let mark = proc_usage::mark(pid)?;
        let result = load::flood(env, env.remote.closed_port(), &spec)?;
        let cpu = proc_usage::since(mark, pid)?;
        thread::sleep(DRAIN);
        Ok::<_, anyhow::Error>((result, cpu, proc_usage::peak_rss_kib(pid)?))
    })();
    let transcript = agent.stop()?;
    let (result, cpu, peak_rss_kib) = measured?;
    let (read_lines, derived_read_lines) = transcript.secret_reads();

    #[expect(clippy::cast_precision_loss, reason = "ns of one run are far below 2^52")]
    let seconds = field(&result, "elapsed_ns")? as f64 / 1e9;
    Ok(FloodRun {
        spec,
        seconds,
        workers: env.plan.flood_workers,
        secret_reads: field(&result, "secret_reads")?,
        connects: field(&result, "connects")?,
        other_errors: field(&result, "other_errors")? + field(&result, "accepted")?,
        read_lines,
        derived_read_lines,
        alert_lines: transcript.count("credential-exfiltration"),
        repeats: transcript.stopped_counter("alerts_repeated").unwrap_or(0),
        lost: transcript.events_lost(),
        loss_lines: transcript.count("events-lost"),
        records: transcript.stopped_counter("records"),
        cpu,
        peak_rss_kib,
    })
}
