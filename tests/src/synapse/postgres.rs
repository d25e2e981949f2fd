//! A Postgres server for the homeserver, as a real deployment keeps it: Debian's binaries,
//! a cluster `initdb` makes as the `postgres` user in a temporary directory, listening on a
//! unix socket there and on a loopback port, with a `synapse` role and a database of the
//! encoding and collation Synapse requires. Stopped (and its files removed) when dropped;
//! it dies with the test process if that is killed (`PR_SET_PDEATHSIG`).

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tempfile::TempDir;

use super::child;

/// Where Debian installs each major version's server binaries.
const DEBIAN_BINARIES: &str = "/usr/lib/postgresql";
/// The role the homeserver uses.
pub const ROLE: &str = "synapse";
/// The database the homeserver uses.
const DATABASE: &str = "synapse";
/// A cluster starts in well under a second here; CI machines are slower.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const READY_POLL: Duration = Duration::from_millis(50);

/// A running Postgres server.
pub struct Postgres {
    child: Child,
    bin: PathBuf,
    data: PathBuf,
    /// The directory of its unix socket (`.s.PGSQL.PORT`).
    pub socket_dir: PathBuf,
    /// Its port, on the socket and on 127.0.0.1.
    pub port: u16,
    /// How long `initdb`, the start and the database's creation took.
    pub start_time: Duration,
    _dir: TempDir,
}

impl Postgres {
    /// The database the homeserver uses.
    pub const DATABASE: &'static str = DATABASE;

    /// Makes a cluster and starts its server.
    ///
    /// The server is killed if the thread that started it ends (`PR_SET_PDEATHSIG`), so start
    /// it from a thread that lives as long as the test process.
    ///
    /// # Errors
    /// When Postgres is not installed (`apt-get install postgresql`), or the cluster cannot
    /// be made or does not accept connections in time.
    pub fn start() -> Result<Self> {
        let started = Instant::now();
        let bin = binaries()?;
        let (uid, gid) = postgres_user()?;
        let dir = tempfile::Builder::new().prefix("vigie-pg-").tempdir()?;
        // The server runs as `postgres`, which must reach its data and socket directories.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let (data, socket_dir) = (dir.path().join("data"), dir.path().join("socket"));
        for owned in [&data, &socket_dir] {
            fs::create_dir(owned)?;
            chown(owned, Some(uid), Some(gid))?;
        }
        run(Command::new(bin.join("initdb")).uid(uid).gid(gid).arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]))
        .context("initdb")?;
        let port = super::homeserver::free_port()?;
        let child = spawn_server(&bin, dir.path(), &data, &socket_dir, port)?;
        let mut server = Self { child, bin, data, socket_dir, port, start_time: Duration::ZERO, _dir: dir };
        server.wait_until_ready()?;
        server.psql_as_superuser("postgres", &format!("CREATE ROLE {ROLE} LOGIN"))?;
        server.psql_as_superuser("postgres", &format!(
            "CREATE DATABASE {DATABASE} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0 OWNER {ROLE}"
        ))?;
        server.start_time = started.elapsed();
        Ok(server)
    }

    /// Stops the server and starts it again on the same cluster, socket and port: another
    /// postmaster, whose pid [`Postgres::pid`] gives from now on.
    ///
    /// # Errors
    /// When it does not start again, or does not accept connections in time.
    pub fn restart(&mut self) -> Result<()> {
        child::stop(&mut self.child, libc::SIGINT, STOP_TIMEOUT);
        let dir = self.data.parent().context("the cluster has no directory")?.to_owned();
        self.child = spawn_server(&self.bin, &dir, &self.data, &self.socket_dir, self.port)?;
        self.wait_until_ready()
    }

    /// The postmaster's pid: the listener of the socket.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The unix socket the server listens on.
    #[must_use]
    pub fn socket(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// `psql`, from the server's own binaries.
    #[must_use]
    pub fn psql(&self) -> PathBuf {
        self.bin.join("psql")
    }

    /// `su postgres -c "psql … -Atc 'SQL'"` over the socket, into the homeserver's database: a
    /// DBA's command line, or a root attacker's.
    #[must_use]
    pub fn su_psql(&self, sql: &str) -> String {
        self.su_psql_via(&self.socket_dir.display().to_string(), sql)
    }

    /// [`Postgres::su_psql`] through `host`: the socket directory, or `127.0.0.1` for TCP.
    #[must_use]
    pub fn su_psql_via(&self, host: &str, sql: &str) -> String {
        format!(
            "su postgres -c \"{} -h {host} -p {} -d {DATABASE} -Atc '{sql}'\"",
            self.psql().display(),
            self.port
        )
    }

    /// The homeserver's `database` setting: psycopg2 over the unix socket.
    #[must_use]
    pub fn homeserver_setting(&self) -> String {
        format!(
            "database:\n  name: psycopg2\n  args:\n    user: {ROLE}\n    dbname: {DATABASE}\n    host: {}\n    \
             port: {}\n    cp_min: 1\n    cp_max: 5\n",
            self.socket_dir.display(),
            self.port
        )
    }

    /// Runs `sql` as the `postgres` superuser in the homeserver's database (an admin's
    /// change); its output is not read.
    ///
    /// # Errors
    /// When `psql` fails.
    pub fn admin_sql(&self, sql: &str) -> Result<()> {
        self.psql_as_superuser(DATABASE, sql)
    }

    /// Runs `sql` as the `postgres` superuser over the socket in `database`; its output is not read.
    fn psql_as_superuser(&self, database: &str, sql: &str) -> Result<()> {
        let (uid, gid) = postgres_user()?;
        run(Command::new(self.psql()).uid(uid).gid(gid).arg("-h").arg(&self.socket_dir).args([
            "-p",
            &self.port.to_string(),
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ]))
        .with_context(|| format!("psql {sql:?}"))
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .arg("-h")
                .arg(&self.socket_dir)
                .args(["-p", &self.port.to_string(), "-q"])
                .status()?;
            if ready.success() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("postgres exited ({status}) while starting");
            }
            ensure!(
                Instant::now() < deadline,
                "postgres did not accept connections within {START_TIMEOUT:?}"
            );
            thread::sleep(READY_POLL);
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: a fast shutdown.
        child::stop(&mut self.child, libc::SIGINT, STOP_TIMEOUT);
    }
}

