//! The recognizer end to end: real files through the secret catalog, traffic encoded by
//! encoders written here (independent of [`super::encodings`]), scanned whole and split.

use std::{collections::hash_map::RandomState, fmt::Write, fs, path::PathBuf, time::Instant};

use super::{encodings::base64_padded, *};
use crate::state::secret_catalog::SecretCatalog;

/// A value with bytes that every encoding changes: `"` `\` `/` `%` `&`, a space, and `?`/`>`
/// whose low 6 bits are base64's `/`/`+`.
const SHARED_SECRET: &str = r#"reg "sh\ared"/s3cr3t%&?>?>"#;
const HANDED_OUT: &str = "pg-password-0123456789";
const SYT: &str = "syt_YWRtaW4_hphggrTyVrHnOIUuDGsS_1hCggm";

struct Setup {
    dir: PathBuf,
    catalog: SecretCatalog,
    recognizer: Recognizer,
}

fn setup(name: &str, files: &[(&str, &str)]) -> Setup {
    let dir = std::env::temp_dir().join(format!("vigie-content-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (file, content) in files {
        fs::write(dir.join(file), content).unwrap();
    }
    let patterns: Vec<String> = files.iter().map(|(file, _)| dir.join(file).display().to_string()).collect();
    let catalog = SecretCatalog::resolve(&patterns);
    let recognizer = Recognizer::new(&RandomState::new(), &catalog);
    Setup { dir, catalog, recognizer }
}

fn homeserver() -> String {
    format!(
        "server_name: example.org\nregistration_shared_secret: '{SHARED_SECRET}'\n\
             database:\n  name: psycopg2\n  args:\n    password: {HANDED_OUT}\n"
    )
}

fn stream(port: u16) -> StreamKey {
    StreamKey { pid: 4242, destination: std::net::SocketAddr::from(([10, 213, 0, 2], port)) }
}

/// The traffic forms a client would send, each with the encodings it may be reported under
/// (a base64url form that has no `-`/`_` is the standard one, reported as base64).
fn encoded_traffic(value: &str) -> Vec<(String, Vec<u8>, &'static [Encoding])> {
    let mut cases: Vec<(String, Vec<u8>, &'static [Encoding])> = Vec::new();
    cases.push((
        "raw".into(),
        format!("POST / HTTP/1.1\r\n\r\nsecret={value}&x=1").into_bytes(),
        &[Encoding::Raw],
    ));
    let json = serde_json::to_string(&serde_json::json!({ "secret": value })).unwrap();
    cases.push(("json".into(), json.into_bytes(), &[Encoding::JsonEscaped]));
    let percent: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    cases.push(("percent".into(), format!("GET /?s={percent} HTTP/1.1").into_bytes(), &[Encoding::Percent]));
    let hex = value.bytes().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    });
    cases.push(("hex".into(), format!("d={hex};").into_bytes(), &[Encoding::Hex]));
    cases.push(("HEX".into(), format!("d={};", hex.to_uppercase()).into_bytes(), &[Encoding::Hex]));
    for prefix in ["", "a", "ab"] {
        let message = format!("{prefix}secret={value}\n");
        let standard = base64_padded(message.as_bytes(), false);
        let url = base64_padded(message.as_bytes(), true);
        cases.push((format!("base64 +{}", prefix.len()), standard.clone().into_bytes(), &[Encoding::Base64]));
        let unpadded = standard.trim_end_matches('=').to_owned();
        cases.push((
            format!("base64 unpadded +{}", prefix.len()),
            unpadded.into_bytes(),
            &[Encoding::Base64],
        ));
        let both: &[Encoding] = &[Encoding::Base64Url, Encoding::Base64];
        cases.push((format!("base64url +{}", prefix.len()), url.into_bytes(), both));
        // `base64` wraps at 76 columns, `base64 -w 16` at 16 (always inside the form), PEM at 64.
        for (width, newline) in [(76, "\n"), (16, "\n"), (16, "\r\n")] {
            let lines: Vec<&str> =
                standard.as_bytes().chunks(width).map(|l| std::str::from_utf8(l).unwrap()).collect();
            let wrapped = lines.join(newline) + newline;
            cases.push((
                format!("base64 wrapped at {width} +{}", prefix.len()),
                wrapped.into_bytes(),
                &[Encoding::Base64],
            ));
        }
    }
    cases
}

