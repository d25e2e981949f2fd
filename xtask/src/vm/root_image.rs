//! The guest's root: a busybox initramfs holding the agent, the actor, the in-guest suite,
//! iproute2's `ip` (busybox's has no `netns`), the shared libraries `ldd` lists for each, the
//! kernel modules the guest loads and `/init`. Built under `<target>/vm/<kernel>/` and rebuilt
//! only when an input changes (a binary, a module, the init script, the script to run).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::kernel_package::KernelFiles;
use super::{modules, say};
use crate::command::{self, tool};

/// PID 1 of the guest.
const INIT: &str = include_str!("guest_init.sh");
/// The folders the init script mounts on or writes to.
const DIRS: &[&str] = &[
    "bin",
    "usr/bin",
    "dev",
    "proc",
    "sys",
    "run",
    "tmp",
    "lab",
    "etc/vigie-vm",
    "lib/modules/vigie-vm",
    "var",
];
/// Users and groups the agent and `ip` may look up.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// What goes into the image besides the kernel's modules.
pub struct Contents {
    /// busybox, a static build (`busybox-static`).
    pub busybox: PathBuf,
    /// (file, name): installed as `/usr/bin/<name>`, stripped of debug info, with their
    /// libraries: the agent, the actor, the suite, `ip`.
    pub programs: Vec<(PathBuf, &'static str)>,
    /// Installed as `/etc/vigie-vm/script.sh`, run instead of the suite (`vigie.mode=script`).
    pub script: Option<PathBuf>,
}

/// The initramfs for `kernel` holding `contents`, at `<dir>/initramfs.cpio`; reused when
/// its inputs are those of the last build.
pub fn ensure(dir: &Path, kernel: &KernelFiles, contents: &Contents) -> Result<PathBuf> {
    let image = dir.join("initramfs.cpio");
    let modules = modules::load_order(&kernel.modules, modules::WANTED)?;
    let mut inputs: Vec<&Path> = vec![&contents.busybox];
    inputs.extend(contents.programs.iter().map(|(file, _)| file.as_path()));
    inputs.extend(contents.script.as_deref());
    inputs.extend(modules.iter().map(|module| module.file.as_path()));
    let names: Vec<&str> = contents.programs.iter().map(|(_, name)| *name).collect();
    let fingerprint = fingerprint(&inputs, &names)?;
    let stamp = dir.join("initramfs.inputs");
    if image.is_file() && fs::read_to_string(&stamp).is_ok_and(|old| old == fingerprint) {
        say(&format!("root image: {} (inputs unchanged)", image.display()));
        return Ok(image);
    }
    let began = Instant::now();
    let stage = dir.join("root");
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("cannot remove {}", stage.display()))?;
    }
    stage_root(&stage, kernel, contents, &modules)?;
    pack(&stage, &image)?;
    fs::remove_dir_all(&stage).with_context(|| format!("cannot remove {}", stage.display()))?;
    fs::write(&stamp, fingerprint).with_context(|| format!("cannot write {}", stamp.display()))?;
    let size = fs::metadata(&image)?.len();
    say(&format!(
        "root image: built {} ({} MiB) in {:.1} s",
        image.display(),
        size >> 20,
        began.elapsed().as_secs_f64()
    ));
    Ok(image)
}

fn stage_root(
    stage: &Path,
    kernel: &KernelFiles,
    contents: &Contents,
    modules: &[modules::Module],
) -> Result<()> {
    for dir in DIRS {
        fs::create_dir_all(stage.join(dir)).with_context(|| format!("cannot create {dir} in the image"))?;
    }
    std::os::unix::fs::symlink("../run", stage.join("var/run")).context("link /var/run in the image")?;
    write(stage, "init", INIT, 0o755)?;
    write(stage, "etc/passwd", PASSWD, 0o644)?;
    write(stage, "etc/group", GROUP, 0o644)?;
    copy_with_libraries(&contents.busybox, &stage.join("bin/busybox"), stage, false)?;
    for (program, name) in &contents.programs {
        copy_with_libraries(program, &stage.join("usr/bin").join(name), stage, true)?;
    }
    if let Some(script) = &contents.script {
        fs::copy(script, stage.join("etc/vigie-vm/script.sh"))
            .with_context(|| format!("cannot copy {}", script.display()))?;
    }
    let mut order = String::new();
    for module in modules {
        modules::copy_plain(module, &stage.join("lib/modules/vigie-vm").join(format!("{}.ko", module.name)))?;
        writeln!(order, "{}", module.name)?;
    }
    write(stage, "etc/vigie-vm/modules", &order, 0o644)?;
    write(stage, "etc/vigie-vm/kernel", &format!("{}\n", kernel.package), 0o644)
}

