//! Loading the kernel programs, filling their maps, attaching them — and, by dropping
//! [`Sensor`], detaching everything again.

use std::{
    collections::HashSet,
    fmt::Display,
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{
        links::{FdLink, PinnedLink},
        uprobe::{UProbeAttachLocation, UProbeScope},
        BtfTracePoint, CgroupAttachMode, CgroupSockAddr, Program, ProgramError, RawTracePoint, TracePoint,
        UProbe,
    },
    Btf, Ebpf, EbpfLoader,
};
use sensor_common::{
    counter, kernel_offsets::KERNEL_OFFSETS_GLOBAL, map_name, prefilter, via, FileId, KernelOffsets,
    ReadSeenKey, SendKey, SendTotal, Taint, TrustedProcess, WatchedSecret, ANY_EXEC, START_TICK_NS,
};

use super::backend::{
    self, Backend, Choice, Selected, CGROUP_SOCK_ADDR, RAW_TRACEPOINTS, SERVICE_SENDS, SOCKET_FOLLOWERS,
    SOCKET_FOLLOWERS_ALWAYS, SOCKET_SENDS, SOCKET_WRITE_COPIERS, SYSCALL_HOOKS, TRACEPOINTS,
};
use super::handover::{self, Handover, Records};
use super::mapped_tls::Sites;
use super::pins::{self, Generation, Previous};
use super::tls_libraries::{self, TLS_LIBRARIES};
use super::uprobe_site;
use crate::{
    error::Error,
    state::secret_catalog::{file_id, Rebind, SecretCatalog},
    state::trusted_processes::TrustChange,
    system,
};

#[cfg(test)]
mod call_stacks;
mod data_backends;
mod gauges;
mod store_servers;

pub use gauges::KernelGauges;

/// The eBPF object built by `build.rs` (empty when bpf-linker was missing).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigie"));

/// What the kernel programs are told at load time.
pub struct SensorSpec<'a> {
    pub offsets: KernelOffsets,
    pub secrets: &'a SecretCatalog,
    pub allowed_exes: &'a [FileId],
    pub ring_buffer_bytes: u32,
    pub backend: Choice,
    /// Where to pin the programs so they stay attached after the agent stops, if it should.
    pub keep_loaded: Option<&'a Path>,
}

/// A link the agent holds: detached when dropped, unless it is pinned.
enum Held {
    Owned(FdLink),
    Pinned(PinnedLink),
}

impl Held {
    /// Detaches it, pinned or not.
    fn detach(self) -> Result<(), Error> {
        match self {
            Self::Owned(link) => drop(link),
            Self::Pinned(link) => {
                drop(link.unpin().map_err(|e| Error::system("unpinning a channel program's link", e))?);
            }
        }
        Ok(())
    }
}

/// The links of the agent's programs, pinned in its generation when it keeps them loaded.
pub(super) struct Links {
    generation: Option<Generation>,
    always: Vec<Held>,
}

