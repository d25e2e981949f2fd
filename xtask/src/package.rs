//! `cargo xtask package`: the Debian package, `target/package/vigie_VERSION_ARCH.deb`.
//!
//! The tree is staged by hand from `packaging/` and the release binary, then built by
//! `dpkg-deb`, which every Debian machine has: no packaging tool to install, nothing to drift.
//! The manual pages come from the binary's own command line (`vigie manual`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::build::{self, Profile};
use crate::command::{self, tool};
use crate::{bootstrap, workspace};

/// The configuration file, a conffile: an upgrade keeps the admin's edits.
const CONFIG: &str = "etc/vigie/vigie.toml";
/// Where dpkg-deb finds the control files.
const CONTROL_DIR: &str = "DEBIAN";

/// (file under `packaging/`, path in the package, mode).
const FILES: [(&str, &str, u32); 3] = [
    ("vigie.toml", CONFIG, 0o640),
    ("vigie.service", "lib/systemd/system/vigie.service", 0o644),
    ("debian/copyright", "usr/share/doc/vigie/copyright", 0o644),
];
/// Maintainer scripts under `packaging/debian/`.
const SCRIPTS: [&str; 3] = ["postinst", "prerm", "postrm"];
/// Directories the package owns, with their modes: the agent's state holds its journal.
const DIRECTORIES: [(&str, u32); 1] = [("var/lib/vigie", 0o700)];

/// Builds the release binary and the package; returns the `.deb`'s path.
pub fn run() -> Result<PathBuf> {
    bootstrap::toolchain()?;
    let vigie = build::vigie(Profile::Release)?;
    let packaging = workspace::root()?.join("packaging");
    let out = workspace::target_dir()?.join("package");
    let stage = out.join("root");
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("cannot clear {}", stage.display()))?;
    }

    let binary = install(&vigie, &stage.join("usr/sbin/vigie"), 0o755)?;
    command::run(tool("strip")?.arg("--strip-unneeded").arg(&binary))?;
    for (source, target, mode) in FILES {
        install(&packaging.join(source), &stage.join(target), mode)?;
    }
    for (dir, mode) in DIRECTORIES {
        make_dir(&stage.join(dir), mode)?;
    }
    let man = stage.join("usr/share/man/man8");
    make_dir(&man, 0o755)?;
    let changelog =
        fs::read_to_string(packaging.join("debian/changelog")).context("reading the changelog")?;
    command::run(Command::new(&binary).args(["manual", "--date", &release_date(&changelog)?]).arg(&man))?;
    let doc = stage.join("usr/share/doc/vigie");
    install(&packaging.join("debian/changelog"), &doc.join("changelog"), 0o644)?;
    gzip_all(&[man.as_path(), doc.join("changelog").as_path()])?;

    let control = stage.join(CONTROL_DIR);
    make_dir(&control, 0o755)?;
    for script in SCRIPTS {
        install(&packaging.join("debian").join(script), &control.join(script), 0o755)?;
    }
    write(&control.join("conffiles"), &format!("/{CONFIG}\n"), 0o644)?;
    let installed_kib = md5sums(&stage)?;
    let version = version(&binary)?;
    let architecture = command::output(tool("dpkg")?.arg("--print-architecture"))?;
    let fields = format!(
        "Version: {version}\nArchitecture: {architecture}\nInstalled-Size: {}\nDepends: libc6 (>= {}), libgcc-s1, init-system-helpers\n",
        installed_kib,
        glibc_floor(&binary)?,
    );
    let template =
        fs::read_to_string(packaging.join("debian/control")).context("reading packaging/debian/control")?;
    let (head, description) =
        template.split_once("Description:").context("packaging/debian/control has no Description")?;
    write(&control.join("control"), &format!("{head}{fields}Description:{description}"), 0o644)?;

    let deb = out.join(format!("vigie_{version}_{architecture}.deb"));
    command::run(tool("dpkg-deb")?.args(["--root-owner-group", "--build"]).arg(&stage).arg(&deb))?;
    eprintln!("[package] built {}", deb.display());
    Ok(deb)
}

/// Copies `source` to `target` with `mode`, creating the directories above it.
fn install(source: &Path, target: &Path, mode: u32) -> Result<PathBuf> {
    if let Some(parent) = target.parent() {
        make_dir(parent, 0o755)?;
    }
    fs::copy(source, target)
        .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
    set_mode(target, mode)?;
    Ok(target.to_owned())
}

fn write(target: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(target, text).with_context(|| format!("writing {}", target.display()))?;
    set_mode(target, mode)
}

/// `dir` and its parents, `dir` itself with `mode`.
fn make_dir(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(dir, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", path.display()))
}

/// Compresses each file, and each file of each directory, as Debian wants: `gzip -9n`.
fn gzip_all(paths: &[&Path]) -> Result<()> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            for entry in fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
                files.push(entry?.path());
            }
        } else {
            files.push(path.to_path_buf());
        }
    }
    command::run(tool("gzip")?.arg("-9n").args(&files))
}

/// The latest release's date in the changelog's trailer (` -- NAME <MAIL>  Tue, 01 Dec 2026
/// 18:00:00 +0000`), as `01 Dec 2026`: the manual pages carry it.
fn release_date(changelog: &str) -> Result<String> {
    let trailer =
        changelog.lines().find(|line| line.starts_with(" -- ")).context("the changelog has no trailer")?;
    let (_, date) = trailer.split_once(">  ").context("the changelog's trailer has no date")?;
    match date.split_whitespace().collect::<Vec<_>>()[..] {
        [_, day, month, year, ..] => Ok(format!("{day} {month} {year}")),
        _ => bail!("unexpected changelog date {date:?}"),
    }
}

/// `0.1.0` from `vigie --version` (`vigie 0.1.0`): the version is the binary's own.
fn version(binary: &Path) -> Result<String> {
    let text = command::output(Command::new(binary).arg("--version"))?;
    match text.split_whitespace().collect::<Vec<_>>()[..] {
        ["vigie", version] => Ok(version.to_owned()),
        _ => bail!("unexpected `vigie --version` output {text:?}"),
    }
}

/// The newest glibc symbol version the binary needs (`2.34`), the least libc6 it runs on.
fn glibc_floor(binary: &Path) -> Result<String> {
    let symbols = command::output(tool("objdump")?.arg("-T").arg(binary))?;
    let parse = |v: &str| v.split('.').map(|n| n.parse().unwrap_or(0)).collect::<Vec<u32>>();
    symbols
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .max_by_key(|v| parse(v))
        .map(str::to_owned)
        .context("the binary names no glibc symbol version")
}

/// `DEBIAN/md5sums` (every file but the conffile, whose sum dpkg keeps itself); returns the
/// files' size in KiB, as `Installed-Size` counts it.
fn md5sums(stage: &Path) -> Result<u64> {
    let mut files = Vec::new();
    collect_files(stage, stage, &mut files)?;
    files.retain(|f| !f.starts_with(CONTROL_DIR));
    let mut bytes = 0;
    for file in &files {
        bytes += fs::metadata(stage.join(file))?.len().div_ceil(1024) * 1024;
    }
    files.retain(|f| f != Path::new(CONFIG));
    let sums = command::output(tool("md5sum")?.current_dir(stage).args(&files))?;
    write(&stage.join(CONTROL_DIR).join("md5sums"), &format!("{sums}\n"), 0o644)?;
    Ok(bytes.div_ceil(1024))
}

/// The regular files under `dir`, relative to `root`.
fn collect_files(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(root, &path, files)?;
        } else {
            files.push(path.strip_prefix(root)?.to_owned());
        }
    }
    files.sort();
    Ok(())
}
