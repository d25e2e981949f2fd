//! The homeserver's databases, from its `database` (and `databases.NAME`) settings: a sqlite3
//! database is a file to watch; a Postgres one (`name: psycopg2`) is a store server to find,
//! by where it listens. Its `args` are what Synapse hands `psycopg2.connect`: libpq's `host`
//! (a directory: the unix socket `HOST/.s.PGSQL.PORT`; else a host name or address), `port`
//! (default 5432), `dbname` or `database`, `user`, `password`, or a `dsn` (`key=value ...` or
//! a `postgresql://` URI). The `user` and `password` are kept to read the token tables with
//! the homeserver's own credentials; the password is zeroed when dropped and never shown.

use std::path::PathBuf;

use serde_norway::{Mapping, Value};
use zeroize::Zeroizing;

use crate::config::synapse_config::{SynapseConfigError, SynapseSettings};

/// libpq's port when none is given.
const DEFAULT_PORT: u16 = 5432;
/// libpq's socket directory when no host is given (Debian's build, and psycopg2's wheels).
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// The store's name in alerts (`vigie.secret.name`).
pub const STORE_NAME: &str = "homeserver database";

/// Where a database server listens, as the homeserver reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket: `HOST/.s.PGSQL.PORT`.
    UnixSocket(PathBuf),
    /// A TCP port on `host` (a name or an address); served here if a process of this host
    /// listens on it.
    Tcp { host: String, port: u16 },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnixSocket(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
        }
    }
}

/// A Postgres database the homeserver keeps its data in (access tokens among it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseStore {
    /// The setting it comes from (`database`, `databases.main`).
    pub setting: String,
    pub endpoint: Endpoint,
    /// The database's name, if the config gives it.
    pub dbname: Option<String>,
    /// The role the homeserver connects as, if the config gives it.
    pub user: Option<String>,
    /// Its password, if the config gives one.
    pub password: Option<Password>,
}

/// A database password from the homeserver's config: zeroed when dropped, and no `Debug`
/// or `Display` shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// `text`, held until dropped.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The password, to hand the connection and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Every configured database (`database`, `databases.NAME`) with the setting that names it.
pub fn configured(settings: &SynapseSettings) -> Result<Vec<(String, &Mapping)>, SynapseConfigError> {
    let mut configured: Vec<(String, &Value)> = Vec::new();
    if let Some(database) = settings.get("database") {
        configured.push(("database".to_owned(), database));
    }
    if let Some(databases) = settings.get("databases") {
        let mapping = databases.as_mapping().ok_or_else(|| settings.bad("databases", "a mapping"))?;
        for (name, database) in mapping {
            configured.push((format!("databases.{}", name.as_str().unwrap_or("?")), database));
        }
    }
    configured
        .into_iter()
        .map(|(key, database)| match database.as_mapping() {
            Some(mapping) => Ok((key, mapping)),
            None => Err(settings.bad(&key, "a mapping with `name` and `args`")),
        })
        .collect()
}

/// The Postgres databases of the homeserver (`name: psycopg2`).
pub fn postgres_stores(settings: &SynapseSettings) -> Result<Vec<DatabaseStore>, SynapseConfigError> {
    let mut stores = Vec::new();
    for (key, database) in configured(settings)? {
        if database.get("name").and_then(Value::as_str) != Some("psycopg2") {
            continue;
        }
        let args = match database.get("args") {
            None | Some(Value::Null) => Mapping::new(),
            Some(Value::Mapping(args)) => args.clone(),
            Some(_) => return Err(settings.bad(&format!("{key}.args"), "a mapping")),
        };
        let store = store(&args, &key).map_err(|(field, expected)| settings.bad(&field, expected))?;
        // Databases on one server (workers' `databases.*`) are one store.
        if !stores.iter().any(|known: &DatabaseStore| known.endpoint == store.endpoint) {
            stores.push(store);
        }
    }
    Ok(stores)
}

