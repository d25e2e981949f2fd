//! A real Matrix homeserver under Vigie's watch, shared by the Synapse scenarios.
//!
//! Built once per test process, in this order, so that the homeserver's whole life is seen:
//! a [`Lab`] (namespace host, barrier), Synapse installed by pip ([`Venv`]), a freshly generated
//! homeserver ([`HomeserverFiles`]), Vigie with `--profile matrix-synapse --synapse-config`,
//! then the homeserver itself, an admin registered with `register_new_matrix_user`, and a
//! barrier. Scenarios take turns ([`SynapseLab::shared`] holds a lock) so that each can
//! read "its" lines of the one sensor. Everything is torn down when the process exits, also
//! after failures (`atexit`); the homeserver and the site also die with the process if it is
//! killed (`PR_SET_PDEATHSIG`).

mod child;
mod client;
mod homeserver;
mod postgres;
mod preview_site;

use std::fs;
use std::io::Write as _;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::thread;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;

pub use crate::venv::Venv;
pub use client::{encode, Client, Response};
pub use homeserver::{Homeserver, HomeserverFiles, LEAK_PATH, SERVER_NAME};
pub use postgres::Postgres;
pub use preview_site::{PreviewSite, INDEX_TITLE, KNOWN_GAP_TITLE};

use crate::{alert, Lab, Sensor};

/// What the Synapse virtualenv holds; a change here makes a new one. `url-preview` brings lxml.
pub const SYNAPSE_REQUIREMENT: &str = "matrix-synapse[url-preview]==1.163.2";
/// The virtualenv's folder under the build folder.
const SYNAPSE_VENV: &str = "synapse-venv";
/// The Postgres driver Synapse's `psycopg2` database uses; installed on first use.
const PSYCOPG2_REQUIREMENT: &str = "psycopg2-binary==2.9.10";

/// The admin the fixture registers.
pub const ADMIN: &str = "admin";

/// Where the homeserver keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// `homeserver.db`, the generated config's.
    Sqlite,
    /// A [`Postgres`] server the lab starts before the sensor.
    Postgres,
}

/// The shared world. Fields drop in order: the homeserver first, the lab (and its namespace)
/// last.
pub struct SynapseLab {
    pub homeserver: Homeserver,
    /// The database server, for a [`Database::Postgres`] lab.
    pub postgres: Option<Postgres>,
    pub site: PreviewSite,
    pub admin: Client,
    admin_password: String,
    pub sensor: Sensor,
    pub files: HomeserverFiles,
    pub venv: Venv,
    pub lab: Lab,
    /// How many lines the sensor had printed once the homeserver served, the admin was
    /// registered and a barrier had passed: the start-up's lines.
    pub startup_lines: usize,
    /// The pid of `register_new_matrix_user`.
    pub register_pid: u32,
}

type Shared = Mutex<Option<Result<SynapseLab, String>>>;

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Exclusive use of the shared [`SynapseLab`] for one scenario.
pub struct SharedLab {
    guard: MutexGuard<'static, Option<Result<SynapseLab, String>>>,
}

impl Deref for SharedLab {
    type Target = SynapseLab;

    fn deref(&self) -> &SynapseLab {
        match &*self.guard {
            Some(Ok(lab)) => lab,
            _ => unreachable!("SharedLab is only made around a started lab"),
        }
    }
}

impl SynapseLab {
    /// The shared lab, started on first use (pass [`crate::actor_exe!`]), for this scenario
    /// alone until the returned value is dropped.
    ///
    /// # Errors
    /// When the lab could not be started (every scenario then fails with that reason).
    pub fn shared(actor_exe: &str) -> Result<SharedLab> {
        Self::shared_with(actor_exe, Database::Sqlite)
    }

