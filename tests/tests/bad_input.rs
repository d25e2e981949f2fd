//! Bad input is refused with exit code 2 and a message that names the problem; never a panic.

use std::fs;
use std::path::Path;

use anyhow::Result;
use integration_tests::cli::{run_vigie, Exit};
use tempfile::TempDir;

/// The uid and gid of `nobody`.
const NOBODY: (u32, u32) = (65534, 65534);

/// A directory with an ordinary file to pass as `--secret`, so only the flaw under test is wrong.
fn workdir() -> Result<(TempDir, String)> {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("credentials");
    fs::write(&secret, "not a real key\n")?;
    Ok((dir, secret.to_string_lossy().into_owned()))
}

fn assert_refused(exit: &Exit, names: &[&str]) {
    assert_eq!(exit.code, Some(2), "{exit:#?}");
    assert!(!exit.panicked(), "{exit:#?}");
    for name in names {
        assert!(exit.stderr.contains(name), "stderr does not name {name:?}: {exit:#?}");
    }
}

/// The message points at the line: `line 3` or `PATH:3`.
fn assert_names_line(exit: &Exit, config: &Path, line: u32) {
    let at_path = format!("{}:{line}", config.display());
    assert!(
        exit.stderr.contains(&format!("line {line}")) || exit.stderr.contains(&at_path),
        "stderr does not name line {line}: {exit:#?}"
    );
}

fn run_with_config(config: &Path) -> Result<Exit> {
    run_vigie(&["run".as_ref(), "--config".as_ref(), config.as_os_str()], None)
}

#[test]
fn unknown_flag_is_named() -> Result<()> {
    let (_dir, secret) = workdir()?;
    let exit = run_vigie(&["run", "--profile", "none", "--secret", &secret, "--no-such-flag"], None)?;
    assert_refused(&exit, &["--no-such-flag"]);
    Ok(())
}

#[test]
fn malformed_trusted_nets_are_named() -> Result<()> {
    let (_dir, secret) = workdir()?;
    for cidr in ["10.0.0.0/33", "nonsense"] {
        let args = ["run", "--profile", "none", "--secret", &secret, "--trusted-net", cidr];
        assert_refused(&run_vigie(&args, None)?, &[cidr]);
    }
    Ok(())
}

#[test]
fn missing_config_file_is_named() -> Result<()> {
    let (dir, _) = workdir()?;
    let config = dir.path().join("no-such-config.toml");
    let exit = run_with_config(&config)?;
    assert_refused(&exit, &[&config.to_string_lossy()]);
    Ok(())
}

#[test]
fn unreadable_config_file_is_named() -> Result<()> {
    // A directory: unreadable as a file even for root, who ignores permission bits.
    let (dir, _) = workdir()?;
    let config = dir.path().join("config.toml");
    fs::create_dir(&config)?;
    let exit = run_with_config(&config)?;
    assert_refused(&exit, &[&config.to_string_lossy()]);
    Ok(())
}

/// A config whose third line is `bad_line`, which mentions `field`.
fn assert_config_line_refused(bad_line: &str, field: &str) -> Result<()> {
    let (dir, secret) = workdir()?;
    let config = dir.path().join("vigie.toml");
    let text = format!("profiles = [\"none\"]\nsecrets = [\"{secret}\"]\n{bad_line}\n");
    fs::write(&config, text)?;
    let exit = run_with_config(&config)?;
    assert_refused(&exit, &[&config.to_string_lossy(), field]);
    assert_names_line(&exit, &config, 3);
    Ok(())
}

#[test]
fn unknown_config_field_is_named_with_its_line() -> Result<()> {
    assert_config_line_refused("exfil_mode = \"loud\"", "exfil_mode")
}

#[test]
fn mistyped_config_field_is_named_with_its_line() -> Result<()> {
    assert_config_line_refused("trusted_nets = 42", "trusted_nets")
}

#[test]
fn malformed_metrics_address_is_named_on_the_command_line_and_in_the_config() -> Result<()> {
    let (_dir, secret) = workdir()?;
    let exit =
        run_vigie(&["run", "--profile", "none", "--secret", &secret, "--metrics", "localhost:nine"], None)?;
    assert_refused(&exit, &["--metrics", "localhost:nine"]);
    assert_config_line_refused("metrics = { listen = \"localhost:nine\" }", "metrics")
}

