//! The page cache backend's syscall programs come and go with taint: attached when the first
//! process becomes tainted, detached when the last tainted process is gone. What happened
//! on pipes in between is completed here from `/proc`: the kernel marked the pipes a process
//! held for writing when it became tainted, and whoever holds one of those for reading, with
//! nothing left unread in it, may have read the secret before the programs were attached: it
//! is tainted too, and so on down a pipeline (`cat secret | base64 | curl --data-binary @-`).
//! The walk of `/proc` runs in the background ([`Holders::scan`]); its result is applied on
//! the event loop, the programs being attached already while it runs.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use sensor_common::{via, EventHeader, EventKind, FileId, Taint, TaintEvent};

use crate::{
    background::Background,
    error::Error,
    format::ecs::Document,
    kernel::{
        decode::KernelEvent,
        holders::{self, End, Holders},
        Sensor,
    },
    pipeline::Pipeline,
    system,
};

/// Rounds of "readers of marked pipes", one per stage of a pipeline.
const MAX_STAGES: usize = 16;

/// How long the channel programs stay attached once no process is tainted: a reader may
/// still take what a tainted process left in a pipe or socket.
const LINGER: Duration = Duration::from_secs(3);

/// Why the `/proc` walk in flight was started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Purpose {
    /// The programs were just attached: readers may have drained a marked pipe before.
    #[default]
    CatchUp,
    /// Nothing was tainted for [`LINGER`]: catch up a last time, then detach if still idle.
    Linger,
}

/// Attaches and detaches the channel programs as taint comes and goes.
#[derive(Debug, Default)]
pub struct ChannelHooks {
    /// The pipeline's count of acquired taints when last looked at.
    taints_seen: u64,
    /// Whether the kernel's taint gate may be open (a taint was seen since it was closed).
    gate_open: bool,
    /// Since when no process has been tainted while the programs were attached.
    idle_since: Option<Instant>,
    /// The walk of `/proc` in flight; the agent hands its result to [`ChannelHooks::walked`].
    pub walk: Background<Holders>,
    purpose: Purpose,
}

impl ChannelHooks {
    /// Called after every batch of records and on every tick: attaches the programs on new
    /// taint and starts the walks that complete them.
    pub fn follow(&mut self, sensor: &mut Sensor, pipeline: &Pipeline) -> Result<(), Error> {
        let fresh = pipeline.taints_acquired() != self.taints_seen;
        self.taints_seen = pipeline.taints_acquired();
        self.gate_open |= fresh;
        if !sensor.channel_hooks_on_demand() {
            return self.close_gate_when_idle(sensor, pipeline);
        }
        // New taint while detached: its holder may be gone already, within this batch.
        if fresh && !sensor.channel_hooks_attached() {
            sensor.set_channel_hooks(true)?;
            self.walk_for(Purpose::CatchUp);
        }
        if pipeline.any_tainted() || !sensor.channel_hooks_attached() {
            self.idle_since = None;
            return Ok(());
        }
        let idle_since = *self.idle_since.get_or_insert_with(Instant::now);
        if idle_since.elapsed() >= LINGER {
            // What a tainted process wrote may still wait in a pipe.
            self.walk_for(Purpose::Linger);
        }
        Ok(())
    }

    /// Applies a finished walk: taints the readers it finds, and after a linger detaches the
    /// programs if nothing is tainted and nothing waits in a marked pipe. Returns the
    /// documents of the new taints.
    pub fn walked(
        &mut self,
        holders: &Holders,
        sensor: &mut Sensor,
        pipeline: &mut Pipeline,
    ) -> Result<Vec<Document>, Error> {
        let (documents, pending) = catch_up(sensor, pipeline, holders)?;
        if self.purpose == Purpose::Linger && sensor.channel_hooks_attached() {
            if pipeline.any_tainted() || pending {
                self.idle_since = None;
            } else {
                sensor.set_channel_hooks(false)?;
                forget_dead_pipes(sensor, holders)?;
                self.close_gate_when_idle(sensor, pipeline)?;
            }
        }
        Ok(documents)
    }

