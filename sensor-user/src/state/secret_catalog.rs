//! The watch list: configured paths and globs resolved to file identities.
//!
//! A secret's id is its index here; the kernel reports ids, the agent shows the path as it
//! was configured. Missing files are skipped (the count is reported at start-up); a watched
//! file that goes away is unwatched at the next scan, and watched again when it comes back.

use std::{
    fs,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use sensor_common::FileId;

/// A watched file: where the user said it is, and what it is to the kernel now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The path as configured, or the label of a secret that is not a file.
    pub path: PathBuf,
    /// Its identity (zero while the path leads nowhere, and for labels).
    pub id: FileId,
    /// Its inode's generation, where the file system tells it (`FS_IOC_GETVERSION`).
    pub generation: Option<u32>,
    /// Index of the pattern that found it (`None` for labels).
    pattern: Option<usize>,
    pub kind: SecretKind,
}

/// What a secret is: a file, what a trusted process holds in memory, or a database server's
/// data (a store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    File,
    ProcessMemory,
    Database,
}

impl SecretKind {
    /// The name documents use (`vigie.secret.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::ProcessMemory => "process-memory",
            Self::Database => "database",
        }
    }
}

/// A path that now leads to another file, to a file for the first time, or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebind {
    /// The secret's id (its index in the catalog).
    pub secret_id: u32,
    pub old: Option<FileId>,
    /// The file it leads to now, with its generation; `None`: it was deleted.
    pub new: Option<(FileId, Option<u32>)>,
}

/// A file a pattern names: its path, identity and generation.
type Found = (PathBuf, FileId, Option<u32>);

/// What a walk of the file system found for some patterns: each pattern (its index and text)
/// with the files it names now and their generations. Made off the event loop
/// ([`Scan::run`]), applied on it ([`SecretCatalog::apply`]).
#[derive(Debug, Default)]
pub struct Scan {
    found: Vec<(usize, String, Vec<Found>)>,
    /// Whether every pattern was scanned (then the unmatched list is replaced).
    complete: bool,
}

impl Scan {
    /// Expands `patterns` and reads each match's identity and generation: the slow part, glob
    /// walks included.
    pub fn run(patterns: Vec<(usize, String)>, complete: bool) -> Self {
        let found = patterns
            .into_iter()
            .map(|(index, pattern)| {
                let files = expand(&pattern)
                    .into_iter()
                    .filter_map(|path| Some((file_id(&path)?, generation(&path), path)))
                    .map(|(id, generation, path)| (path, id, generation))
                    .collect();
                (index, pattern, files)
            })
            .collect();
        Self { found, complete }
    }
}

/// All watched secrets, indexed by secret id.
#[derive(Debug, Default)]
pub struct SecretCatalog {
    patterns: Vec<String>,
    secrets: Vec<Secret>,
    /// Patterns that matched no existing file at the last scan.
    pub unmatched: Vec<String>,
}

impl SecretCatalog {
    /// Resolves every pattern; an identity already watched under another path keeps that name.
    pub fn resolve(patterns: &[String]) -> Self {
        let mut catalog = Self { patterns: patterns.to_vec(), ..Self::default() };
        catalog.rescan(|_| true);
        catalog
    }

    /// Resolves the patterns `include` selects again and returns the paths whose identity
    /// changed, in the order the kernel must apply them: files deleted since (first, so that
    /// another path to the same file can take over), replaced by rename, recreated, or new.
    pub fn rescan(&mut self, include: impl Fn(&str) -> bool) -> Vec<Rebind> {
        let (patterns, complete) = self.patterns_to_scan(include);
        self.apply(Scan::run(patterns, complete))
    }

    /// The patterns `include` selects (with their indexes), and whether that is all of them:
    /// a [`Scan`]'s input.
    pub fn patterns_to_scan(&self, include: impl Fn(&str) -> bool) -> (Vec<(usize, String)>, bool) {
        let patterns: Vec<(usize, String)> =
            self.patterns.iter().cloned().enumerate().filter(|(_, p)| include(p)).collect();
        let complete = patterns.len() == self.patterns.len();
        (patterns, complete)
    }