impl Links {
    /// Takes `link` of `program` from aya, pinning it if the programs are kept loaded.
    fn hold<L>(&mut self, program: &'static str, link: L) -> Result<Held, Error>
    where
        L: TryInto<FdLink>,
        L::Error: Display,
    {
        let link = link.try_into().map_err(|e| {
            Error::system(format!("program {program}: taking its link"), std::io::Error::other(e.to_string()))
        })?;
        match &mut self.generation {
            Some(generation) => generation.pin_link(program, link).map(Held::Pinned),
            None => Ok(Held::Owned(link)),
        }
    }

    /// How many links are held now.
    pub(super) fn held(&self) -> usize {
        self.always.len()
    }

    /// Detaches the links held since there were `count` (a backend that failed half way).
    pub(super) fn release_from(&mut self, count: usize) {
        for held in self.always.drain(count..) {
            let _ = held.detach();
        }
    }

    /// Holds `link` for as long as the agent runs.
    pub(super) fn keep<L>(&mut self, program: &'static str, link: L) -> Result<(), Error>
    where
        L: TryInto<FdLink>,
        L::Error: Display,
    {
        let held = self.hold(program, link)?;
        self.always.push(held);
        Ok(())
    }
}

/// The loaded, attached programs. Dropping it detaches them all.
pub struct Sensor {
    ebpf: Ebpf,
    /// Where the cgroup programs are attached, for the start-up report.
    pub cgroup_root: PathBuf,
    /// The hook set that runs, and why.
    pub backend: Selected,
    /// The links of the programs attached for as long as the agent runs.
    links: Links,
    /// The channel programs' links while they are attached.
    channel_links: Option<Vec<Held>>,
    /// Whether this kernel has the socket followers (loaded, attached with the channel programs).
    socket_followers: bool,
    /// Identities of the allowed readers' executables, as the kernel was given them.
    allowed_exes: HashSet<FileId>,
    /// The TLS library files whose writes are watched, for the start-up report.
    pub tls_libraries: Vec<PathBuf>,
    /// What was taken over from earlier agents' programs (with `keep_loaded`).
    pub handover: Option<Handover>,
    /// Their records not yet read.
    pending: Vec<Records>,
}

impl Sensor {
    /// Loads the object, fills the watch list and attaches every program.
    pub fn load(spec: &SensorSpec<'_>) -> Result<Self, Error> {
        if EBPF_OBJECT.is_empty() {
            return Err(Error::NoEbpfObject);
        }
        system::check_bpf_permission()?;
        system::ensure_tracefs()?;
        // No kernel BTF for aya: the programs use no CO-RE, and parsing it again would double
        // the agent's start-up memory.
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global(KERNEL_OFFSETS_GLOBAL, &spec.offsets, true)
            .map_max_entries(map_name::EVENTS, spec.ring_buffer_bytes)
            .load(EBPF_OBJECT)?;
        fill_watch_list(&mut ebpf, spec)?;
        let version = pins::object_version(EBPF_OBJECT);
        let generation = spec.keep_loaded.map(|root| Generation::create(root, &version)).transpose()?;
        if let Some(generation) = &generation {
            generation.pin_maps(&ebpf)?;
        }
        let pinned_in = generation.as_ref().map(|generation| generation.dir().to_owned());
        let links = Links { generation, always: Vec::new() };
        let mut sensor = match Self::attach(ebpf, links, spec) {
            Ok(sensor) => sensor,
            Err(err) => {
                // A generation half pinned would be taken over as if it watched: it goes, and
                // an earlier one, untouched, stays attached.
                if let Some(dir) = pinned_in {
                    let _ = Previous::at(dir).detach_and_remove();
                }
                return Err(err);
            }
        };
        if let Some(root) = spec.keep_loaded {
            sensor.take_over(root, &version, spec.offsets.agent_pid)?;
        }
        Ok(sensor)
    }

    /// Attaches every program of the backend `spec` asks for into `links`.
    fn attach(mut ebpf: Ebpf, mut links: Links, spec: &SensorSpec<'_>) -> Result<Self, Error> {
        let (backend, socket_followers) = attach_backend(&mut ebpf, spec.backend, &mut links)?;
        attach_tracepoints(&mut ebpf, &mut links)?;
        let cgroup_root = system::cgroup2_root()?;
        attach_cgroup_programs(&mut ebpf, &cgroup_root, &mut links)?;
        load_syscall_hooks(&mut ebpf)?;
        let tls_libraries = attach_tls_probes(&mut ebpf, &mut links)?;
        let allowed_exes = spec.allowed_exes.iter().copied().collect();
        let mut sensor = Self {
            ebpf,
            cgroup_root,
            backend,
            links,
            channel_links: None,
            socket_followers,
            allowed_exes,
            tls_libraries,
            handover: None,
            pending: Vec::new(),
        };
        if sensor.backend.backend == Backend::Syscalls {
            sensor.set_channel_hooks(true)?;
        }
        Ok(sensor)
    }

    /// Detaches the programs earlier agents left under `root` and carries what they knew into
    /// this agent's maps (but what they made of `agent`, this agent, reading the secrets before
    /// its programs were attached), and lets the files and channels carried through the
    /// prefilter; their records wait in [`Sensor::take_pending`].
    fn take_over(&mut self, root: &Path, version: &str, agent: u32) -> Result<(), Error> {
        let previous = Previous::find(root, self.links.generation.as_ref(), version)?;
        let (mut handover, pending) = handover::take_over(previous, &mut self.ebpf, agent)?;
        if handover.taints > 0 {
            self.open_gate(counter::TAINTED_PROCESSES)?;
        }
        if handover.marks > 0 {
            self.open_gate(counter::TAINTED_CHANNELS)?;
            self.open_gate(counter::HELD_CHANNELS)?;
            // The marks are carried and looked up whatever happens here; a file whose bit is
            // missing is unseen on the page-cache path, and said so.
            if let Err(error) = self.settle_prefilter() {
                handover.not_carried.push(format!("{}: {error}", map_name::PREFILTER));
            }
        }
        self.handover = Some(handover);
        self.pending = pending;
        Ok(())
    }

    /// The records earlier agents' programs left unread, to drain before this agent's own.
    pub fn take_pending(&mut self) -> Vec<Records> {
        std::mem::take(&mut self.pending)
    }

    /// Whether the programs stay attached when the agent stops (`keep_loaded`).
    pub fn keeps_loaded(&self) -> Option<&Path> {
        self.links.generation.as_ref().map(Generation::dir)
    }

    /// Attaches the TLS write programs at `sites` of the ELF file at `path` (offsets in the
    /// file), for all processes: TLS code a trusted service maps that the loader does not name.
    pub fn attach_tls_sites(&mut self, path: &Path, sites: &Sites) -> Result<(), Error> {
        for &(name, _, offset) in sites {
            let program: &mut UProbe = program(&mut self.ebpf, name)?;
            if program.fd().is_err() {
                program.load().map_err(program_error(name))?;
            }
            let at = UProbeAttachLocation::AbsoluteOffset(offset);
            let link = program.attach(at, path, UProbeScope::AllProcesses).map_err(program_error(name))?;
            self.links.keep(name, program.take_link(link).map_err(program_error(name))?)?;
        }
        Ok(())
    }

    /// Whether process `pid` may open secrets untainted, as the kernel decides it: an allowed
    /// reader's executable, not started with a loader variable, not traced.
    pub fn may_open_secrets(&self, pid: u32) -> bool {
        let allowed = file_id(Path::new(&format!("/proc/{pid}/exe")))
            .is_some_and(|exe| self.allowed_exes.contains(&exe));
        let tampered = || {
            self.ebpf.map(map_name::LOADER_TAMPERED).is_none_or(|map| {
                HashMap::<_, u32, u8>::try_from(map).map_or(true, |tampered| tampered.get(&pid, 0).is_ok())
            })
        };
        allowed && !system::is_traced(pid) && !tampered()
    }

    /// Makes `exes` the allowed readers from now on, in the kernel too.
    pub fn set_allowed_exes(&mut self, exes: &[FileId]) -> Result<(), Error> {
        let fresh: HashSet<FileId> = exes.iter().copied().collect();
        let error = map_error(map_name::ALLOWED_EXES);
        let mut allowed = hash_map_mut::<FileId, u8>(&mut self.ebpf, map_name::ALLOWED_EXES)?;
        for gone in self.allowed_exes.difference(&fresh) {
            ignore_missing(allowed.remove(gone)).map_err(&error)?;
        }
        for new in fresh.difference(&self.allowed_exes) {
            allowed.insert(new, 1, 0).map_err(&error)?;
        }
        self.allowed_exes = fresh;
        Ok(())
    }

    /// Whether the channel programs come and go with taint (every backend but `syscalls`).
    pub fn channel_hooks_on_demand(&self) -> bool {
        self.backend.backend.channel_hooks_on_demand()
    }

    pub fn channel_hooks_attached(&self) -> bool {
        self.channel_links.is_some()
    }

    /// Attaches or detaches the channel programs (the syscall programs, and the socket
    /// followers where the kernel has them); true if that changed anything.
    pub fn set_channel_hooks(&mut self, attached: bool) -> Result<bool, Error> {
        match (attached, self.channel_links.take()) {
            (true, None) => {
                let mut links = Vec::new();
                for (name, tracepoint) in SYSCALL_HOOKS {
                    let program: &mut RawTracePoint = program(&mut self.ebpf, name)?;
                    let link = program.attach(tracepoint).map_err(program_error(name))?;
                    links.push(self.links.hold(name, program.take_link(link).map_err(program_error(name))?)?);
                }
                let on_demand = &SOCKET_FOLLOWERS[SOCKET_FOLLOWERS_ALWAYS..];
                for (name, _, _) in on_demand.iter().filter(|_| self.socket_followers) {
                    let program: &mut BtfTracePoint = program(&mut self.ebpf, name)?;
                    let link = program.attach().map_err(program_error(name))?;
                    links.push(self.links.hold(name, program.take_link(link).map_err(program_error(name))?)?);
                }
                self.channel_links = Some(links);
                Ok(true)
            }
            (false, Some(links)) => {
                links.into_iter().try_for_each(Held::detach)?;
                Ok(true)
            }
            (_, links) => {
                self.channel_links = links;
                Ok(false)
            }
        }
    }

    /// Takes the ring buffer the programs write records into.
    pub fn take_events(&mut self) -> Result<Records, Error> {
        let map = self.ebpf.take_map(map_name::EVENTS).ok_or(Error::Map {
            map: map_name::EVENTS,
            source: aya::maps::MapError::InvalidName { name: map_name::EVENTS.to_owned() },
        })?;
        RingBuf::try_from(map)
            .map(Records::own)
            .map_err(|source| Error::Map { map: map_name::EVENTS, source })
    }

    /// The kernel's set of this host's addresses, for the thread that keeps it up to date.
    pub fn take_local_addresses(&mut self) -> Result<super::local_addrs::KernelLocalAddresses, Error> {
        super::local_addrs::KernelLocalAddresses::new(self.ebpf.take_map(map_name::LOCAL_ADDRS))
    }

    /// Bytes the kernel counted for `key`, if it is the sender's current taint's.
    pub fn send_total(&self, key: &SendKey) -> Result<Option<SendTotal>, Error> {
        let error = map_error(map_name::SEND_TOTALS);
        let map =
            self.ebpf.map(map_name::SEND_TOTALS).ok_or_else(|| error(missing(map_name::SEND_TOTALS)))?;
        let totals: HashMap<_, SendKey, SendTotal> = HashMap::try_from(map).map_err(&error)?;
        match totals.get(key, 0) {
            Ok(total) => Ok(Some(total)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(source) => Err(error(source)),
        }
    }

    /// Every (process, destination) the kernel counts bytes for, with its count.
    pub fn send_totals(&self) -> Result<Vec<(SendKey, SendTotal)>, Error> {
        self.entries(map_name::SEND_TOTALS)
    }

    /// Points secret `id` at a new file identity (the path now leads to another inode).
    pub fn rebind_secret(&mut self, rebind: &Rebind) -> Result<(), Error> {
        let error = map_error(map_name::SECRETS);
        let mut secrets = hash_map_mut::<FileId, WatchedSecret>(&mut self.ebpf, map_name::SECRETS)?;
        if let Some(old) = rebind.old {
            ignore_missing(secrets.remove(&old)).map_err(&error)?;
        }
        let Some((new, generation)) = rebind.new else { return Ok(()) };
        secrets.insert(new, watched(rebind.secret_id, generation), 0).map_err(error)?;
        set_prefilter_bits(&mut self.ebpf, [new]).map(drop)
    }

    /// Sets the prefilter bit of every watched secret and of every file and channel the kernel
    /// marked (but store sockets, which no file hook looks up), in passes until one writes
    /// nothing; after the agent set bits while the programs run. The kernel sets its bits
    /// atomically, but the agent's read and write of a word may undo one the kernel set in
    /// between (it marks the file first, then sets the bit): a pass that finds every bit set
    /// shows that none was undone.
    pub fn settle_prefilter(&mut self) -> Result<(), Error> {
        for _ in 0..PREFILTER_PASSES {
            let secrets = self.entries::<FileId, WatchedSecret>(map_name::SECRETS)?;
            let marks = self.entries::<FileId, Taint>(map_name::TAINTED_FILES)?;
            let marked = marks.into_iter().filter(|(_, taint)| taint.via_kind != via::STORE_SOCKET);
            let ids: Vec<FileId> =
                secrets.into_iter().map(|(id, _)| id).chain(marked.map(|(id, _)| id)).collect();
            if !set_prefilter_bits(&mut self.ebpf, ids)? {
                return Ok(());
            }
        }
        Err(Error::PrefilterUnsettled { passes: PREFILTER_PASSES })
    }

    /// Applies a change of trusted processes.
    pub fn apply_trust(&mut self, change: TrustChange) -> Result<(), Error> {
        let trusted_error = map_error(map_name::TRUSTED_PIDS);
        match change {
            TrustChange::Trust { pid, start_ns, exec_id, label } => {
                let mut trusted =
                    hash_map_mut::<u32, TrustedProcess>(&mut self.ebpf, map_name::TRUSTED_PIDS)?;
                let start_tick = start_ns / START_TICK_NS;
                let exec_id = exec_id.unwrap_or(ANY_EXEC);
                let value = TrustedProcess { label, _pad: 0, start_tick, exec_id };
                trusted.insert(pid, value, 0).map_err(trusted_error)?;
                self.open_gate(counter::TRUSTED_SERVICES)
            }
            TrustChange::Untrust { pid } => {
                let mut trusted =
                    hash_map_mut::<u32, TrustedProcess>(&mut self.ebpf, map_name::TRUSTED_PIDS)?;
                ignore_missing(trusted.remove(&pid)).map_err(trusted_error)
            }
            TrustChange::Shed { pid, taint: shed } => {
                let error = map_error(map_name::TAINTED);
                let mut tainted = hash_map_mut::<u32, Taint>(&mut self.ebpf, map_name::TAINTED)?;
                match tainted.get(&pid, 0) {
                    Ok(held) if shed.is(&held) => ignore_missing(tainted.remove(&pid)).map_err(error),
                    Ok(_) => Ok(()),
                    Err(err) => ignore_missing(Err(err).map(|_: Taint| ())).map_err(error),
                }
            }
        }
    }

    /// Events the kernel could not hand over since load, summed over CPUs.
    pub fn events_lost(&self) -> Result<u64, Error> {
        self.counter(counter::EVENTS_LOST)
    }

    /// Taint map inserts the kernel refused since load (a map was full).
    pub fn inserts_failed(&self) -> Result<u64, Error> {
        self.counter(counter::INSERTS_FAILED)
    }

    /// Outbound bytes the kernel did not copy since load (beyond a call's cap, or while the
    /// ring buffer was filling).
    pub fn outbound_uncopied(&self) -> Result<u64, Error> {
        self.counter(counter::OUTBOUND_UNCOPIED)
    }

    /// Sends whose byte count the kernel could not keep since load (`SEND_TOTALS` full).
    pub fn send_totals_full(&self) -> Result<u64, Error> {
        self.counter(counter::SEND_TOTALS_FULL)
    }

    fn counter(&self, index: u32) -> Result<u64, Error> {
        let error = map_error(map_name::COUNTERS);
        let map = self.ebpf.map(map_name::COUNTERS).ok_or_else(|| error(missing(map_name::COUNTERS)))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(&error)?;
        let per_cpu = counters.get(&index, 0).map_err(error)?;
        Ok(per_cpu.iter().sum())
    }

    /// The processes the kernel holds tainted, with their taint.
    pub fn tainted(&self) -> Result<Vec<(u32, Taint)>, Error> {
        self.entries(map_name::TAINTED)
    }

    /// Pipes and FIFOs the kernel marked as carrying secret material, with their taint.
    pub fn marked_pipes(&self) -> Result<Vec<(FileId, Taint)>, Error> {
        self.marked(via::PIPE)
    }

    /// The channels of kind `via_kind` (`via::FILE`: derived files) the kernel marked as
    /// carrying secret material, with their taint.
    pub fn marked(&self, via_kind: u32) -> Result<Vec<(FileId, Taint)>, Error> {
        let mut marks = self.entries::<FileId, Taint>(map_name::TAINTED_FILES)?;
        marks.retain(|(_, taint)| taint.via_kind == via_kind);
        Ok(marks)
    }

    /// Closes the gate that makes every hook look for tainted processes, once none is
    /// tainted.
    pub fn close_taint_gate(&mut self) -> Result<(), Error> {
        self.close_gate(counter::TAINTED_PROCESSES, |sensor| {
            let error = map_error(map_name::TAINTED);
            let map = sensor.ebpf.map(map_name::TAINTED).ok_or_else(|| error(missing(map_name::TAINTED)))?;
            let tainted: HashMap<_, u32, Taint> = HashMap::try_from(map).map_err(&error)?;
            Ok(tainted.keys().next().is_some())
        })
    }

    /// Closes the gate that makes connects, sends and exits look for a marked channel their
    /// process holds, once no marked pipe is alive.
    pub fn close_pipe_gate(&mut self) -> Result<(), Error> {
        self.close_gate(counter::HELD_CHANNELS, |sensor| Ok(!sensor.marked_pipes()?.is_empty()))
    }

    /// Closes gate `index` unless `needed` says something still needs it. The value of
    /// `GATES` is read before the look: whatever the look misses, the kernel recorded after
    /// that read, and the time it then stored in `GATES` keeps the gate open
    /// (`sensor-ebpf`'s `gates`).
    fn close_gate(
        &mut self,
        index: u32,
        needed: impl FnOnce(&Self) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let opened = self.word(map_name::GATES, index)?;
        if needed(self)? {
            return Ok(());
        }
        self.set_closed(index, opened)
    }

    /// Opens gate `index`, as the kernel would for what the agent just recorded.
    fn open_gate(&mut self, index: u32) -> Result<(), Error> {
        // No time the kernel stores in `GATES` is ever this.
        self.set_closed(index, u64::MAX)
    }

    fn set_closed(&mut self, index: u32, value: u64) -> Result<(), Error> {
        let error = map_error(map_name::GATES_CLOSED);
        let map = self
            .ebpf
            .map_mut(map_name::GATES_CLOSED)
            .ok_or_else(|| error(missing(map_name::GATES_CLOSED)))?;
        let mut closed: Array<_, u64> = Array::try_from(map).map_err(&error)?;
        closed.set(index, value, 0).map_err(error)
    }

    /// Forgets the mark of pipe `id` (nobody can read it any more).
    pub fn unmark_pipe(&mut self, id: FileId) -> Result<(), Error> {
        let mut marks = hash_map_mut::<FileId, Taint>(&mut self.ebpf, map_name::TAINTED_FILES)?;
        ignore_missing(marks.remove(&id)).map_err(map_error(map_name::TAINTED_FILES))
    }

    /// Marks pipe `id` as carrying `taint` (what the kernel does for a tainted writer).
    pub fn mark_pipe(&mut self, id: FileId, taint: &Taint) -> Result<(), Error> {
        let mut marks = hash_map_mut::<FileId, Taint>(&mut self.ebpf, map_name::TAINTED_FILES)?;
        marks.insert(id, taint, 0).map_err(map_error(map_name::TAINTED_FILES))?;
        self.open_gate(counter::TAINTED_CHANNELS)?;
        self.open_gate(counter::HELD_CHANNELS)
    }

    /// Taints process `pid` in the kernel with `taint`, unless it already is; true if it was
    /// not (if it was, the kernel's own record of it is on its way).
    pub fn taint_process(&mut self, pid: u32, taint: &Taint) -> Result<bool, Error> {
        const BPF_NOEXIST: u64 = 1;
        let mut tainted = hash_map_mut::<u32, Taint>(&mut self.ebpf, map_name::TAINTED)?;
        match tainted.insert(pid, taint, BPF_NOEXIST) {
            Ok(()) => {
                // Reported here, so not again by the kernel when the process reads on.
                let seen = ReadSeenKey { pid, secret_id: taint.secret_id };
                let mut reported = hash_map_mut::<ReadSeenKey, u64>(&mut self.ebpf, map_name::READ_SEEN)?;
                reported.insert(seen, taint.acquired_ns, 0).map_err(map_error(map_name::READ_SEEN))?;
                self.open_gate(counter::TAINTED_PROCESSES)?;
                Ok(true)
            }
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
                Ok(false)
            }
            Err(other) => Err(map_error(map_name::TAINTED)(other)),
        }
    }
}

impl Drop for Sensor {
    /// Empties the socket write copiers' slots unless the syscall programs, which tail-call
    /// them, stay attached (pinned): the copiers tail-call each other through those slots, and a
    /// kernel left to break that cycle itself was seen to keep the array loaded for good.
    fn drop(&mut self) {
        if self.channel_links.is_some() && self.keeps_loaded().is_some() {
            return;
        }
        if let Some(Ok(mut slots)) = self.ebpf.map_mut(map_name::SOCKET_WRITE).map(ProgramArray::try_from) {
            for (_, slot) in SOCKET_WRITE_COPIERS {
                let _ = slots.clear_index(&slot);
            }
        }
    }
}

/// A removal of a key that is not there is no failure.
fn ignore_missing(result: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(())
        }
        other => other,
    }
}

