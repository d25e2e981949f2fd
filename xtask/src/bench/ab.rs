//! Workloads 1–4 and 7–11 in alternating rounds. Every round runs each workload once with no
//! sensor and once under Vigie, workload 9 (workload 1 beside a tainted bystander) in the
//! Vigie arm only, and workloads 1 and 8 (nginx) once more under auditd; even rounds go
//! none → Vigie → auditd, odd rounds the other way round, so drift in the machine's load
//! does not favour one arm. Statistics are over the per-round pairs.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{bail, Result};

use super::agent::{self, Agent};
use super::auditd::Audit;
use super::bpf_stats;
use super::links::Attachments;
use super::load::{self, Reader, Timed};
use super::stats::Paired;
use super::{interrupt, say, tainted, tls, Env};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    NoSensor,
    Vigie,
    Auditd,
}

impl fmt::Display for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arm::NoSensor => "no sensor",
            Arm::Vigie => "vigie",
            Arm::Auditd => "auditd",
        })
    }
}

/// One arm's numbers in one round.
#[derive(Debug, Default, Clone)]
struct Measures {
    /// open + read + close of the ordinary file.
    open_plain: Timed,
    /// The same on the secret, by the allowed reader and by an untrusted one.
    open_secret_allowed: Timed,
    open_secret_untrusted: Timed,
    /// Loopback connect + close.
    connect: Timed,
    /// Bytes per second streamed by a tainted process.
    stream: f64,
    /// Requests per second nginx served to wrk.
    nginx: f64,
    /// 256-byte TLS writes of an untainted client, and nginx's requests per second over HTTPS.
    tls_writes: Timed,
    nginx_tls: f64,
    /// Vigie arm only: workload 1 while a bystander is tainted, and the agent's links then.
    bystander: Option<(Timed, Attachments)>,
    /// When (ns since the epoch) the first workload that taints started: the ones before ran
    /// with nothing tainted, or their figures are not what they say.
    untainted_until: u64,
}

/// The auditd arm's numbers in one round.
#[derive(Debug, Default, Clone, Copy)]
struct Audited {
    open_plain: Timed,
    nginx: f64,
}

/// What the agent printed during one Vigie arm: proof it was watching.
#[derive(Debug, Clone, Copy)]
pub struct Sighting {
    /// Direct opens (the untrusted reader, the streamer) and reads through a pipe (the
    /// bench, reading their results).
    pub secret_reads: (u64, u64),
    pub alerts: u64,
    pub lost: u64,
}

/// Every round's pairs: wall-clock ns per iteration (bytes per second for the stream).
#[derive(Debug, Default)]
pub struct Rounds {
    pub open_plain: Paired,
    pub open_secret_allowed: Paired,
    pub open_secret_untrusted: Paired,
    pub connect: Paired,
    /// Bytes per second; `treated` below `baseline` is throughput lost.
    pub stream: Paired,
    /// Workload 7: baseline is the same round's no-sensor run of workload 1.
    pub open_plain_auditd: Paired,
    /// Workload 8, requests per second; `treated` below `baseline` is throughput lost.
    pub nginx: Paired,
    pub nginx_auditd: Paired,
    /// Workload 10, ns per TLS write.
    pub tls_writes: Paired,
    /// Workload 11, requests per second over HTTPS.
    pub nginx_tls: Paired,
    /// Workload 9: baseline is the same round's no-sensor run of workload 1.
    pub open_plain_bystander: Paired,
    /// The agent's links while workload 9's bystander was tainted, in the last round.
    pub bystander_attachments: Attachments,
    pub sightings: Vec<Sighting>,
    /// Per round, other BPF programs seen at the start or end of the no-sensor and Vigie arms.
    pub neighbours: Vec<(usize, usize)>,
    /// The same loops in CPU ns per iteration of the looping thread: less sensitive than the
    /// wall clock to being descheduled on a busy machine.
    pub cpu: CpuRounds,
}

/// CPU-time pairs of the loops that report it.
#[derive(Debug, Default)]
pub struct CpuRounds {
    pub open_plain: Paired,
    pub open_secret_allowed: Paired,
    pub open_secret_untrusted: Paired,
    pub connect: Paired,
    pub open_plain_auditd: Paired,
    pub open_plain_bystander: Paired,
    pub tls_writes: Paired,
}