    /// Takes in what `scan` found and returns the paths whose identity changed, in the order
    /// the kernel must apply them: files deleted since (first, so that another path to the same
    /// file can take over), replaced by rename, recreated, or new.
    pub fn apply(&mut self, scan: Scan) -> Vec<Rebind> {
        let mut rebinds = Vec::new();
        for (index, secret) in self.secrets.iter_mut().enumerate() {
            let scanned = secret.pattern.and_then(|p| scan.found.iter().find(|f| f.0 == p));
            let gone = scanned.is_some_and(|(_, _, files)| !files.iter().any(|f| f.0 == secret.path));
            if gone && secret.id != FileId::default() {
                let old = Some(std::mem::take(&mut secret.id));
                secret.generation = None;
                rebinds.push(Rebind { secret_id: secret_id(index), old, new: None });
            }
        }
        let mut unmatched = Vec::new();
        for (pattern, text, files) in scan.found {
            if files.is_empty() {
                unmatched.push(text);
            }
            for (path, id, generation) in files {
                let new = Some((id, generation));
                if let Some(index) = self.secrets.iter().position(|s| s.path == path) {
                    let secret = &mut self.secrets[index];
                    if (secret.id, secret.generation) != (id, generation) {
                        let old =
                            Some(std::mem::replace(&mut secret.id, id)).filter(|o| *o != FileId::default());
                        secret.generation = generation;
                        rebinds.push(Rebind { secret_id: secret_id(index), old, new });
                    }
                } else if !self.secrets.iter().any(|s| s.id == id) {
                    rebinds.push(Rebind { secret_id: secret_id(self.secrets.len()), old: None, new });
                    let pattern = Some(pattern);
                    self.secrets.push(Secret { path, id, generation, pattern, kind: SecretKind::File });
                }
            }
        }
        if scan.complete {
            self.unmatched = unmatched;
        }
        rebinds
    }

    /// Watches `patterns` too, from the next rescan on.
    pub fn add_patterns(&mut self, patterns: &[String]) {
        self.patterns.extend_from_slice(patterns);
    }

    /// Adds a secret that is not a file (a trusted process's memory), named `label`.
    pub fn add_label(&mut self, label: String) -> u32 {
        self.add_named(label, SecretKind::ProcessMemory)
    }

    /// Adds a store's data (a database server's), named `label`.
    pub fn add_store(&mut self, label: String) -> u32 {
        self.add_named(label, SecretKind::Database)
    }

    fn add_named(&mut self, label: String, kind: SecretKind) -> u32 {
        self.secrets.push(Secret {
            path: PathBuf::from(label),
            id: FileId::default(),
            generation: None,
            pattern: None,
            kind,
        });
        secret_id(self.secrets.len() - 1)
    }

    /// The secret with kernel id `id`.
    pub fn get(&self, id: u32) -> Option<&Secret> {
        self.secrets.get(usize::try_from(id).ok()?)
    }

    /// The id of the watched file at `path`, if one is.
    pub fn id_of_path(&self, path: &Path) -> Option<u32> {
        self.iter()
            .find(|(_, secret)| secret.kind == SecretKind::File && secret.path == path)
            .map(|(id, _)| id)
    }

    /// `(id, secret)` pairs, for filling the kernel map.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Secret)> {
        (0u32..).zip(&self.secrets)
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }
}

fn secret_id(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Paths a pattern names: itself, or its glob matches; public keys (`*.pub`) never count.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let absolute = std::path::absolute(pattern).unwrap_or_else(|_| PathBuf::from(pattern));
    let paths = if pattern.contains(['*', '?', '[']) {
        glob::glob(&absolute.to_string_lossy()).map(|m| m.flatten().collect()).unwrap_or_default()
    } else {
        vec![absolute]
    };
    paths.into_iter().filter(|p| p.extension().is_none_or(|ext| ext != "pub")).collect()
}

/// The generation of the regular file at `path` (symlinks followed), where its file system
/// keeps one (ext4, xfs, btrfs do; tmpfs does not answer). Opening it reads no data.
fn generation(path: &Path) -> Option<u32> {
    const FS_IOC_GETVERSION: libc::c_ulong = 0x8008_7601;
    if !fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let file =
        fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).ok()?;
    // File systems write an `int` here; a zeroed 8-byte buffer holds it in its low half
    // (little-endian) whether they write 4 bytes or 8.
    let mut generation: u64 = 0;
    // SAFETY: the ioctl writes at most 8 bytes through the pointer, which lives until it returns.
    let result = unsafe {
        libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&file), FS_IOC_GETVERSION, &raw mut generation)
    };
    (result == 0).then_some(u32::try_from(generation & u64::from(u32::MAX)).unwrap_or_default())
}