fn missing(name: &str) -> aya::maps::MapError {
    aya::maps::MapError::InvalidName { name: name.to_owned() }
}

/// Wraps a map failure, naming the map.
fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> Error {
    move |source| Error::Map { map, source }
}

/// The hash map called `name`, with keys `K` and values `V`, for writing.
fn hash_map_mut<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<HashMap<&'a mut MapData, K, V>, Error> {
    let map = ebpf.map_mut(name).ok_or_else(|| map_error(name)(missing(name)))?;
    HashMap::try_from(map).map_err(map_error(name))
}

/// The `SECRETS` value of secret `secret_id`.
fn watched(secret_id: u32, generation: Option<u32>) -> WatchedSecret {
    WatchedSecret {
        secret_id,
        generation: generation.unwrap_or(0),
        generation_known: u32::from(generation.is_some()),
    }
}

fn fill_watch_list(ebpf: &mut Ebpf, spec: &SensorSpec<'_>) -> Result<(), Error> {
    let mut secrets = hash_map_mut::<FileId, WatchedSecret>(ebpf, map_name::SECRETS)?;
    for (id, secret) in spec.secrets.iter() {
        secrets.insert(secret.id, watched(id, secret.generation), 0).map_err(map_error(map_name::SECRETS))?;
    }
    // No program is attached yet: nothing else writes the prefilter.
    set_prefilter_bits(ebpf, spec.secrets.iter().map(|(_, secret)| secret.id))?;
    let mut allowed = hash_map_mut::<FileId, u8>(ebpf, map_name::ALLOWED_EXES)?;
    for exe in spec.allowed_exes {
        allowed.insert(exe, 1, 0).map_err(map_error(map_name::ALLOWED_EXES))?;
    }
    Ok(())
}

