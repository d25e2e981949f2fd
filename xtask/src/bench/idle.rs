//! The agent at idle: CPU share, peak memory and BPF links of a sensor that is attached and
//! watching but given no workload (other processes on the machine still run and are still
//! seen).

use std::thread;
use std::time::Duration;

use anyhow::Result;

use super::agent::Agent;
use super::links::{self, Attachments};
use super::proc_usage::{self, CpuUse};
use super::{interrupt, say, Env};

/// Start-up work (BTF, /proc scan) is over by then; idle is measured after it.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Idle {
    pub cpu: CpuUse,
    pub peak_rss_kib: u64,
    /// Resident memory at the end of the idle window (the peak may come from start-up).
    pub rss_kib: u64,
    /// Ring-buffer records the agent handled from start to stop (other processes' lifecycle).
    pub records: Option<u64>,
    /// Where the agent's programs were attached at the end of the idle window.
    pub attachments: Attachments,
}

pub fn measure(env: &Env<'_>) -> Result<Idle> {
    interrupt::check()?;
    say(&format!("idle agent for {:?}", env.plan.idle_time));
    let agent = Agent::start(&env.binaries.vigie, &env.agent_args())?;
    let pid = agent.pid();
    let measured = (|| {
        thread::sleep(SETTLE);
        let mark = proc_usage::mark(pid)?;
        thread::sleep(env.plan.idle_time);
        let cpu = proc_usage::since(mark, pid)?;
        let memory = (proc_usage::peak_rss_kib(pid)?, proc_usage::rss_kib(pid)?);
        Ok::<_, anyhow::Error>((cpu, memory, links::of(pid)?))
    })();
    let transcript = agent.stop()?;
    let (cpu, (peak_rss_kib, rss_kib), attachments) = measured?;
    Ok(Idle { cpu, peak_rss_kib, rss_kib, records: transcript.stopped_counter("records"), attachments })
}
