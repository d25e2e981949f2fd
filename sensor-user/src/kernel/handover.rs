//! Taking over from the generations earlier agents left attached (`keep_loaded`): once this
//! agent's programs are attached and pinned, the old ones are detached, what they knew is
//! carried into this agent's maps (who is tainted, which pipes and files carry a secret, what
//! was sent), and their ring buffers are handed to the agent to drain: a secret read while no
//! agent ran is reported now. The programs overlap for the moment between the two attaches,
//! so nothing happens unseen; a record made in that moment may be reported twice.

use std::{
    collections::HashMap as StdHashMap,
    os::fd::{AsRawFd, RawFd},
};

use aya::{
    maps::{HashMap, Map, MapData, MapError, PerCpuArray, RingBuf},
    Ebpf,
};
use sensor_common::{counter, map_name, FileId, ReadSeenKey, SendKey, SendTotal, Taint, WatchedSecret};
use serde::Serialize;

use super::{
    decode::{decode, DecodeError, KernelEvent},
    pins::Previous,
};
use crate::error::Error;

/// What was taken over, for `sensor-started`.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Handover {
    /// The generations taken over (their pin directories' names).
    pub generations: Vec<String>,
    /// Their links detached.
    pub links_detached: usize,
    /// Tainted processes, marked pipes/files/sockets and per-destination byte counts carried.
    pub taints: usize,
    pub marks: usize,
    pub sends: usize,
    /// Records their programs could not hand over since they were loaded (a full ring buffer,
    /// most likely while no agent ran).
    pub events_lost: u64,
    /// Maps not carried, with why (another object version laid them out differently).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_carried: Vec<String>,
}

/// A ring buffer of records, with how their secret ids map to this agent's: its own (the ids
/// are its own) or an earlier generation's.
pub struct Records {
    pub ring: RingBuf<MapData>,
    pub secret_ids: SecretIds,
    /// In an earlier generation's ring: this agent's own reading of the secrets, which those
    /// programs took for any process's, so that it and what it led to are skipped.
    agent: Option<Origin>,
}

impl Records {
    pub fn own(ring: RingBuf<MapData>) -> Self {
        Self { ring, secret_ids: SecretIds::default(), agent: None }
    }

    /// The next record, decoded, with this agent's secret ids; `Some(Err)`: a malformed one.
    pub fn next(&mut self) -> Option<Result<KernelEvent, DecodeError>> {
        loop {
            let record = self.ring.next()?;
            let mut event = decode(&record);
            drop(record);
            if let Ok(Some(taint)) = event.as_mut().map(KernelEvent::taint_mut) {
                if self.agent.is_some_and(|agent| agent.is(taint)) {
                    continue;
                }
                self.secret_ids.taint(taint);
            }
            return Some(event);
        }
    }
}

impl AsRawFd for Records {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

/// Old secret ids to this agent's, where the two catalogs disagree (another config).
#[derive(Debug, Default, Clone)]
pub struct SecretIds(StdHashMap<u32, u32>);

impl SecretIds {
    /// Secrets are matched by file identity; an id with no file (a label) keeps its number.
    fn between(old: &[(FileId, WatchedSecret)], new: &[(FileId, WatchedSecret)]) -> Self {
        let new: StdHashMap<FileId, u32> = new.iter().map(|(id, w)| (*id, w.secret_id)).collect();
        let moved = old
            .iter()
            .filter_map(|(file, w)| new.get(file).map(|&id| (w.secret_id, id)))
            .filter(|(old, new)| old != new)
            .collect();
        Self(moved)
    }

    pub fn map(&self, id: u32) -> u32 {
        self.0.get(&id).copied().unwrap_or(id)
    }

    pub fn taint(&self, taint: &mut Taint) {
        taint.secret_id = self.map(taint.secret_id);
    }
}

/// The process a taint started in: its pid and its start (which tells it from a process that
/// had the pid before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    pid: u32,
    start_ns: u64,
}

impl Origin {
    fn is(self, taint: &Taint) -> bool {
        (taint.origin_pid, taint.origin_start_ns) == (self.pid, self.start_ns)
    }
}

