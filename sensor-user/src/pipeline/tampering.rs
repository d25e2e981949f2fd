//! `agent-tampered` documents: an act against the agent (`crate::tamper`), with the process
//! that did it told like an alert's sender — its executable, arguments, user and ancestry.

use std::collections::HashSet;

use sensor_common::{SignalEvent, Taint};

use super::{now_ns, Pipeline};
use crate::{
    format::ecs::{self, BpfObject, Document, MapChange, Missing, ProcessSummary, SignalSent, Tamper, Vigie},
    state::secret_catalog::SecretCatalog,
    tamper::{signals, Act, Named, ObjectKind, Tampering},
};

impl Pipeline {
    /// The document of a signal another process aimed at the agent, if it is an act of one.
    pub(super) fn signalled(&mut self, event: &SignalEvent) -> Option<Document> {
        let tampering = signals::judge(event)?;
        if let Act::Traced { .. } = tampering.act {
            self.tracers.insert(event.header.pid);
        }
        let mut document = self.tampered(&Named { tampering, name: None });
        document.timestamp = ecs::timestamp(self.kernel_time(event.header.ktime_ns));
        Some(document)
    }

    /// Takes note of the agent's tracers now; returns those not reported yet.
    pub fn note_tracers(&mut self, tracers: impl Iterator<Item = u32>) -> HashSet<u32> {
        let now: HashSet<u32> = tracers.collect();
        let new = now.difference(&self.tracers).copied().collect();
        self.tracers = now;
        new
    }

    /// The `agent-tampered` document of `named`, stamped now.
    pub fn tampered(&self, named: &Named) -> Document {
        let Tampering { actor, act } = &named.tampering;
        let event = match act {
            Act::StopSignal { .. } | Act::ReloadSignal { .. } => ecs::AGENT_CONTROLLED,
            _ => ecs::AGENT_TAMPERED,
        };
        let process = actor.and_then(|a| self.processes.get(a.pid));
        let ancestry = process.map(|p| self.processes.ancestry(p)).unwrap_or_default();
        let uid = actor.and_then(|a| a.uid).or(process.map(|p| p.uid));
        let vigie = Vigie {
            tamper: Some(tamper_fields(act, named.name.clone())),
            ancestry: actor
                .map(|_| ancestry.into_iter().map(|p| ProcessSummary::of(p, &self.redactor)).collect()),
            incomplete: process.is_none().then(|| vec![Missing::Process]),
            ..Vigie::default()
        };
        Document {
            rule: Some(ecs::TAMPER_RULE),
            threat: Some(ecs::TAMPER_THREAT),
            process: actor.map(|a| self.process_fields(a.pid, process)),
            user: uid.map(|uid| ecs::User { id: uid.to_string() }),
            vigie: Some(vigie),
            ..self.document(now_ns(), event)
        }
    }

    /// The watch list, as the agent wrote it into the kernel.
    pub fn catalog(&self) -> &SecretCatalog {
        &self.catalog
    }

