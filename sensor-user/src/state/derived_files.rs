//! Names of derived files: files a tainted process wrote, which carry the secret onwards.
//!
//! The kernel reports a derived file's name within its mount; this module finds the full
//! path by trying each mount point and checking the inode, and remembers it so the alert
//! of a later reader can name the file.

use std::{collections::HashMap, fs, path::Path};

use sensor_common::FileId;

use crate::state::secret_catalog::file_id;

/// Derived files remembered at most (oldest forgotten first, by clearing).
const KEPT: usize = 65_536;

/// Derived file paths by identity.
#[derive(Debug, Default)]
pub struct DerivedFiles {
    paths: HashMap<FileId, String>,
}

impl DerivedFiles {
    /// Records derived file `id`, named `mount_path` within its mount; returns its full path
    /// if one could be found.
    pub fn record(&mut self, id: FileId, mount_path: &str) -> Option<String> {
        let path = resolve(id, mount_path)?;
        if self.paths.len() >= KEPT {
            self.paths.clear();
        }
        self.paths.insert(id, path.clone());
        Some(path)
    }

    /// Names derived file `id` by `path` (where it was written, as an earlier agent recorded
    /// it) if the file at `path` is still that file; true if it is.
    pub fn recall(&mut self, id: FileId, path: &str) -> bool {
        let still_there = file_id(Path::new(path)) == Some(id);
        if still_there {
            self.paths.insert(id, path.to_owned());
        }
        still_there
    }

    pub fn path(&self, id: FileId) -> Option<&str> {
        self.paths.get(&id).map(String::as_str)
    }
}

/// The path whose identity is `id`, among `mount_path` under each mount point.
fn resolve(id: FileId, mount_path: &str) -> Option<String> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mount_points = mounts.lines().filter_map(|line| line.split_whitespace().nth(1));
    std::iter::once("/")
        .chain(mount_points)
        .map(|mount| format!("{}{mount_path}", mount.trim_end_matches('/')))
        .find(|candidate| file_id(Path::new(candidate)) == Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_found_under_its_mount_point() {
        let dir = std::env::temp_dir().join(format!("vigie-derived-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.gz");
        fs::write(&file, "x").unwrap();
        let id = file_id(&file).unwrap();
        let mut derived = DerivedFiles::default();
        // Whatever the mount of the temp dir, the full path is a candidate.
        assert_eq!(derived.record(id, &file.display().to_string()), Some(file.display().to_string()));
        assert_eq!(derived.path(id), Some(file.display().to_string().as_str()));
        assert_eq!(derived.record(FileId::new(0, 1), "/no/such/file"), None);
        let mut recalled = DerivedFiles::default();
        let other = dir.join("other.gz");
        fs::write(&other, "y").unwrap();
        assert!(!recalled.recall(id, &other.display().to_string()), "another file at the path");
        assert!(!recalled.recall(id, &dir.join("gone.gz").display().to_string()), "none");
        assert_eq!(recalled.path(id), None);
        assert!(recalled.recall(id, &file.display().to_string()));
        assert_eq!(recalled.path(id), Some(file.display().to_string().as_str()));
        fs::remove_dir_all(dir).unwrap();
    }
}
