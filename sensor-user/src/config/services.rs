//! Trusted services: long-running programs (a homeserver) that read secrets as their job and
//! whose memory holds them. A service is recognised structurally by what it runs — executable
//! identity, its arguments position by position, user, cgroup — never by a pid written down by
//! hand, and trust is narrower than the interpreter: `python3 -c CODE -m synapse.app.homeserver`
//! is not Synapse, because `-c CODE` comes where the module must.

use std::path::PathBuf;

use sensor_common::FileId;
use serde::Deserialize;

use crate::{config::allowed_readers, state::process_table::Process, state::secret_catalog::file_id};

/// A service as configured.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// Executables it runs as (any of them; symlinks followed). Empty: any executable.
    #[serde(default)]
    pub executables: Vec<PathBuf>,
    /// Its first arguments after the program name, in order and whole (`["-m",
    /// "synapse.app.homeserver"]`).
    #[serde(default)]
    pub args: Vec<String>,
    /// The configuration files it is started with. Every argument after `args` must be a
    /// configuration option naming one of them (`-c PATH`, `--config-path PATH`,
    /// `--config-path=PATH`; a trailing `/` is ignored), and each must be named. Without
    /// `configs`, nothing may follow `args`.
    #[serde(default)]
    pub configs: Vec<String>,
    /// The user it runs as.
    pub user: Option<u32>,
    /// Its cgroup v2 path, as in `/proc/PID/cgroup` (`/system.slice/matrix-synapse.service`
    /// for a systemd unit): the narrowest trust, since only its supervisor puts processes there.
    pub cgroup: Option<String>,
}

/// A service resolved against this host.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    executables: Vec<FileId>,
    /// Known by its executables alone: they are given, none is an interpreter (which runs
    /// whatever it is handed), and no argument is.
    by_executable: bool,
    /// An interpreter given without arguments, which would read its program from standard
    /// input: it matches nothing.
    bare_interpreter: bool,
    args: Vec<String>,
    configs: Vec<String>,
    user: Option<u32>,
    cgroup: Option<String>,
}

impl Service {
    /// Resolves executable paths to identities; those not installed here are dropped.
    pub fn resolve(spec: &ServiceSpec) -> Self {
        let installed: Vec<PathBuf> = spec.executables.iter().filter_map(|p| p.canonicalize().ok()).collect();
        let interpreted = installed.iter().any(|p| allowed_readers::interpreter_name(p).is_some());
        let no_arguments = spec.args.is_empty() && spec.configs.is_empty() && !installed.is_empty();
        Self {
            name: spec.name.clone(),
            executables: spec.executables.iter().filter_map(|p| file_id(p)).collect(),
            by_executable: no_arguments && !interpreted,
            bare_interpreter: no_arguments && interpreted,
            args: spec.args.clone(),
            configs: spec.configs.iter().map(|c| without_trailing_slash(c).to_owned()).collect(),
            user: spec.user,
            cgroup: spec.cgroup.clone(),
        }
    }

    /// Whether `process` is this service. A spec that names executables none of which is
    /// installed matches nothing; one with no constraint at all matches nothing either.
    pub fn matches(&self, process: &Process) -> bool {
        if self.executables.is_empty() && self.args.is_empty() && self.user.is_none() && self.cgroup.is_none()
        {
            return false;
        }
        if self.bare_interpreter {
            return false;
        }
        // The kernel's identity of what it runs: the exec record's path may be relative or
        // replaced since.
        let exe_ok = || {
            self.executables.is_empty()
                || process
                    .exe_id
                    .or_else(|| file_id(process.executable.as_ref()))
                    .is_some_and(|id| self.executables.contains(&id))
        };
        let args_ok =
            || self.by_executable || self.arguments_match(process.args.get(1..).unwrap_or_default());
        let cgroup_ok =
            || self.cgroup.as_deref().is_none_or(|wanted| cgroup_of(process.pid).as_deref() == Some(wanted));
        self.user.is_none_or(|uid| uid == process.uid) && args_ok() && exe_ok() && cgroup_ok()
    }
}

impl Service {
    /// Whether `args` (after the program name) are `self.args` then exactly the config options.
    fn arguments_match(&self, args: &[String]) -> bool {
        let Some(rest) = args.strip_prefix(self.args.as_slice()) else { return false };
        let Some(named) = config_options(rest) else { return false };
        named.iter().all(|path| self.configs.iter().any(|c| c == path))
            && self.configs.iter().all(|c| named.contains(&c.as_str()))
    }
}

