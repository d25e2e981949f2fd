//! Self-protection: what other processes do to the agent and its kernel state, reported as
//! `agent-tampered` alerts naming who did it where that can be known.
//!
//! - Signals aimed at any thread of the agent: the kernel's `signal_sent` program writes a
//!   record for each ([`signals`]); the agent's own stop and reload are reported as such.
//! - Tracers: `PTRACE_ATTACH` is seen by the `SIGSTOP` it sends, `PTRACE_SEIZE` by the
//!   threads' `TracerPid`, polled ([`tracers`]).
//! - Its BPF maps, programs and links held by another process, its links detached, and
//!   programs others attached on the hooks it uses: a background walk of `/proc/*/fd`
//!   ([`bpf_fds`], [`foreign_bpf`]).
//! - Its maps changed behind its back, and taint removed from a live process: compared with
//!   what the agent wrote, and put back ([`kernel_maps`]).
//!
//! Not seen: `process_vm_readv` or `/proc/PID/mem` on the agent without an attach (no hook
//! here without LSM or kprobes; the agent is undumpable, so only a root process can), and a
//! map written and set back between two checks.

mod bpf_fds;
mod bpf_syscall;
mod foreign_bpf;
mod kernel_maps;
pub mod signals;
mod tracers;

use std::{
    cell::OnceCell,
    collections::{HashMap, HashSet},
};

use crate::{background::Background, kernel::Sensor, pipeline::Pipeline, sinks::output::Output};
use bpf_fds::FdScan;
pub use bpf_fds::ObjectKind;
use kernel_maps::MapWatch;
use signals::Origin;

/// Every how many ticks the agent's threads' tracers are read.
const TRACER_TICKS: u64 = 2;
/// Every how many ticks the agent's maps are compared with what it wrote.
const MAP_TICKS: u64 = 4;
/// Every how many ticks every process's BPF fds are walked.
const SCAN_TICKS: u64 = 6;

/// The process that did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub pid: u32,
    /// Its user, where the kernel's record says it.
    pub uid: Option<u32>,
}

/// What was done to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Act {
    /// A signal to thread `thread` of the agent.
    Signal { number: u32, origin: Origin, thread: u32 },
    /// SIGTERM or SIGINT: the agent stops.
    StopSignal { number: u32, origin: Origin, thread: u32 },
    /// SIGHUP: the agent reads its configuration again.
    ReloadSignal { number: u32, origin: Origin, thread: u32 },
    /// A tracer attached to thread `thread`.
    Traced { thread: u32 },
    /// Another process holds an fd of one of the agent's BPF objects.
    HoldsObject { kind: ObjectKind, id: u32 },
    /// Entries of `map` the agent did not write (`foreign`), or wrote and are gone or changed
    /// (`missing`).
    MapChanged { map: &'static str, foreign: u64, missing: u64, restored: bool },
    /// Process `pid`, tainted and alive, lost its taint in the kernel.
    TaintRemoved { pid: u32, restored: bool },
    /// A link of the agent was detached from its hook.
    LinkDetached { link: u32, program: u32 },
    /// Another program runs on a hook the agent uses, by `link` or by a perf event.
    ForeignProgram { program: u32, hook: String, link: Option<u32> },
}

/// One act against the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tampering {
    pub actor: Option<Actor>,
    pub act: Act,
}

/// A [`Tampering`] fit for a document: with the name of the map or program involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub tampering: Tampering,
    pub name: Option<String>,
}

/// The periodic part of self-protection, run on the agent's tick.
#[derive(Debug, Default)]
pub struct SelfWatch {
    ticks: u64,
    walk: Background<Vec<Named>>,
    maps: MapWatch,
    /// What the last walk found (each is reported once, while it lasts).
    walked: HashSet<Key>,
}

/// What makes a walk's finding the same one as before.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key(Option<u32>, Act);

impl Key {
    fn of(tampering: &Tampering) -> Self {
        Self(tampering.actor.map(|a| a.pid), tampering.act.clone())
    }
}