fn assert_found(matches: &[ContentMatch], name: &str, encodings: &[Encoding], case: &str) {
    assert_eq!(matches.len(), 1, "{case}: {matches:?}");
    assert!(matches[0].secret.starts_with(name), "{case}: {matches:?}");
    assert!(encodings.contains(&matches[0].encoding), "{case}: {matches:?}");
}

#[test]
fn every_encoding_and_alignment_is_found_whole_and_split_in_two_and_three() {
    let mut s = setup("encodings", &[("homeserver.yaml", &homeserver())]);
    let name = "registration_shared_secret of ";
    let mut port = 0;
    for (case, traffic, encodings) in encoded_traffic(SHARED_SECRET) {
        port += 1;
        assert_found(&s.recognizer.scan(&stream(port), &traffic, Scope::Tainted), name, encodings, &case);
        for cut in 1..traffic.len() {
            port += 1;
            let mut matches = s.recognizer.scan(&stream(port), &traffic[..cut], Scope::Tainted);
            matches.extend(s.recognizer.scan(&stream(port), &traffic[cut..], Scope::Tainted));
            assert_found(&matches, name, encodings, &format!("{case} cut at {cut}"));
        }
        for first in (1..traffic.len() - 1).step_by(3) {
            let second = first + (traffic.len() - first) / 2;
            port += 1;
            let matches: Vec<ContentMatch> = [&traffic[..first], &traffic[first..second], &traffic[second..]]
                .iter()
                .flat_map(|part| s.recognizer.scan(&stream(port), part, Scope::Tainted))
                .collect();
            assert_found(&matches, name, encodings, &format!("{case} cut at {first} and {second}"));
        }
        s.recognizer.forget_process(4242);
    }
}

/// `base64 FILE`'s output (GNU coreutils: wrapped at 76 columns).
fn gnu_base64(data: &[u8]) -> Vec<u8> {
    let text = base64_padded(data, false);
    let lines: Vec<&[u8]> = text.as_bytes().chunks(76).collect();
    [lines.join(&b'\n'), b"\n".to_vec()].concat()
}

#[test]
fn a_generated_config_and_signing_key_sent_through_base64_are_recognised() {
    let config = include_str!("values/fixtures/homeserver.yaml");
    let signing_key = include_str!("values/fixtures/example.org.signing.key");
    let mut s = setup("generated", &[("homeserver.yaml", config), ("example.org.signing.key", signing_key)]);
    let traffic =
        [b"POST / HTTP/1.1\r\nContent-Length: 4096\r\n\r\n".as_slice(), &gnu_base64(config.as_bytes())]
            .concat();
    let matches: Vec<ContentMatch> =
        traffic.chunks(1000).flat_map(|part| s.recognizer.scan(&stream(1), part, Scope::Tainted)).collect();
    let mut names: Vec<&str> = matches.iter().map(|m| m.secret.split(" of ").next().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["form_secret", "macaroon_secret_key", "registration_shared_secret"], "{matches:?}");
    assert!(matches.iter().all(|m| m.encoding == Encoding::Base64));

    // The seed is the homeserver's own: it counts in its traffic too (unwrapped, `base64 -w0`).
    let wrapped = gnu_base64(signing_key.as_bytes());
    let unwrapped = base64_padded(signing_key.as_bytes(), false);
    for (port, traffic, scope) in
        [(2, &wrapped, Scope::Tainted), (3, &unwrapped.into_bytes(), Scope::TrustedService)]
    {
        let matches = s.recognizer.scan(&stream(port), traffic, scope);
        assert_eq!(matches.len(), 1, "{scope:?} {matches:?}");
        assert!(matches[0].secret.starts_with("signing key seed of "), "{matches:?}");
    }
}

