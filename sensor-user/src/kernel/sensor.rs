//! Loading the kernel programs, filling their maps, attaching them — and, by dropping
//! [`Sensor`], detaching everything again.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, CgroupSockAddr, Program, ProgramError, RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use sensor_common::{
    counter, kernel_offsets::KERNEL_OFFSETS_GLOBAL, map_name, FileId, KernelOffsets, SendKey, SendTotal,
    Taint,
};

use crate::{error::Error, secret_catalog::SecretCatalog, system, trusted_processes::TrustChange};

/// The eBPF object built by `build.rs` (empty when bpf-linker was missing).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigie"));

/// Classic tracepoints: program → the (category, tracepoint) pairs it is attached to.
const TRACEPOINTS: [(&str, &[(&str, &str)]); 3] = [
    ("sched_process_exec", &[("sched", "sched_process_exec")]),
    ("sched_process_exit", &[("sched", "sched_process_exit")]),
    ("io_uring_complete", &[("io_uring", "io_uring_complete")]),
];
/// Raw tracepoints: (program, tracepoint). Syscalls go through one pair for all of them.
const RAW_TRACEPOINTS: [(&str, &str); 5] = [
    ("sched_process_fork", "sched_process_fork"),
    ("sys_enter", "sys_enter"),
    ("sys_exit", "sys_exit"),
    ("inet_sock_set_state", "inet_sock_set_state"),
    ("sock_send_length", "sock_send_length"),
];
/// cgroup socket-address hooks, attached to the cgroup v2 root.
const CGROUP_SOCK_ADDR: [&str; 4] = ["udp_sendmsg4", "udp_sendmsg6", "udp_connect4", "udp_connect6"];

/// What the kernel programs are told at load time.
pub struct SensorSpec<'a> {
    pub offsets: KernelOffsets,
    pub secrets: &'a SecretCatalog,
    pub allowed_exes: &'a [FileId],
    pub ring_buffer_bytes: u32,
}

/// The loaded, attached programs. Dropping it detaches them all.
pub struct Sensor {
    ebpf: Ebpf,
    /// Where the cgroup programs are attached, for the start-up report.
    pub cgroup_root: PathBuf,
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
        attach_tracepoints(&mut ebpf)?;
        let cgroup_root = system::cgroup2_root()?;
        attach_cgroup_programs(&mut ebpf, &cgroup_root)?;
        Ok(Self { ebpf, cgroup_root })
    }

    /// Takes the ring buffer the programs write records into.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, Error> {
        let map = self.ebpf.take_map(map_name::EVENTS).ok_or(Error::Map {
            map: map_name::EVENTS,
            source: aya::maps::MapError::InvalidName { name: map_name::EVENTS.to_owned() },
        })?;
        RingBuf::try_from(map).map_err(|source| Error::Map { map: map_name::EVENTS, source })
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

    /// Points secret `id` at a new file identity (the path now leads to another inode).
    pub fn rebind_secret(&mut self, id: u32, old: Option<FileId>, new: FileId) -> Result<(), Error> {
        let error = map_error(map_name::SECRETS);
        let mut secrets = hash_map_mut::<FileId, u32>(&mut self.ebpf, map_name::SECRETS)?;
        if let Some(old) = old {
            ignore_missing(secrets.remove(&old)).map_err(&error)?;
        }
        secrets.insert(new, id, 0).map_err(error)
    }

    /// Applies a change of trusted processes; a newly trusted one sheds its kernel taint.
    pub fn apply_trust(&mut self, change: TrustChange) -> Result<(), Error> {
        let trusted_error = map_error(map_name::TRUSTED_PIDS);
        let mut trusted = hash_map_mut::<u32, u32>(&mut self.ebpf, map_name::TRUSTED_PIDS)?;
        match change {
            TrustChange::Trust { pid, label } => {
                trusted.insert(pid, label, 0).map_err(trusted_error)?;
                let mut tainted = hash_map_mut::<u32, Taint>(&mut self.ebpf, map_name::TAINTED)?;
                ignore_missing(tainted.remove(&pid)).map_err(map_error(map_name::TAINTED))
            }
            TrustChange::Untrust { pid } => ignore_missing(trusted.remove(&pid)).map_err(trusted_error),
        }
    }

    /// Events the kernel could not hand over since load, summed over CPUs.
    pub fn events_lost(&self) -> Result<u64, Error> {
        let error = map_error(map_name::COUNTERS);
        let map = self.ebpf.map(map_name::COUNTERS).ok_or_else(|| error(missing(map_name::COUNTERS)))?;
        let counters: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(&error)?;
        let per_cpu = counters.get(&counter::EVENTS_LOST, 0).map_err(error)?;
        Ok(per_cpu.iter().sum())
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

fn fill_watch_list(ebpf: &mut Ebpf, spec: &SensorSpec<'_>) -> Result<(), Error> {
    let mut secrets = hash_map_mut::<FileId, u32>(ebpf, map_name::SECRETS)?;
    for (id, secret) in spec.secrets.iter() {
        secrets.insert(secret.id, id, 0).map_err(map_error(map_name::SECRETS))?;
    }
    let mut allowed = hash_map_mut::<FileId, u8>(ebpf, map_name::ALLOWED_EXES)?;
    for exe in spec.allowed_exes {
        allowed.insert(exe, 1, 0).map_err(map_error(map_name::ALLOWED_EXES))?;
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

fn attach_tracepoints(ebpf: &mut Ebpf) -> Result<(), Error> {
    for (name, targets) in TRACEPOINTS {
        let program: &mut TracePoint = program(ebpf, name)?;
        program.load().map_err(program_error(name))?;
        for (category, tracepoint) in targets {
            program.attach(category, tracepoint).map_err(program_error(name))?;
        }
    }
    for (name, tracepoint) in RAW_TRACEPOINTS {
        let program: &mut RawTracePoint = program(ebpf, name)?;
        program.load().map_err(program_error(name))?;
        program.attach(tracepoint).map_err(program_error(name))?;
    }
    Ok(())
}

fn attach_cgroup_programs(ebpf: &mut Ebpf, root: &Path) -> Result<(), Error> {
    let cgroup =
        File::open(root).map_err(|e| Error::system(format!("opening cgroup {}", root.display()), e))?;
    for name in CGROUP_SOCK_ADDR {
        let program: &mut CgroupSockAddr = program(ebpf, name)?;
        program.load().map_err(program_error(name))?;
        program.attach(&cgroup, CgroupAttachMode::Single).map_err(program_error(name))?;
    }
    Ok(())
}
