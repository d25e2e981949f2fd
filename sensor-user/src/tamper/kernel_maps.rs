//! The maps the agent writes, compared with what it wrote: the watch list (`SECRETS` and its
//! `PREFILTER` bits), `ALLOWED_EXES`, `TRUSTED_PIDS`, and the taint of processes the agent
//! knows tainted (`TAINTED`). A difference seen at two checks in a row is someone else's
//! (the kernel's own changes — an exec or exit ending trust or taint — reach the agent as
//! records well before the next check); it is reported, and what the agent wrote is put back.

use std::collections::{HashMap, HashSet};

use sensor_common::{map_name, prefilter, FileId, Taint, TrustedProcess, WatchedSecret};

use super::{Act, Tampering};
use crate::{
    kernel::Sensor,
    pipeline::Pipeline,
    state::{
        secret_catalog::{Rebind, SecretKind},
        trusted_processes::TrustChange,
    },
};

/// One difference between a map and what the agent wrote into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Drift {
    /// A watched file's entry is missing, or names another secret: the agent's is `secret_id`.
    Secret {
        file: FileId,
        secret_id: u32,
        generation: Option<u32>,
    },
    /// An entry for a file the agent does not watch.
    ForeignSecret(FileId),
    /// A watched file's prefilter bit was cleared.
    Prefilter {
        file: FileId,
        secret_id: u32,
        generation: Option<u32>,
    },
    AllowedMissing(FileId),
    ForeignAllowed(FileId),
    /// A process the agent does not trust is trusted by the kernel.
    ForeignTrusted(u32),
    /// A live process the agent knows tainted is no longer tainted in the kernel.
    TaintGone(u32),
}

impl Drift {
    fn map(self) -> &'static str {
        match self {
            Self::Secret { .. } | Self::ForeignSecret(_) => map_name::SECRETS,
            Self::Prefilter { .. } => map_name::PREFILTER,
            Self::AllowedMissing(_) | Self::ForeignAllowed(_) => map_name::ALLOWED_EXES,
            Self::ForeignTrusted(_) => map_name::TRUSTED_PIDS,
            Self::TaintGone(_) => map_name::TAINTED,
        }
    }

    /// Whether it is an entry the agent did not write (else one it wrote, gone or changed).
    fn is_foreign(self) -> bool {
        matches!(self, Self::ForeignSecret(_) | Self::ForeignAllowed(_) | Self::ForeignTrusted(_))
    }
}

/// Differences seen at the last check, not yet seen twice.
#[derive(Debug, Default)]
pub struct MapWatch {
    suspects: HashSet<Drift>,
}

impl MapWatch {
    /// Compares the maps with what the agent wrote; reports, and undoes, what differed at
    /// this check and the last one.
    pub fn check(&mut self, sensor: &mut Sensor, pipeline: &Pipeline) -> Vec<Tampering> {
        // A map the agent cannot read now is checked at the next tick.
        let Ok(seen) = drifts(sensor, pipeline) else { return Vec::new() };
        let confirmed: Vec<Drift> = seen.iter().copied().filter(|d| self.suspects.contains(d)).collect();
        self.suspects = seen;
        let mut by_map: HashMap<&'static str, (u64, u64, bool)> = HashMap::new();
        let mut found = Vec::new();
        for drift in confirmed {
            self.suspects.remove(&drift);
            let restored = restore(sensor, pipeline, drift);
            if let Drift::TaintGone(pid) = drift {
                found.push(Tampering { actor: None, act: Act::TaintRemoved { pid, restored } });
                continue;
            }
            let (foreign, missing, all_restored) = by_map.entry(drift.map()).or_insert((0, 0, true));
            if drift.is_foreign() {
                *foreign += 1;
            } else {
                *missing += 1;
            }
            *all_restored &= restored;
        }
        let mut changed: Vec<_> = by_map.into_iter().collect();
        changed.sort_unstable_by_key(|(map, _)| *map);
        found.extend(changed.into_iter().map(|(map, (foreign, missing, restored))| Tampering {
            actor: None,
            act: Act::MapChanged { map, foreign, missing, restored },
        }));
        found
    }
}

