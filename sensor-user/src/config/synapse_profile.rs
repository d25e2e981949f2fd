//! The `matrix-synapse` profile: the files a homeserver's configuration points at, and how its
//! process is recognised so that it may read them.
//!
//! Watched: every config file (they hold `macaroon_secret_key`, `form_secret`,
//! `registration_shared_secret`), the signing key, the sqlite3 database with its WAL and journal
//! (access tokens), the app-service registrations (`as_token`/`hs_token`), and the files of
//! secrets kept outside the config (`*_path` settings). Trusted: a process running
//! `synapse.app.homeserver` with every config path in its arguments (and as the given user).
//! A Postgres database is no file to watch: its server is a store (`synapse_database`).

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde_norway::Value;

use crate::{
    config::services::ServiceSpec,
    config::synapse_config::{PathMap, SynapseConfigError, SynapseSettings, Volume},
    config::synapse_database::{self, DatabaseStore},
};

/// Where Debian's package keeps the configuration, and the user it runs the homeserver as.
pub const DEBIAN_CONFIG: &str = "/etc/matrix-synapse/homeserver.yaml";
pub const DEBIAN_CONFIG_DIR: &str = "/etc/matrix-synapse/conf.d";
pub const DEBIAN_USER: &str = "matrix-synapse";
/// The interpreter of Debian's `matrix-synapse-py3` package (matrix.org's repository).
const DEBIAN_PYTHON: &str = "/opt/venvs/matrix-synapse/bin/python";

/// The module every homeserver main process runs (`python -m synapse.app.homeserver`).
const HOMESERVER_MODULE: &str = "synapse.app.homeserver";
/// The service's name in alerts ("memory of matrix-synapse (pid N)").
const SERVICE_NAME: &str = "matrix-synapse";

/// Settings naming a file that holds a secret (besides the signing key and databases).
const SECRET_FILE_SETTINGS: &[&str] = &[
    "key_server_signing_keys_path",
    "macaroon_secret_key_path",
    "form_secret_path",
    "registration_shared_secret_path",
    "worker_replication_secret_path",
    "turn_shared_secret_path",
    "recaptcha_private_key_path",
    "tls_private_key_path",
    "redis.password_path",
    "redis.private_key_file",
    "matrix_authentication_service.secret_path",
    "experimental_features.msc3861.client_secret_path",
    "experimental_features.msc3861.admin_token_path",
];
/// The same, within each single-sign-on provider (`oidc_providers`, or the older `oidc_config`).
const OIDC_SECRET_FILES: &[&str] = &["client_secret_path", "client_secret_jwt_key.key_file"];
/// Files sqlite3 keeps beside a database, holding its most recent pages.
const SQLITE_SIDE_FILES: &[&str] = &["-wal", "-journal"];

/// What the user said about the homeserver: its config paths as the homeserver names them
/// (none: Debian's), the user it runs as, and where its container's volumes are on this host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SynapseOptions {
    pub configs: Vec<PathBuf>,
    pub user: Option<String>,
    pub volumes: Vec<Volume>,
}