/// The paths named by `args` if they are all configuration options, else `None`.
fn config_options(mut args: &[String]) -> Option<Vec<&str>> {
    let mut named = Vec::new();
    while let Some((first, rest)) = args.split_first() {
        let (path, rest) = match first.strip_prefix("--config-path=") {
            Some(path) => (path, rest),
            None if first == "-c" || first == "--config-path" => {
                let (path, rest) = rest.split_first()?;
                (path.as_str(), rest)
            }
            None => return None,
        };
        named.push(without_trailing_slash(path));
        args = rest;
    }
    Some(named)
}

fn without_trailing_slash(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => path,
        trimmed => trimmed,
    }
}

/// The cgroup v2 path of `pid` (the `0::` line of `/proc/PID/cgroup`).
fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| line.strip_prefix("0::")).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(exe: &str, args: &[&str], uid: u32) -> Process {
        Process {
            pid: 10,
            ppid: 1,
            parent_start_ns: 0,
            uid,
            executable: exe.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            start_ns: 0,
            exec_id: None,
            exe_id: None,
        }
    }

    fn synapse(configs: &[&str]) -> Service {
        Service::resolve(&ServiceSpec {
            name: "matrix-synapse".into(),
            executables: vec![],
            args: vec!["-m".into(), "synapse.app.homeserver".into()],
            configs: configs.iter().map(|c| (*c).to_owned()).collect(),
            user: Some(998),
            cgroup: None,
        })
    }

    #[test]
    fn the_homeserver_is_its_module_config_and_user_not_its_interpreter() {
        let service = synapse(&["/etc/matrix-synapse/homeserver.yaml", "/etc/matrix-synapse/conf.d/"]);
        let python = "/usr/bin/python3";
        let args = [
            "python3",
            "-m",
            "synapse.app.homeserver",
            "--config-path=/etc/matrix-synapse/homeserver.yaml",
            "-c",
            "/etc/matrix-synapse/conf.d",
        ];
        assert!(service.matches(&process(python, &args, 998)));
        assert!(!service.matches(&process(python, &args, 0)), "another user");
        assert!(!service.matches(&process(python, &args[..4], 998)), "a config left out");
        assert!(!service.matches(&process(python, &["python3", "-c", "print(1)"], 998)), "python3 -c");
        let cases: [&[&str]; 4] = [
            &["python3", "-m", "synapse.app.homeserver", "-c", "/tmp/evil.yaml"],
            // The look-alike: the module and config come after code python runs instead.
            &[
                "python3",
                "-c",
                "import os",
                "-m",
                "synapse.app.homeserver",
                "--config-path",
                "/etc/matrix-synapse/homeserver.yaml",
            ],
            &["python3", "-m", "synapse.app.homeserver.evil", "-c", "/etc/matrix-synapse/homeserver.yaml"],
            &[
                "python3",
                "-m",
                "synapse.app.homeserver",
                "-c",
                "/etc/matrix-synapse/homeserver.yaml",
                "--extra",
            ],
        ];
        for args in cases {
            assert!(!service.matches(&process(python, args, 998)), "{args:?}");
        }
    }

    #[test]
    fn executables_are_compared_by_identity() {
        let me = std::env::current_exe().unwrap();
        let spec = ServiceSpec { name: "x".into(), executables: vec![me.clone()], ..ServiceSpec::default() };
        let service = Service::resolve(&spec);
        assert!(service.matches(&process(&me.display().to_string(), &[], 0)));
        assert!(!service.matches(&process("/bin/sh", &[], 0)));
        let missing = ServiceSpec { executables: vec!["/no/such/exe".into()], ..spec };
        assert!(!Service::resolve(&missing).matches(&process("/bin/sh", &[], 0)), "nothing installed");
        assert!(
            !Service::resolve(&ServiceSpec::default()).matches(&process("/bin/sh", &[], 0)),
            "no constraint"
        );
    }

    #[test]
    fn a_cgroup_constraint_reads_the_process_cgroup() {
        let mut me = process("/bin/sh", &[], 0);
        me.pid = std::process::id();
        let mine = cgroup_of(me.pid).expect("this process has a cgroup v2 path");
        let spec = |cgroup: &str| ServiceSpec {
            name: "x".into(),
            cgroup: Some(cgroup.into()),
            ..ServiceSpec::default()
        };
        assert!(Service::resolve(&spec(&mine)).matches(&me));
        assert!(!Service::resolve(&spec("/system.slice/matrix-synapse.service")).matches(&me));
    }
}
