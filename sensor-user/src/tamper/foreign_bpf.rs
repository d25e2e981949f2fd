//! What others do with the agent's BPF objects and hooks, judged from an [`FdScan`]: another
//! process holding one of its maps, programs or links (how one writes a map, detaches a
//! link or reads taint), a link of the agent no longer attached, and a program someone else
//! attached on a hook the agent uses (by a link, or by a perf event without one).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::AsRawFd;

use super::{
    bpf_fds::{FdScan, Held, Hook, LinkState, ObjectKind, PerfProgram},
    bpf_syscall, Act, Actor, Tampering,
};

/// The agent's own objects and hooks, as the scan of its own fds shows them.
struct Own {
    objects: HashSet<(ObjectKind, u32)>,
    /// Each hook, with the tags of the agent's programs on it.
    hooks: HashMap<Hook, HashSet<Option<u64>>>,
}

impl Own {
    /// Whether a program tagged `tag` on `hook` is someone else's: on a hook the agent uses,
    /// and not the agent's own code (another Vigie agent of the same build runs that).
    fn foreign(&self, hook: &Hook, tag: Option<u64>) -> bool {
        self.hooks.get(hook).is_some_and(|tags| tag.is_none() || !tags.contains(&tag))
    }
}

/// Links no process holds (pinned, or held only by the kernel), read through an fd of ours.
pub fn unheld_links(scan: &FdScan) -> Vec<LinkState> {
    let held: HashSet<u32> = scan.links.iter().map(|link| link.id).collect();
    bpf_syscall::link_ids()
        .into_iter()
        .filter(|id| !held.contains(id))
        .filter_map(|id| {
            let fd = bpf_syscall::link_fd(id).ok()?;
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
            super::bpf_fds::link_state(&info)
        })
        .collect()
}

/// Everything the scan shows done to the agent `agent`; `unheld` are the links no process
/// holds; `tag_of` gives a program's tag by id.
pub fn judge(
    scan: &FdScan,
    unheld: &[LinkState],
    agent: u32,
    tag_of: impl Fn(u32) -> Option<u64>,
) -> Vec<Tampering> {
    let own = own(scan, agent, &tag_of);
    let mut found = Vec::new();
    for link in scan.links.iter().filter(|l| own.objects.contains(&(ObjectKind::Link, l.id)) && !l.attached) {
        found.push(Tampering {
            actor: None,
            act: Act::LinkDetached { link: link.id, program: link.program_id },
        });
    }
    for held in scan.held.iter().filter(|h| h.pid != agent && own.objects.contains(&(h.kind, h.id))) {
        let act = Act::HoldsObject { kind: held.kind, id: held.id };
        found.push(Tampering { actor: Some(Actor { pid: held.pid, uid: None }), act });
    }
    let links: BTreeSet<&LinkState> = scan.links.iter().chain(unheld).collect();
    for link in links.into_iter().filter(|l| !own.objects.contains(&(ObjectKind::Link, l.id))) {
        let tag = link.program_tag.or_else(|| tag_of(link.program_id));
        let Some(hook) = link.hook.as_ref().filter(|hook| own.foreign(hook, tag)) else { continue };
        let holders: Vec<u32> = holders_of(scan, ObjectKind::Link, link.id).collect();
        let act =
            Act::ForeignProgram { program: link.program_id, hook: hook.to_string(), link: Some(link.id) };
        let actor = holders.first().map(|&pid| Actor { pid, uid: None });
        found.push(Tampering { actor, act });
    }
    let perf_foreign = |p: &&PerfProgram| p.pid != agent && own.foreign(&p.hook, tag_of(p.program_id));
    for perf in scan.perf_programs.iter().filter(perf_foreign) {
        let act = Act::ForeignProgram { program: perf.program_id, hook: perf.hook.to_string(), link: None };
        found.push(Tampering { actor: Some(Actor { pid: perf.pid, uid: None }), act });
    }
    found
}