#[test]
#[ignore = "needs root (to drop to an unprivileged uid): run with cargo xtask test"]
fn unprivileged_user_is_told_about_permissions() -> Result<()> {
    let (dir, secret) = workdir()?;
    // The unprivileged user must be able to reach the secret: only BPF may be the problem.
    std::os::unix::fs::chown(dir.path(), Some(NOBODY.0), Some(NOBODY.1))?;
    let exit = run_vigie(&["run", "--profile", "none", "--secret", &secret], Some(NOBODY))?;
    assert_refused(&exit, &[]);
    let stderr = exit.stderr.to_lowercase();
    assert!(
        ["permission", "root", "cap_bpf"].iter().any(|word| stderr.contains(word)),
        "stderr does not say why: {exit:#?}"
    );
    Ok(())
}

#[test]
fn unknown_backend_is_named_on_the_command_line_and_in_the_config() -> Result<()> {
    let (dir, secret) = workdir()?;
    let exit = run_vigie(&["run", "--profile", "none", "--secret", &secret, "--backend", "kprobes"], None)?;
    assert_refused(&exit, &["--backend", "kprobes"]);
    let config = dir.path().join("vigie.toml");
    fs::write(&config, format!("profiles = [\"none\"]\nsecrets = [{secret:?}]\nbackend = \"kprobes\"\n"))?;
    let exit = run_with_config(&config)?;
    assert_refused(&exit, &["backend", "kprobes"]);
    assert_names_line(&exit, &config, 3);
    Ok(())
}

#[test]
fn an_interpreter_is_refused_as_an_allowed_reader() -> Result<()> {
    let (_dir, secret) = workdir()?;
    for interpreter in ["/usr/bin/python3", "/bin/sh"] {
        let exit = run_vigie(
            &["run", "--profile", "none", "--secret", &secret, "--allow-reader", interpreter],
            None,
        )?;
        assert_refused(&exit, &[interpreter, "interpreter"]);
    }
    Ok(())
}

#[test]
fn a_misshapen_homeserver_database_setting_is_named_with_file_line_and_field() -> Result<()> {
    let (dir, _) = workdir()?;
    let config = dir.path().join("homeserver.yaml");
    fs::write(
        &config,
        "server_name: hs.test\nsigning_key: ed25519 a_x k\ndatabase:\n  name: psycopg2\n  args:\n    \
         password: hunter2-not-a-value-to-print\n    port: abc\n",
    )?;
    let config_arg = config.to_string_lossy();
    let args = ["run", "--profile", "matrix-synapse", "--synapse-config", config_arg.as_ref()];
    let exit = run_vigie(&args, None)?;
    assert_refused(&exit, &[config_arg.as_ref(), "`database.args.port` must be a port number"]);
    assert_names_line(&exit, &config, 7);
    assert!(!exit.stderr.contains("abc") && !exit.stderr.contains("hunter2"), "a value is quoted: {exit:#?}");
    Ok(())
}

#[test]
fn a_malformed_sink_url_is_named() -> Result<()> {
    let (_dir, secret) = workdir()?;
    for url in ["syslog+udp://127.0.0.1", "ftp://collector.example/", "file://relative/path"] {
        let args = ["run", "--profile", "none", "--secret", &secret, "--sink", url];
        assert_refused(&run_vigie(&args, None)?, &["--sink", url.trim_start_matches("syslog+")]);
    }
    Ok(())
}

#[test]
fn a_bad_sink_table_is_named_with_its_line_column_and_field() -> Result<()> {
    let (dir, secret) = workdir()?;
    let config = dir.path().join("vigie.toml");
    let token = dir.path().join("no-such-token");
    for (table, line, field) in [
        (
            "[[sink]]\ntype = \"webhook\"\nspool_dir = \"/tmp/s\"\n",
            2,
            "field `url`: required for a webhook sink",
        ),
        (
            "[[sink]]\ntype = \"syslog\"\naddress = \"udp://127.0.0.1:514\"\nformat = \"cef\"\n",
            5,
            "field `format`",
        ),
    ] {
        fs::write(&config, format!("secrets = [{secret:?}]\n{table}"))?;
        let exit = run_with_config(&config)?;
        assert_refused(&exit, &[&config.display().to_string(), field, "column"]);
        assert_names_line(&exit, &config, line);
    }
    // A token file that cannot be read stops the agent before it watches, naming the file only.
    fs::write(
        &config,
        format!(
            "profiles = [\"none\"]\nsecrets = [{secret:?}]\n[[sink]]\ntype = \"matrix\"\n\
             homeserver = \"http://127.0.0.1:1\"\nroom_id = \"!r\"\naccess_token_file = {:?}\n",
            token.display().to_string()
        ),
    )?;
    assert_refused(&run_with_config(&config)?, &["matrix:!r", &token.display().to_string()]);
    Ok(())
}
