//! A Synapse homeserver's configuration files, read the way Synapse reads them: each
//! `--config-path` is a file or a directory of `*.yaml` files (in name order), and later files
//! replace earlier ones' top-level settings.
//!
//! The files hold secrets (`macaroon_secret_key`, `form_secret`, ...). Only paths are ever
//! taken out of them: no value is kept, returned or put into an error message.

use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use crate::alert::redact::messages::without_values;

/// Why a homeserver's configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SynapseConfigError {
    /// A config file or directory could not be read.
    #[error("Synapse config {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    /// A config file is not valid YAML (the parser's message names the place, not the text).
    #[error("Synapse config {path}: invalid YAML: {message}")]
    Syntax { path: PathBuf, message: String },

    /// No path was given and Debian's is not there either.
    #[error(
        "Synapse config {path} (Debian's path) does not exist: give the homeserver's with \
         --synapse-config PATH"
    )]
    NoDebianConfig { path: PathBuf },

    /// A config file holds YAML that is not a mapping of settings.
    #[error("Synapse config {path}: not a mapping of settings but {found}")]
    NotAMapping { path: PathBuf, found: &'static str },

    /// A setting that names a file or a database has another shape.
    #[error("Synapse config {path}{line}: `{key}` must be {expected}")]
    BadSetting { path: PathBuf, line: Line, key: String, expected: &'static str },

    /// The merged configuration has no `server_name`: not a homeserver's.
    #[error("Synapse config {paths}: no `server_name` setting (is this a homeserver.yaml?)")]
    NoServerName { paths: String },

    /// `--synapse-user` names nobody.
    #[error("Synapse user {user:?}: no such user in /etc/passwd")]
    UnknownUser { user: String },

    /// Synapse options were given without the profile that reads them.
    #[error(
        "--synapse-config, --synapse-user and --synapse-volume (synapse_* in the config file) are \
         read by the matrix-synapse profile: add --profile matrix-synapse"
    )]
    WithoutProfile,
}

/// Where in its file a setting is, when the file shows it (" line N"), for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line(Option<usize>);

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.map_or(Ok(()), |line| write!(f, " line {line}"))
    }
}

/// A directory as the homeserver sees it (inside its container) and where it is on this host,
/// written like docker's `-v`: `HOST_DIR:CONTAINER_DIR`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Volume {
    pub host: PathBuf,
    pub container: PathBuf,
}

impl FromStr for Volume {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.rsplit_once(':') {
            Some((host, container)) if host.starts_with('/') && container.starts_with('/') => {
                Ok(Self { host: host.into(), container: container.into() })
            }
            _ => Err(format!("{text:?} is not HOST_DIR:CONTAINER_DIR (two absolute paths)")),
        }
    }
}

impl TryFrom<String> for Volume {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

/// Translates the homeserver's paths into this host's.
#[derive(Debug, Default)]
pub struct PathMap<'a> {
    volumes: &'a [Volume],
}

impl<'a> PathMap<'a> {
    pub fn new(volumes: &'a [Volume]) -> Self {
        Self { volumes }
    }

    /// `path` (as the homeserver names it) on this host: under the longest matching volume.
    pub fn to_host(&self, path: &Path) -> PathBuf {
        self.volumes
            .iter()
            .filter_map(|v| Some((v, path.strip_prefix(&v.container).ok()?)))
            .max_by_key(|(v, _)| v.container.components().count())
            .map_or_else(|| path.to_owned(), |(v, rest)| v.host.join(rest))
    }
}

/// One config file: its path as the homeserver names it, and on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfigFile {
    path: PathBuf,
    host_path: PathBuf,
}

/// The merged settings of every config file, each remembering the file that set it.
#[derive(Debug)]
pub struct SynapseSettings {
    values: Mapping,
    origin: HashMap<String, ConfigFile>,
    /// The directory of the last config file: Synapse's `config_dir_path`.
    pub config_dir: PathBuf,
}

