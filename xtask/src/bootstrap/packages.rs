//! Commands the integration tests run, installed from Debian when missing.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Result};

use super::say;
use crate::command::{self, tool};

/// (command the tests or the bench run, Debian package that provides it). Add new tools here.
const REQUIRED_COMMANDS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("curl", "curl"),
    ("socat", "socat"),
    ("python3", "python3"),
    ("bpftool", "bpftool"),
    // The self-protection suite: a foreign program on a hook the agent uses.
    ("bpftrace", "bpftrace"),
    // The Synapse scenarios: an attacker's tool of choice for homeserver.db.
    ("sqlite3", "sqlite3"),
    // The Postgres-backed homeserver (synapse_postgres): Debian's server, whose binaries the
    // harness finds under /usr/lib/postgresql (off PATH: postgresql-common's tool stands for
    // them), and psql.
    ("pg_createcluster", "postgresql"),
    ("psql", "postgresql"),
    // The ECS definitions the document tests check against come from npm.
    ("node", "nodejs"),
    ("npm", "npm"),
    ("tar", "tar"),
    // The bench's neighbour workload: a web server and its load generator, on loopback.
    ("nginx", "nginx-light"),
    ("wrk", "wrk"),
    ("taskset", "util-linux"),
    // An allowed reader under ptrace is not allowed.
    ("strace", "strace"),
    // The metrics suite: Prometheus scrapes the agent on loopback.
    ("prometheus", "prometheus"),
    // The syslog sink's daemon, started by the sinks suite on loopback.
    ("rsyslogd", "rsyslog"),
    // `cargo xtask package` and the package suite: the .deb is built by dpkg-deb from a
    // stripped binary; the unit is checked by systemd-analyze (with its man pages) in a mount
    // namespace, and the agent run under the unit's bounding set by setpriv.
    ("dpkg-deb", "dpkg"),
    ("strip", "binutils"),
    ("objdump", "binutils"),
    ("systemd-analyze", "systemd"),
    ("man", "man-db"),
    ("setpriv", "util-linux"),
    ("unshare", "util-linux"),
    // The package suite boots this host's tree in a container to run the unit under systemd.
    ("systemd-nspawn", "systemd-container"),
    ("nsenter", "util-linux"),
];

/// Reports each required command; as root, apt-installs the packages of missing ones.
pub fn ensure(root: bool) -> Result<()> {
    ensure_commands(REQUIRED_COMMANDS, root)
}

/// Reports each command of `table`; as root, apt-installs the packages of missing ones.
pub fn ensure_commands(table: &'static [(&'static str, &'static str)], root: bool) -> Result<()> {
    let path = command::search_path()?;
    let mut missing = Vec::new();
    for required @ (name, _) in table {
        match find_command(name, &path) {
            Some(found) => say(&format!("command {name}: {}", found.display())),
            None => missing.push(required),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }

    let packages = packages_for(&missing);
    let names = missing.iter().map(|(name, _)| *name).collect::<Vec<_>>();
    if !root {
        say(&format!(
            "missing commands {}: not root, so not installing; run \
             `apt-get install {}` or bootstrap as root",
            names.join(", "),
            packages.join(" ")
        ));
        return Ok(());
    }

    say(&format!("missing commands {}: installing {}", names.join(", "), packages.join(" ")));
    command::run(apt_get()?.arg("update"))?;
    command::run(apt_get()?.args(["install", "-y", "--no-install-recommends"]).args(&packages))?;

    let still_missing = missing_commands(table, &path);
    if !still_missing.is_empty() {
        let names = still_missing.iter().map(|(name, _)| *name).collect::<Vec<_>>();
        bail!("commands still missing after apt-get install: {}", names.join(", "));
    }
    say(&format!("installed {}", packages.join(" ")));
    Ok(())
}

fn apt_get() -> Result<std::process::Command> {
    let mut apt_get = tool("apt-get")?;
    apt_get.arg("-q"); // no progress bars in CI logs
    apt_get.env("DEBIAN_FRONTEND", "noninteractive");
    Ok(apt_get)
}

fn missing_commands(
    table: &'static [(&'static str, &'static str)],
    path: &OsStr,
) -> Vec<&'static (&'static str, &'static str)> {
    table.iter().filter(|(name, _)| find_command(name, path).is_none()).collect()
}

/// The packages providing `commands`, each once, in table order.
fn packages_for(commands: &[&(&str, &'static str)]) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for (_, package) in commands {
        if !packages.contains(package) {
            packages.push(*package);
        }
    }
    packages
}

/// The first executable file called `name` in the directories of `path`, like `which`.
pub fn find_command(name: &str, path: &OsStr) -> Option<PathBuf> {
    env::split_paths(path).map(|dir| dir.join(name)).find(|candidate| {
        fs::metadata(candidate).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::{find_command, packages_for};

    #[test]
    fn each_package_once_in_order() {
        let commands = [&("a", "pkg-a"), &("b", "pkg-b"), &("c", "pkg-a")];
        assert_eq!(packages_for(&commands), ["pkg-a", "pkg-b"]);
    }

    #[test]
    fn finds_only_executables_on_path() {
        let path = std::ffi::OsString::from("/nonexistent:/bin:/usr/bin");
        assert!(find_command("sh", &path).is_some());
        assert!(find_command("definitely-not-a-command-vigie", &path).is_none());
    }
}
