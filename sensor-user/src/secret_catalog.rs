//! The watch list: configured paths and globs resolved to file identities.
//!
//! A secret's id is its index here; the kernel reports ids, the agent shows the path as it
//! was configured. Missing files are skipped (the count is reported at start-up).

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use sensor_common::FileId;

/// A watched file: where the user said it is, and what it is to the kernel now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub path: PathBuf,
    pub id: FileId,
}

/// A path that now leads to another file (or to a file for the first time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebind {
    /// The secret's id (its index in the catalog).
    pub secret_id: u32,
    pub old: Option<FileId>,
    pub new: FileId,
}

/// What a walk of the file system found for some patterns: each pattern with the files it
/// names now. Made off the event loop ([`Scan::run`]), applied on it ([`SecretCatalog::apply`]).
#[derive(Debug, Default)]
pub struct Scan {
    found: Vec<(String, Vec<(PathBuf, FileId)>)>,
    /// Whether every pattern was scanned (then the unmatched list is replaced).
    complete: bool,
}

impl Scan {
    /// Expands `patterns` and reads each match's identity: the slow part, glob walks included.
    pub fn run(patterns: Vec<String>, complete: bool) -> Self {
        let found = patterns
            .into_iter()
            .map(|pattern| {
                let files = expand(&pattern).into_iter().filter_map(|path| Some((file_id(&path)?, path)));
                (pattern.clone(), files.map(|(id, path)| (path, id)).collect())
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
    /// changed: files replaced by rename, deleted and recreated, or created since.
    pub fn rescan(&mut self, include: impl Fn(&str) -> bool) -> Vec<Rebind> {
        let (patterns, complete) = self.patterns_to_scan(include);
        self.apply(Scan::run(patterns, complete))
    }

    /// The patterns `include` selects, and whether that is all of them: a [`Scan`]'s input.
    pub fn patterns_to_scan(&self, include: impl Fn(&str) -> bool) -> (Vec<String>, bool) {
        let patterns: Vec<String> = self.patterns.iter().filter(|p| include(p)).cloned().collect();
        let complete = patterns.len() == self.patterns.len();
        (patterns, complete)
    }

    /// Takes in what `scan` found and returns the paths whose identity changed.
    pub fn apply(&mut self, scan: Scan) -> Vec<Rebind> {
        let mut rebinds = Vec::new();
        let mut unmatched = Vec::new();
        for (pattern, files) in scan.found {
            if files.is_empty() {
                unmatched.push(pattern);
                continue;
            }
            for (path, id) in files {
                if let Some(index) = self.secrets.iter().position(|s| s.path == path) {
                    let secret = &mut self.secrets[index];
                    if secret.id != id {
                        let old = Some(std::mem::replace(&mut secret.id, id));
                        rebinds.push(Rebind { secret_id: secret_id(index), old, new: id });
                    }
                } else if !self.secrets.iter().any(|s| s.id == id) {
                    rebinds.push(Rebind { secret_id: secret_id(self.secrets.len()), old: None, new: id });
                    self.secrets.push(Secret { path, id });
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
        self.secrets.push(Secret { path: PathBuf::from(label), id: FileId::default() });
        secret_id(self.secrets.len() - 1)
    }

    /// The secret with kernel id `id`.
    pub fn get(&self, id: u32) -> Option<&Secret> {
        self.secrets.get(usize::try_from(id).ok()?)
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

        let replaced = file_id(&secret).unwrap();
        assert_eq!(rebinds[0], Rebind { secret_id: 0, old: Some(first), new: replaced });
        assert_eq!(rebinds[1], Rebind { secret_id: 1, old: None, new: file_id(&later).unwrap() });
        assert_eq!(catalog.get(1).unwrap().path, later);
        assert!(catalog.unmatched.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