/// Most passes [`Sensor::settle_prefilter`] makes before it gives up.
const PREFILTER_PASSES: usize = 16;

/// Sets the prefilter bits of `ids` (never cleared: a stale one costs a hash lookup), each word
/// read and written once; true if any was missing.
fn set_prefilter_bits(ebpf: &mut Ebpf, ids: impl IntoIterator<Item = FileId>) -> Result<bool, Error> {
    let mut words = std::collections::BTreeMap::<u32, u64>::new();
    for id in ids {
        let (word, mask) = prefilter::slot(id);
        *words.entry(word).or_default() |= mask;
    }
    let error = map_error(map_name::PREFILTER);
    let map = ebpf.map_mut(map_name::PREFILTER).ok_or_else(|| error(missing(map_name::PREFILTER)))?;
    let mut filter: Array<_, u64> = Array::try_from(map).map_err(&error)?;
    let mut wrote = false;
    for (word, mask) in words {
        let bits = filter.get(&word, 0).map_err(&error)?;
        if bits & mask != mask {
            filter.set(word, bits | mask, 0).map_err(&error)?;
            wrote = true;
        }
    }
    Ok(wrote)
}

/// Loads and attaches the chosen backend's own programs, and loads the socket followers where
/// the kernel has them (true if it does); `auto` falls back to the syscall backend, saying
/// why, where no data backend can run.
fn attach_backend(ebpf: &mut Ebpf, choice: Choice, links: &mut Links) -> Result<(Selected, bool), Error> {
    let tracefs = Path::new(system::TRACEFS);
    // Parsed for the attach points only, and dropped before the agent settles.
    let btf = Btf::from_sys_fs().map_err(|e| format!("reading the kernel BTF: {e}"));
    let mut selected = if choice == Choice::Syscalls {
        Selected { backend: Backend::Syscalls, reason: "chosen by configuration".to_owned() }
    } else {
        data_backends::attach(ebpf, tracefs, &btf, choice, links)?
    };
    let sockets = match (backend::missing_tracepoint(tracefs, &SOCKET_FOLLOWERS), &btf) {
        (Some(missing), _) => Err(missing),
        (None, Err(err)) => Err(err.clone()),
        (None, Ok(btf)) => {
            let (always, on_demand) = SOCKET_FOLLOWERS.split_at(SOCKET_FOLLOWERS_ALWAYS);
            load_btf_programs(ebpf, btf, always, Some(&mut *links))
                .and_then(|()| load_btf_programs(ebpf, btf, on_demand, None))
                .map_err(|e| e.to_string())
        }
    };
    let socket_followers = sockets.is_ok();
    if let Err(why) = sockets {
        selected.reason =
            format!("{}; unix datagrams to a path and loopback relays not followed: {why}", selected.reason);
    }
    let service_sends = match (backend::missing_tracepoint(tracefs, &[SERVICE_SENDS]), &btf) {
        (Some(missing), _) => Err(missing),
        (None, Err(err)) => Err(err.clone()),
        (None, Ok(btf)) => {
            load_btf_programs(ebpf, btf, &[SERVICE_SENDS], Some(&mut *links)).map_err(|e| e.to_string())
        }
    };
    if let Err(why) = service_sends {
        selected.reason = format!("{}; trusted services' plain TCP sends not copied: {why}", selected.reason);
    }
    let (name, _, tracepoint) = SOCKET_SENDS;
    let socket_sends = match (backend::missing_tracepoint(tracefs, &[SOCKET_SENDS]), &btf) {
        (None, _) => attach_raw(ebpf, name, tracepoint, links).map_err(|e| e.to_string()),
        // The syscall backend is for kernels that refuse BTF-typed programs and trampolines.
        (Some(missing), Ok(btf)) if matches!(selected.backend, Backend::Fentry | Backend::Kprobe) => {
            data_backends::attach_send_functions(ebpf, btf, selected.backend, links)
                .map_err(|e| format!("{missing}, and {e}"))
                .map(|seen| selected.reason = format!("{}; {missing}: {seen}", selected.reason))
        }
        (Some(missing), _) => Err(missing),
    };
    if let Err(why) = socket_sends {
        selected.reason = format!(
            "{}; sends not seen (byte counts, unix stream peers, TLS destinations; connects are): {why}",
            selected.reason
        );
    }
    Ok((selected, socket_followers))
}