/// A misshapen argument: its setting, and what it must be.
type BadArg = (String, &'static str);

/// The store `args` (of setting `key`) connect to: `dsn`'s keywords, then the arguments
/// themselves (which libpq lets override the DSN's).
fn store(args: &Mapping, key: &str) -> Result<DatabaseStore, BadArg> {
    let field = |name: &str| format!("{key}.args.{name}");
    let mut keywords: Vec<(String, String)> = Vec::new();
    if let Some(dsn) = args.get("dsn").filter(|v| !v.is_null()) {
        let dsn = dsn.as_str().ok_or_else(|| (field("dsn"), "a libpq connection string"))?;
        keywords = parse_dsn(dsn).ok_or_else(|| (field("dsn"), "a libpq connection string"))?;
    }
    for name in ["host", "port", "dbname", "database", "user", "password"] {
        match args.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => keywords.push((name.to_owned(), text.clone())),
            Some(Value::Number(number)) if matches!(name, "port" | "password") => {
                keywords.push((name.to_owned(), number.to_string()));
            }
            Some(_) => return Err((field(name), if name == "port" { "a port number" } else { "a string" })),
        }
    }
    let last = |name: &str| keywords.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let port = match last("port") {
        None => DEFAULT_PORT,
        Some(text) => {
            text.trim().parse().ok().filter(|&p| p != 0).ok_or_else(|| (field("port"), "a port number"))?
        }
    };
    // libpq takes a list of hosts and tries them in turn; the first is the server it uses.
    let host = last("host").map(|h| h.split(',').next().unwrap_or_default().trim().to_owned());
    let endpoint = match host.as_deref() {
        None | Some("") => Endpoint::UnixSocket(socket_in(DEFAULT_SOCKET_DIR, port)),
        Some(dir) if dir.starts_with('/') => Endpoint::UnixSocket(socket_in(dir, port)),
        Some(host) => Endpoint::Tcp { host: host.to_owned(), port },
    };
    Ok(DatabaseStore {
        setting: key.to_owned(),
        endpoint,
        dbname: last("dbname").or_else(|| last("database")),
        user: last("user"),
        password: last("password").map(Password::new),
    })
}

/// The socket a server listening on `port` makes in directory `dir`.
fn socket_in(dir: &str, port: u16) -> PathBuf {
    PathBuf::from(dir).join(format!(".s.PGSQL.{port}"))
}

/// The keywords of a libpq connection string: `key=value key='quoted value' ...` or a URI
/// `postgresql://[user[:password]@][host][:port][/dbname][?key=value&...]`. `None` if it is
/// neither. Only `host`, `port`, `dbname`, `user` and `password` are kept.
fn parse_dsn(dsn: &str) -> Option<Vec<(String, String)>> {
    let keep = |k: &str| matches!(k, "host" | "port" | "dbname" | "user" | "password");
    let dsn = dsn.trim();
    if let Some(rest) = dsn.strip_prefix("postgresql://").or_else(|| dsn.strip_prefix("postgres://")) {
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, dbname) = main.split_once('/').unwrap_or((main, ""));
        let (userinfo, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !host_port.ends_with(']') => (host, port),
            _ => (host_port, ""),
        };
        let parts =
            [("user", user), ("password", password), ("host", host), ("port", port), ("dbname", dbname)];
        let mut keywords: Vec<(String, String)> = parts
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_owned(), percent_decoded(v.trim_start_matches('[').trim_end_matches(']'))))
            .collect();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=')?;
            if keep(k) {
                keywords.push((k.to_owned(), percent_decoded(v)));
            }
        }
        return Some(keywords);
    }
    let mut keywords = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Some(keywords);
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=')?;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\'' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())));
        }
        if key.is_empty() {
            return None;
        }
        if keep(&key) {
            keywords.push((key, value));
        }
    }
}