#[test]
fn a_match_names_its_source_and_fingerprint_and_unrelated_bytes_match_nothing() {
    let mut s = setup("source", &[("homeserver.yaml", &homeserver())]);
    let path = s.dir.join("homeserver.yaml");
    let matches = s.recognizer.scan(&stream(1), format!("x{SHARED_SECRET}x").as_bytes(), Scope::Tainted);
    assert_eq!(matches[0].secret, format!("registration_shared_secret of {}", path.display()));
    assert_eq!(matches[0].source, Source::File(path));
    assert_eq!(matches[0].fingerprint.len(), 6);
    assert_eq!(matches[0].encoding.as_str(), "raw");
    // Everything but the last byte, and ordinary traffic: silent.
    let cut = &SHARED_SECRET[..SHARED_SECRET.len() - 1];
    assert_eq!(s.recognizer.scan(&stream(2), format!("x{cut}_x").as_bytes(), Scope::Tainted), []);
    assert_eq!(
        s.recognizer.scan(&stream(3), b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", Scope::Tainted),
        []
    );
}

#[test]
fn a_trusted_service_is_matched_on_its_own_secrets_only() {
    let mut s = setup("scope", &[("homeserver.yaml", &homeserver())]);
    let traffic = format!("{SHARED_SECRET} {HANDED_OUT} Bearer {SYT} ");
    let tainted = s.recognizer.scan(&stream(1), traffic.as_bytes(), Scope::Tainted);
    let names: Vec<&str> = tainted.iter().map(|m| m.secret.split(" of ").next().unwrap()).collect();
    assert_eq!(
        names,
        ["registration_shared_secret", "database.args.password", "access token (syt_ checksum)"]
    );
    let trusted = s.recognizer.scan(&stream(2), traffic.as_bytes(), Scope::TrustedService);
    assert_eq!(trusted.len(), 1);
    assert_eq!(trusted[0], tainted[0]);
}

#[test]
fn a_token_split_across_three_scans_is_recognised_by_its_checksum() {
    let mut s = setup("token", &[("homeserver.yaml", &homeserver())]);
    let traffic = format!("GET /_matrix/client/v3/sync HTTP/1.1\r\nAuthorization: Bearer {SYT}\r\n");
    let at = traffic.find("syt_").unwrap();
    let cuts = [at + 2, at + 20, traffic.len()];
    let mut matches = Vec::new();
    let mut from = 0;
    for cut in cuts {
        matches.extend(s.recognizer.scan(&stream(1), &traffic.as_bytes()[from..cut], Scope::Tainted));
        from = cut;
    }
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(matches[0].source, Source::TokenFormat);
}

#[test]
fn forgotten_and_evicted_streams_lose_their_tails_and_others_keep_theirs() {
    let mut s = setup("forget", &[("homeserver.yaml", &homeserver())]);
    let (head, tail) = SHARED_SECRET.split_at(10);
    let other = StreamKey { pid: 7, ..stream(1) };
    s.recognizer.scan(&stream(1), head.as_bytes(), Scope::Tainted);
    s.recognizer.scan(&other, head.as_bytes(), Scope::Tainted);
    s.recognizer.forget_process(4242);
    assert_eq!(s.recognizer.scan(&stream(1), tail.as_bytes(), Scope::Tainted), []);
    assert_eq!(s.recognizer.scan(&other, tail.as_bytes(), Scope::Tainted).len(), 1);

    // The least recently used stream goes first, and is counted.
    s.recognizer.scan(&stream(1), head.as_bytes(), Scope::Tainted);
    s.recognizer.scan(&other, head.as_bytes(), Scope::Tainted);
    for port in 2..=u16::try_from(streams::MAX_STREAMS).unwrap() {
        s.recognizer.scan(&stream(port), b"-", Scope::Tainted);
    }
    assert_eq!(s.recognizer.report().streams_evicted, 1);
    assert_eq!(s.recognizer.scan(&other, tail.as_bytes(), Scope::Tainted).len(), 1);
    // Its stream comes back empty (evicting the next oldest).
    assert_eq!(s.recognizer.scan(&stream(1), tail.as_bytes(), Scope::Tainted), []);
    assert_eq!(s.recognizer.report().streams_evicted, 2);
}

#[test]
fn refresh_takes_a_changed_value_and_drops_the_old_one() {
    let mut s = setup("refresh", &[("homeserver.yaml", &homeserver())]);
    let new_secret = "a-new-shared-secret-after-rotation";
    fs::write(s.dir.join("homeserver.yaml"), format!("registration_shared_secret: {new_secret}\n")).unwrap();
    s.recognizer.refresh(&s.catalog, |_| true);
    assert_eq!(s.recognizer.scan(&stream(1), SHARED_SECRET.as_bytes(), Scope::Tainted), []);
    assert_eq!(s.recognizer.scan(&stream(2), new_secret.as_bytes(), Scope::Tainted).len(), 1);
    // A control: the old value was recognised before the change.
    let s = setup("refresh-control", &[("homeserver.yaml", &homeserver())]);
    let mut recognizer = s.recognizer;
    assert_eq!(recognizer.scan(&stream(1), SHARED_SECRET.as_bytes(), Scope::Tainted).len(), 1);
}

#[test]
fn report_counts_values_by_source_and_names_what_was_skipped() {
    let s = setup(
        "report",
        &[
            ("homeserver.yaml", "form_secret: short\nmacaroon_secret_key: long-enough-macaroon-key\n"),
            ("notes", "a\nb\n"),
        ],
    );
    let report: RecognizerReport = s.recognizer.report();
    assert_eq!(report.values, 1);
    assert_eq!(report.sources[0].values, 1);
    let skipped: Vec<(&str, &str)> =
        report.skipped.iter().map(|k| (k.name.as_str(), k.reason.as_str())).collect();
    let yaml = s.dir.join("homeserver.yaml");
    let notes = s.dir.join("notes");
    assert!(
        skipped.contains(&(&format!("form_secret of {}", yaml.display()), "shorter than the minimum")),
        "{skipped:?}"
    );
    assert!(skipped.contains(&(&notes.display().to_string(), "unknown format")), "{skipped:?}");
}

#[test]
fn debug_shows_neither_values_nor_stream_tails() {
    let mut s = setup("debug", &[("homeserver.yaml", &homeserver())]);
    // Half a value waits in the stream's tail.
    s.recognizer.scan(&stream(1), &SHARED_SECRET.as_bytes()[..20], Scope::Tainted);
    let shown = format!("{:?}", s.recognizer);
    assert!(shown.contains("registration_shared_secret"));
    for value in [SHARED_SECRET, HANDED_OUT] {
        for window in value.as_bytes().windows(patterns::ANCHOR) {
            assert!(!shown.contains(std::str::from_utf8(window).unwrap()), "{value}");
        }
    }
}

/// The synapse tables holding tokens, as `synapse/storage/schema/main/full_schemas` creates
/// them (other columns left out), in WAL mode as Synapse opens its database.
fn token_database(path: &std::path::Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE access_tokens (id BIGINT PRIMARY KEY, user_id TEXT NOT NULL, device_id TEXT,
             token TEXT NOT NULL, valid_until_ms BIGINT, UNIQUE(token));
         CREATE TABLE refresh_tokens (id BIGINT PRIMARY KEY, user_id TEXT NOT NULL,
             device_id TEXT NOT NULL, token TEXT NOT NULL, next_token_id BIGINT, UNIQUE(token));",
    )
    .unwrap();
    db
}