/// Copies `program` to `target` (without its debug info when `strip`), and each shared library
/// `ldd` lists for it, the loader included, to the same path under `stage`.
fn copy_with_libraries(program: &Path, target: &Path, stage: &Path, strip: bool) -> Result<()> {
    if strip {
        command::run(tool("strip")?.arg("--strip-debug").arg("-o").arg(target).arg(program))?;
    } else {
        fs::copy(program, target).with_context(|| format!("cannot copy {}", program.display()))?;
    }
    for library in libraries(program)? {
        let relative = library.strip_prefix("/").context("ldd lists absolute paths")?;
        let copy = stage.join(relative);
        if copy.exists() {
            continue;
        }
        fs::create_dir_all(copy.parent().context("a library path has a folder")?)?;
        fs::copy(&library, &copy).with_context(|| format!("cannot copy {}", library.display()))?;
    }
    Ok(())
}

/// The files `ldd program` resolves; none for a static program.
fn libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let output = tool("ldd")?
        .arg(program)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run ldd on {}", program.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&output.stderr).contains("not a dynamic")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", program.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(ldd_paths(&text))
}

/// `libc.so.6 => /lib/…/libc.so.6 (0x…)` and `/lib64/ld-linux-x86-64.so.2 (0x…)` → the paths.
fn ldd_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let resolved = line.split_once("=>").map_or(line, |(_, right)| right).trim();
            let path = resolved.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// `stage` as an uncompressed newc cpio archive (the kernel unpacks it without a
/// decompressor, faster under TCG than gzip), by busybox's `cpio`.
fn pack(stage: &Path, image: &Path) -> Result<()> {
    let mut names = Vec::new();
    list(stage, Path::new("."), &mut names)?;
    let archive = fs::File::create(image).with_context(|| format!("cannot create {}", image.display()))?;
    let mut cpio = Command::new(busybox_on_host()?);
    cpio.args(["cpio", "-o", "-H", "newc"])
        .current_dir(stage)
        .stdin(Stdio::piped())
        .stdout(archive)
        .stderr(Stdio::null());
    let mut child = cpio.spawn().context("cannot start busybox cpio")?;
    let mut stdin = child.stdin.take().context("cpio's stdin")?;
    for name in &names {
        writeln!(stdin, "{}", name.display())?;
    }
    drop(stdin);
    let status = child.wait()?;
    if !status.success() {
        bail!("busybox cpio failed ({status}) packing {}", stage.display());
    }
    Ok(())
}

/// Every path under `stage/dir`, relative to `stage`, sorted so that archives are the same
/// from one build to the next.
fn list(stage: &Path, dir: &Path, names: &mut Vec<PathBuf>) -> Result<()> {
    names.push(dir.to_path_buf());
    let mut entries: Vec<_> = fs::read_dir(stage.join(dir))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let relative = dir.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            list(stage, &relative, names)?;
        } else {
            names.push(relative);
        }
    }
    Ok(())
}

fn busybox_on_host() -> Result<PathBuf> {
    crate::bootstrap::find_command("busybox")?
        .context("busybox is not installed (cargo xtask bootstrap installs it)")
}

/// The inputs' paths, sizes and modification times, the names programs are installed by and
/// the init script: equal fingerprints mean the image would come out the same.
fn fingerprint(inputs: &[&Path], names: &[&str]) -> Result<String> {
    let mut text = format!("{INIT}\ninstalled as: {}\n", names.join(" "));
    for input in inputs {
        let meta = fs::metadata(input).with_context(|| format!("cannot stat {}", input.display()))?;
        writeln!(text, "{} {} {}.{}", input.display(), meta.len(), meta.mtime(), meta.mtime_nsec())?;
    }
    Ok(text)
}

fn write(stage: &Path, relative: &str, text: &str, mode: u32) -> Result<()> {
    let path = stage.join(relative);
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::ldd_paths;

    #[test]
    fn ldd_lines_give_the_libraries_and_the_loader() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffc)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f8c)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f8d)\n";
        let expected =
            [PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")];
        assert_eq!(ldd_paths(ldd), expected);
    }
}
