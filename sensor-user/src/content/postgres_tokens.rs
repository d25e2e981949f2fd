//! The access and refresh tokens of a homeserver's Postgres database, read incrementally with
//! the homeserver's own credentials, on a blocking thread (never on the agent's event loop).
//!
//! How it never holds the homeserver up: each read is one connection (`application_name`
//! `vigie`), one `START TRANSACTION READ ONLY` (and `default_transaction_read_only`: nothing
//! it runs can write), and one short `SELECT` by primary key per table. A `SELECT` takes only
//! the `ACCESS SHARE` lock every reader takes, which no insert, update or vacuum waits for;
//! `lock_timeout` gives up at once behind a schema change (a migration's `ACCESS EXCLUSIVE`)
//! rather than queueing in front of the homeserver's own queries, and `statement_timeout`
//! bounds how long a read may run. A failed read is reported and tried again at the next one.
//!
//! Authentication: the role and password of the homeserver's `database.args` (or its `dsn`).
//! Synapse's docs configure a password for `synapse_user` and `host: localhost`, which
//! Debian's `pg_hba.conf` authenticates by password (`scram-sha-256`). Over the unix socket
//! Debian's rule is `peer`: the agent (root) is not the homeserver's OS user, so the server
//! refuses it whatever the password, and the report says authentication failed; a `pg_hba`
//! rule (`local synapse synapse_user scram-sha-256`, or a `pg_ident` map for root) lets it in.

use std::{path::Path, time::Duration};

use postgres::{error::SqlState, Client, Config, NoTls};
use zeroize::Zeroizing;

use super::database::{new_rows_query, NewTokens, TokenCursor, ROWS_PER_REFRESH, TABLES};
use crate::config::synapse_database::{DatabaseStore, Endpoint, Password};

/// How long connecting may take: a server that does not answer is tried again later.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The session's settings: nothing it runs writes; no statement runs long, or waits long
/// for a lock; a transaction left open (the agent stopped mid-read) is ended by the server.
const SESSION_OPTIONS: &str = "-c default_transaction_read_only=on -c statement_timeout=2000 \
                               -c lock_timeout=100 -c idle_in_transaction_session_timeout=5000";

/// One Postgres database of the homeserver, and how far its token tables have been read.
#[derive(Debug, Clone)]
pub struct PostgresTokens {
    /// What its tokens are named after: `postgresql:unix:/run/postgresql/.s.PGSQL.5432/synapse`.
    pub label: String,
    /// The homeserver setting it comes from (`database`), named in errors.
    setting: String,
    endpoint: Endpoint,
    dbname: Option<String>,
    user: Option<String>,
    password: Option<Password>,
    cursor: TokenCursor,
}

impl PostgresTokens {
    /// The token tables of `store`, none read yet.
    pub fn new(store: &DatabaseStore) -> Self {
        let dbname = store.dbname.as_deref().or(store.user.as_deref()).unwrap_or("postgres");
        Self {
            label: format!("postgresql:{}/{dbname}", store.endpoint),
            setting: store.setting.clone(),
            endpoint: store.endpoint.clone(),
            dbname: store.dbname.clone(),
            user: store.user.clone(),
            password: store.password.clone(),
            cursor: TokenCursor::default(),
        }
    }

    /// The tokens added to the database since the cursor, at most `ROWS_PER_REFRESH` a table.
    /// Blocks (connecting, querying): call it on a blocking thread. The error is a reason to
    /// report: it names settings, never a value.
    pub fn new_tokens(&mut self) -> Result<NewTokens, String> {
        let Some(config) = self.config() else {
            return Err(format!(
                "database not read: `{}.args.user` is not set (the role would be the homeserver's OS user)",
                self.setting
            ));
        };
        let mut client = config.connect(NoTls).map_err(|err| self.reason(&err))?;
        let result = self.read(&mut client).map_err(|err| self.reason(&err));
        drop(client.close());
        result
    }

    fn read(&mut self, client: &mut Client) -> Result<NewTokens, postgres::Error> {
        let mut transaction = client.build_transaction().read_only(true).start()?;
        let mut tokens = Vec::new();
        let mut more = false;
        let limit = i64::from(ROWS_PER_REFRESH);
        for (table, (name, _)) in TABLES.iter().enumerate() {
            let rows =
                transaction.query(new_rows_query(name).as_str(), &[&self.cursor.after(table), &limit])?;
            more |= rows.len() >= ROWS_PER_REFRESH as usize;
            for row in rows {
                let token = Zeroizing::new(row.try_get::<_, String>(1)?);
                self.cursor.saw(table, row.try_get(0)?);
                tokens.push((table, token));
            }
        }
        transaction.commit()?;
        Ok(NewTokens { tokens, more })
    }

    /// How to connect as the homeserver does; `None` without a role to connect as.
    fn config(&self) -> Option<Config> {
        let mut config = Config::new();
        config
            .user(self.user.as_deref()?)
            .application_name("vigie")
            .options(SESSION_OPTIONS)
            .connect_timeout(CONNECT_TIMEOUT);
        match &self.endpoint {
            Endpoint::UnixSocket(socket) => {
                config.host_path(socket.parent().unwrap_or(Path::new("/"))).port(socket_port(socket)?);
            }
            Endpoint::Tcp { host, port } => {
                config.host(host).port(*port);
            }
        }
        if let Some(dbname) = &self.dbname {
            config.dbname(dbname);
        }
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        Some(config)
    }