/// The kernel's identity of the file at `path` (symlinks followed), if it exists.
pub fn file_id(path: &Path) -> Option<FileId> {
    Some(file_id_of(&fs::metadata(path).ok()?))
}

/// The kernel identity of the file `meta` describes.
pub fn file_id_of(meta: &fs::Metadata) -> FileId {
    FileId::new(kernel_dev(meta.dev()), meta.ino())
}

/// Converts a userspace `st_dev` into the kernel's internal `dev_t` (`major << 20 | minor`),
/// which is what `super_block.s_dev` holds.
fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | (minor & 0xf_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dev_encoding() {
        // 8:1 (sda1) is 0x801 to stat, 0x800001 inside the kernel.
        assert_eq!(kernel_dev(libc::makedev(8, 1)), 0x80_0001);
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 0x12c);
    }

    #[test]
    fn links_resolve_to_one_secret_named_by_the_first_path() {
        let dir = std::env::temp_dir().join(format!("vigie-catalog-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("homeserver.yaml");
        fs::write(&secret, "x").unwrap();
        let hardlink = dir.join("hard");
        let _ = fs::remove_file(&hardlink);
        fs::hard_link(&secret, &hardlink).unwrap();
        fs::write(dir.join("id_rsa.pub"), "x").unwrap();

        let patterns = [
            secret.display().to_string(),
            hardlink.display().to_string(),
            dir.join("*.pub").display().to_string(),
            dir.join("missing.key").display().to_string(),
        ];
        let catalog = SecretCatalog::resolve(&patterns);
        assert_eq!(catalog.len(), 1);
        assert_eq!(catalog.get(0).unwrap().path, secret);
        assert_eq!(catalog.unmatched, [patterns[2].clone(), patterns[3].clone()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rescan_follows_replaced_and_new_files() {
        let dir = std::env::temp_dir().join(format!("vigie-rescan-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("homeserver.yaml");
        fs::write(&secret, "a").unwrap();
        let later = dir.join("late.signing.key");
        let mut catalog =
            SecretCatalog::resolve(&[secret.display().to_string(), later.display().to_string()]);
        let first = catalog.get(0).unwrap().id;
        assert!(catalog.rescan(|_| true).is_empty(), "nothing changed");

        let temp = dir.join("homeserver.yaml.tmp");
        fs::write(&temp, "b").unwrap();
        fs::rename(&temp, &secret).unwrap();
        fs::write(&later, "c").unwrap();
        let rebinds = catalog.rescan(|_| true);

        let replaced = Some((file_id(&secret).unwrap(), generation(&secret)));
        assert_eq!(rebinds[0], Rebind { secret_id: 0, old: Some(first), new: replaced });
        let created = Some((file_id(&later).unwrap(), generation(&later)));
        assert_eq!(rebinds[1], Rebind { secret_id: 1, old: None, new: created });
        assert_eq!(catalog.get(1).unwrap().path, later);
        assert!(catalog.unmatched.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_deleted_secret_is_unwatched_and_watched_again_when_it_comes_back() {
        let dir = std::env::temp_dir().join(format!("vigie-deleted-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let wal = dir.join("homeserver.db-wal");
        fs::write(&wal, "a").unwrap();
        let mut catalog = SecretCatalog::resolve(&[wal.display().to_string()]);
        let first = catalog.get(0).unwrap().id;
        assert!(catalog.get(0).unwrap().generation.is_some(), "this file system keeps generations");

        fs::remove_file(&wal).unwrap();
        assert_eq!(catalog.rescan(|_| true), [Rebind { secret_id: 0, old: Some(first), new: None }]);
        assert!(catalog.rescan(|_| true).is_empty(), "told once");

        fs::write(&wal, "b").unwrap();
        let again = Some((file_id(&wal).unwrap(), generation(&wal)));
        assert_eq!(catalog.rescan(|_| true), [Rebind { secret_id: 0, old: None, new: again }]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
