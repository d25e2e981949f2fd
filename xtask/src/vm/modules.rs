//! The kernel modules the guest loads, with what they depend on, in load order: found in the
//! unpacked package by name, dependencies read from each module's `.modinfo`, `.ko.xz` files
//! decompressed (busybox's `insmod` takes plain ones only), built-in modules skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::command::{self, tool};

/// What the guest needs that Debian builds as modules: the lab disk (virtio PCI and block,
/// ext4: a page-cache file system, unlike the initramfs, with the crc32c ext4 asks the crypto
/// API for, which no `depends=` names) and the remote host's veth pair.
pub const WANTED: &[&str] = &["virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "veth"];

/// A module to copy into the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name with underscores, as `lsmod` shows it.
    pub name: String,
    /// Its file in the unpacked package (`.ko` or `.ko.xz`).
    pub file: PathBuf,
}

/// `wanted` and their dependencies from `modules_dir` (`lib/modules/<release>`), each after
/// what it depends on.
pub fn load_order(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<Module>> {
    let files = module_files(&modules_dir.join("kernel"))?;
    let builtin = builtin_names(modules_dir)?;
    let mut order = Vec::new();
    let mut placed = BTreeSet::new();
    for name in wanted {
        place(&normalized(name), &files, &builtin, &mut placed, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

/// Writes `module` uncompressed to `target`.
pub fn copy_plain(module: &Module, target: &Path) -> Result<()> {
    fs::write(target, plain_bytes(&module.file)?)
        .with_context(|| format!("cannot write {}", target.display()))
}

/// Depth first: a module's dependencies are placed before it; `path` catches cycles.
fn place(
    name: &str,
    files: &BTreeMap<String, PathBuf>,
    builtin: &BTreeSet<String>,
    placed: &mut BTreeSet<String>,
    order: &mut Vec<Module>,
    path: &mut Vec<String>,
) -> Result<()> {
    if placed.contains(name) || builtin.contains(name) {
        return Ok(());
    }
    if path.iter().any(|on_path| on_path == name) {
        bail!("module dependency cycle: {} -> {name}", path.join(" -> "));
    }
    let Some(file) = files.get(name) else {
        bail!("module {name} is neither built in nor under the package's lib/modules (needed by {path:?})");
    };
    path.push(name.to_owned());
    for dependency in depends(&plain_bytes(file)?) {
        place(&dependency, files, builtin, placed, order, path)?;
    }
    path.pop();
    placed.insert(name.to_owned());
    order.push(Module { name: name.to_owned(), file: file.clone() });
    Ok(())
}

/// The `depends=` entry of a module's `.modinfo` strings (NUL-separated `key=value`).
fn depends(module: &[u8]) -> Vec<String> {
    module
        .split(|byte| *byte == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list).split(',').filter(|name| !name.is_empty()).map(normalized).collect()
        })
        .unwrap_or_default()
}

/// The module file's bytes, decompressed if it is a `.ko.xz`.
fn plain_bytes(file: &Path) -> Result<Vec<u8>> {
    if file.extension().is_some_and(|ext| ext == "xz") {
        command::bytes(tool("xz")?.arg("-dc").arg(file))
    } else {
        fs::read(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

/// Every `*.ko` / `*.ko.xz` under `dir`, by module name.
fn module_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if let Some(name) = module_name(&path) {
                found.insert(name, path);
            }
        }
    }
    Ok(found)
}

/// The modules `modules.builtin` lists (paths like `kernel/drivers/virtio/virtio_pci.ko`).
fn builtin_names(modules_dir: &Path) -> Result<BTreeSet<String>> {
    let list = modules_dir.join("modules.builtin");
    let text = fs::read_to_string(&list).with_context(|| format!("cannot read {}", list.display()))?;
    Ok(text.lines().filter_map(|line| module_name(Path::new(line))).collect())
}

/// `…/ext4.ko` or `…/ext4.ko.xz` → `ext4`; dashes become underscores, as the kernel does.
fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".ko").or_else(|| file.strip_suffix(".ko.xz"))?;
    Some(normalized(stem))
}

fn normalized(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{depends, module_name};

    #[test]
    fn depends_are_read_from_modinfo_strings() {
        let module = b"\x7fELF...\0license=GPL\0depends=jbd2,crc16,mbcache\0intree=Y\0";
        assert_eq!(depends(module), ["jbd2", "crc16", "mbcache"]);
        assert!(depends(b"\0depends=\0name=veth\0").is_empty());
        assert!(depends(b"no modinfo at all").is_empty());
    }

    #[test]
    fn names_drop_the_suffix_and_use_underscores() {
        assert_eq!(module_name(Path::new("kernel/fs/ext4/ext4.ko")).as_deref(), Some("ext4"));
        assert_eq!(
            module_name(Path::new("kernel/a/crc32c-generic.ko.xz")).as_deref(),
            Some("crc32c_generic")
        );
        assert_eq!(module_name(Path::new("modules.order")), None);
    }
}
