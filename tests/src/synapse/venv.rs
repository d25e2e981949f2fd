//! Synapse installed by pip in a virtualenv under the build folder: made on first use, reused after.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};

/// What is installed; a change here makes a new virtualenv. `url-preview` brings lxml.
pub const SYNAPSE_REQUIREMENT: &str = "matrix-synapse[url-preview]==1.163.2";
/// Written last, holding [`SYNAPSE_REQUIREMENT`]: a virtualenv without it is incomplete.
const MARKER: &str = "vigie-installed";
/// The Postgres driver Synapse's `psycopg2` database uses; installed on first use.
pub const PSYCOPG2_REQUIREMENT: &str = "psycopg2-binary==2.9.10";
/// Written once [`PSYCOPG2_REQUIREMENT`] is installed, holding it.
const PSYCOPG2_MARKER: &str = "vigie-installed-psycopg2";

/// A virtualenv with Synapse installed.
#[derive(Debug)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The virtualenv at `<target>/synapse-venv`, installed if missing or of another version.
    /// Test processes that get here at once take turns (an flock), so one installs.
    ///
    /// # Errors
    /// When `python3 -m venv` or `pip install` fails (the package index must be reachable the first time).
    pub fn ensure() -> Result<Self> {
        let target = target_dir();
        let _lock = lock(&target)?;
        let venv = Self { dir: target.join("synapse-venv") };
        let marker = venv.dir.join(MARKER);
        if fs::read_to_string(&marker).is_ok_and(|installed| installed == SYNAPSE_REQUIREMENT) {
            return Ok(venv);
        }
        if venv.dir.exists() {
            fs::remove_dir_all(&venv.dir).with_context(|| format!("remove {}", venv.dir.display()))?;
        }
        eprintln!("installing {SYNAPSE_REQUIREMENT} into {} (once)", venv.dir.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv.dir))
            .context("python3 -m venv (on Debian: apt-get install python3-venv)")?;
        venv.pip_install(SYNAPSE_REQUIREMENT)?;
        fs::write(&marker, SYNAPSE_REQUIREMENT)?;
        Ok(venv)
    }

    /// Installs the Postgres driver unless it is there, taking turns like [`Venv::ensure`].
    ///
    /// # Errors
    /// When `pip install` fails.
    pub fn ensure_postgres_driver(&self) -> Result<()> {
        let _lock = lock(&target_dir())?;
        let marker = self.dir.join(PSYCOPG2_MARKER);
        if fs::read_to_string(&marker).is_ok_and(|installed| installed == PSYCOPG2_REQUIREMENT) {
            return Ok(());
        }
        self.pip_install(PSYCOPG2_REQUIREMENT)?;
        fs::write(&marker, PSYCOPG2_REQUIREMENT)?;
        Ok(())
    }

    fn pip_install(&self, requirement: &str) -> Result<()> {
        run(Command::new(self.python()).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            requirement,
        ]))
    }

    /// The virtualenv's interpreter: the homeserver's executable, and an attacker's too.
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

/// The lock test processes take turns on while installing into the virtualenv (an flock,
/// released when dropped).
fn lock(target: &Path) -> Result<File> {
    fs::create_dir_all(target).with_context(|| format!("create {}", target.display()))?;
    let lock_path = target.join("synapse-venv.lock");
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
