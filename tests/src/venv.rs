//! A Python virtualenv under the build folder with packages installed by pip (Synapse, OCSF's
//! schema tools): made on first use, reused after.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};

/// Written last, holding the requirements: a virtualenv without it is incomplete.
const MARKER: &str = "vigie-installed";

/// A virtualenv with its packages installed.
#[derive(Debug)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The virtualenv at `<target>/NAME` with `requirements` installed, made again if missing
    /// or installed with other requirements. Test processes that get here at once take turns
    /// (an flock), so one installs.
    ///
    /// # Errors
    /// When `python3 -m venv` or `pip install` fails (the package index must be reachable the first time).
    pub fn ensure(name: &str, requirements: &[&str]) -> Result<Self> {
        let target = target_dir();
        let _lock = lock(&target, name)?;
        let venv = Self { dir: target.join(name) };
        let marker = venv.dir.join(MARKER);
        let wanted = requirements.join("\n");
        if fs::read_to_string(&marker).is_ok_and(|installed| installed == wanted) {
            return Ok(venv);
        }
        if venv.dir.exists() {
            fs::remove_dir_all(&venv.dir).with_context(|| format!("remove {}", venv.dir.display()))?;
        }
        eprintln!("installing {} into {} (once)", requirements.join(" "), venv.dir.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv.dir))
            .context("python3 -m venv (on Debian: apt-get install python3-venv)")?;
        venv.pip_install(requirements)?;
        fs::write(&marker, wanted)?;
        Ok(venv)
    }

    /// Installs `requirement` too unless it is there, taking turns like [`Venv::ensure`].
    ///
    /// # Errors
    /// When `pip install` fails.
    pub fn ensure_also(&self, requirement: &str) -> Result<()> {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _lock = lock(&target_dir(), &name)?;
        let marker = self.dir.join(format!("{MARKER}-{requirement}"));
        if marker.exists() {
            return Ok(());
        }
        self.pip_install(&[requirement])?;
        fs::write(&marker, requirement)?;
        Ok(())
    }

    fn pip_install(&self, requirements: &[&str]) -> Result<()> {
        run(Command::new(self.python())
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"])
            .args(requirements))
    }

    /// The virtualenv's interpreter (the homeserver's executable, and an attacker's too).
    #[must_use]
    pub fn python(&self) -> PathBuf {
        self.bin("python")
    }

    /// A script the virtualenv installed (`register_new_matrix_user`).
    #[must_use]
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

/// The lock test processes take turns on while installing into the virtualenv `name` (an
/// flock, released when dropped).
fn lock(target: &Path, name: &str) -> Result<File> {
    fs::create_dir_all(target).with_context(|| format!("create {}", target.display()))?;
    let lock_path = target.join(format!("{name}.lock"));
    let lock = File::create(&lock_path).with_context(|| format!("create {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("lock {}", lock_path.display()))?;
    Ok(lock)
}

/// The workspace's build folder: `$CARGO_TARGET_DIR`, else `target/` beside this crate.
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

fn run(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("start {}", command.get_program().to_string_lossy()))?;
    ensure!(
        output.status.success(),
        "{:?} failed ({}): {}",
        command,
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