impl SynapseSettings {
    /// Reads `config_paths` (files or directories, as the homeserver names them).
    pub fn read(config_paths: &[PathBuf], paths: &PathMap) -> Result<Self, SynapseConfigError> {
        let files = config_files(config_paths, paths)?;
        let mut values = Mapping::new();
        let mut origin = HashMap::new();
        for file in &files {
            for (key, value) in parse(&file.host_path)? {
                if let Some(name) = key.as_str() {
                    origin.insert(name.to_owned(), file.clone());
                }
                values.insert(key, value);
            }
        }
        if !values.get("server_name").is_some_and(Value::is_string) {
            let names: Vec<String> = config_paths.iter().map(|p| p.display().to_string()).collect();
            return Err(SynapseConfigError::NoServerName { paths: names.join(", ") });
        }
        let config_dir =
            files.last().and_then(|f| f.path.parent()).map(Path::to_path_buf).unwrap_or_default();
        Ok(Self { values, origin, config_dir })
    }

    /// The value at `key` (dotted path through mappings), if set and not null.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut parts = key.split('.');
        let mut value = self.values.get(parts.next()?)?;
        for part in parts {
            value = value.as_mapping()?.get(part)?;
        }
        Some(value).filter(|v| !v.is_null())
    }

    /// The string at `key`, an error if it is set to anything else.
    pub fn text(&self, key: &str) -> Result<Option<&str>, SynapseConfigError> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| self.bad(key, "a string"))).transpose()
    }

    /// An error naming `key`, the file that set it and the line; never its value.
    pub fn bad(&self, key: &str, expected: &'static str) -> SynapseConfigError {
        let top = key.split(['.', '[']).next().unwrap_or(key);
        let file = self.origin.get(top);
        let line =
            file.and_then(|f| fs::read_to_string(&f.host_path).ok()).and_then(|text| line_of(&text, key));
        let path = file.map(|f| f.path.clone()).unwrap_or_default();
        SynapseConfigError::BadSetting { path, line: Line(line), key: key.to_owned(), expected }
    }
}

/// The line (1-based) of `text` that sets dotted `key` (`database.args.port`), found part by
/// part in block or flow YAML: the top-level part at the start of a line, each next part on
/// that line or after it. `None` if the top-level key is not found.
fn line_of(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut parts = key.split('.').map(|part| part.trim_end_matches("[]"));
    let top = parts.next()?;
    let mut at = lines.iter().position(|line| sets(line, top) == Some(0))?;
    for part in parts {
        match (at..lines.len()).find(|&i| sets(lines[i], part).is_some()) {
            Some(next) => at = next,
            None => break,
        }
    }
    Some(at + 1)
}

/// Where on `line` key `name` is set (`name:`, `"name":`, after a space, `{`, `,` or `- `).
fn sets(line: &str, name: &str) -> Option<usize> {
    line.match_indices(name).map(|(i, _)| i).find(|&i| {
        let before = line[..i].trim_end_matches(['"', '\'']);
        let after = line[i + name.len()..].trim_start_matches(['"', '\'']).trim_start();
        let starts = before.is_empty() || before.ends_with([' ', '{', ',', '-']);
        starts && after.starts_with(':')
    })
}

/// The files `config_paths` name, directories expanded to their `*.yaml` files by name.
fn config_files(config_paths: &[PathBuf], paths: &PathMap) -> Result<Vec<ConfigFile>, SynapseConfigError> {
    let mut files = Vec::new();
    for path in config_paths {
        let host_path = paths.to_host(path);
        let read_error = |source| SynapseConfigError::Read { path: path.clone(), source };
        if !fs::metadata(&host_path).map_err(read_error)?.is_dir() {
            files.push(ConfigFile { path: path.clone(), host_path });
            continue;
        }
        let mut names: Vec<_> = fs::read_dir(&host_path)
            .map_err(read_error)?
            .flatten()
            .filter(|entry| entry.path().is_file())
            .map(|entry| entry.file_name())
            .filter(|name| name.to_string_lossy().ends_with(".yaml"))
            .collect();
        names.sort();
        files.extend(
            names.iter().map(|name| ConfigFile { path: path.join(name), host_path: host_path.join(name) }),
        );
    }
    Ok(files)
}

