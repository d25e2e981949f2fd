//! A kernel of the matrix on disk: its Debian image package resolved, downloaded once with
//! `apt-get download` and unpacked once with `dpkg-deb -x`, under `<target>/vm/kernels/`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::{kernels::Kernel, say};
use crate::command::{self, tool};

/// An unpacked kernel image package.
#[derive(Debug, Clone)]
pub struct KernelFiles {
    /// The image package's name, e.g. `linux-image-6.1.0-57-amd64`.
    pub package: String,
    /// The kernel release, as the guest's `uname -r` says it.
    pub release: String,
    /// `boot/vmlinuz-<release>`.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
}

/// Resolves `kernel`'s metapackage to its image package, then downloads and unpacks it
/// under `cache` unless that was done before.
pub fn ensure(kernel: &Kernel, cache: &Path) -> Result<KernelFiles> {
    let package = resolve(kernel)?;
    let unpacked = cache.join(&package);
    let done = cache.join(format!("{package}.unpacked"));
    if !done.is_file() {
        download_and_unpack(&package, cache, &unpacked)?;
        fs::write(&done, "").with_context(|| format!("cannot write {}", done.display()))?;
    }
    // `linux-image-<release>`: the release names the image and the modules' folder.
    let release =
        package.strip_prefix("linux-image-").context("an image package is linux-image-*")?.to_owned();
    let files = KernelFiles {
        vmlinuz: unpacked.join("boot").join(format!("vmlinuz-{release}")),
        modules: unpacked.join("lib/modules").join(&release),
        package,
        release,
    };
    ensure!(files.vmlinuz.is_file(), "{} has no {}", files.package, files.vmlinuz.display());
    ensure!(files.modules.is_dir(), "{} has no {}", files.package, files.modules.display());
    say(&format!("kernel {}: {} ({})", kernel.name, files.package, files.vmlinuz.display()));
    Ok(files)
}

/// The `linux-image-*` package `kernel.metapackage` depends on, from apt's lists.
fn resolve(kernel: &Kernel) -> Result<String> {
    let depends = match command::output(tool("apt-cache")?.args(["depends", kernel.metapackage])) {
        Ok(depends) if image_dependency(&depends).is_some() => depends,
        // No lists yet (a fresh machine), or old ones: fetch them once and ask again.
        _ => {
            command::run(tool("apt-get")?.args(["-q", "update"]))?;
            command::output(tool("apt-cache")?.args(["depends", kernel.metapackage]))?
        }
    };
    let Some(package) = image_dependency(&depends) else {
        bail!("apt-cache depends {} names no linux-image-* package:\n{depends}", kernel.metapackage);
    };
    let wanted = format!("linux-image-{}", kernel.series);
    ensure!(
        package.starts_with(&wanted),
        "{} now depends on {package}, not {wanted}*: update the kernel table in xtask/src/vm/kernels.rs",
        kernel.metapackage
    );
    Ok(package.to_owned())
}

/// The first `Depends: linux-image-…` line of `apt-cache depends` output.
fn image_dependency(depends: &str) -> Option<&str> {
    depends
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends: "))
        .find(|name| name.starts_with("linux-image-"))
}

fn download_and_unpack(package: &str, cache: &Path, unpacked: &Path) -> Result<()> {
    let downloads = cache.join("download");
    // A half-done earlier attempt is started over.
    for dir in [&downloads, &unpacked.to_path_buf()] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }
    fs::create_dir_all(&downloads).with_context(|| format!("cannot create {}", downloads.display()))?;
    say(&format!("downloading {package}"));
    command::run(tool("apt-get")?.args(["-q", "download", package]).current_dir(&downloads))?;
    let deb = single_deb(&downloads)?;
    command::run(tool("dpkg-deb")?.arg("-x").arg(&deb).arg(unpacked))?;
    fs::remove_dir_all(&downloads).with_context(|| format!("cannot remove {}", downloads.display()))
}

/// The one `.deb` `apt-get download` left in `dir`.
fn single_deb(dir: &Path) -> Result<PathBuf> {
    let mut debs = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "deb") {
            debs.push(path);
        }
    }
    match debs.as_slice() {
        [deb] => Ok(deb.clone()),
        _ => bail!("expected one .deb in {}, found {debs:?}", dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::image_dependency;

    #[test]
    fn the_image_dependency_is_read_from_apt_cache_depends() {
        let depends = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(image_dependency(depends), Some("linux-image-6.1.0-57-amd64"));
        assert_eq!(image_dependency("linux-image-amd64\n  Recommends: firmware\n"), None);
    }
}