pub fn run(env: &Env<'_>, audit: &mut Audit) -> Result<Rounds> {
    let mut rounds = Rounds::default();
    for round in 0..env.plan.rounds {
        let order = if round % 2 == 0 {
            [Arm::NoSensor, Arm::Vigie, Arm::Auditd]
        } else {
            [Arm::Auditd, Arm::Vigie, Arm::NoSensor]
        };
        let (mut none, mut vigie, mut auditd) =
            (Measures::default(), Measures::default(), Audited::default());
        let mut neighbours = (0, 0);
        for arm in order {
            interrupt::check()?;
            match arm {
                Arm::NoSensor => {
                    let before = env.neighbours.count(&BTreeSet::new())?;
                    none = overhead_workloads(env, None)?;
                    neighbours.0 = before.max(env.neighbours.count(&BTreeSet::new())?);
                }
                Arm::Vigie => {
                    let agent = Agent::start(&env.binaries.vigie, &env.agent_args())?;
                    let ours = bpf_stats::programs_of(agent.pid())?;
                    let before = env.neighbours.count(&ours)?;
                    let measured = overhead_workloads(env, Some(&agent));
                    neighbours.1 = before.max(env.neighbours.count(&ours)?);
                    let transcript = agent.stop()?;
                    vigie = measured?;
                    let early = transcript.secret_readers_before(vigie.untainted_until);
                    if !early.is_empty() {
                        bail!(
                            "round {}: the sensor saw secret reads during the untainted workloads, \
                             which makes their figures those of tainted processes: {}",
                            round + 1,
                            early.join("; ")
                        );
                    }
                    rounds.sightings.push(Sighting {
                        secret_reads: transcript.secret_reads(),
                        alerts: transcript.count("credential-exfiltration"),
                        lost: transcript.events_lost(),
                    });
                }
                Arm::Auditd => {
                    audit.watch(&[&env.lab.secret])?;
                    let measured = audited_workloads(env);
                    audit.unwatch()?;
                    auditd = measured?;
                }
            }
        }
        say(&format!(
            "round {}/{}: open+read+close {:.0} / {:.0} / {:.0} ns (none / vigie / auditd), \
             connect {:.1} / {:.1} µs, stream {:.0} / {:.0} MB/s, nginx {:.0} / {:.0} / {:.0} req/s, \
             beside a tainted process {:.0} ns, TLS write {:.0} / {:.0} ns, nginx over TLS {:.0} / {:.0} req/s",
            round + 1,
            env.plan.rounds,
            none.open_plain.ns_per_iteration(),
            vigie.open_plain.ns_per_iteration(),
            auditd.open_plain.ns_per_iteration(),
            none.connect.ns_per_iteration() / 1e3,
            vigie.connect.ns_per_iteration() / 1e3,
            none.stream / 1e6,
            vigie.stream / 1e6,
            none.nginx,
            vigie.nginx,
            auditd.nginx,
            vigie.bystander.as_ref().map_or(f64::NAN, |(timed, _)| timed.ns_per_iteration()),
            none.tls_writes.ns_per_iteration(),
            vigie.tls_writes.ns_per_iteration(),
            none.nginx_tls,
            vigie.nginx_tls,
        ));
        rounds.record(&none, vigie, &auditd);
        rounds.neighbours.push(neighbours);
    }
    Ok(rounds)
}

impl Rounds {
    fn record(&mut self, none: &Measures, vigie: Measures, auditd: &Audited) {
        let (bystander, attachments) = vigie.bystander.unwrap_or_default();
        self.bystander_attachments = attachments;
        let loops = [
            (&mut self.open_plain, &mut self.cpu.open_plain, &none.open_plain, &vigie.open_plain),
            (
                &mut self.open_plain_auditd,
                &mut self.cpu.open_plain_auditd,
                &none.open_plain,
                &auditd.open_plain,
            ),
            (
                &mut self.open_plain_bystander,
                &mut self.cpu.open_plain_bystander,
                &none.open_plain,
                &bystander,
            ),
            (
                &mut self.open_secret_allowed,
                &mut self.cpu.open_secret_allowed,
                &none.open_secret_allowed,
                &vigie.open_secret_allowed,
            ),
            (
                &mut self.open_secret_untrusted,
                &mut self.cpu.open_secret_untrusted,
                &none.open_secret_untrusted,
                &vigie.open_secret_untrusted,
            ),
            (&mut self.connect, &mut self.cpu.connect, &none.connect, &vigie.connect),
            (&mut self.tls_writes, &mut self.cpu.tls_writes, &none.tls_writes, &vigie.tls_writes),
        ];
        for (wall, cpu, baseline, treated) in loops {
            wall.push(baseline.ns_per_iteration(), treated.ns_per_iteration());
            cpu.push(baseline.cpu_ns_per_iteration(), treated.cpu_ns_per_iteration());
        }
        self.stream.push(none.stream, vigie.stream);
        self.nginx.push(none.nginx, vigie.nginx);
        self.nginx_auditd.push(none.nginx, auditd.nginx);
        self.nginx_tls.push(none.nginx_tls, vigie.nginx_tls);
    }
}

/// Workloads 1–4, 8, 10 and 11 once each, and 9 under `agent`. The ones that read the secret come
/// last: the bench reads their results through a pipe, which the sensor rightly follows, so
/// every process the bench starts after them is born tainted. Workload 9's bystander comes
/// just before them: whatever the sensor attaches for a taint may stay attached.
fn overhead_workloads(env: &Env<'_>, agent: Option<&Agent>) -> Result<Measures> {
    let open_plain = load::open_read(env, Reader::Untrusted, &env.lab.plain)?;
    interrupt::check()?;
    let open_secret_allowed = load::open_read(env, Reader::Allowed, &env.lab.secret)?;
    interrupt::check()?;
    let connect = load::loopback_connect(env)?;
    interrupt::check()?;
    let nginx = env.site.requests_per_second(env.plan.nginx_time, false)?;
    interrupt::check()?;
    let tls_writes = tls::writes(env)?;
    interrupt::check()?;
    let nginx_tls = env.site.requests_per_second(env.plan.nginx_time, true)?;
    interrupt::check()?;
    let untainted_until = agent::now_ns();
    let bystander = agent.map(|agent| tainted::open_read(env, agent)).transpose()?;
    interrupt::check()?;
    let open_secret_untrusted = load::open_read(env, Reader::Untrusted, &env.lab.secret)?;
    interrupt::check()?;
    let stream = load::stream(env)?;
    Ok(Measures {
        open_plain,
        open_secret_allowed,
        open_secret_untrusted,
        connect,
        stream,
        nginx,
        tls_writes,
        nginx_tls,
        bystander,
        untainted_until,
    })
}

/// Workloads 1 and 8 under auditd (workload 7 is the first).
fn audited_workloads(env: &Env<'_>) -> Result<Audited> {
    let open_plain = load::open_read(env, Reader::Untrusted, &env.lab.plain)?;
    interrupt::check()?;
    Ok(Audited { open_plain, nginx: env.site.requests_per_second(env.plan.nginx_time, false)? })
}