/// Every difference now.
fn drifts(sensor: &Sensor, pipeline: &Pipeline) -> Result<HashSet<Drift>, crate::error::Error> {
    let mut drifts = HashSet::new();
    let catalog = pipeline.catalog();
    let watched: HashMap<FileId, (u32, Option<u32>)> = catalog
        .iter()
        .filter(|(_, s)| s.kind == SecretKind::File && s.id != FileId::default())
        .map(|(id, s)| (s.id, (id, s.generation)))
        .collect();
    let secrets: HashMap<FileId, WatchedSecret> = sensor.entries(map_name::SECRETS)?.into_iter().collect();
    for (&file, &(secret_id, generation)) in &watched {
        // Two patterns may name one file: any of its secrets is the agent's entry.
        let names_it = |entry: &WatchedSecret| catalog.get(entry.secret_id).is_some_and(|s| s.id == file);
        if !secrets.get(&file).is_some_and(names_it) {
            drifts.insert(Drift::Secret { file, secret_id, generation });
        }
        // One word per watched file: the prefilter has 16,384.
        let (word, mask) = prefilter::slot(file);
        if sensor.prefilter_word(word)? & mask == 0 {
            drifts.insert(Drift::Prefilter { file, secret_id, generation });
        }
    }
    drifts
        .extend(secrets.keys().filter(|file| !watched.contains_key(file)).map(|&f| Drift::ForeignSecret(f)));

    let allowed: HashSet<FileId> =
        sensor.entries::<FileId, u8>(map_name::ALLOWED_EXES)?.into_iter().map(|(exe, _)| exe).collect();
    drifts.extend(allowed.difference(sensor.allowed_exes()).map(|&exe| Drift::ForeignAllowed(exe)));
    drifts.extend(sensor.allowed_exes().difference(&allowed).map(|&exe| Drift::AllowedMissing(exe)));

    let trusted = sensor.entries::<u32, TrustedProcess>(map_name::TRUSTED_PIDS)?;
    drifts.extend(
        trusted
            .iter()
            .filter(|(pid, _)| !pipeline.is_trusted(*pid))
            .map(|&(pid, _)| Drift::ForeignTrusted(pid)),
    );

    let tainted: HashSet<u32> =
        sensor.entries::<u32, Taint>(map_name::TAINTED)?.into_iter().map(|(pid, _)| pid).collect();
    drifts.extend(
        pipeline
            .live_taints()
            .into_iter()
            .filter(|(pid, _)| !tainted.contains(pid))
            .map(|(pid, _)| Drift::TaintGone(pid)),
    );
    Ok(drifts)
}

/// Puts back what the agent wrote; true if the kernel took it.
fn restore(sensor: &mut Sensor, pipeline: &Pipeline, drift: Drift) -> bool {
    let rebind = |secret_id, old, new| Rebind { secret_id, old, new };
    match drift {
        Drift::Secret { file, secret_id, generation } | Drift::Prefilter { file, secret_id, generation } => {
            sensor.rebind_secret(&rebind(secret_id, None, Some((file, generation)))).is_ok()
                && sensor.settle_prefilter().is_ok()
        }
        Drift::ForeignSecret(file) => sensor.rebind_secret(&rebind(0, Some(file), None)).is_ok(),
        Drift::AllowedMissing(exe) => sensor.insert_entry(map_name::ALLOWED_EXES, exe, 1u8).is_ok(),
        Drift::ForeignAllowed(exe) => sensor.remove_entry::<FileId, u8>(map_name::ALLOWED_EXES, &exe).is_ok(),
        Drift::ForeignTrusted(pid) => sensor.apply_trust(TrustChange::Untrust { pid }).is_ok(),
        Drift::TaintGone(pid) => pipeline
            .live_taints()
            .into_iter()
            .find(|(tainted, _)| *tainted == pid)
            .is_some_and(|(_, taint)| sensor.taint_process(pid, &taint).is_ok()),
    }
}