/// How the entries of a generation are made this agent's.
struct Adapt<'a> {
    /// The earlier secret ids to this agent's.
    ids: &'a SecretIds,
    /// This agent's pid: the earlier programs took it for any process until this agent's
    /// programs were attached, and tainted it when it read the secrets (its fingerprints).
    agent: u32,
    /// That taint's origin, if they did: the taint of what it wrote (its journal) is its own.
    own: Option<Origin>,
}

impl Adapt<'_> {
    /// Makes `taint` this agent's; false if it is this agent's own reading of the secrets.
    fn taint(&self, taint: &mut Taint) -> bool {
        self.ids.taint(taint);
        !self.own.is_some_and(|own| own.is(taint))
    }
}

/// A map whose entries are carried from one generation to the next: how its entries are
/// copied (made this agent's, or left behind), and which count of [`Handover`] they add to.
struct Carried {
    name: &'static str,
    copy: fn(&Map, &mut Map, &Adapt<'_>) -> Result<usize, MapError>,
    count: Option<fn(&mut Handover) -> &mut usize>,
}

const CARRIED: [Carried; 6] = [
    Carried {
        name: map_name::TAINTED,
        copy: |old, new, adapt| {
            copy::<u32, Taint>(old, new, |pid, taint| adapt.taint(taint) && *pid != adapt.agent)
        },
        count: Some(|handover| &mut handover.taints),
    },
    Carried {
        name: map_name::TAINTED_FILES,
        copy: |old, new, adapt| copy::<FileId, Taint>(old, new, |_, taint| adapt.taint(taint)),
        count: Some(|handover| &mut handover.marks),
    },
    Carried {
        name: map_name::SEND_TOTALS,
        copy: |old, new, adapt| {
            copy::<SendKey, SendTotal>(old, new, |key, total| {
                adapt.taint(&mut total.taint) && key.pid != adapt.agent
            })
        },
        count: Some(|handover| &mut handover.sends),
    },
    Carried {
        name: map_name::READ_SEEN,
        copy: |old, new, adapt| {
            copy::<ReadSeenKey, u64>(old, new, |key, _| {
                key.secret_id = adapt.ids.map(key.secret_id);
                key.pid != adapt.agent
            })
        },
        count: None,
    },
    Carried {
        name: map_name::LOADER_TAMPERED,
        copy: |old, new, adapt| copy::<u32, u8>(old, new, |pid, _| *pid != adapt.agent),
        count: None,
    },
    Carried {
        name: map_name::PIPE_UPSTREAM,
        copy: |old, new, _| copy::<FileId, FileId>(old, new, |_, _| true),
        count: None,
    },
];

/// Takes over every generation in `previous` into this agent's maps, in `ebpf`; `agent` is
/// this agent's pid.
pub fn take_over(
    previous: Vec<Previous>,
    ebpf: &mut Ebpf,
    agent: u32,
) -> Result<(Handover, Vec<Records>), Error> {
    let mut handover = Handover::default();
    let mut pending = Vec::new();
    for generation in previous {
        handover.generations.push(generation.name());
        handover.links_detached += generation.detach()?;
        let secret_ids = match (generation.map(map_name::SECRETS)?, ebpf.map(map_name::SECRETS)) {
            (Some(old), Some(new)) => SecretIds::between(&entries(&old)?, &entries(new)?),
            _ => SecretIds::default(),
        };
        let own = generation.map(map_name::TAINTED)?.as_ref().and_then(|map| own_taint(map, agent));
        for carried in &CARRIED {
            let (Some(old), Some(new)) = (generation.map(carried.name)?, ebpf.map_mut(carried.name)) else {
                handover.not_carried.push(format!("{}: missing in one of the generations", carried.name));
                continue;
            };
            match (carried.copy)(&old, new, &Adapt { ids: &secret_ids, agent, own }) {
                Ok(n) => {
                    if let Some(count) = carried.count {
                        *count(&mut handover) += n;
                    }
                }
                Err(why) => handover.not_carried.push(format!("{}: {why}", carried.name)),
            }
        }
        if let Some(map) = generation.map(map_name::COUNTERS)? {
            let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_error)?;
            let lost = counters.get(&counter::EVENTS_LOST, 0).map_err(map_error)?;
            handover.events_lost += lost.iter().sum::<u64>();
        }
        if generation.same_object {
            if let Some(ring) = generation.map(map_name::EVENTS)? {
                let ring = RingBuf::try_from(ring).map_err(map_error)?;
                pending.push(Records { ring, secret_ids, agent: own });
            }
        } else {
            handover.not_carried.push(format!("{}: records of another object version", map_name::EVENTS));
        }
        generation.remove()?;
    }
    Ok((handover, pending))
}

