//! The backends that see file data where it is read (page cache, fentry, kprobe): trying
//! them best first, and loading and attaching the one that runs.

use std::path::Path;

use aya::{
    programs::{BtfTracePoint, FEntry, FExit, KProbe},
    Btf, Ebpf,
};
use aya_obj::btf::BtfKind;

use super::{load_btf_programs, program, program_error, Links};
use crate::{
    error::{describe, Error},
    kernel::backend::{
        self, Backend, BtfProgram, Choice, FunctionProbe, Selected, DATA_FOLLOWERS, FUNCTION_PROBES,
        PAGE_CACHE, SEND_FUNCTIONS, SEND_PROBES,
    },
};

/// Where the kernel lists its active security modules (with securityfs mounted).
const ACTIVE_LSMS: &str = "/sys/kernel/security/lsm";

/// The data backends `choice` allows, best first.
fn candidates(choice: Choice) -> &'static [Backend] {
    match choice {
        Choice::Auto => &[Backend::PageCache, Backend::Fentry, Backend::Kprobe],
        Choice::PageCache => &[Backend::PageCache],
        Choice::Fentry => &[Backend::Fentry],
        Choice::Kprobe => &[Backend::Kprobe],
        Choice::Syscalls => &[],
    }
}

/// Loads and attaches the best data backend `choice` allows and this kernel runs; `auto`
/// falls back to the syscall backend, saying why each data backend was refused.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    tracefs: &Path,
    btf: &Result<Btf, String>,
    choice: Choice,
    links: &mut Links,
) -> Result<Selected, Error> {
    let mut refusals = Vec::new();
    for &backend in candidates(choice) {
        let attached = match btf {
            Ok(btf) => attach_one(ebpf, tracefs, btf, backend, links),
            Err(err) => Err(Error::BackendUnavailable { backend, reason: err.clone() }),
        };
        match attached {
            Ok(why) if refusals.is_empty() => return Ok(Selected { backend, reason: why }),
            Ok(why) => return Ok(Selected { backend, reason: format!("{}; {why}", refusals.join("; ")) }),
            Err(refused) if choice != Choice::Auto => return Err(refused),
            Err(refused) => refusals.push(refused.to_string()),
        }
    }
    Ok(Selected { backend: Backend::Syscalls, reason: refusals.join("; ") })
}

/// Loads and attaches `backend`'s programs into `links`, or none of them; returns why it runs
/// here.
fn attach_one(
    ebpf: &mut Ebpf,
    tracefs: &Path,
    btf: &Btf,
    backend: Backend,
    links: &mut Links,
) -> Result<String, Error> {
    let refused = |reason: String| Error::BackendUnavailable { backend, reason };
    if let Some(missing) = backend::missing_tracepoint(tracefs, &DATA_FOLLOWERS) {
        return Err(refused(missing));
    }
    let held = links.held();
    let reads = match backend {
        Backend::PageCache => match backend::missing_tracepoint(tracefs, &PAGE_CACHE) {
            Some(missing) => Err(refused(missing)),
            None => load_btf_programs(ebpf, btf, &PAGE_CACHE, Some(&mut *links)).map(|()| Vec::new()),
        },
        Backend::Fentry | Backend::Kprobe => attach_function_probes(ebpf, btf, backend, links),
        Backend::Syscalls => Ok(Vec::new()),
    };
    let followers = |notes| load_btf_programs(ebpf, btf, &DATA_FOLLOWERS, Some(&mut *links)).map(|()| notes);
    let notes = match reads.and_then(followers) {
        Ok(notes) => notes,
        Err(err) => {
            links.release_from(held);
            unload(ebpf, backend);
            return Err(match err {
                Error::BackendUnavailable { .. } => err,
                other => refused(describe(&other)),
            });
        }
    };
    let why = match backend {
        Backend::PageCache => {
            return Ok("this kernel has the page cache tracepoints and loads BTF-typed programs".to_owned())
        }
        Backend::Fentry => "this kernel loads fentry programs on its page cache read functions",
        _ => "this kernel probes its page cache read functions with kprobes",
    };
    Ok(notes.iter().fold(format!("{why}; {}", bpf_lsm(btf)), |reason, note| format!("{reason}; {note}")))
}

/// Loads and attaches the fentry or kprobe programs of [`FUNCTION_PROBES`]; an optional one is
/// skipped where the kernel lacks its function. The fentry backend probes a function whose
/// trampoline the kernel refuses once it took another's (`__iomap_dio_rw` has seven arguments,
/// trampolines took six before Linux 6.6) with its kprobe, and says so in the notes it returns.
fn attach_function_probes(
    ebpf: &mut Ebpf,
    btf: &Btf,
    backend: Backend,
    links: &mut Links,
) -> Result<Vec<String>, Error> {
    let (mut notes, mut fentry_taken) = (Vec::new(), false);
    for probe in &FUNCTION_PROBES {
        if !probe.required && btf.id_by_type_name_kind(probe.function, BtfKind::Func).is_err() {
            continue;
        }
        if backend == Backend::Fentry {
            match attach_fentry(ebpf, btf, probe, links) {
                Ok(()) => {
                    fentry_taken = true;
                    continue;
                }
                // A kernel that takes no trampoline at all runs the kprobe backend instead.
                Err(refused) if !fentry_taken => return Err(refused),
                Err(refused) => {
                    let _ = program::<FEntry>(ebpf, probe.fentry).map(FEntry::unload);
                    notes.push(format!(
                        "{} by kprobe, fentry refused: {}",
                        probe.function,
                        describe(&refused)
                    ));
                }
            }
        }
        let kprobe: &mut KProbe = program(ebpf, probe.kprobe)?;
        kprobe.load().map_err(program_error(probe.kprobe))?;
        let link = kprobe.attach(probe.function, 0).map_err(program_error(probe.kprobe))?;
        links.keep(probe.kprobe, kprobe.take_link(link).map_err(program_error(probe.kprobe))?)?;
    }
    Ok(notes)
}