    /// Starts a walk of `/proc` unless one is running (a linger asks again on the next tick).
    fn walk_for(&mut self, purpose: Purpose) {
        if self.walk.start(Holders::scan) {
            self.purpose = purpose;
        }
    }

    /// With no process tainted, the hooks may stop looking for tainted processes (callers that
    /// follow channels call it only once nothing waits in a marked pipe either).
    fn close_gate_when_idle(&mut self, sensor: &mut Sensor, pipeline: &Pipeline) -> Result<(), Error> {
        if self.gate_open && !pipeline.any_tainted() {
            sensor.close_taint_gate()?;
            self.gate_open = false;
        }
        Ok(())
    }
}

/// Taints process `pid` with `taint` (it took in `file`) in the kernel, as the kernel's own
/// programs would have, and tells the pipeline; `None` if the kernel had it tainted already
/// (its own record of that is on its way).
pub fn taint_in_kernel(
    sensor: &mut Sensor,
    pipeline: &mut Pipeline,
    pid: u32,
    taint: Taint,
    file: FileId,
) -> Result<Option<Vec<Document>>, Error> {
    if !sensor.taint_process(pid, &taint)? {
        return Ok(None);
    }
    let header = EventHeader {
        kind: EventKind::Taint as u32,
        pid,
        uid: system::uid_of(pid),
        _pad: 0,
        ktime_ns: taint.acquired_ns,
    };
    let event = TaintEvent { header, taint, fd: u32::MAX, _pad: 0, file };
    Ok(Some(pipeline.handle(&KernelEvent::Taint(event))))
}

/// Drops the marks of pipes nobody holds for reading any more; with none left, connects and
/// sends stop looking for marked pipes.
fn forget_dead_pipes(sensor: &mut Sensor, holders: &Holders) -> Result<(), Error> {
    let marked: HashSet<FileId> = sensor.marked_pipes()?.into_iter().map(|(id, _)| id).collect();
    if marked.is_empty() {
        return sensor.close_pipe_gate();
    }
    let read: HashSet<FileId> = holders.readers(&marked).into_iter().map(|r| r.pipe).collect();
    for dead in marked.difference(&read) {
        sensor.unmark_pipe(*dead)?;
    }
    if read.is_empty() {
        sensor.close_pipe_gate()?;
    }
    Ok(())
}

/// Taints every untainted process holding a marked, drained pipe for reading, marks the
/// pipes it holds for writing, and repeats for the next stage. Also says whether a marked
/// pipe still holds unread bytes, which keeps the syscall programs attached.
fn catch_up(
    sensor: &mut Sensor,
    pipeline: &mut Pipeline,
    holders: &Holders,
) -> Result<(Vec<Document>, bool), Error> {
    let mut documents = Vec::new();
    let mut pending = false;
    for _ in 0..MAX_STAGES {
        let marked: HashMap<FileId, Taint> = sensor.marked_pipes()?.into_iter().collect();
        let pipes: HashSet<FileId> = marked.keys().copied().collect();
        let mut fresh = Vec::new();
        pending = false;
        for reader in holders.readers(&pipes) {
            let pid = reader.pid;
            // Allowed readers are not spared: their allowance covers opening secrets only. The
            // walk may be seconds old: what a reader held then is asked again.
            if pipeline.is_tainted(pid) || pipeline.is_trusted(pid) || !reader.still_holds() {
                continue;
            }
            if reader.unread {
                pending = true;
            } else if !fresh.iter().any(|r: &holders::Reader| r.pid == pid) {
                fresh.push(reader);
            }
        }
        if fresh.is_empty() {
            break;
        }
        for holders::Reader { pid, pipe, .. } in fresh {
            let now = system::monotonic_ns();
            let taint =
                Taint { read_ns: now, acquired_ns: now, via_kind: via::PIPE, via: pipe, ..marked[&pipe] };
            let Some(found) = taint_in_kernel(sensor, pipeline, pid, taint, pipe)? else { continue };
            documents.extend(found);
            for written in holders.held(pid, End::Write) {
                sensor.mark_pipe(written, &Taint { via: written, ..taint })?;
            }
        }
    }
    Ok((documents, pending))
}
