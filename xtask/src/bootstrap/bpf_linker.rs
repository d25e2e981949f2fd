//! bpf-linker, built against the nightly's own LLVM: no prebuilt binary can be
//! downloaded here, and the linker must read the bitcode rustc nightly emits.
//!
//! The build links `-lLLVM` with an rpath to `$LLVM_PREFIX/lib`, so that prefix lives
//! outside the repository (surviving `cargo clean` and other clones) and is named after
//! the nightly's libLLVM file: a new nightly gets a new prefix instead of a broken one.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::say;
use crate::command::{self, tool};
use crate::workspace;

/// The bpf-linker release that works with the pinned aya line (see PLATFORM.md).
const VERSION: &str = "0.13.0";

/// Keeps a working bpf-linker `VERSION`, else builds one on the nightly's LLVM.
pub fn ensure(nightly_sysroot: &Path) -> Result<()> {
    match installed_version()? {
        Some(version) if version == VERSION => {
            say(&format!("bpf-linker {VERSION}: present"));
            return Ok(());
        }
        Some(version) => say(&format!("bpf-linker: found {version}, want {VERSION}: building it")),
        None => say(&format!("bpf-linker {VERSION}: not found or not running: building it")),
    }

    let lib_dir = nightly_sysroot.join("lib");
    let names = fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot list {}", lib_dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect::<Vec<_>>();
    let llvm = RustLlvm::find(&names)
        .with_context(|| format!("cannot find the nightly's libLLVM in {}", lib_dir.display()))?;
    let prefix = workspace::data_home()?.join("vigie").join(format!("llvm-{}", llvm.file_name));
    link_prefix(&prefix, &lib_dir.join(&llvm.file_name), &llvm.file_name)?;
    say(&format!("LLVM {} prefix: {}", llvm.major, prefix.display()));

    // The default toolchain (stable) builds the linker; nightly is only its LLVM donor.
    command::run(
        tool("cargo")?
            .args(["+stable", "install", "bpf-linker", "--version", VERSION])
            .args(["--locked", "--force", "--no-default-features", "--features"])
            .arg(format!("llvm-{}", llvm.major))
            .env("LLVM_PREFIX", &prefix),
    )?;
    match installed_version()? {
        Some(version) if version == VERSION => {
            say(&format!("bpf-linker {VERSION}: built"));
            Ok(())
        }
        other => bail!(
            "cargo install finished but `bpf-linker --version` reports {other:?}, \
             not {VERSION}: is $CARGO_HOME/bin shadowed on PATH?"
        ),
    }
}

/// The version `bpf-linker --version` reports, or None if it is absent or does not run
/// (e.g. its libLLVM symlinks are gone).
fn installed_version() -> Result<Option<String>> {
    let output = command::output(tool("bpf-linker")?.arg("--version"));
    Ok(output.ok().and_then(|out| parse_version(&out).map(str::to_owned)))
}

/// `bpf-linker 0.13.0` → `0.13.0`.
fn parse_version(output: &str) -> Option<&str> {
    let mut words = output.split_whitespace();
    (words.next()? == "bpf-linker").then_some(())?;
    words.next()
}

/// The nightly's shared libLLVM, e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`.
#[derive(Debug, PartialEq)]
struct RustLlvm {
    file_name: String,
    /// Selects bpf-linker's `llvm-<major>` feature.
    major: u32,
}

impl RustLlvm {
    /// Picks the one `libLLVM.so.<version>-rust-<rust version>` among a sysroot `lib/`'s
    /// file names.
    fn find(names: &[String]) -> Result<Self> {
        let found = names
            .iter()
            .filter_map(|name| {
                let version = name.strip_prefix("libLLVM.so.")?;
                version.contains("-rust-").then_some((name, version))
            })
            .collect::<Vec<_>>();
        let [(file_name, version)] = found.as_slice() else {
            bail!(
                "expected exactly one libLLVM.so.<version>-rust-<version>, found {:?}",
                found.iter().map(|(name, _)| name).collect::<Vec<_>>()
            );
        };
        let major = version
            .split(['.', '-'])
            .next()
            .and_then(|major| major.parse().ok())
            .with_context(|| format!("no LLVM major version in {file_name}"))?;
        Ok(Self { file_name: (*file_name).clone(), major })
    }
}

/// Makes `<prefix>/lib/{libLLVM.so, <file_name>}` symlinks to `library`, replacing stale ones.
fn link_prefix(prefix: &Path, library: &Path, file_name: &str) -> Result<()> {
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    for link in [lib.join("libLLVM.so"), lib.join(file_name)] {
        ensure_symlink(&link, library)?;
    }
    Ok(())
}

/// Points `link` at `target`, replacing whatever else is there (e.g. a link to an older
/// nightly's library).
fn ensure_symlink(link: &Path, target: &Path) -> Result<()> {
    match fs::symlink_metadata(link) {
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot inspect {}", link.display())),
        Ok(_) => {
            if fs::read_link(link).is_ok_and(|current| current == target) {
                return Ok(());
            }
            fs::remove_file(link).with_context(|| format!("cannot replace {}", link.display()))?;
        }
    }
    symlink(target, link).with_context(|| format!("cannot link {} -> {}", link.display(), target.display()))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::{ensure_symlink, parse_version, RustLlvm};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn finds_the_nightly_llvm_among_sysroot_files() {
        let lib = names(&[
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-b5a965480ee51f9a.so",
            "rustlib",
        ]);
        let llvm = RustLlvm::find(&lib).expect("one libLLVM");
        assert_eq!(llvm, RustLlvm { file_name: "libLLVM.so.22.1-rust-1.97.0-nightly".into(), major: 22 });
    }

    #[test]
    fn major_without_minor() {
        let llvm = RustLlvm::find(&names(&["libLLVM.so.23-rust-1.99.0-nightly"]));
        assert_eq!(llvm.expect("one libLLVM").major, 23);
    }

    #[test]
    fn none_or_several_is_an_error() {
        assert!(RustLlvm::find(&names(&["libLLVM.so.22.1", "rustlib"])).is_err());
        let two = names(&["libLLVM.so.22.1-rust-a", "libLLVM.so.23.1-rust-b"]);
        assert!(RustLlvm::find(&two).is_err());
        assert!(RustLlvm::find(&names(&["libLLVM.so.x-rust-1"])).is_err());
    }

    #[test]
    fn reads_the_version_line() {
        assert_eq!(parse_version("bpf-linker 0.13.0\n"), Some("0.13.0"));
        assert_eq!(parse_version("something 0.13.0"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn symlinks_are_created_repointed_and_replace_files() {
        let dir = std::env::temp_dir().join(format!("xtask-symlink-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let link = dir.join("libLLVM.so");
        let (old, new) = (Path::new("/old/libLLVM.so.1"), Path::new("/new/libLLVM.so.2"));

        ensure_symlink(&link, old).expect("create");
        ensure_symlink(&link, new).expect("repoint");
        assert_eq!(fs::read_link(&link).expect("a link"), new);
        fs::remove_file(&link).expect("remove link");
        fs::write(&link, "not a link").expect("plain file");
        ensure_symlink(&link, new).expect("replace file");
        assert_eq!(fs::read_link(&link).expect("a link"), new);

        fs::remove_dir_all(&dir).expect("clean up");
    }
}
