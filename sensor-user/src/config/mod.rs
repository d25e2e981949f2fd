//! What to watch: the config file and the command line merged into one [`Settings`].

pub mod allowed_readers;
pub mod journal;
pub mod profiles;
pub mod services;
pub mod sink_specs;
pub mod synapse_config;
pub mod synapse_database;
pub mod synapse_profile;

use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

use crate::{
    alert::redact,
    cli::RunArgs,
    error::Error,
    format::Schema,
    kernel::{self, backend::Choice},
};
use journal::{JournalFile, JournalSettings};
use services::ServiceSpec;
use sink_specs::SinkSpec;
use synapse_config::{SynapseConfigError, Volume};
use synapse_database::DatabaseStore;
use synapse_profile::{SynapseOptions, SynapseProfile};

/// The config file, as written by the user. Every field is optional.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Built-in profiles; the command line's `--profile` replaces this list.
    pub profiles: Option<Vec<String>>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub trusted_nets: Vec<IpNet>,
    #[serde(default)]
    pub allow_readers: Vec<PathBuf>,
    pub output: Option<String>,
    /// The schema of the documents written: `ecs` (default) or `ocsf`.
    #[serde(rename = "format")]
    pub schema: Option<Schema>,
    /// More places documents go (`[[sink]]` tables).
    #[serde(default, rename = "sink")]
    pub sinks: Vec<SinkSpec>,
    /// Taint older than this many seconds no longer alerts.
    pub taint_window_secs: Option<u64>,
    /// The kernel hook set: `auto` (default), `page-cache` or `syscalls`.
    pub backend: Option<Choice>,
    /// Trusted services (`[[services]]` tables).
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// The homeserver's config paths, for profile `matrix-synapse`: one path or a list.
    pub synapse_config: Option<OneOrMany<PathBuf>>,
    /// The user the homeserver runs as: a name or a uid.
    pub synapse_user: Option<NameOrId>,
    /// The homeserver container's volumes, `HOST_DIR:CONTAINER_DIR`.
    #[serde(default)]
    pub synapse_volumes: Vec<Volume>,
    /// Leave the kernel programs attached across restarts of the agent, pinned under `pin_dir`.
    pub keep_loaded: Option<bool>,
    /// Where they are pinned (default `/sys/fs/bpf/vigie`).
    pub pin_dir: Option<PathBuf>,
    /// The agent's history (`[journal]`).
    pub journal: Option<JournalFile>,
    /// `[metrics]`: where Prometheus scrapes the agent.
    pub metrics: Option<MetricsSection>,
}

/// The `[metrics]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// The address `GET /metrics` is served on (`127.0.0.1:9717`).
    pub listen: SocketAddr,
}

/// A setting that is one value or a list of them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> From<OneOrMany<T>> for Vec<T> {
    fn from(value: OneOrMany<T>) -> Self {
        match value {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

/// A user, by name or by number.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum NameOrId {
    Id(u32),
    Name(String),
}

impl ConfigFile {
    /// Reads and parses `path`, with errors naming the file, line and field.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text =
            fs::read_to_string(path).map_err(|source| Error::ConfigRead { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        toml::from_str(text).map_err(|err| {
            let (line, column) = line_column(text, err.span().map_or(0, |span| span.start));
            let mut message = redact::messages::without_values(&err.message().replace('\n', " "));
            if let Some(field) = field_at(text, line).filter(|field| !message.contains(field)) {
                message = format!("field `{field}`: {message}");
            }
            Error::ConfigInvalid { path: path.to_owned(), line, column, message }
        })
    }
}

/// The line and column (1-based, the column in bytes) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    (line, before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1)
}

/// The key being assigned at `line` (1-based), looking back over a multi-line value but not
/// past the header of the table it is in.
fn field_at(text: &str, line: usize) -> Option<&str> {
    let lines = text.lines().take(line).collect::<Vec<_>>();
    let in_table = lines.iter().rev().take_while(|l| !l.trim_start().starts_with('['));
    in_table.into_iter().find_map(|l| {
        let (key, _) = l.split_once('=')?;
        let key = key.trim();
        key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then_some(key).filter(|k| !k.is_empty())
    })
}

/// Where alert lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    Stdout,
    File(PathBuf),
}

