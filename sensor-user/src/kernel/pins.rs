//! The kernel state an agent leaves attached when it stops (`keep_loaded`): every link and
//! map of one loaded object, pinned in the BPF file system under one directory per
//! *generation* (`<root>/<object version>-<agent pid>-<load time>`), so that no program is
//! detached between one agent and the next and the next finds what the last one left.
//!
//! A generation's directory holds `maps/<map name>` and `links/<program>-<n>` (the BPF file
//! system refuses dots in names: `.rodata` is pinned as `_rodata`). A link pinned there keeps
//! its program attached with no process holding it; removing the pin (and every descriptor)
//! detaches it.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Map, MapData, ProgramArray},
    programs::links::{FdLink, PinnedLink},
    Ebpf,
};

use crate::{error::Error, system};

/// Where generations are pinned unless the config says otherwise.
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf/vigie";

const MAPS: &str = "maps";
const LINKS: &str = "links";

/// The version of a loaded object: its size and CRC-32, so that two agents built from the
/// same programs agree on it.
pub fn object_version(object: &[u8]) -> String {
    format!("{:08x}{:08x}", object.len(), crc32fast::hash(object))
}

/// This agent's generation, being pinned.
#[derive(Debug)]
pub struct Generation {
    dir: PathBuf,
    /// Links pinned so far, for unique pin names.
    pinned: usize,
}