    /// Why a read failed, by what the server or the connection said: never the server's
    /// message, whose detail may quote a value.
    fn reason(&self, err: &postgres::Error) -> String {
        let why = match err.code() {
            Some(code) => reason_of_state(code, &self.setting),
            None => match std::error::Error::source(err).and_then(|s| s.downcast_ref::<std::io::Error>()) {
                Some(io) => format!("server not reachable at {} ({io})", self.endpoint),
                // The client's own errors (a password the server asks for and the config lacks).
                None => err.to_string(),
            },
        };
        format!("database not read: {why}")
    }
}

/// The reason to report for the server's error `code` (setting `setting`).
fn reason_of_state(code: &SqlState, setting: &str) -> String {
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        format!("authentication failed (the role and password of `{setting}.args`, or pg_hba.conf)")
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        format!("no such database (`{setting}.args.dbname`)")
    } else if *code == SqlState::UNDEFINED_TABLE {
        "no token tables (yet)".to_owned()
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        "the role may not read the token tables".to_owned()
    } else if *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::QUERY_CANCELED {
        "a lock or statement timeout (the table was busy)".to_owned()
    } else {
        format!("server error (SQLSTATE {})", code.code())
    }
}

/// The port in a socket's name (`.s.PGSQL.5432`).
fn socket_port(socket: &Path) -> Option<u16> {
    socket.file_name()?.to_str()?.strip_prefix(".s.PGSQL.")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(endpoint: Endpoint, password: Option<&str>) -> DatabaseStore {
        DatabaseStore {
            setting: "database".to_owned(),
            endpoint,
            dbname: Some("synapse".to_owned()),
            user: Some("synapse_user".to_owned()),
            password: password.map(|p| Password::new(p.to_owned())),
        }
    }

    #[test]
    fn the_query_reads_rows_after_the_cursor_by_primary_key() {
        assert_eq!(
            new_rows_query("access_tokens"),
            "SELECT CAST(id AS BIGINT), token FROM access_tokens WHERE id > CAST($1 AS BIGINT) ORDER BY id LIMIT $2"
        );
        let mut cursor = TokenCursor::default();
        assert_eq!(cursor.after(0), i64::MIN);
        cursor.saw(0, 7);
        cursor.saw(0, 3);
        assert_eq!((cursor.after(0), cursor.after(1)), (7, i64::MIN), "the largest id, per table");
    }

    #[test]
    fn connects_as_the_homeserver_read_only_and_named() {
        let socket = PostgresTokens::new(&store(Endpoint::UnixSocket("/run/pg/.s.PGSQL.5433".into()), None));
        assert_eq!(socket.label, "postgresql:unix:/run/pg/.s.PGSQL.5433/synapse");
        let config = socket.config().expect("a role");
        assert_eq!(config.get_hosts(), [postgres::config::Host::Unix("/run/pg".into())]);
        assert_eq!(config.get_ports(), [5433]);
        assert_eq!(config.get_user(), Some("synapse_user"));
        assert_eq!(config.get_application_name(), Some("vigie"));
        assert!(config.get_options().is_some_and(|o| o.contains("default_transaction_read_only=on")));
        assert_eq!(config.get_password(), None);

        let tcp = store(Endpoint::Tcp { host: "localhost".into(), port: 5432 }, Some("s3cret-pw"));
        let tcp = PostgresTokens::new(&tcp);
        let config = tcp.config().expect("a role");
        assert_eq!(config.get_hosts(), [postgres::config::Host::Tcp("localhost".into())]);
        assert_eq!(config.get_password(), Some(&b"s3cret-pw"[..]));
        assert!(!format!("{tcp:?}").contains("s3cret-pw"), "Debug shows no password: {tcp:?}");
    }

    #[test]
    fn without_a_role_nothing_is_tried_and_the_setting_is_named() {
        let mut nobody = store(Endpoint::Tcp { host: "db".into(), port: 5432 }, Some("s3cret-pw"));
        nobody.user = None;
        nobody.setting = "databases.main".to_owned();
        let err = PostgresTokens::new(&nobody).new_tokens().expect_err("no role");
        assert!(err.contains("`databases.main.args.user`"), "{err}");
        assert!(!err.contains("s3cret-pw"), "{err}");
    }

    #[test]
    fn reasons_name_settings_never_values() {
        let auth = reason_of_state(&SqlState::INVALID_PASSWORD, "database");
        assert!(auth.contains("authentication failed") && auth.contains("`database.args`"), "{auth}");
        assert_eq!(
            reason_of_state(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION, "database"),
            auth,
            "peer or pg_hba refusal"
        );
        assert_eq!(reason_of_state(&SqlState::UNDEFINED_TABLE, "database"), "no token tables (yet)");
        assert!(reason_of_state(&SqlState::LOCK_NOT_AVAILABLE, "database").contains("lock"));
        assert_eq!(reason_of_state(&SqlState::DATA_EXCEPTION, "database"), "server error (SQLSTATE 22000)");
    }

    #[test]
    fn an_unreachable_server_is_a_reason_naming_where() {
        // A socket directory nobody listens in: the connection fails at once.
        let dir = std::env::temp_dir().join(format!("vigie-pg-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join(".s.PGSQL.5432");
        let mut tokens = PostgresTokens::new(&store(Endpoint::UnixSocket(socket.clone()), Some("s3cret-pw")));
        let err = tokens.new_tokens().expect_err("nobody listens");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.starts_with("database not read: server not reachable at unix:"), "{err}");
        assert!(err.contains(&socket.display().to_string()) && !err.contains("s3cret-pw"), "{err}");
        assert_eq!(tokens.cursor, TokenCursor::default(), "nothing read");
    }
}