impl SelfWatch {
    /// Starts watching, with the kernel's program for signals at the agent attached whatever
    /// the backend; the signals whose default would end the agent and that it has no use for
    /// (`SIGUSR1`, `SIGUSR2`) are ignored from now on, so that one is reported, not fatal.
    pub fn start(sensor: &mut Sensor) -> Self {
        for signal in [libc::SIGUSR1, libc::SIGUSR2] {
            // SAFETY: SIG_IGN installs no handler of ours; the call touches no memory of ours.
            unsafe { libc::signal(signal, libc::SIG_IGN) };
        }
        if let Err(why) = sensor.watch_agent_signals() {
            eprintln!("vigie: signals aimed at the agent are not seen: {why}");
        }
        Self::default()
    }

    /// One tick: tracers, maps and the fd walk, each when due; writes what it finds.
    pub async fn tick(&mut self, sensor: &mut Sensor, pipeline: &mut Pipeline, output: &mut Output) {
        self.ticks += 1;
        let mut found = Vec::new();
        if self.ticks.is_multiple_of(TRACER_TICKS) {
            let tracers = tracers::of_this_process();
            let new = pipeline.note_tracers(tracers.iter().map(|&(tracer, _)| tracer));
            found.extend(tracers.into_iter().filter(|(tracer, _)| new.contains(tracer)).map(
                |(tracer, thread)| Tampering {
                    actor: Some(Actor { pid: tracer, uid: None }),
                    act: Act::Traced { thread },
                },
            ));
        }
        if self.ticks.is_multiple_of(MAP_TICKS) {
            found.extend(self.maps.check(sensor, pipeline));
        }
        let mut named: Vec<Named> =
            found.into_iter().map(|tampering| Named { tampering, name: None }).collect();
        if let Some(walked) = self.walk.take_finished().await {
            named.extend(self.new_from_walk(walked));
        }
        if self.ticks.is_multiple_of(SCAN_TICKS) {
            self.walk.start(walk);
        }
        for named in &named {
            output.write(&pipeline.tampered(named));
        }
    }

    /// What the walk found that the last one did not.
    fn new_from_walk(&mut self, walked: Vec<Named>) -> Vec<Named> {
        let keys: HashSet<Key> = walked.iter().map(|n| Key::of(&n.tampering)).collect();
        let new = walked.into_iter().filter(|n| !self.walked.contains(&Key::of(&n.tampering))).collect();
        self.walked = keys;
        new
    }
}

/// Walks every process's BPF fds and judges what they show, naming the maps and programs
/// (off the event loop).
fn walk() -> Vec<Named> {
    let scan = FdScan::run();
    let unheld = foreign_bpf::unheld_links(&scan);
    // Every loaded program is opened for its tag and name only when one is needed.
    let programs: OnceCell<HashMap<u32, (u64, Option<String>)>> = OnceCell::new();
    let program = |id: u32| {
        let all = programs.get_or_init(|| {
            let info = aya::programs::loaded_programs().flatten();
            info.map(|p| (p.id(), (p.tag(), p.name_as_str().map(str::to_owned)))).collect()
        });
        all.get(&id)
    };
    let found = foreign_bpf::judge(&scan, &unheld, std::process::id(), |id| program(id).map(|(tag, _)| *tag));
    found
        .into_iter()
        .map(|tampering| {
            let name = match tampering.act {
                Act::HoldsObject { kind: ObjectKind::Map, id } => {
                    aya::maps::MapInfo::from_id(id).ok().and_then(|map| map.name_as_str().map(str::to_owned))
                }
                Act::HoldsObject { kind: ObjectKind::Program, id }
                | Act::LinkDetached { program: id, .. }
                | Act::ForeignProgram { program: id, .. } => program(id).and_then(|(_, name)| name.clone()),
                _ => None,
            };
            Named { tampering, name }
        })
        .collect()
}
