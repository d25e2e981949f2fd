//! Built-in profiles: what a host of a given kind keeps its secrets in, and who reads them
//! as part of normal operation.

use crate::error::Error;

/// The profile used when none is named.
pub const DEFAULT: &str = "default";

/// A named set of secret locations (paths or globs), allowed readers (executables) and
/// trusted services.
#[derive(Debug)]
pub struct Profile {
    pub name: &'static str,
    pub secrets: &'static [&'static str],
    pub allow_readers: &'static [&'static str],
    /// Services recognised by their executable alone, as (name, executable).
    pub services: &'static [(&'static str, &'static str)],
    /// Whether the profile reads a Synapse configuration for its secrets and trusted service.
    pub reads_synapse_config: bool,
}

/// Secret stores of a Matrix homeserver host (Synapse, Dendrite, Conduit) and host credentials.
const DEFAULT_PROFILE: Profile = Profile {
    name: DEFAULT,
    secrets: &[
        // Synapse (Debian package, docker image's /data, pip installs under /opt).
        "/etc/matrix-synapse/homeserver.yaml",
        "/etc/matrix-synapse/conf.d/*.yaml",
        "/etc/matrix-synapse/*.signing.key",
        "/etc/matrix-synapse/*.key",
        "/var/lib/matrix-synapse/homeserver.db",
        "/data/homeserver.yaml",
        "/data/*.signing.key",
        "/data/homeserver.db",
        "/opt/synapse/homeserver.yaml",
        "/opt/synapse/*.signing.key",
        // Dendrite.
        "/etc/dendrite/dendrite.yaml",
        "/etc/dendrite/matrix_key.pem",
        "/var/lib/dendrite/matrix_key.pem",
        // Conduit and conduwuit.
        "/etc/matrix-conduit/conduit.toml",
        "/etc/conduwuit/conduwuit.toml",
        // Host credentials.
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/ssh/ssh_host_*_key",
        "/root/.ssh/id_*",
        "/home/*/.ssh/id_*",
        "/root/.aws/credentials",
        "/home/*/.aws/credentials",
        "/root/.config/gcloud/application_default_credentials.json",
        "/home/*/.config/gcloud/application_default_credentials.json",
        "/root/.azure/msal_token_cache.json",
        "/home/*/.azure/msal_token_cache.json",
        "/root/.kube/config",
        "/home/*/.kube/config",
        "/srv/**/.env",
        "/opt/**/.env",
    ],
    allow_readers: &[
        // Logins and privilege changes read /etc/shadow; sshd reads its host keys.
        "/usr/sbin/sshd",
        "/usr/lib/openssh/sshd-session",
        "/usr/sbin/unix_chkpwd",
        "/usr/bin/sudo",
        "/usr/bin/su",
        "/usr/bin/login",
        "/usr/bin/passwd",
        "/usr/sbin/cron",
        // The SSH client is what private keys are for.
        "/usr/bin/ssh",
        "/usr/bin/ssh-add",
        "/usr/bin/ssh-agent",
    ],
    // Log collectors receive whatever services print: as allowed readers they would take in
    // the taint of every tainted process that logs (allowance covers opening secrets only).
    services: &[("systemd-journald", "/usr/lib/systemd/systemd-journald"), ("rsyslog", "/usr/sbin/rsyslogd")],
    reads_synapse_config: false,
};

/// Watches only what is configured explicitly.
const NONE_PROFILE: Profile =
    Profile { name: "none", secrets: &[], allow_readers: &[], services: &[], reads_synapse_config: false };

/// A Synapse homeserver, from its configuration (`--synapse-config`, else Debian's paths): see
/// `synapse_profile.rs`.
const MATRIX_SYNAPSE_PROFILE: Profile = Profile {
    name: "matrix-synapse",
    secrets: &[],
    allow_readers: &[],
    services: &[],
    reads_synapse_config: true,
};

const BUILTIN: [&Profile; 3] = [&DEFAULT_PROFILE, &NONE_PROFILE, &MATRIX_SYNAPSE_PROFILE];

/// The built-in profile called `name`.
pub fn builtin(name: &str) -> Result<&'static Profile, Error> {
    BUILTIN.iter().copied().find(|p| p.name == name).ok_or_else(|| Error::UnknownProfile {
        name: name.to_owned(),
        known: BUILTIN.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
    })
}