    /// [`SynapseLab::shared`], the homeserver keeping its data in `database` (one kind per
    /// test process: the first call decides).
    ///
    /// # Errors
    /// When the lab could not be started.
    pub fn shared_with(actor_exe: &str, database: Database) -> Result<SharedLab> {
        let shared = SHARED.get_or_init(|| {
            // SAFETY: registers a plain function to run at exit.
            unsafe { libc::atexit(tear_down) };
            Mutex::new(Some(start_on_keeper_thread(PathBuf::from(actor_exe), database)))
        });
        let guard = shared.lock().unwrap_or_else(PoisonError::into_inner);
        match &*guard {
            Some(Ok(_)) => Ok(SharedLab { guard }),
            Some(Err(reason)) => Err(anyhow!("the Synapse lab did not start: {reason}")),
            None => Err(anyhow!("the Synapse lab was torn down")),
        }
    }

    fn start(actor_exe: &Path, database: Database) -> Result<Self> {
        let venv = Venv::ensure(SYNAPSE_VENV, &[SYNAPSE_REQUIREMENT])?;
        let lab = Lab::new(actor_exe)?;
        let files = HomeserverFiles::generate(&venv, &lab.dir().join("synapse"), lab.remote().ipv4())?;
        // Before the sensor, which finds the server's processes at start.
        let postgres = match database {
            Database::Sqlite => None,
            Database::Postgres => Some(start_postgres(&venv, &files)?),
        };
        let sensor = lab.sensor_with(&[
            "--profile".as_ref(),
            "matrix-synapse".as_ref(),
            "--synapse-config".as_ref(),
            files.config.as_os_str(),
            "--synapse-config".as_ref(),
            files.conf_d.as_os_str(),
        ])?;
        let site = PreviewSite::start(&venv.python(), lab.remote(), &lab.dir().join("site"))?;
        let homeserver = Homeserver::start(&venv, &files).context("start Synapse")?;
        let admin_password = homeserver::random_hex()?;
        let register_pid = homeserver::register_admin(&venv, &files, ADMIN, &admin_password)?;
        let admin = Client::login(files.addr(), ADMIN, &admin_password)?;
        lab.barrier(&sensor).context("barrier after the homeserver's start")?;
        let startup_lines = sensor.lines().len();
        Ok(Self {
            homeserver,
            postgres,
            site,
            admin,
            admin_password,
            sensor,
            files,
            venv,
            lab,
            startup_lines,
            register_pid,
        })
    }

    /// Logs the admin in again (a new device, a new token in the database).
    ///
    /// # Errors
    /// When the homeserver refuses.
    pub fn login_admin(&self) -> Result<Client> {
        Client::login(self.files.addr(), ADMIN, &self.admin_password)
    }

    /// Passes a barrier, then fails if an alert came since line `start` of the sensor's output,
    /// or a line of the start-up or since `start` is about the homeserver other than its
    /// allowed reads (`secret-read-allowed`, once per secret): trusted, it takes in nothing
    /// (the probes put on its TLS code are no event of its).
    ///
    /// # Errors
    /// When the barrier fails, or either was printed.
    pub fn assert_quiet_since(&self, start: usize) -> Result<()> {
        self.lab.barrier(&self.sensor)?;
        let lines = self.sensor.lines();
        let alerts = self.alerts_in(&lines[start..]);
        ensure!(alerts.is_empty(), "alerts during normal operation: {alerts:#?}");
        let synapse_pid = self.homeserver.pid();
        let (allowed, about_synapse): (Vec<&Value>, Vec<&Value>) = lines[..self.startup_lines.min(start)]
            .iter()
            .chain(&lines[start..])
            .filter(|l| involves(l, synapse_pid))
            .partition(|l| alert::is_allowed_read_by(synapse_pid)(l));
        ensure!(
            about_synapse.is_empty(),
            "lines about the homeserver (pid {synapse_pid}): {about_synapse:#?}"
        );
        let secrets: Vec<Option<&str>> = allowed.iter().map(|l| text(l, "/vigie/secret/name")).collect();
        let distinct: std::collections::BTreeSet<_> = secrets.iter().collect();
        ensure!(distinct.len() == secrets.len(), "allowed reads reported more than once: {allowed:#?}");
        Ok(())
    }