impl SynapseOptions {
    /// Whether nothing was said (the Debian defaults apply).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What the profile watches and whom it trusts, for one homeserver.
#[derive(Debug)]
pub struct SynapseProfile {
    /// Paths (and `conf.d/*.yaml` globs) on this host.
    pub secret_patterns: Vec<String>,
    pub service: ServiceSpec,
    /// Its Postgres databases: store servers whose replies taint their readers.
    pub stores: Vec<DatabaseStore>,
}

impl SynapseProfile {
    /// Reads the homeserver's configuration to find what to watch.
    pub fn read(options: &SynapseOptions) -> Result<Self, SynapseConfigError> {
        let debian = options.configs.is_empty();
        let configs = if debian { debian_configs() } else { options.configs.clone() };
        if debian && !Path::new(DEBIAN_CONFIG).exists() {
            return Err(SynapseConfigError::NoDebianConfig { path: DEBIAN_CONFIG.into() });
        }
        let paths = PathMap::new(&options.volumes);
        let settings = SynapseSettings::read(&configs, &paths)?;

        let mut secret_patterns = config_patterns(&configs, &paths);
        for file in secret_files(&settings)? {
            let literal = glob::Pattern::escape(&paths.to_host(&file).to_string_lossy());
            if !secret_patterns.contains(&literal) {
                secret_patterns.push(literal);
            }
        }
        let user = match &options.user {
            Some(user) => Some(uid_of(user)?),
            None if debian => uid_of(DEBIAN_USER).ok(),
            None => None,
        };
        let service = ServiceSpec {
            name: SERVICE_NAME.to_owned(),
            executables: if debian { debian_python() } else { Vec::new() },
            args: vec!["-m".to_owned(), HOMESERVER_MODULE.to_owned()],
            configs: configs.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
            user,
            cgroup: if debian { debian_unit_cgroup() } else { None },
        };
        Ok(Self { secret_patterns, service, stores: synapse_database::postgres_stores(&settings)? })
    }
}

/// The interpreter of Debian's package, where it is installed.
fn debian_python() -> Vec<PathBuf> {
    Some(PathBuf::from(DEBIAN_PYTHON)).filter(|p| p.exists()).into_iter().collect()
}

/// The cgroup of Debian's `matrix-synapse` systemd unit, where systemd runs it: only systemd
/// puts processes there, which no argument list can imitate.
fn debian_unit_cgroup() -> Option<String> {
    let systemd = Path::new("/run/systemd/system").is_dir();
    let unit = ["/lib/systemd/system", "/etc/systemd/system"]
        .iter()
        .any(|dir| Path::new(dir).join("matrix-synapse.service").is_file());
    (systemd && unit).then(|| "/system.slice/matrix-synapse.service".to_owned())
}

/// Debian's `homeserver.yaml`, and its `conf.d` where there is one.
fn debian_configs() -> Vec<PathBuf> {
    let mut configs = vec![PathBuf::from(DEBIAN_CONFIG)];
    if Path::new(DEBIAN_CONFIG_DIR).is_dir() {
        configs.push(DEBIAN_CONFIG_DIR.into());
    }
    configs
}

/// The config files themselves; a directory as a glob, so files added later are watched too.
fn config_patterns(configs: &[PathBuf], paths: &PathMap) -> Vec<String> {
    configs
        .iter()
        .map(|config| {
            let host = paths.to_host(config);
            let literal = glob::Pattern::escape(&host.to_string_lossy());
            if host.is_dir() {
                format!("{}/*.yaml", literal.trim_end_matches('/'))
            } else {
                literal
            }
        })
        .collect()
}

/// Every file the settings say holds a secret, as the homeserver names it.
fn secret_files(settings: &SynapseSettings) -> Result<Vec<PathBuf>, SynapseConfigError> {
    let resolve = |text: &str| settings.config_dir.join(text);
    let mut files = Vec::new();
    // The signing key is inline (`signing_key`) or in a file, by default named after the server.
    if settings.get("signing_key").is_none() {
        let default =
            || format!("{}.signing.key", settings.text("server_name").ok().flatten().unwrap_or_default());
        files.push(resolve(&settings.text("signing_key_path")?.map_or_else(default, str::to_owned)));
    }
    for key in SECRET_FILE_SETTINGS {
        files.extend(settings.text(key)?.map(resolve));
    }
    for provider in oidc_providers(settings)? {
        for key in OIDC_SECRET_FILES {
            let value = key.split('.').try_fold(provider, |v, part| v.as_mapping()?.get(part));
            match value.filter(|v| !v.is_null()).map(Value::as_str) {
                Some(Some(text)) => files.push(resolve(text)),
                Some(None) => return Err(settings.bad(&format!("oidc_providers[].{key}"), "a path")),
                None => {}
            }
        }
    }
    for database in sqlite_databases(settings)? {
        let database = resolve(&database);
        let side_files: Vec<PathBuf> = SQLITE_SIDE_FILES
            .iter()
            .map(|suffix| {
                let mut side = database.clone().into_os_string();
                side.push(suffix);
                side.into()
            })
            .collect();
        files.push(database);
        files.extend(side_files);
    }
    if let Some(registrations) = settings.get("app_service_config_files") {
        let bad = || settings.bad("app_service_config_files", "a list of paths");
        for registration in registrations.as_sequence().ok_or_else(bad)? {
            files.push(resolve(registration.as_str().ok_or_else(bad)?));
        }
    }
    Ok(files)
}

/// The single-sign-on providers' settings.
fn oidc_providers(settings: &SynapseSettings) -> Result<Vec<&Value>, SynapseConfigError> {
    let mut providers: Vec<&Value> = settings.get("oidc_config").into_iter().collect();
    if let Some(list) = settings.get("oidc_providers") {
        providers.extend(list.as_sequence().ok_or_else(|| settings.bad("oidc_providers", "a list"))?);
    }
    Ok(providers)
}

/// Paths of the sqlite3 databases (`database`, `databases.NAME`, the older `database_path`).
fn sqlite_databases(settings: &SynapseSettings) -> Result<Vec<String>, SynapseConfigError> {
    let mut paths = Vec::new();
    for (key, database) in synapse_database::configured(settings)? {
        if database.get("name").and_then(Value::as_str) != Some("sqlite3") {
            continue; // PostgreSQL: a store server (`synapse_database::postgres_stores`).
        }
        let path = database.get("args").and_then(|args| args.as_mapping()?.get("database"));
        match path.map(Value::as_str) {
            Some(Some(":memory:")) | None => {}
            Some(Some(path)) => paths.push(path.to_owned()),
            Some(None) => return Err(settings.bad(&format!("{key}.args.database"), "a path")),
        }
    }
    paths.extend(settings.text("database_path")?.filter(|p| *p != ":memory:").map(str::to_owned));
    Ok(paths)
}

/// A user id from a number or a name in `/etc/passwd`.
fn uid_of(user: &str) -> Result<u32, SynapseConfigError> {
    if let Ok(uid) = user.parse() {
        return Ok(uid);
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&user))
        .and_then(|fields| fields.get(2)?.parse().ok())
        .ok_or_else(|| SynapseConfigError::UnknownUser { user: user.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vigie-synapse-profile-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("conf.d")).unwrap();
        dir
    }