fn attach_fentry(ebpf: &mut Ebpf, btf: &Btf, probe: &FunctionProbe, links: &mut Links) -> Result<(), Error> {
    let entry: &mut FEntry = program(ebpf, probe.fentry)?;
    entry.load(probe.function, btf).map_err(program_error(probe.fentry))?;
    let link = entry.attach().map_err(program_error(probe.fentry))?;
    links.keep(probe.fentry, entry.take_link(link).map_err(program_error(probe.fentry))?)
}

/// Watches the sends at [`SEND_FUNCTIONS`] on the fentry or kprobe `backend`, the optional
/// functions where the kernel's BTF has them, into `links`, or none of them; returns what they
/// watch and the sends they leave unseen.
pub(super) fn attach_send_functions(
    ebpf: &mut Ebpf,
    btf: &Btf,
    backend: Backend,
    links: &mut Links,
) -> Result<String, Error> {
    let start = links.held();
    let attached = attach_sends(ebpf, btf, backend, links);
    if attached.is_err() {
        links.release_from(start);
    }
    let (watched, mut unseen) = attached?;
    unseen.push("sendfile and splice into sockets, TLS destinations or a store server's replies".to_owned());
    Ok(format!("sends seen at {}: not {}", watched.join(", "), unseen.join(", ")))
}

/// [`attach_send_functions`], which releases the links if this fails half way.
fn attach_sends(
    ebpf: &mut Ebpf,
    btf: &Btf,
    backend: Backend,
    links: &mut Links,
) -> Result<(Vec<&'static str>, Vec<String>), Error> {
    let (entry, exit) = SEND_PROBES;
    if backend == Backend::Kprobe {
        program::<KProbe>(ebpf, entry)?.load().map_err(program_error(entry))?;
        program::<KProbe>(ebpf, exit)?.load().map_err(program_error(exit))?;
    }
    let (mut watched, mut unseen) = (Vec::new(), Vec::new());
    for send in &SEND_FUNCTIONS {
        if !send.required && btf.id_by_type_name_kind(send.function, BtfKind::Func).is_err() {
            unseen.push(format!("{} sends (no {} in the kernel's BTF)", send.sends, send.function));
            continue;
        }
        if backend == Backend::Kprobe {
            for name in [entry, exit] {
                let probe: &mut KProbe = program(ebpf, name)?;
                let link = probe.attach(send.function, 0).map_err(program_error(name))?;
                links.keep(name, probe.take_link(link).map_err(program_error(name))?)?;
            }
        } else {
            let fexit: &mut FExit = program(ebpf, send.fexit)?;
            fexit.load(send.function, btf).map_err(program_error(send.fexit))?;
            let link = fexit.attach().map_err(program_error(send.fexit))?;
            links.keep(send.fexit, fexit.take_link(link).map_err(program_error(send.fexit))?)?;
        }
        watched.push(send.function);
    }
    Ok((watched, unseen))
}

/// Detaches and unloads whatever `backend` had loaded, so the next one starts clean.
fn unload(ebpf: &mut Ebpf, backend: Backend) {
    // A program that was never loaded refuses to unload: nothing to undo.
    let reads: &[BtfProgram] = if backend == Backend::PageCache { &PAGE_CACHE } else { &[] };
    for &(name, _, _) in reads.iter().chain(&DATA_FOLLOWERS) {
        let _ = program::<BtfTracePoint>(ebpf, name).map(BtfTracePoint::unload);
    }
    for probe in FUNCTION_PROBES.iter().filter(|_| backend != Backend::PageCache) {
        let _ = program::<FEntry>(ebpf, probe.fentry).map(FEntry::unload);
        let _ = program::<KProbe>(ebpf, probe.kprobe).map(KProbe::unload);
    }
}

/// What the start-up report says of BPF LSM: its file hooks would see the same reads at the
/// open and permission checks, but this agent does not build them.
fn bpf_lsm(btf: &Btf) -> String {
    let built = btf.id_by_type_name_kind("bpf_lsm_file_open", BtfKind::Func).is_ok();
    match std::fs::read_to_string(ACTIVE_LSMS) {
        Ok(list) if list.split(',').any(|lsm| lsm.trim() == "bpf") => {
            format!("BPF LSM is active ({}) but not used: no LSM programs are built", list.trim())
        }
        Ok(list) => format!("BPF LSM is not active ({})", list.trim()),
        Err(_) if built => format!(
            "BPF LSM is built in (bpf_lsm_file_open), active or not unknown ({ACTIVE_LSMS} unreadable: securityfs \
             not mounted), not used: no LSM programs are built"
        ),
        Err(_) => "BPF LSM is not built in (no bpf_lsm_file_open)".to_owned(),
    }
}