/// `%XX` escapes of a URI part decoded (a socket directory in a URI's host is written so).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex =
            bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use super::*;
    use crate::config::synapse_config::PathMap;

    fn stores_of(name: &str, yaml: &str) -> Result<Vec<DatabaseStore>, SynapseConfigError> {
        let dir = std::env::temp_dir().join(format!("vigie-synapse-db-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("homeserver.yaml");
        fs::write(&config, format!("server_name: a\n{yaml}")).unwrap();
        let settings = SynapseSettings::read(std::slice::from_ref(&config), &PathMap::default()).unwrap();
        let stores = postgres_stores(&settings);
        fs::remove_dir_all(&dir).unwrap();
        stores
    }

    fn endpoint(stores: &[DatabaseStore]) -> &Endpoint {
        &stores[0].endpoint
    }

    #[test]
    fn psycopg2_args_name_a_socket_directory_or_a_tcp_host() {
        let socket = stores_of(
            "socket",
            "database:\n  name: psycopg2\n  args:\n    host: /srv/pg\n    port: 5433\n    dbname: synapse\n    \
             user: synapse\n    password: hunter2\n",
        )
        .unwrap();
        assert_eq!(endpoint(&socket), &Endpoint::UnixSocket("/srv/pg/.s.PGSQL.5433".into()));
        assert_eq!(socket[0].dbname.as_deref(), Some("synapse"));
        assert_eq!(socket[0].setting, "database");
        assert_eq!(socket[0].user.as_deref(), Some("synapse"));
        assert_eq!(socket[0].password.as_ref().map(Password::expose), Some("hunter2"));
        assert!(!format!("{socket:?}").contains("hunter2"), "Debug shows no password: {socket:?}");

        let tcp = stores_of(
            "tcp",
            "database: {name: psycopg2, args: {host: 127.0.0.1, port: '6432', database: m}}\n",
        )
        .unwrap();
        assert_eq!(endpoint(&tcp), &Endpoint::Tcp { host: "127.0.0.1".into(), port: 6432 });
        assert_eq!(tcp[0].dbname.as_deref(), Some("m"));
        assert_eq!(endpoint(&tcp).to_string(), "tcp:127.0.0.1:6432");
    }

    #[test]
    fn libpq_defaults_apply_and_sqlite_is_no_store() {
        let defaults = stores_of("defaults", "database: {name: psycopg2, args: {user: synapse}}\n").unwrap();
        assert_eq!(endpoint(&defaults), &Endpoint::UnixSocket("/var/run/postgresql/.s.PGSQL.5432".into()));
        assert_eq!(defaults[0].dbname, None);
        let no_args = stores_of("no-args", "database: {name: psycopg2}\n").unwrap();
        assert_eq!(endpoint(&no_args), endpoint(&defaults));
        let sqlite = stores_of("sqlite", "database: {name: sqlite3, args: {database: /x.db}}\n").unwrap();
        assert!(sqlite.is_empty());
        let workers = stores_of(
            "databases",
            "databases:\n  main: {name: psycopg2, args: {host: db.internal}}\n  state: {name: psycopg2, args: {host: db.internal}}\n",
        )
        .unwrap();
        assert_eq!(workers.len(), 1, "one server, named once: {workers:?}");
        assert_eq!(workers[0].setting, "databases.main");
    }

    /// The one store of `database: {name: psycopg2, args: ARGS}`.
    fn psycopg2(name: &str, args: &str) -> DatabaseStore {
        stores_of(name, &format!("database: {{name: psycopg2, args: {args}}}\n")).unwrap().remove(0)
    }

    #[test]
    fn a_dsn_gives_keywords_that_the_arguments_override() {
        let keywords = psycopg2("dsn", "{dsn: \"host='/run/my pg' port = 5434 dbname=s password=x\"}");
        assert_eq!(keywords.endpoint, Endpoint::UnixSocket("/run/my pg/.s.PGSQL.5434".into()));
        let uri = psycopg2("uri", "{dsn: 'postgresql://u:pw@[::1]:5435/syn'}");
        assert_eq!(uri.endpoint, Endpoint::Tcp { host: "::1".into(), port: 5435 });
        assert_eq!(uri.dbname.as_deref(), Some("syn"));
        assert_eq!(uri.user.as_deref(), Some("u"));
        assert_eq!(uri.password.as_ref().map(Password::expose), Some("pw"));
        assert_eq!(keywords.password.as_ref().map(Password::expose), Some("x"));
        let socket_uri = psycopg2("uri-socket", "{dsn: 'postgresql://%2Fsrv%2Fpg/syn'}");
        assert_eq!(socket_uri.endpoint, Endpoint::UnixSocket("/srv/pg/.s.PGSQL.5432".into()));
        let overridden = psycopg2("override", "{dsn: 'host=a port=1', port: 2}");
        assert_eq!(overridden.endpoint, Endpoint::Tcp { host: "a".into(), port: 2 });
    }

    #[test]
    fn misshapen_arguments_name_file_line_and_setting_never_a_value() {
        let err =
            stores_of("port", "database:\n  name: psycopg2\n  args:\n    password: hunter2\n    port: abc\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("homeserver.yaml line 6"), "{err}");
        assert!(err.contains("`database.args.port` must be a port number"), "{err}");
        assert!(!err.contains("abc") && !err.contains("hunter2"), "{err}");
        let err = stores_of("zero", "database: {name: psycopg2, args: {port: 0}}\n").unwrap_err().to_string();
        assert!(err.contains("`database.args.port`"), "{err}");
        let err = stores_of("dsn-bad", "database: {name: psycopg2, args: {dsn: \"host='unterminated\"}}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`database.args.dsn` must be a libpq connection string"), "{err}");
        assert!(!err.contains("unterminated"), "{err}");
        let err = stores_of("args", "database: {name: psycopg2, args: [a]}\n").unwrap_err().to_string();
        assert!(err.contains("`database.args` must be a mapping") && err.contains("line 2"), "{err}");
        assert!(Path::new(DEFAULT_SOCKET_DIR).is_absolute());
    }
}