/// Loads the raw tracepoint program `name` and attaches it at `tracepoint`, into `links`.
fn attach_raw(ebpf: &mut Ebpf, name: &'static str, tracepoint: &str, links: &mut Links) -> Result<(), Error> {
    let program: &mut RawTracePoint = program(ebpf, name)?;
    program.load().map_err(program_error(name))?;
    let link = program.attach(tracepoint).map_err(program_error(name))?;
    links.keep(name, program.take_link(link).map_err(program_error(name))?)
}

/// Loads `programs`, and attaches them into `links` if given.
fn load_btf_programs(
    ebpf: &mut Ebpf,
    btf: &Btf,
    programs: &[backend::BtfProgram],
    mut links: Option<&mut Links>,
) -> Result<(), Error> {
    for &(name, _, tracepoint) in programs {
        let program: &mut BtfTracePoint = program(ebpf, name)?;
        program.load(tracepoint, btf).map_err(program_error(name))?;
        if let Some(links) = links.as_deref_mut() {
            let link = program.attach().map_err(program_error(name))?;
            links.keep(name, program.take_link(link).map_err(program_error(name))?)?;
        }
    }
    Ok(())
}

/// Loads the syscall programs, and puts the socket write copiers where `sys_enter` tail-calls
/// them.
fn load_syscall_hooks(ebpf: &mut Ebpf) -> Result<(), Error> {
    for (name, _) in SYSCALL_HOOKS {
        let program: &mut RawTracePoint = program(ebpf, name)?;
        program.load().map_err(program_error(name))?;
    }
    let mut copiers = Vec::new();
    for (name, slot) in SOCKET_WRITE_COPIERS {
        let copier: &mut RawTracePoint = program(ebpf, name)?;
        copier.load().map_err(program_error(name))?;
        let fd = copier.fd().map_err(program_error(name))?;
        copiers.push((slot, fd.try_clone().map_err(|e| Error::system("duplicating a program fd", e))?));
    }
    let error = map_error(map_name::SOCKET_WRITE);
    let map = ebpf.map_mut(map_name::SOCKET_WRITE).ok_or_else(|| error(missing(map_name::SOCKET_WRITE)))?;
    let mut slots = ProgramArray::try_from(map).map_err(&error)?;
    for (slot, fd) in &copiers {
        slots.set(*slot, fd, 0).map_err(&error)?;
    }
    Ok(())
}