    /// Each live process the agent knows tainted (trusted services aside), with the taint
    /// the kernel should hold for it.
    pub fn live_taints(&self) -> Vec<(u32, Taint)> {
        let now = crate::system::monotonic_ns();
        self.taint
            .live(now)
            .filter(|&(pid, _)| !self.trusted.is_trusted(pid) && self.processes.get(pid).is_some())
            .filter(|&(pid, _)| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .map(|(pid, touch)| {
                let taint = Taint {
                    secret_id: touch.secret_id,
                    origin_pid: touch.origin_pid,
                    read_ns: touch.read_ns,
                    acquired_ns: touch.acquired_ns,
                    via_kind: touch.via_kind,
                    via_generation: 0,
                    via: touch.via,
                    origin_start_ns: touch.origin_start_ns,
                };
                (pid, taint)
            })
            .collect()
    }
}

/// `vigie.tamper` of `act`; `name` is the map's or program's.
fn tamper_fields(act: &Act, name: Option<String>) -> Tamper {
    let signal = |kind, number: u32, origin: signals::Origin, thread| Tamper {
        kind,
        signal: Some(SignalSent { name: signals::name(number), number, sent_with: origin.as_str() }),
        thread: Some(thread),
        ..Tamper::default()
    };
    let object = |kind: ObjectKind, id, name| Some(BpfObject { kind: kind.as_str(), id, name });
    match *act {
        Act::Signal { number, origin, thread } => signal("signal", number, origin, thread),
        Act::StopSignal { number, origin, thread } => signal("stop-signal", number, origin, thread),
        Act::ReloadSignal { number, origin, thread } => signal("reload-signal", number, origin, thread),
        Act::Traced { thread } => Tamper { kind: "ptrace", thread: Some(thread), ..Tamper::default() },
        Act::HoldsObject { kind, id } => {
            Tamper { kind: "bpf-object-held", object: object(kind, id, name), ..Tamper::default() }
        }
        Act::MapChanged { map, foreign, missing, restored } => Tamper {
            kind: "map-changed",
            map: Some(MapChange { name: map, entries_foreign: foreign, entries_missing: missing }),
            restored: Some(restored),
            ..Tamper::default()
        },
        Act::TaintRemoved { pid, restored } => Tamper {
            kind: "taint-removed",
            tainted_pid: Some(pid),
            restored: Some(restored),
            ..Tamper::default()
        },
        Act::LinkDetached { link, program } => Tamper {
            kind: "link-detached",
            object: object(ObjectKind::Link, link, None),
            program: object(ObjectKind::Program, program, name),
            ..Tamper::default()
        },
        Act::ForeignProgram { program, ref hook, link } => Tamper {
            kind: "foreign-program",
            object: link.and_then(|link| object(ObjectKind::Link, link, None)),
            program: object(ObjectKind::Program, program, name),
            hook: Some(hook.clone()),
            ..Tamper::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use sensor_common::EventHeader;

    use super::super::tests::{pipeline_for_tests, READER};
    use super::*;
    use crate::tamper::signals::record;

    #[test]
    fn a_signal_from_a_known_process_names_it_its_user_and_ancestry() {
        let (mut pipeline, dir) = pipeline_for_tests("tamper-signal");
        let event =
            SignalEvent { header: EventHeader { pid: READER, ..record(0, 0, 0).header }, ..record(10, 0, 0) };
        let document = serde_json::to_value(pipeline.signalled(&event).unwrap()).unwrap();
        assert_eq!(document["event"]["action"], "agent-tampered");
        assert_eq!(document["event"]["severity"], 73);
        assert_eq!(document["process"]["pid"], READER);
        assert_eq!(document["process"]["executable"], "/usr/bin/cat");
        assert_eq!(document["user"]["id"], "1000");
        assert_eq!(document["vigie"]["ancestry"][0]["executable"], "/bin/sh", "{document:#}");
        let signal = serde_json::json!({"name": "SIGUSR1", "number": 10, "sent_with": "kill"});
        assert_eq!(document["vigie"]["tamper"]["signal"], signal);
        assert_eq!(document["threat"]["technique"]["id"][0], "T1562");

        let stop = SignalEvent { signal: 15, ..event };
        let document = serde_json::to_value(pipeline.signalled(&stop).unwrap()).unwrap();
        assert_eq!(document["vigie"]["tamper"]["kind"], "stop-signal");
        assert_eq!(document["event"]["severity"], 21);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_tracer_seen_by_its_sigstop_is_not_reported_again_by_the_poll() {
        let (mut pipeline, dir) = pipeline_for_tests("tamper-tracer");
        let document = serde_json::to_value(pipeline.signalled(&record(19, 0x80, 1)).unwrap()).unwrap();
        assert_eq!(document["vigie"]["tamper"], serde_json::json!({"kind": "ptrace", "thread": 5}));
        assert!(pipeline.note_tracers([77].into_iter()).is_empty());
        assert_eq!(pipeline.note_tracers([77, 101].into_iter()), HashSet::from([101]));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_map_change_has_no_actor_and_says_what_was_put_back() {
        let (pipeline, dir) = pipeline_for_tests("tamper-map");
        let act = Act::MapChanged { map: "ALLOWED_EXES", foreign: 1, missing: 0, restored: true };
        let named = Named { tampering: Tampering { actor: None, act }, name: None };
        let document = serde_json::to_value(pipeline.tampered(&named)).unwrap();
        assert!(document.get("process").is_none(), "{document:#}");
        let map = serde_json::json!({"name": "ALLOWED_EXES", "entries_foreign": 1, "entries_missing": 0});
        assert_eq!(document["vigie"]["tamper"]["map"], map);
        assert_eq!(document["vigie"]["tamper"]["restored"], true);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