/// The agent's objects (every BPF fd it holds) and the hooks its links and perf events use.
fn own(scan: &FdScan, agent: u32, tag_of: impl Fn(u32) -> Option<u64>) -> Own {
    let objects: HashSet<(ObjectKind, u32)> =
        scan.held.iter().filter(|h| h.pid == agent).map(|h| (h.kind, h.id)).collect();
    let mut hooks: HashMap<Hook, HashSet<Option<u64>>> = HashMap::new();
    for link in scan.links.iter().filter(|l| objects.contains(&(ObjectKind::Link, l.id))) {
        if let Some(hook) = &link.hook {
            hooks.entry(hook.clone()).or_default().insert(link.program_tag);
        }
    }
    for perf in scan.perf_programs.iter().filter(|p| p.pid == agent) {
        hooks.entry(perf.hook.clone()).or_default().insert(tag_of(perf.program_id));
    }
    Own { objects, hooks }
}

fn holders_of(scan: &FdScan, kind: ObjectKind, id: u32) -> impl Iterator<Item = u32> + '_ {
    scan.held.iter().filter(move |h| h.kind == kind && h.id == id).map(|h: &Held| h.pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: u32 = 10;
    const OTHER: u32 = 20;

    fn exec_hook() -> Hook {
        Hook::Tracepoint("sched_process_exec".into())
    }

    /// The agent holds map 1 and link 5 on `sched_process_exec` and cgroup link 6.
    fn scan() -> FdScan {
        let mut scan = FdScan::default();
        for (kind, id) in [(ObjectKind::Map, 1), (ObjectKind::Link, 5), (ObjectKind::Link, 6)] {
            scan.held.insert(Held { pid: AGENT, kind, id });
        }
        scan.links.insert(link(5, 50, Some(exec_hook())));
        scan.links.insert(link(6, 60, Some(Hook::Cgroup { cgroup_id: 1, attach_type: 14 })));
        scan
    }

    /// Link `id` of program `program` (tagged with its id) on `hook`, attached.
    fn link(id: u32, program: u32, hook: Option<Hook>) -> LinkState {
        LinkState { id, program_id: program, program_tag: Some(program.into()), hook, attached: true }
    }

    /// The tag of program `id`, as the tests give them.
    #[expect(clippy::unnecessary_wraps, reason = "the shape of `judge`'s tag lookup")]
    fn tags(id: u32) -> Option<u64> {
        Some(id.into())
    }

    #[test]
    fn nothing_but_the_agents_own_objects_is_nothing_to_report() {
        assert!(judge(&scan(), &[], AGENT, tags).is_empty());
    }

    #[test]
    fn a_holder_of_an_agent_map_and_a_foreign_program_on_its_hook_are_named() {
        let mut scan = scan();
        scan.held.insert(Held { pid: OTHER, kind: ObjectKind::Map, id: 1 });
        scan.perf_programs.insert(PerfProgram { pid: OTHER, program_id: 99, hook: exec_hook() });
        // Another process's program on a hook the agent does not use is none of its business.
        let elsewhere = Hook::Tracepoint("sched_switch".into());
        scan.perf_programs.insert(PerfProgram { pid: OTHER, program_id: 98, hook: elsewhere });
        let found = judge(&scan, &[], AGENT, tags);
        let actor = Some(Actor { pid: OTHER, uid: None });
        let holder = Tampering { actor, act: Act::HoldsObject { kind: ObjectKind::Map, id: 1 } };
        let program =
            Act::ForeignProgram { program: 99, hook: "tracepoint:sched_process_exec".into(), link: None };
        assert_eq!(found, [holder, Tampering { actor, act: program }]);
    }

    #[test]
    fn a_detached_link_and_an_unheld_foreign_link_are_reported_the_agents_own_code_is_not() {
        let mut scan = scan();
        let mut detached = scan.links.iter().find(|l| l.id == 6).unwrap().clone();
        scan.links.remove(&detached);
        detached.attached = false;
        detached.hook = None;
        scan.links.insert(detached);
        let pinned = link(7, 70, Some(exec_hook()));
        // Another agent's link, running the agent's own code (program 50's tag).
        scan.held.insert(Held { pid: OTHER, kind: ObjectKind::Link, id: 8 });
        scan.links.insert(LinkState { program_tag: tags(50), ..link(8, 80, Some(exec_hook())) });

        let found = judge(&scan, &[pinned], AGENT, tags);

        let foreign =
            Act::ForeignProgram { program: 70, hook: "tracepoint:sched_process_exec".into(), link: Some(7) };
        assert_eq!(
            found,
            [
                Tampering { actor: None, act: Act::LinkDetached { link: 6, program: 60 } },
                Tampering { actor: None, act: foreign },
            ]
        );
    }
}