fn program_error(program: &'static str) -> impl Fn(ProgramError) -> Error {
    move |source| Error::Program { program, source }
}

/// The program called `name`, as program type `P`.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, Error>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(Error::Program { program: name, source: ProgramError::UnexpectedProgramType })?;
    program.try_into().map_err(program_error(name))
}

fn attach_tracepoints(ebpf: &mut Ebpf, links: &mut Links) -> Result<(), Error> {
    for (name, category, tracepoint) in TRACEPOINTS {
        let program: &mut TracePoint = program(ebpf, name)?;
        program.load().map_err(program_error(name))?;
        let link = program.attach(category, tracepoint).map_err(program_error(name))?;
        links.keep(name, program.take_link(link).map_err(program_error(name))?)?;
    }
    for (name, tracepoint) in RAW_TRACEPOINTS {
        attach_raw(ebpf, name, tracepoint, links)?;
    }
    Ok(())
}

fn attach_cgroup_programs(ebpf: &mut Ebpf, root: &Path, links: &mut Links) -> Result<(), Error> {
    let cgroup =
        File::open(root).map_err(|e| Error::system(format!("opening cgroup {}", root.display()), e))?;
    for name in CGROUP_SOCK_ADDR {
        let program: &mut CgroupSockAddr = program(ebpf, name)?;
        program.load().map_err(program_error(name))?;
        let link = program.attach(&cgroup, CgroupAttachMode::Single).map_err(program_error(name))?;
        links.keep(name, program.take_link(link).map_err(program_error(name))?)?;
    }
    Ok(())
}