#[test]
fn database_tokens_are_read_incrementally_while_a_writer_holds_its_transaction() {
    let mut s = setup("sqlite", &[("homeserver.yaml", &homeserver())]);
    let path = s.dir.join("homeserver.db");
    let writer = token_database(&path);
    let first = "syt_YWxpY2U_aaaaaaaaaaaaaaaaaaaa_000000";
    let other = "syt_Ym9i_bbbbbbbbbbbbbbbbbbbb_000000";
    writer
        .execute("INSERT INTO access_tokens (id, user_id, token) VALUES (1, '@alice:x', ?1)", [first])
        .unwrap();
    writer
        .execute("INSERT INTO access_tokens (id, user_id, token) VALUES (2, '@bob:x', ?1)", [other])
        .unwrap();

    // The writer opens a write transaction and keeps it while the recognizer first reads.
    writer.busy_timeout(std::time::Duration::ZERO).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let second = "refresh-token-second-0123";
    writer
        .execute(
            "INSERT INTO refresh_tokens (id, user_id, device_id, token) VALUES (5, 'u', 'd', ?1)",
            [second],
        )
        .unwrap();
    s.catalog.add_patterns(&[path.display().to_string()]);
    s.catalog.rescan(|_| true);
    s.recognizer.refresh(&s.catalog, |_| true);
    let report = s.recognizer.report();
    let db = report.sources.iter().find(|r| r.kind == "database").expect("the database");
    assert_eq!(db.values, 2, "{report:?}");
    assert!(report.skipped.iter().all(|k| !k.reason.starts_with("database")), "{report:?}");
    // The reader held no lock: the writer commits at once, with no busy wait allowed.
    writer.execute_batch("COMMIT").unwrap();

    s.recognizer.refresh(&s.catalog, |_| true);
    let matches = s.recognizer.scan(&stream(1), format!("{first} {second} ").as_bytes(), Scope::Tainted);
    let names: Vec<&str> = matches.iter().map(|m| m.secret.as_str()).collect();
    let shown = path.display();
    assert_eq!(names, [format!("access token in {shown}"), format!("refresh token in {shown}")]);
    assert_eq!(matches[0].source, Source::Database(path.clone()));
    // Tokens are handed out by the homeserver: not its leak.
    assert_eq!(
        s.recognizer.scan(&stream(2), format!("{first} {second} ").as_bytes(), Scope::TrustedService),
        []
    );
    // Two tokens of one table in one send are two matches, told apart by fingerprint.
    let both = s.recognizer.scan(&stream(3), format!("{first} {other} ").as_bytes(), Scope::Tainted);
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[0].secret, both[1].secret);
    assert_ne!(both[0].fingerprint, both[1].fingerprint);
}

