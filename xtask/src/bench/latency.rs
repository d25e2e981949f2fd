//! Workload 5: alert latency, from the exfiltrating `connect()` returning (the load
//! process's `CLOCK_REALTIME`) to the bench reading the alert line off the agent's stdout
//! (stamped on the same clock by the reader thread), matched by pid.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::Result;

use super::agent::Agent;
use super::load;
use super::stats::{max, percentile};
use super::{interrupt, say, Env};

/// How long alerts may trail the last exfiltration before they count as missing.
const ALERT_WAIT: Duration = Duration::from_secs(10);
const ALERT: &str = "credential-exfiltration";

#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub exfiltrations: usize,
    /// Milliseconds from `connect()` returning to the alert line, one per alert matched.
    pub latencies_ms: Vec<f64>,
    /// Milliseconds from `connect()` being called to the alert line (never negative: the
    /// kernel sees the connect inside the call).
    pub from_call_ms: Vec<f64>,
}

impl Latency {
    pub fn missing(&self) -> usize {
        self.exfiltrations - self.latencies_ms.len()
    }

    pub fn p50(&self) -> f64 {
        percentile(&self.latencies_ms, 50.0)
    }

    pub fn p99(&self) -> f64 {
        percentile(&self.latencies_ms, 99.0)
    }

    pub fn max(&self) -> f64 {
        max(&self.latencies_ms)
    }
}

pub fn measure(env: &Env<'_>) -> Result<Latency> {
    interrupt::check()?;
    say(&format!("alert latency: {} exfiltrating processes", env.plan.exfiltrations));
    let agent = Agent::start(&env.binaries.vigie, &env.agent_args())?;
    let exfiltrations = load::exfiltrate(env);
    if let Ok(list) = &exfiltrations {
        let wanted = list.len();
        agent.wait_for(ALERT_WAIT, |lines| {
            lines.iter().filter(|line| line.text.contains(ALERT)).count() >= wanted
        });
    }
    let transcript = agent.stop()?;
    let exfiltrations = exfiltrations?;

    // Arrival times per pid, oldest first: a pid the kernel reuses is matched in order.
    let mut arrivals: HashMap<u64, VecDeque<u64>> = HashMap::new();
    for (arrived_ns, alert) in transcript.with_action(ALERT) {
        if let Some(pid) = alert["process"]["pid"].as_u64() {
            arrivals.entry(pid).or_default().push_back(arrived_ns);
        }
    }
    let mut latency = Latency { exfiltrations: exfiltrations.len(), ..Latency::default() };
    for exfiltration in &exfiltrations {
        let Some(arrived_ns) = arrivals.get_mut(&exfiltration.pid).and_then(VecDeque::pop_front) else {
            continue;
        };
        latency.latencies_ms.push(signed_ms(arrived_ns, exfiltration.connected_ns));
        latency.from_call_ms.push(signed_ms(arrived_ns, exfiltration.started_ns));
    }
    Ok(latency)
}

/// `later - earlier` in ms; negative if the alert was read before `connect()` returned.
#[expect(clippy::cast_precision_loss, reason = "latencies are far below 2^52 ns")]
fn signed_ms(later_ns: u64, earlier_ns: u64) -> f64 {
    if later_ns >= earlier_ns {
        (later_ns - earlier_ns) as f64 / 1e6
    } else {
        -((earlier_ns - later_ns) as f64 / 1e6)
    }
}