    /// Where a scenario's window of lines opens: after a barrier, so that what earlier
    /// scenarios' processes did (a late confirmation of their alerts among it) is reported
    /// before it.
    ///
    /// # Errors
    /// When the barrier fails.
    pub fn window_start(&self) -> Result<usize> {
        self.lab.barrier(&self.sensor)?;
        Ok(self.sensor.lines().len())
    }

    /// Alerts among `lines`, leaving out the barrier's control actor.
    #[must_use]
    pub fn alerts_in(&self, lines: &[Value]) -> Vec<Value> {
        let control = self.lab.dir().join("control-actor");
        lines
            .iter()
            .filter(|line| alert::is_exfiltration(line))
            .filter(|line| text(line, "/process/executable") != control.to_str())
            .cloned()
            .collect()
    }
}

/// A Postgres server for the homeserver of `files`, which `conf.d` points at it, and the
/// driver in its virtualenv.
fn start_postgres(venv: &Venv, files: &HomeserverFiles) -> Result<Postgres> {
    venv.ensure_also(PSYCOPG2_REQUIREMENT)?;
    let postgres = Postgres::start()?;
    let mut overrides = fs::OpenOptions::new().append(true).open(&files.overrides)?;
    overrides.write_all(postgres.homeserver_setting().as_bytes())?;
    eprintln!("postgres started in {:?}", postgres.start_time);
    Ok(postgres)
}

/// Builds the lab on a thread that never ends, so that children it starts with
/// `PR_SET_PDEATHSIG` die with the process rather than with a test's thread.
fn start_on_keeper_thread(actor_exe: PathBuf, database: Database) -> Result<SynapseLab, String> {
    let (started, result) = mpsc::channel();
    let keeper = thread::Builder::new().name("synapse-lab".into()).spawn(move || {
        let _ = started.send(SynapseLab::start(&actor_exe, database).map_err(|e| format!("{e:#}")));
        loop {
            thread::park();
        }
    });
    match keeper {
        Ok(_) => result.recv().unwrap_or_else(|_| Err("the lab's thread ended".to_owned())),
        Err(error) => Err(format!("spawn the lab's thread: {error}")),
    }
}

/// Stops the homeserver, the site and the sensor and removes the namespace and files.
extern "C" fn tear_down() {
    let Some(shared) = SHARED.get() else { return };
    let lab = match shared.try_lock() {
        Ok(mut guard) => guard.take(),
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
        // A scenario still runs (the process is exiting under it): PDEATHSIG will do.
        Err(TryLockError::WouldBlock) => None,
    };
    drop(lab);
}

/// The string at `pointer`.
#[must_use]
pub fn text<'a>(line: &'a Value, pointer: &str) -> Option<&'a str> {
    line.pointer(pointer).and_then(Value::as_str)
}

/// The number at `pointer`, as a pid.
#[must_use]
pub fn pid_at(line: &Value, pointer: &str) -> Option<u32> {
    u32::try_from(line.pointer(pointer)?.as_u64()?).ok()
}

/// A `secret-read` line of `pid` naming `path`.
pub fn is_secret_read(pid: u32, path: &Path) -> impl Fn(&Value) -> bool + '_ {
    move |line| {
        text(line, "/event/action") == Some("secret-read")
            && pid_at(line, "/process/pid") == Some(pid)
            && text(line, "/file/path") == path.to_str()
    }
}

/// Whether `line` (any kind) is about `pid`: as the process, its origin, or an ancestor.
#[must_use]
pub fn involves(line: &Value, pid: u32) -> bool {
    pid_at(line, "/process/pid") == Some(pid)
        || pid_at(line, "/vigie/origin/pid") == Some(pid)
        || alert::ancestry_pids(line).contains(&pid)
}