/// The merged, validated configuration the agent runs with.
#[derive(Debug)]
pub struct Settings {
    /// Secret paths and globs, from profiles, the config file and `--secret`.
    pub secret_patterns: Vec<String>,
    /// Destinations that are not exfiltration: loopback plus the configured networks.
    pub trusted_nets: Vec<IpNet>,
    /// Allowed readers named by the user: each must exist.
    pub allow_readers: Vec<PathBuf>,
    /// Allowed readers from profiles: those not installed on this host are skipped.
    pub profile_allow_readers: Vec<PathBuf>,
    /// The output; `None` when only sinks were configured.
    pub output: Option<OutputTarget>,
    /// The schema the output's documents are written in.
    pub schema: Schema,
    /// More places documents go, from `[[sink]]` and `--sink`.
    pub sinks: Vec<SinkSpec>,
    pub ring_buffer_bytes: u32,
    /// How long taint lasts; `None`: a process's lifetime.
    pub taint_window: Option<Duration>,
    /// Services whose processes are trusted readers and whose memory is protected.
    pub services: Vec<ServiceSpec>,
    /// Database servers whose replies carry a secret store (the homeserver's Postgres).
    pub stores: Vec<DatabaseStore>,
    pub backend: Choice,
    /// Where the kernel programs are pinned to outlive the agent (`keep_loaded`), if they are.
    pub keep_loaded: Option<PathBuf>,
    /// The journal kept, if any.
    pub journal: Option<JournalSettings>,
    /// Where the Prometheus metrics are served; `None`: not at all.
    pub metrics: Option<SocketAddr>,
}

/// Loopback, always trusted: traffic there does not leave the machine.
const LOOPBACK: [IpNet; 2] = [
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
    IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
];