#[test]
fn a_database_locked_exclusively_is_not_waited_for_and_read_at_the_next_refresh() {
    let mut s = setup("sqlite-exclusive", &[("homeserver.yaml", &homeserver())]);
    let path = s.dir.join("homeserver.db");
    let writer = token_database(&path);
    writer.execute_batch("PRAGMA journal_mode = DELETE").unwrap();
    let token = "access-token-locked-0123";
    writer.execute("INSERT INTO access_tokens (id, user_id, token) VALUES (1, 'u', ?1)", [token]).unwrap();
    // A rollback-journal writer in the middle of its commit holds the file exclusively.
    writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
    s.catalog.add_patterns(&[path.display().to_string()]);
    s.catalog.rescan(|_| true);
    s.recognizer.refresh(&s.catalog, |_| true);
    let report = s.recognizer.report();
    assert!(
        report.skipped.iter().any(|k| k.reason.starts_with("database not read: database is locked")),
        "{report:?}"
    );
    assert_eq!(s.recognizer.scan(&stream(1), token.as_bytes(), Scope::Tainted), []);

    writer.execute_batch("COMMIT").unwrap();
    // Nothing changed on disk, yet the busy database is read again.
    s.recognizer.refresh(&s.catalog, |_| true);
    assert!(s.recognizer.report().skipped.iter().all(|k| !k.reason.starts_with("database")));
    assert_eq!(s.recognizer.scan(&stream(2), token.as_bytes(), Scope::Tainted).len(), 1);
}

#[test]
fn a_large_database_is_read_over_the_next_refreshes() {
    let mut s = setup("sqlite-large", &[("homeserver.yaml", &homeserver())]);
    let path = s.dir.join("homeserver.db");
    let mut writer = token_database(&path);
    let rows = database::ROWS_PER_REFRESH as usize + 1;
    let insert = writer.transaction().unwrap();
    for id in 0..i64::try_from(rows).unwrap() {
        insert
            .execute(
                "INSERT INTO access_tokens (id, user_id, token) VALUES (?1, 'u', ?2)",
                (id, format!("token-{id:08}-x")),
            )
            .unwrap();
    }
    insert.commit().unwrap();
    // Into the database file itself, past the size of files read whole: its header tells.
    writer.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    assert!(fs::metadata(&path).unwrap().len() > crate::alert::redact::fingerprints::FILE_LIMIT);
    s.catalog.add_patterns(&[path.display().to_string()]);
    s.catalog.rescan(|_| true);
    s.recognizer.refresh(&s.catalog, |_| true);
    let tokens = |r: &Recognizer| r.report().sources.iter().find(|r| r.kind == "database").map(|r| r.values);
    assert_eq!(tokens(&s.recognizer), Some(rows - 1));
    // Nothing changed on disk; the rest is read all the same.
    s.recognizer.refresh(&s.catalog, |_| true);
    assert_eq!(tokens(&s.recognizer), Some(rows), "{:?}", s.recognizer.report());
    let last = format!("token-{:08}-x", rows - 1);
    assert_eq!(s.recognizer.scan(&stream(1), last.as_bytes(), Scope::Tainted).len(), 1);
}