/// Copies `old`'s entries into `new` (`BPF_NOEXIST`: what this agent's programs recorded
/// since they were attached wins), each passed through `adapt` first, which may leave it
/// behind (false).
fn copy<K: aya::Pod, V: aya::Pod>(
    old: &Map,
    new: &mut Map,
    mut adapt: impl FnMut(&mut K, &mut V) -> bool,
) -> Result<usize, MapError> {
    const BPF_NOEXIST: u64 = 1;
    let old: HashMap<&MapData, K, V> = HashMap::try_from(old)?;
    let mut new: HashMap<&mut MapData, K, V> = HashMap::try_from(new)?;
    let mut copied = 0;
    for entry in &old {
        let (mut key, mut value) = entry?;
        if !adapt(&mut key, &mut value) {
            continue;
        }
        match new.insert(key, value, BPF_NOEXIST) {
            Ok(()) => copied += 1,
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(copied)
}

/// The origin of `agent`'s own taint in an earlier generation's `TAINTED`, if it took one
/// there (reading the secrets itself; a pid is in `TAINTED` only while its process lives).
fn own_taint(map: &Map, agent: u32) -> Option<Origin> {
    let tainted: HashMap<&MapData, u32, Taint> = HashMap::try_from(map).ok()?;
    let taint = tainted.get(&agent, 0).ok()?;
    (taint.origin_pid == agent).then_some(Origin { pid: agent, start_ns: taint.origin_start_ns })
}

fn entries(map: &Map) -> Result<Vec<(FileId, WatchedSecret)>, Error> {
    let map: HashMap<&MapData, FileId, WatchedSecret> = HashMap::try_from(map).map_err(map_error)?;
    map.iter().collect::<Result<_, _>>().map_err(map_error)
}

fn map_error(source: MapError) -> Error {
    Error::Map { map: "of an earlier generation", source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(secret_id: u32) -> WatchedSecret {
        WatchedSecret { secret_id, generation: 0, generation_known: 0 }
    }

    #[test]
    fn the_agents_own_taint_is_left_behind_and_one_from_an_earlier_process_of_its_pid_carried() {
        let ids = SecretIds::default();
        let adapt = Adapt { ids: &ids, agent: 40, own: Some(Origin { pid: 40, start_ns: 7_000 }) };
        let own = Taint { origin_pid: 40, origin_start_ns: 7_000, ..Taint::default() };
        let reused = Taint { origin_start_ns: 5_000, ..own };
        let other = Taint { origin_pid: 41, ..own };
        let carried = |mut taint: Taint| adapt.taint(&mut taint);
        assert!(!carried(own), "what the agent's own read led to");
        assert!(carried(reused), "a file derived by the process that had pid 40 before");
        assert!(carried(other));
    }

    #[test]
    fn secret_ids_follow_the_file_and_labels_keep_their_number() {
        let (a, b) = (FileId { dev: 1, _pad: 0, ino: 10 }, FileId { dev: 1, _pad: 0, ino: 20 });
        let ids =
            SecretIds::between(&[(a, watched(0)), (b, watched(1))], &[(b, watched(0)), (a, watched(1))]);
        assert_eq!((ids.map(0), ids.map(1), ids.map(7)), (1, 0, 7));
    }
}
