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

/// A watched file: where the user said it is, and what it is to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub path: PathBuf,
    pub id: FileId,
}

/// All watched secrets, indexed by secret id.
#[derive(Debug, Default)]
pub struct SecretCatalog {
    secrets: Vec<Secret>,
    /// Patterns that matched no existing file.
    pub unmatched: Vec<String>,
}

impl SecretCatalog {
    /// Resolves every pattern; the first path seen for an identity names it.
    pub fn resolve(patterns: &[String]) -> Self {
        let mut catalog = Self::default();
        for pattern in patterns {
            let mut found = false;
            for path in expand(pattern) {
                let Some(id) = file_id(&path) else { continue };
                found = true;
                if !catalog.secrets.iter().any(|s| s.id == id) {
                    catalog.secrets.push(Secret { path, id });
                }
            }
            if !found {
                catalog.unmatched.push(pattern.clone());
            }
        }
        catalog
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
    let meta = fs::metadata(path).ok()?;
    Some(FileId::new(kernel_dev(meta.dev()), meta.ino()))
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
}