    fn options(configs: &[PathBuf]) -> SynapseOptions {
        SynapseOptions { configs: configs.to_vec(), ..SynapseOptions::default() }
    }

    /// A config like `--generate-config` writes, with an app service and a Redis password file.
    fn generated(dir: &Path) -> PathBuf {
        let config = dir.join("homeserver.yaml");
        let text = format!(
            "server_name: \"hs.test\"\ndatabase:\n  name: sqlite3\n  args:\n    database: {d}/homeserver.db\n\
             registration_shared_secret: \"s1\"\nmacaroon_secret_key: \"s2\"\nform_secret: \"s3\"\n\
             signing_key_path: \"{d}/hs.test.signing.key\"\napp_service_config_files: [bridge.yaml]\n",
            d = dir.display()
        );
        fs::write(&config, text).unwrap();
        fs::write(dir.join("conf.d/redis.yaml"), "redis:\n  enabled: true\n  password_path: /run/redis.pw\n")
            .unwrap();
        config
    }

    #[test]
    fn watches_what_the_config_points_at_and_trusts_the_homeserver_by_its_arguments() {
        let dir = dir("generated");
        let config = generated(&dir);
        let conf_d = PathBuf::from(format!("{}/", dir.join("conf.d").display()));
        let profile = SynapseProfile::read(&options(&[config.clone(), conf_d])).unwrap();
        let d = dir.display();
        let expected = [
            config.display().to_string(),
            format!("{d}/conf.d/*.yaml"),
            format!("{d}/hs.test.signing.key"),
            "/run/redis.pw".into(),
            format!("{d}/homeserver.db"),
            format!("{d}/homeserver.db-wal"),
            format!("{d}/homeserver.db-journal"),
            // Relative: from the last config file's directory, like Synapse's config_dir_path.
            format!("{d}/conf.d/bridge.yaml"),
        ];
        assert_eq!(profile.secret_patterns, expected);
        assert_eq!(profile.service.args, ["-m", "synapse.app.homeserver"]);
        assert_eq!(profile.service.configs, [config.display().to_string(), format!("{d}/conf.d/")]);
        assert_eq!(profile.service.user, None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn container_paths_are_watched_on_the_host_and_matched_as_the_container_names_them() {
        let dir = dir("docker");
        fs::write(
            dir.join("homeserver.yaml"),
            "server_name: hs.test\ndatabase: {name: sqlite3, args: {database: /data/homeserver.db}}\n",
        )
        .unwrap();
        let options = SynapseOptions {
            configs: vec!["/data/homeserver.yaml".into()],
            user: Some("991".into()),
            volumes: vec![format!("{}:/data", dir.display()).parse().unwrap()],
        };
        let profile = SynapseProfile::read(&options).unwrap();
        let d = dir.display();
        assert_eq!(
            profile.secret_patterns[..3],
            [
                format!("{d}/homeserver.yaml"),
                format!("{d}/hs.test.signing.key"),
                format!("{d}/homeserver.db")
            ]
        );
        assert_eq!(profile.service.configs, ["/data/homeserver.yaml"]);
        assert_eq!(profile.service.user, Some(991));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inline_keys_and_postgres_add_no_files() {
        let dir = dir("inline");
        let config = dir.join("homeserver.yaml");
        fs::write(
            &config,
            "server_name: a\nsigning_key: ed25519 a_x k\ndatabase: {name: psycopg2, args: {}}\n",
        )
        .unwrap();
        let profile = SynapseProfile::read(&options(std::slice::from_ref(&config))).unwrap();
        assert_eq!(profile.secret_patterns, [config.display().to_string()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn misshapen_settings_and_unknown_users_are_errors() {
        let dir = dir("bad");
        let config = dir.join("homeserver.yaml");
        fs::write(&config, "server_name: a\napp_service_config_files: bridge.yaml\n").unwrap();
        let err = SynapseProfile::read(&options(std::slice::from_ref(&config))).unwrap_err().to_string();
        assert!(err.contains("`app_service_config_files` must be a list of paths"), "{err}");
        assert!(!err.contains("bridge.yaml\""), "{err}");
        fs::write(&config, "server_name: a\n").unwrap();
        let user = SynapseOptions { user: Some("no-such-user-vigie".into()), ..options(&[config]) };
        let err = SynapseProfile::read(&user).unwrap_err().to_string();
        assert!(err.contains("no-such-user-vigie"), "{err}");
        assert_eq!(uid_of("root").unwrap(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