/// Loads the TLS write uprobes and attaches them to every TLS library file of this host, for
/// all processes; returns the files attached to. A library the host lacks is skipped.
fn attach_tls_probes(ebpf: &mut Ebpf, links: &mut Links) -> Result<Vec<PathBuf>, Error> {
    let cache = tls_libraries::loader_cache();
    let mut loaded = HashSet::new();
    let mut attached = Vec::new();
    for library in &TLS_LIBRARIES {
        for path in tls_libraries::find(library, &cache) {
            for &(name, symbol) in library.probes {
                let program: &mut UProbe = program(ebpf, name)?;
                if loaded.insert(name) {
                    program.load().map_err(program_error(name))?;
                }
                let at = UProbeAttachLocation::SymbolOffset(symbol, uprobe_site::offset(&path, symbol));
                let link =
                    program.attach(at, &path, UProbeScope::AllProcesses).map_err(program_error(name))?;
                links.keep(name, program.take_link(link).map_err(program_error(name))?)?;
            }
            attached.push(path);
        }
    }
    Ok(attached)
}

/// What self-protection (`crate::tamper`) reads of the maps the agent writes, and how it puts
/// back what someone else changed in them.
impl Sensor {
    /// The allowed readers' executables, as the agent gave them to the kernel.
    pub fn allowed_exes(&self) -> &HashSet<FileId> {
        &self.allowed_exes
    }

