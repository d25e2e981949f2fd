//! The TLS code trusted services really map, probed as they map it: the system libraries are
//! probed at start ([`crate::kernel::tls_libraries`]), but a service may carry its own
//! (Synapse's `cryptography` links OpenSSL statically, `psycopg2-binary` bundles a libssl).
//! The maps of every trusted process are read when it becomes trusted and every
//! [`LOOK_TICKS`] ticks after (a Python service imports its TLS module late); each file is
//! examined once per identity, in the background, and attached on the event loop.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use sensor_common::FileId;

use crate::{
    background::Background,
    format::ecs::TlsProbe,
    kernel::mapped_tls::{self, MappedFile, Sites},
    kernel::Sensor,
    state::secret_catalog::file_id,
    state::trusted_processes::TrustChange,
};

/// Every how many agent ticks the trusted processes' maps are read again (every 5 s).
pub const LOOK_TICKS: u64 = 10;

/// A file one look examined: the first trusted process seen mapping it, and its TLS write
/// sites (empty: none), or why it could not be read.
#[derive(Debug)]
pub struct Examined {
    pid: u32,
    file: MappedFile,
    sites: Result<Sites, String>,
}

/// The trusted processes whose maps are followed, and the files already examined.
#[derive(Default)]
pub struct TlsMappings {
    /// Trusted pids and the service each runs.
    services: HashMap<u32, String>,
    /// Files examined (or probed at start): never read again.
    examined: HashSet<FileId>,
    /// Whether a process became trusted since the last look.
    due: bool,
    pub look: Background<Vec<Examined>>,
}

impl TlsMappings {
    /// Follows trusted processes, the system library files `probed` already have the probes.
    pub fn new(probed: &[impl AsRef<Path>]) -> Self {
        let examined = probed.iter().filter_map(|path| file_id(path.as_ref())).collect();
        Self { examined, ..Self::default() }
    }

    /// Follows `change`: a newly trusted process (or one that exec'd) is looked at soon.
    pub fn trust(&mut self, change: &TrustChange, service: Option<&str>) {
        match (change, service) {
            (TrustChange::Trust { pid, .. }, Some(service)) => {
                self.services.insert(*pid, service.to_owned());
                self.due = true;
            }
            (TrustChange::Trust { pid, .. } | TrustChange::Untrust { pid }, _) => {
                self.services.remove(pid);
            }
            (TrustChange::Shed { .. }, _) => {}
        }
    }

    /// Starts a look at the trusted processes' maps if one is due (`periodic`, or a process
    /// became trusted) and none is running.
    pub fn start_look(&mut self, periodic: bool) {
        if !(periodic || self.due) || self.services.is_empty() {
            return;
        }
        let pids: Vec<u32> = self.services.keys().copied().collect();
        let skip = self.examined.clone();
        if self.look.start(move || look(&pids, &skip)) {
            self.due = false;
        }
    }

    /// Attaches the probes to the TLS code the look found; what it reports, one per file.
    pub fn found(&mut self, examined: Vec<Examined>, sensor: &mut Sensor) -> Vec<TlsProbe> {
        let mut reports = Vec::new();
        for Examined { pid, file, sites } in examined {
            if !self.examined.insert(file.id) {
                continue;
            }
            let attached = sites.and_then(|sites| {
                if sites.is_empty() {
                    return Ok(sites);
                }
                sensor.attach_tls_sites(&file.reachable, &sites).map(|()| sites).map_err(|e| e.to_string())
            });
            let service = self.services.get(&pid).cloned().unwrap_or_default();
            let path = file.path.display().to_string();
            reports.push(match attached {
                Ok(sites) if sites.is_empty() => continue,
                Ok(sites) => TlsProbe { path, service, pid, symbols: symbols(&sites), error: None },
                Err(error) => TlsProbe { path, service, pid, symbols: Vec::new(), error: Some(error) },
            });
        }
        reports
    }
}

/// The functions of `sites`.
fn symbols(sites: &Sites) -> Vec<&'static str> {
    sites.iter().map(|&(_, symbol, _)| symbol).collect()
}

/// Every file `pids` map but `skip`, examined once: the slow part, off the event loop.
fn look(pids: &[u32], skip: &HashSet<FileId>) -> Vec<Examined> {
    let mut seen = skip.clone();
    let mut examined = Vec::new();
    for &pid in pids {
        for file in mapped_tls::mapped_files(pid, &seen) {
            seen.insert(file.id);
            let sites = match mapped_tls::tls_sites(&file.reachable) {
                Ok(sites) => Ok(sites),
                // Gone with its process: a later look finds it again if another maps it.
                Err(_) if !Path::new(&format!("/proc/{pid}")).exists() => continue,
                Err(error) => Err(format!("reading it: {error}")),
            };
            examined.push(Examined { pid, file, sites });
        }
    }
    examined
}

#[cfg(test)]
mod tests {
    use std::{fs::File, os::fd::AsRawFd, path::PathBuf};

    use super::*;

    /// A copy of the system's libssl in a fresh directory, kept mapped by this process.
    fn map_libssl_copy() -> Option<(PathBuf, FileId)> {
        let system = ["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let dir = std::env::temp_dir().join(format!("vigie-tls-mappings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let copy = dir.join("libssl.so.3");
        std::fs::copy(system, &copy).ok()?;
        let file = File::open(&copy).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        // SAFETY: a private read-only mapping of a file held open, never unmapped: it stays, as
        // a loaded library does, for the test process's life.
        let mapped = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0)
        };
        (mapped != libc::MAP_FAILED).then_some(())?;
        Some((copy.clone(), file_id(&copy)?))
    }

    #[test]
    fn a_look_finds_the_openssl_writes_of_a_mapped_copy_once() {
        let (copy, id) = map_libssl_copy().expect("this host has libssl.so.3 to copy");
        let pid = std::process::id();
        let examined = look(&[pid, pid], &HashSet::new());
        let found: Vec<&Examined> = examined.iter().filter(|e| e.file.id == id).collect();
        assert_eq!(found.len(), 1, "examined once though two pids map it");
        assert_eq!(found[0].file.path, copy);
        let sites = found[0].sites.as_ref().expect("readable");
        assert_eq!(symbols(sites), ["SSL_write", "SSL_write_ex"]);
        assert!(look(&[pid], &HashSet::from([id])).iter().all(|e| e.file.id != id), "skipped once known");
        let _ = std::fs::remove_dir_all(copy.parent().unwrap_or(&copy));
    }

    #[test]
    fn a_trusted_process_is_followed_until_it_is_untrusted() {
        let mut mappings = TlsMappings::new(&[] as &[PathBuf]);
        let trust = TrustChange::Trust { pid: 7, start_ns: 1, exec_id: None, label: 0 };
        mappings.trust(&trust, Some("matrix-synapse"));
        assert!(mappings.due);
        assert_eq!(mappings.services.get(&7).map(String::as_str), Some("matrix-synapse"));
        mappings.trust(&TrustChange::Untrust { pid: 7 }, None);
        assert!(mappings.services.is_empty());
    }
}