/// Memory the index takes for the database's tokens, printed: run with `cargo test --release
/// -p sensor-user content::tests::database_token_memory -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run alone"]
fn database_token_memory() {
    let resident_kib = || -> u64 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let mut s = setup("sqlite-memory", &[("homeserver.yaml", &homeserver())]);
    let path = s.dir.join("homeserver.db");
    let mut writer = token_database(&path);
    let rows: i64 = if cfg!(debug_assertions) { 2_000 } else { 40_000 };
    let insert = writer.transaction().unwrap();
    for id in 0..rows {
        // Shaped like Synapse's: `syt_`, a localpart, 20 letters, 6 of checksum.
        let token = format!("syt_dXNlcntpZH0_{:020x}_{:06}", id * 0x9e37_79b9, id % 1_000_000);
        insert
            .execute("INSERT INTO access_tokens (id, user_id, token) VALUES (?1, 'u', ?2)", (id, token))
            .unwrap();
    }
    insert.commit().unwrap();
    s.catalog.add_patterns(&[path.display().to_string()]);
    s.catalog.rescan(|_| true);
    let before = resident_kib();
    for _ in 0..3 {
        s.recognizer.refresh(&s.catalog, |_| true);
    }
    let after = resident_kib();
    let report = s.recognizer.report();
    let tokens = report.sources.iter().find(|r| r.kind == "database").unwrap().values;
    println!(
        "{tokens} database tokens, {} forms: {} KiB resident more, {} bytes a token",
        report.forms,
        after - before,
        (after - before) * 1024 / tokens as u64
    );
}

/// Throughput of `scan` with 200 values, printed (no timed assertion): run with
/// `cargo test --release -p sensor-user content::tests::scan_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run in release"]
fn scan_throughput() {
    let env = (0..200u64).fold(String::new(), |mut env, i| {
        let _ = writeln!(env, "SECRET_{i}=v{i:04} &?>%/\\\"{:016x}", 0x9e37_79b9_u64.pow(2).wrapping_mul(i));
        env
    });
    let mut s = setup("throughput", &[(".env", &env)]);
    assert_eq!(s.recognizer.report().values, 200);
    // Printable pseudo-random text (xorshift): every window is new to the anchor filter.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let chunk: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b' ' + u8::try_from(state % 95).unwrap()
        })
        .collect();
    // The same with a line break every 80 bytes: a tainted stream's unwrapped view stays on.
    let lines: Vec<u8> =
        chunk.iter().enumerate().map(|(i, &b)| if i % 80 == 79 { b'\n' } else { b }).collect();
    // `cargo xtask test` runs ignored tests too, unoptimised: a smoke run there.
    let total: u32 = if cfg!(debug_assertions) { 4 } else { 256 } * 1024 * 1024;
    let cases = [
        ("tainted, no line breaks", Scope::Tainted, &chunk),
        ("tainted, lines of 80", Scope::Tainted, &lines),
        ("trusted service", Scope::TrustedService, &lines),
    ];
    for (port, (case, scope, chunk)) in (1..).zip(cases) {
        let started = Instant::now();
        let mut found = 0;
        for _ in 0..total as usize / chunk.len() {
            found += s.recognizer.scan(&stream(port), chunk, scope).len();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "scan, 200 values ({} forms), {case}: {:.0} MB/s ({found} found)",
            s.recognizer.report().forms,
            f64::from(total) / secs / 1e6
        );
    }
}