impl Generation {
    /// Creates the directory of a new generation of `version` under `root` (mounting the BPF
    /// file system first if it is not).
    pub fn create(root: &Path, version: &str) -> Result<Self, Error> {
        system::ensure_bpffs().map_err(|e| {
            Error::system(
                "keep_loaded (keep_loaded = false runs without it)",
                io::Error::other(e.to_string()),
            )
        })?;
        let name = format!("{version}-{}-{}", std::process::id(), system::monotonic_ns());
        let dir = root.join(name);
        for sub in [MAPS, LINKS] {
            let path = dir.join(sub);
            fs::create_dir_all(&path)
                .map_err(|e| Error::system(format!("creating {}", path.display()), e))?;
        }
        Ok(Self { dir, pinned: 0 })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Pins every map of `ebpf`.
    pub fn pin_maps(&self, ebpf: &Ebpf) -> Result<(), Error> {
        for (name, map) in ebpf.maps() {
            let path = self.dir.join(MAPS).join(pin_name(name));
            map.pin(&path).map_err(|e| pin_error(&path, e))?;
        }
        Ok(())
    }

    /// Pins `link` of program `program`: it stays attached after this agent is gone.
    pub fn pin_link(&mut self, program: &str, link: FdLink) -> Result<PinnedLink, Error> {
        self.pinned += 1;
        let path = self.dir.join(LINKS).join(format!("{}-{}", pin_name(program), self.pinned));
        link.pin(&path).map_err(|e| pin_error(&path, e))
    }
}

/// A generation left by an earlier agent.
#[derive(Debug)]
pub struct Previous {
    dir: PathBuf,
    /// Whether its programs are this agent's (same object version): its records decode here.
    pub same_object: bool,
}

impl Previous {
    /// The generations under `root` other than `own`, oldest first.
    pub fn find(root: &Path, own: Option<&Generation>, version: &str) -> Result<Vec<Self>, Error> {
        let entries = match fs::read_dir(root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::system(format!("reading {}", root.display()), e)),
        };
        let mut found: Vec<(u64, Self)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::system(format!("reading {}", root.display()), e))?;
            let dir = entry.path();
            if own.is_some_and(|own| own.dir == dir) || !dir.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut parts = name.split('-');
            let same_object = parts.next() == Some(version);
            let loaded_ns = parts.nth(1).and_then(|ns| ns.parse().ok()).unwrap_or(0);
            found.push((loaded_ns, Self { dir, same_object }));
        }
        found.sort_by_key(|(ns, _)| *ns);
        Ok(found.into_iter().map(|(_, previous)| previous).collect())
    }

    /// The generation pinned in `dir`.
    pub fn at(dir: PathBuf) -> Self {
        Self { dir, same_object: true }
    }

    /// Detaches it and removes its pins; returns how many links were detached.
    pub fn detach_and_remove(self) -> Result<usize, Error> {
        let detached = self.detach()?;
        self.remove()?;
        Ok(detached)
    }

    pub fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// Detaches its programs: every pinned link is unpinned and closed, then its program
    /// arrays are emptied (see `Sensor`'s drop: a kernel left to break the cycle of programs
    /// that tail-call each other through an array may keep it). Returns how many links.
    pub fn detach(&self) -> Result<usize, Error> {
        let links = self.dir.join(LINKS);
        let mut detached = 0;
        for path in entries(&links)? {
            let link = PinnedLink::from_pin(&path).map_err(|e| pin_error(&path, e))?;
            drop(link.unpin().map_err(|e| Error::system(format!("unpinning {}", path.display()), e))?);
            detached += 1;
        }
        for path in entries(&self.dir.join(MAPS))? {
            let data = MapData::from_pin(&path).map_err(|e| pin_error(&path, e))?;
            if let Ok(Map::ProgramArray(data)) = Map::from_map_data(data) {
                let size = data.info().map_err(|e| pin_error(&path, e))?.max_entries();
                let mut slots =
                    ProgramArray::try_from(Map::ProgramArray(data)).map_err(|e| pin_error(&path, e))?;
                for index in 0..size {
                    let _ = slots.clear_index(&index);
                }
            }
        }
        Ok(detached)
    }

    /// Its map `name`, if it was pinned.
    pub fn map(&self, name: &str) -> Result<Option<Map>, Error> {
        let path = self.dir.join(MAPS).join(pin_name(name));
        if !path.exists() {
            return Ok(None);
        }
        let data = MapData::from_pin(&path).map_err(|e| pin_error(&path, e))?;
        Map::from_map_data(data).map(Some).map_err(|e| pin_error(&path, e))
    }

    /// Removes what is left of it (its maps live on while a descriptor holds them).
    pub fn remove(self) -> Result<(), Error> {
        for sub in [LINKS, MAPS] {
            for path in entries(&self.dir.join(sub))? {
                fs::remove_file(&path)
                    .map_err(|e| Error::system(format!("unpinning {}", path.display()), e))?;
            }
        }
        for dir in [self.dir.join(LINKS), self.dir.join(MAPS), self.dir.clone()] {
            match fs::remove_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::system(format!("removing {}", dir.display()), e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `name` as the BPF file system takes it.
fn pin_name(name: &str) -> String {
    name.replace('.', "_")
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::system(format!("reading {}", dir.display()), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::system(format!("reading {}", dir.display()), e)),
    }
}

/// A failure on the pin at `path`, with its cause (aya's errors keep the errno in their source).
fn pin_error(path: &Path, error: impl std::error::Error) -> Error {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    Error::system(format!("pinning {}", path.display()), io::Error::other(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_version_changes_with_the_object() {
        assert_eq!(object_version(b"abc"), object_version(b"abc"));
        assert_ne!(object_version(b"abc"), object_version(b"abd"));
        assert_eq!(object_version(b"abc").len(), 16);
    }

    #[test]
    fn previous_generations_are_found_oldest_first_and_own_skipped() {
        let root = std::env::temp_dir().join(format!("vigie-pins-{}", std::process::id()));
        for name in ["v1-10-300", "v2-11-100", "v1-12-200"] {
            fs::create_dir_all(root.join(name)).unwrap();
        }
        let own = Generation { dir: root.join("v1-12-200"), pinned: 0 };
        let found = Previous::find(&root, Some(&own), "v1").unwrap();
        let names: Vec<_> = found.iter().map(|p| (p.name(), p.same_object)).collect();
        assert_eq!(names, [("v2-11-100".to_owned(), false), ("v1-10-300".to_owned(), true)]);
        fs::remove_dir_all(&root).unwrap();
    }
}