    /// Every entry of hash map `name` now.
    pub fn entries<K: aya::Pod, V: aya::Pod>(&self, name: &'static str) -> Result<Vec<(K, V)>, Error> {
        let error = map_error(name);
        let map = self.ebpf.map(name).ok_or_else(|| error(missing(name)))?;
        let entries: HashMap<_, K, V> = HashMap::try_from(map).map_err(&error)?;
        entries.iter().collect::<Result<_, _>>().map_err(error)
    }

    /// Sets `key` to `value` in hash map `name`.
    pub fn insert_entry<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        key: K,
        value: V,
    ) -> Result<(), Error> {
        hash_map_mut::<K, V>(&mut self.ebpf, name)?.insert(key, value, 0).map_err(map_error(name))
    }

    /// Removes `key` from hash map `name`, if it is there.
    pub fn remove_entry<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        key: &K,
    ) -> Result<(), Error> {
        ignore_missing(hash_map_mut::<K, V>(&mut self.ebpf, name)?.remove(key)).map_err(map_error(name))
    }

    /// Attaches the program that sees signals generated for the agent where the backend does
    /// not (the syscall backend); the reason it cannot, if it cannot.
    pub fn watch_agent_signals(&mut self) -> Result<(), String> {
        let (name, _, tracepoint) = backend::AGENT_SIGNALS;
        let attached = self.ebpf.program(name).is_some_and(|p| p.fd().is_ok());
        if attached {
            return Ok(());
        }
        if let Some(missing) =
            backend::missing_tracepoint(Path::new(system::TRACEFS), &[backend::AGENT_SIGNALS])
        {
            return Err(missing);
        }
        let btf = Btf::from_sys_fs().map_err(|e| format!("reading the kernel BTF: {e}"))?;
        let program: &mut BtfTracePoint = program(&mut self.ebpf, name).map_err(|e| e.to_string())?;
        program.load(tracepoint, &btf).map_err(|e| e.to_string())?;
        let link = program.attach().map_err(|e| e.to_string())?;
        let link = program.take_link(link).map_err(|e| e.to_string())?;
        self.links.keep(name, link).map_err(|e| e.to_string())
    }

    /// Word `word` of the kernel's prefilter now.
    pub fn prefilter_word(&self, word: u32) -> Result<u64, Error> {
        self.word(map_name::PREFILTER, word)
    }

    /// Entry `index` of the array map `name`.
    fn word(&self, name: &'static str, index: u32) -> Result<u64, Error> {
        let error = map_error(name);
        let map = self.ebpf.map(name).ok_or_else(|| error(missing(name)))?;
        let array: Array<_, u64> = Array::try_from(map).map_err(&error)?;
        array.get(&index, 0).map_err(error)
    }
}