/// The settings of one file; an empty file has none (Synapse skips it too).
fn parse(path: &Path) -> Result<Mapping, SynapseConfigError> {
    let text =
        fs::read_to_string(path).map_err(|source| SynapseConfigError::Read { path: path.into(), source })?;
    let value: Value = serde_norway::from_str(&text).map_err(|err| SynapseConfigError::Syntax {
        path: path.into(),
        message: without_values(&err.to_string()),
    })?;
    match value {
        Value::Mapping(mapping) => Ok(mapping),
        Value::Null => Ok(Mapping::new()),
        other => Err(SynapseConfigError::NotAMapping { path: path.into(), found: kind(&other) }),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vigie-synapse-config-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn later_files_and_directories_replace_top_level_settings() {
        let dir = dir("merge");
        fs::write(dir.join("homeserver.yaml"), "server_name: a\nform_secret: s\nredis: {enabled: true}\n")
            .unwrap();
        fs::create_dir(dir.join("conf.d")).unwrap();
        fs::write(dir.join("conf.d/20-b.yaml"), "redis: {password_path: /b}\n").unwrap();
        fs::write(dir.join("conf.d/10-a.yaml"), "redis: {password_path: /a}\n").unwrap();
        fs::write(dir.join("conf.d/empty.yaml"), "").unwrap();
        fs::write(dir.join("conf.d/notes.txt"), "not: read").unwrap();
        let settings =
            SynapseSettings::read(&[dir.join("homeserver.yaml"), dir.join("conf.d")], &PathMap::default())
                .unwrap();
        assert_eq!(settings.text("redis.password_path").unwrap(), Some("/b"));
        assert_eq!(settings.get("redis.enabled"), None, "replaced, not merged");
        assert_eq!(settings.config_dir, dir.join("conf.d"), "the last file's directory");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_never_a_value() {
        let dir = dir("errors");
        let file = dir.join("homeserver.yaml");
        fs::write(&file, "server_name: a\nform_secret: 'hunter2\n").unwrap();
        let err =
            SynapseSettings::read(std::slice::from_ref(&file), &PathMap::default()).unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()) && err.contains("line"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        fs::write(&file, "- a list\n").unwrap();
        let err = SynapseSettings::read(std::slice::from_ref(&file), &PathMap::default()).unwrap_err();
        assert!(err.to_string().contains("not a mapping of settings but a list"), "{err}");

        fs::write(&file, "services:\n  web: {image: nginx}\n").unwrap();
        let err = SynapseSettings::read(std::slice::from_ref(&file), &PathMap::default()).unwrap_err();
        assert!(err.to_string().contains("no `server_name`"), "{err}");

        fs::write(&file, "server_name: a\nsigning_key_path: [hunter2]\n").unwrap();
        let settings = SynapseSettings::read(std::slice::from_ref(&file), &PathMap::default()).unwrap();
        let err = settings.text("signing_key_path").unwrap_err().to_string();
        assert!(err.contains("`signing_key_path` must be a string") && !err.contains("hunter2"), "{err}");

        let missing = dir.join("missing.yaml");
        let err = SynapseSettings::read(std::slice::from_ref(&missing), &PathMap::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn volumes_map_container_paths_to_host_paths() {
        let volumes: Vec<Volume> =
            ["/srv/synapse:/data", "/srv/keys:/data/keys"].iter().map(|v| v.parse().unwrap()).collect();
        let map = PathMap::new(&volumes);
        assert_eq!(map.to_host(Path::new("/data/homeserver.db")), Path::new("/srv/synapse/homeserver.db"));
        assert_eq!(map.to_host(Path::new("/data/keys/k.signing.key")), Path::new("/srv/keys/k.signing.key"));
        assert_eq!(map.to_host(Path::new("/etc/x")), Path::new("/etc/x"));
        assert!("data".parse::<Volume>().is_err());
        assert!("relative:/data".parse::<Volume>().is_err());
    }
}