impl Settings {
    /// Merges the command line over the config file (if any) and the chosen profiles.
    pub fn from_args(args: RunArgs) -> Result<Self, Error> {
        let file = match &args.config {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        Self::merge(file, args)
    }

    fn merge(file: ConfigFile, args: RunArgs) -> Result<Self, Error> {
        let synapse = synapse_options(&file, &args);
        let profile_names = if args.profiles.is_empty() {
            file.profiles.unwrap_or_else(|| vec![profiles::DEFAULT.to_owned()])
        } else {
            args.profiles
        };
        let mut secret_patterns = Vec::new();
        let mut profile_allow_readers = Vec::new();
        let mut reads_synapse_config = false;
        let mut services = file.services;
        let mut stores = Vec::new();
        for name in &profile_names {
            let profile = profiles::builtin(name)?;
            secret_patterns.extend(profile.secrets.iter().map(|s| (*s).to_owned()));
            profile_allow_readers.extend(profile.allow_readers.iter().map(PathBuf::from));
            services.extend(profile.services.iter().map(|&(name, exe)| ServiceSpec {
                name: name.to_owned(),
                executables: vec![exe.into()],
                ..ServiceSpec::default()
            }));
            reads_synapse_config |= profile.reads_synapse_config;
        }
        if reads_synapse_config {
            let homeserver = SynapseProfile::read(&synapse)?;
            secret_patterns.extend(homeserver.secret_patterns);
            services.push(homeserver.service);
            stores = homeserver.stores;
        } else if !synapse.is_empty() {
            return Err(SynapseConfigError::WithoutProfile.into());
        }
        secret_patterns.extend(file.secrets);
        secret_patterns.extend(args.secrets);
        for path in args.services {
            allowed_readers::trusted_executable("service", &path)?;
            let name =
                path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
            services.push(ServiceSpec { name, executables: vec![path], ..ServiceSpec::default() });
        }
        let mut allow_readers = file.allow_readers;
        allow_readers.extend(args.allow_readers);

        let mut trusted_nets = LOOPBACK.to_vec();
        trusted_nets.extend(file.trusted_nets);
        trusted_nets.extend(args.trusted_nets);

        let mut sinks = file.sinks;
        sinks.extend(args.sinks);
        // Stdout is the output unless sinks were configured and no output was.
        let output = match args.output.or(file.output).as_deref() {
            None if !sinks.is_empty() => None,
            None | Some("-") => Some(OutputTarget::Stdout),
            Some(path) => Some(OutputTarget::File(PathBuf::from(path))),
        };
        Ok(Self {
            secret_patterns,
            trusted_nets,
            allow_readers,
            profile_allow_readers,
            output,
            schema: args.schema.or(file.schema).unwrap_or_default(),
            sinks,
            ring_buffer_bytes: args.ring_buffer_bytes,
            taint_window: args
                .taint_window
                .or(file.taint_window_secs)
                .filter(|&s| s > 0)
                .map(Duration::from_secs),
            services,
            stores,
            backend: args.backend.or(file.backend).unwrap_or_default(),
            keep_loaded: (args.keep_loaded || file.keep_loaded == Some(true)).then(|| {
                args.pin_dir.or(file.pin_dir).unwrap_or_else(|| PathBuf::from(kernel::pins::DEFAULT_ROOT))
            }),
            journal: JournalSettings::merge(file.journal, args.journal, args.no_journal),
            metrics: args.metrics.or(file.metrics.map(|section| section.listen)),
        })
    }
}

/// The homeserver options: the command line's config paths replace the file's, user likewise,
/// volumes add up.
fn synapse_options(file: &ConfigFile, args: &RunArgs) -> SynapseOptions {
    let configs = if args.synapse_configs.is_empty() {
        file.synapse_config.clone().map(Vec::from).unwrap_or_default()
    } else {
        args.synapse_configs.clone()
    };
    let user = args.synapse_user.clone().or_else(|| {
        file.synapse_user.as_ref().map(|user| match user {
            NameOrId::Id(uid) => uid.to_string(),
            NameOrId::Name(name) => name.clone(),
        })
    });
    let volumes = file.synapse_volumes.iter().chain(&args.synapse_volumes).cloned().collect();
    SynapseOptions { configs, user, volumes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, Error> {
        ConfigFile::parse(text, Path::new("/etc/vigie.toml"))
    }

    #[test]
    fn a_full_config_file_parses() {
        let file = parse(
            "profiles = [\"none\"]\nsecrets = [\"/srv/app/.env\"]\ntrusted_nets = [\"10.0.0.0/8\"]\n\
             allow_readers = [\"/usr/bin/backup\"]\noutput = \"/var/log/vigie.jsonl\"\n",
        )
        .unwrap();
        assert_eq!(file.profiles, Some(vec!["none".to_owned()]));
        assert_eq!(file.secrets, ["/srv/app/.env"]);
        assert_eq!(file.trusted_nets, ["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        assert_eq!(file.allow_readers, [PathBuf::from("/usr/bin/backup")]);
        assert_eq!(file.output.as_deref(), Some("/var/log/vigie.jsonl"));
    }

    #[test]
    fn metrics_and_format_come_from_the_file_unless_the_command_line_says() {
        let file = parse("format = \"ocsf\"\n[metrics]\nlisten = \"127.0.0.1:9717\"\n").unwrap();
        let settings = Settings::merge(file, RunArgs::default()).unwrap();
        assert_eq!(settings.metrics, Some("127.0.0.1:9717".parse().unwrap()));
        assert_eq!(settings.schema, Schema::Ocsf);
        let file = parse("[metrics]\nlisten = \"127.0.0.1:9717\"\n").unwrap();
        let args = RunArgs { metrics: Some("[::1]:9000".parse().unwrap()), ..RunArgs::default() };
        assert_eq!(Settings::merge(file, args).unwrap().metrics, Some("[::1]:9000".parse().unwrap()));
        assert_eq!(
            Settings::merge(ConfigFile::default(), RunArgs::default()).unwrap().metrics,
            None,
            "off by default"
        );
        let err = parse("[metrics]\nlisten = \"127.0.0.1:9717\"\nport = 1\n").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("port"), "{err}");
    }

    #[test]
    fn services_are_tables_with_their_own_fields() {
        let file = parse(
            "[[services]]\nname = \"matrix-synapse\"\nargs = [\"synapse.app.homeserver\"]\nuser = 998\n",
        )
        .unwrap();
        assert_eq!(file.services[0].name, "matrix-synapse");
        assert_eq!(file.services[0].user, Some(998));
        let err = parse("[[services]]\nname = \"x\"\npid = 4\n").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("pid"), "{err}");
    }

    #[test]
    fn synapse_settings_are_one_path_or_a_list_a_user_name_or_id_and_volumes() {
        let file = parse(
            "synapse_config = \"/etc/matrix-synapse/homeserver.yaml\"\nsynapse_user = 998\n\
             synapse_volumes = [\"/srv/synapse:/data\"]\n",
        )
        .unwrap();
        let options = synapse_options(&file, &RunArgs::default());
        assert_eq!(options.configs, [PathBuf::from("/etc/matrix-synapse/homeserver.yaml")]);
        assert_eq!(options.user.as_deref(), Some("998"));
        assert_eq!(options.volumes[0].container, PathBuf::from("/data"));
        let file =
            parse("synapse_config = [\"/a.yaml\", \"/conf.d\"]\nsynapse_user = \"synapse\"\n").unwrap();
        let args = RunArgs { synapse_configs: vec!["/cli.yaml".into()], ..RunArgs::default() };
        let options = synapse_options(&file, &args);
        assert_eq!(options.configs, [PathBuf::from("/cli.yaml")], "the command line replaces the file");
        assert_eq!(options.user.as_deref(), Some("synapse"));
        let err = parse("synapse_volumes = [\"data\"]\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("HOST_DIR:CONTAINER_DIR"), "{err}");
    }

    #[test]
    fn synapse_options_need_the_matrix_synapse_profile() {
        let args = RunArgs {
            profiles: vec!["none".to_owned()],
            synapse_configs: vec!["/srv/homeserver.yaml".into()],
            ..RunArgs::default()
        };
        let err = Settings::merge(ConfigFile::default(), args).unwrap_err().to_string();
        assert!(err.contains("--profile matrix-synapse"), "{err}");
    }

    #[test]
    fn the_matrix_synapse_profile_watches_and_trusts_the_homeserver_it_is_given() {
        let dir = std::env::temp_dir().join(format!("vigie-config-synapse-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("homeserver.yaml");
        fs::write(&config, "server_name: hs.test\n").unwrap();
        let args = RunArgs {
            profiles: vec!["matrix-synapse".to_owned()],
            synapse_configs: vec![config.clone()],
            ..RunArgs::default()
        };
        let settings = Settings::merge(ConfigFile::default(), args).unwrap();
        assert_eq!(settings.secret_patterns[0], config.display().to_string());
        assert_eq!(settings.services[0].configs, [config.display().to_string()]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_journal_table_parses_and_its_bad_fields_are_named_with_their_line() {
        let file = parse("[journal]\npath = \"/srv/j.db\"\nretention_days = 7\nmax_mb = 64\n").unwrap();
        let journal = file.journal.unwrap();
        assert_eq!(
            (journal.path, journal.retention_days, journal.max_mb),
            (Some("/srv/j.db".into()), Some(7), Some(64))
        );
        let err = parse("[journal]\nretention_days = \"soon\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("retention_days"), "{err}");
        let err = parse("[journal]\nsize = 3\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("size"), "{err}");
    }

    #[test]
    fn an_unknown_field_is_named_with_its_line() {
        let err = parse("secrets = []\nsecretz = [\"/x\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("config file /etc/vigie.toml: line 2, column 1:"), "{err}");
        assert!(err.contains("secretz"), "{err}");
    }

    #[test]
    fn a_bad_value_is_named_by_its_field_never_quoted() {
        for (text, place) in [
            ("taint_window_secs = \"s3cr3t-v4lue\"\n", "line 1, column 21: field `taint_window_secs`"),
            ("profiles = \"s3cr3t-v4lue\"\n", "line 1, column 12: field `profiles`"),
            ("[[services]]\nname = \"x\"\nuser = \"s3cr3t-v4lue\"\n", "line 3, column 8: field `user`"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(place) && !err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn sink_tables_parse_each_with_its_own_fields() {
        use sink_specs::{Rotation, SinkKind, SyslogAddress};
        let file = parse(
            "output = \"-\"\n[[sink]]\ntype = \"syslog\"\naddress = \"tcp://127.0.0.1:514\"\n\
             [[sink]]\ntype = \"file\"\npath = \"/var/log/v.jsonl\"\nmax_bytes = 1000\nformat = \"ecs\"\n\
             [[sink]]\ntype = \"webhook\"\nurl = \"https://siem.example/in\"\nspool_dir = \"/s\"\nspool_max_mb = 0.5\n\
             [[sink]]\ntype = \"matrix\"\nhomeserver = \"https://m.example/\"\nroom_id = \"!r:m.example\"\n\
             access_token_file = \"/etc/vigie/token\"\n",
        )
        .unwrap();
        let kinds: Vec<_> = file.sinks.iter().map(|s| s.kind.clone()).collect();
        assert_eq!(kinds[0], SinkKind::Syslog(SyslogAddress::Tcp("127.0.0.1:514".into())));
        let rotation = Some(Rotation { max_bytes: 1000, keep: 5 });
        assert_eq!(kinds[1], SinkKind::File { path: "/var/log/v.jsonl".into(), rotation });
        let SinkKind::Webhook(hook) = &kinds[2] else { panic!("{kinds:?}") };
        assert_eq!((hook.spool_dir.to_str(), hook.spool_max_bytes), (Some("/s"), 524_288));
        let SinkKind::Matrix(room) = &kinds[3] else { panic!("{kinds:?}") };
        assert_eq!((room.homeserver.as_str(), room.rate_per_minute), ("https://m.example", 10));
        let settings = Settings::merge(file, RunArgs::default()).unwrap();
        assert_eq!((settings.output, settings.sinks.len()), (Some(OutputTarget::Stdout), 4));
    }

    #[test]
    fn sinks_without_an_output_leave_stdout_alone() {
        let args = RunArgs {
            sinks: vec![sink_specs::parse_sink_url("syslog+udp://127.0.0.1:514").unwrap()],
            ..RunArgs::default()
        };
        assert_eq!(Settings::merge(ConfigFile::default(), args).unwrap().output, None);
    }

    #[test]
    fn a_bad_sink_table_is_named_by_file_line_column_and_field() {
        for (text, place) in [
            (
                "[[sink]]\ntype = \"syslog\"\n",
                "line 1, column 1: field `address`: required for a syslog sink",
            ),
            (
                "[[sink]]\ntype = \"syslog\"\naddress = \"udp://h\"\n",
                "field `address`: \"udp://h\": expected",
            ),
            (
                "[[sink]]\ntype = \"file\"\npath = \"/x\"\nurl = \"http://h/\"\n",
                "field `url`: belongs to a webhook sink",
            ),
            (
                "secrets = []\n[[sink]]\ntype = \"pigeon\"\n",
                "line 3, column 8: field `type`: unknown variant `pigeon`",
            ),
            (
                "[[sink]]\ntype = \"file\"\npath = \"/x\"\nformat = \"cef\"\n",
                "line 4, column 10: field `format`",
            ),
            (
                "[[sink]]\ntype = \"file\"\npath = \"/x\"\ncolour = 1\n",
                "line 4, column 1: unknown field `colour`",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with("config file /etc/vigie.toml: "), "{err}");
            assert!(err.contains(place), "{place:?} not in {err}");
        }
    }

    #[test]
    fn a_bad_cidr_is_reported_on_its_line() {
        let err = parse("secrets = []\n\ntrusted_nets = [\"10.0.0.0/33\"]\n").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn a_mistyped_field_is_reported() {
        let err = parse("secrets = \"/etc/shadow\"\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("sequence"), "{err}");
        assert!(err.contains("field `secrets`"), "{err}");
    }

    #[test]
    fn command_line_profiles_replace_the_file_and_lists_add_up() {
        let file = ConfigFile {
            profiles: Some(vec!["default".to_owned()]),
            secrets: vec!["/from/file".to_owned()],
            trusted_nets: vec!["10.0.0.0/8".parse().unwrap()],
            ..ConfigFile::default()
        };
        let args = RunArgs {
            profiles: vec!["none".to_owned()],
            secrets: vec!["/from/cli".to_owned()],
            output: Some("-".to_owned()),
            ..RunArgs::default()
        };
        let settings = Settings::merge(file, args).unwrap();
        assert_eq!(settings.secret_patterns, ["/from/file", "/from/cli"]);
        assert_eq!(settings.output, Some(OutputTarget::Stdout));
        let nets: Vec<String> = settings.trusted_nets.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["127.0.0.0/8", "::1/128", "10.0.0.0/8"]);
    }

    #[test]
    fn no_profile_anywhere_means_the_default_profile() {
        let settings = Settings::merge(ConfigFile::default(), RunArgs::default()).unwrap();
        assert!(settings.secret_patterns.iter().any(|p| p.ends_with("homeserver.yaml")));
    }

    #[test]
    fn an_unknown_profile_is_an_error_naming_it() {
        let args = RunArgs { profiles: vec!["nope".to_owned()], ..RunArgs::default() };
        let err = Settings::merge(ConfigFile::default(), args).unwrap_err().to_string();
        assert!(err.contains("\"nope\""), "{err}");
    }
}