/// Starts the server of cluster `data` on `socket_dir` and `port`, logging into `dir`.
fn spawn_server(bin: &Path, dir: &Path, data: &Path, socket_dir: &Path, port: u16) -> Result<Child> {
    let (uid, gid) = postgres_user()?;
    let log_path = dir.join("postgres.log");
    let log = fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    chown(&log_path, Some(uid), Some(gid))?;
    let mut command = Command::new(bin.join("postgres"));
    command
        .uid(uid)
        .gid(gid)
        .arg("-D")
        .arg(data)
        .arg("-k")
        .arg(socket_dir)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    child::dies_with_its_parent(&mut command);
    command.spawn().context("start postgres")
}

/// The newest major version's binaries under [`DEBIAN_BINARIES`].
fn binaries() -> Result<PathBuf> {
    let versions = fs::read_dir(DEBIAN_BINARIES)
        .with_context(|| format!("{DEBIAN_BINARIES}: is Postgres installed? (apt-get install postgresql)"))?;
    let mut found: Vec<(u32, PathBuf)> = versions
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).with_context(|| format!("no server binaries under {DEBIAN_BINARIES}"))
}

/// The uid and gid of the `postgres` user the Debian package makes.
fn postgres_user() -> Result<(u32, u32)> {
    let name = CString::new("postgres")?;
    // SAFETY: getpwnam returns null or a pointer to a static record, read at once.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    ensure!(!entry.is_null(), "no postgres user (apt-get install postgresql)");
    // SAFETY: non-null, as checked.
    Ok(unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
}

fn run(command: &mut Command) -> Result<()> {
    let output = command.stdin(Stdio::null()).stdout(Stdio::null()).output()?;
    ensure!(
        output.status.success(),
        "{} failed ({}): {}",
        Path::new(command.get_program()).display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
