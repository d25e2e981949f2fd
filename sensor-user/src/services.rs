//! Trusted services: long-running programs (a homeserver) that read secrets as their job and
//! whose memory holds them. A service is recognised by what it runs — executable identity,
//! arguments, user — never by a pid written down by hand, and trust is narrower than the
//! interpreter: `python3 -c ...` is not Synapse because Synapse runs on python3.

use std::path::PathBuf;

use sensor_common::FileId;
use serde::Deserialize;

use crate::{process_table::Process, secret_catalog::file_id};

/// A service as configured.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    /// Executables it runs as (any of them; symlinks followed). Empty: any executable.
    #[serde(default)]
    pub executables: Vec<PathBuf>,
    /// Texts that must each appear in its arguments (e.g. the module and its config path).
    #[serde(default)]
    pub args: Vec<String>,
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
    args: Vec<String>,
    user: Option<u32>,
    cgroup: Option<String>,
}

impl Service {
    /// Resolves executable paths to identities; those not installed here are dropped.
    pub fn resolve(spec: &ServiceSpec) -> Self {
        Self {
            name: spec.name.clone(),
            executables: spec.executables.iter().filter_map(|p| file_id(p)).collect(),
            args: spec.args.clone(),
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
        let exe_ok = self.executables.is_empty()
            || file_id(process.executable.as_ref()).is_some_and(|id| self.executables.contains(&id));
        let args_ok =
            self.args.iter().all(|wanted| process.args.iter().any(|arg| arg.contains(wanted.as_str())));
        let user_ok = self.user.is_none_or(|uid| uid == process.uid);
        let cgroup_ok =
            self.cgroup.as_deref().is_none_or(|wanted| cgroup_of(process.pid).as_deref() == Some(wanted));
        exe_ok && args_ok && user_ok && cgroup_ok
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
            uid,
            executable: exe.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            start_ns: 0,
        }
    }

    fn synapse(config: &str) -> Service {
        Service::resolve(&ServiceSpec {
            name: "matrix-synapse".into(),
            executables: vec![],
            args: vec!["synapse.app.homeserver".into(), config.into()],
            user: Some(998),
            cgroup: None,
        })
    }

    #[test]
    fn the_homeserver_is_its_module_config_and_user_not_its_interpreter() {
        let service = synapse("/etc/matrix-synapse/homeserver.yaml");
        let python = "/usr/bin/python3";
        let args =
            ["python3", "-m", "synapse.app.homeserver", "--config-path=/etc/matrix-synapse/homeserver.yaml"];
        assert!(service.matches(&process(python, &args, 998)));
        assert!(!service.matches(&process(python, &args, 0)), "another user");
        assert!(!service.matches(&process(python, &["python3", "-c", "print(1)"], 998)), "python3 -c");
        let other = ["python3", "-m", "synapse.app.homeserver", "-c", "/tmp/evil.yaml"];
        assert!(!service.matches(&process(python, &other, 998)), "another config");
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
