//! One more pass of workloads 1–4 under Vigie, outside the timed rounds, with the kernel's
//! BPF statistics on (they add two clock reads per program run, so they stay off while the
//! overhead is timed): per program, how often it ran and how long each run took. In the
//! full run, workloads 1 and 3 are also sampled with perf, with and without the sensor.

use anyhow::Result;

use super::agent::Agent;
use super::bpf_stats::{self, ProgramStat, StatsSwitch};
use super::load::{self, Reader};
use super::perf::{self, PerfProfile};
use super::proc_usage::{self, CpuUse};
use super::{interrupt, say, Env};

/// The agent's programs during one workload.
#[derive(Debug, Clone)]
pub struct WorkloadProfile {
    pub workload: &'static str,
    /// What one iteration is, and how many the workload did.
    pub unit: &'static str,
    pub iterations: u64,
    pub programs: Vec<ProgramStat>,
    /// CPU the agent itself used during the workload (user + system).
    pub agent_cpu: CpuUse,
}

impl WorkloadProfile {
    /// BPF run time per iteration of the workload, all programs together.
    #[expect(clippy::cast_precision_loss, reason = "counters of one run are far below 2^52")]
    pub fn bpf_ns_per_iteration(&self) -> f64 {
        self.programs.iter().map(|program| program.run_ns).sum::<u64>() as f64 / self.iterations.max(1) as f64
    }
}

#[derive(Debug, Default)]
pub struct Profiles {
    pub bpf: Vec<WorkloadProfile>,
    pub perf: Vec<PerfProfile>,
}

pub fn run(env: &Env<'_>) -> Result<Profiles> {
    interrupt::check()?;
    say("profile: BPF run-time statistics per program");
    let agent = Agent::start(&env.binaries.vigie, &env.agent_args())?;
    // perf first: its workloads must run before any tainted one (see `ab::overhead_workloads`).
    let with_perf = env.plan.perf && perf::available();
    let measured = (|| {
        let perf = if with_perf { perf_pass(env, "vigie") } else { Vec::new() };
        Ok::<_, anyhow::Error>((perf, bpf_pass(env, agent.pid())?))
    })();
    agent.stop()?;
    let (mut perf, bpf) = measured?;
    if !perf.is_empty() {
        perf.extend(perf_pass(env, "no sensor"));
    }
    Ok(Profiles { bpf, perf })
}

/// (name, unit of one iteration, run it and say how many iterations it did)
type Workload<'a> = (&'static str, &'static str, &'a dyn Fn() -> Result<u64>);

fn bpf_pass(env: &Env<'_>, agent_pid: u32) -> Result<Vec<WorkloadProfile>> {
    let programs = bpf_stats::programs_of(agent_pid)?;
    let _stats = StatsSwitch::on()?;
    let plan = env.plan;
    let stream_writes = plan.stream_bytes / plan.stream_chunk.max(1);
    let workloads: [Workload<'_>; 5] = [
        ("1 open+read+close, ordinary file", "iteration", &|| {
            Ok(load::open_read(env, Reader::Untrusted, &env.lab.plain)?.iterations)
        }),
        ("2 same, secret, allowed reader", "iteration", &|| {
            Ok(load::open_read(env, Reader::Allowed, &env.lab.secret)?.iterations)
        }),
        // Untainted first: see `ab::overhead_workloads`.
        ("3 loopback connect+close", "connect", &|| Ok(load::loopback_connect(env)?.iterations)),
        ("2 same, secret, untrusted reader", "iteration", &|| {
            Ok(load::open_read(env, Reader::Untrusted, &env.lab.secret)?.iterations)
        }),
        ("4 tainted stream, 16 KiB writes", "write", &|| load::stream(env).map(|_| stream_writes)),
    ];
    let mut profiles = Vec::new();
    for (workload, unit, run) in workloads {
        interrupt::check()?;
        let before = bpf_stats::snapshot(&programs)?;
        let mark = proc_usage::mark(agent_pid)?;
        let iterations = run()?;
        let agent_cpu = proc_usage::since(mark, agent_pid)?;
        let after = bpf_stats::snapshot(&programs)?;
        let programs = bpf_stats::growth(&before, &after);
        profiles.push(WorkloadProfile { workload, unit, iterations, programs, agent_cpu });
    }
    Ok(profiles)
}

/// perf profiles of workloads 1 and 3; none if perf fails (they only explain numbers).
fn perf_pass(env: &Env<'_>, arm: &str) -> Vec<PerfProfile> {
    say(&format!("profile: perf record of workloads 1 and 3, {arm}"));
    let profiles = [
        (format!("1 open+read+close, {arm}"), load::open_read_args(env, &env.lab.plain)),
        (format!("3 loopback connect+close, {arm}"), load::loopback_connect_args(env)),
    ]
    .iter()
    .map(|(label, command)| perf::record(label, command))
    .collect::<Result<Vec<_>>>();
    profiles.unwrap_or_else(|error| {
        say(&format!("perf failed, no perf profiles: {error:#}"));
        Vec::new()
    })
}
