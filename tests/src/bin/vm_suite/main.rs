//! `vigie-vm-suite`: the kernel suite `cargo xtask test --kernel NAME` runs inside its guest.
//!
//! ```text
//! vigie-vm-suite --backend NAME --expect-backend NAME --cases CASE[,CASE]... [--actor PATH]
//! ```
//!
//! Runs the named cases (see `cases.rs`) against one `vigie run --backend NAME` (`auto`: the
//! agent's own choice, which must be the expected one) on a lab
//! under `$TMPDIR`, and prints one line per case on stdout, which the guest's console carries
//! to the host:
//!
//! ```text
//! VIGIE-TEST <case> start
//! VIGIE-TEST <case> ok <seconds>
//! VIGIE-TEST <case> fail <reason on one line>
//! ```
//!
//! Details of a failure (the sensor's last lines, its stderr) go to stderr. Exits 0 when every
//! case passed.

mod cases;

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use cases::{Case, World};

/// Where the suite's lines start; the host looks for it at the start of a console line.
const PREFIX: &str = "VIGIE-TEST";
/// The longest reason a result line carries.
const REASON_CHARS: usize = 240;
/// The actor's path in the guest.
const DEFAULT_ACTOR: &str = "/usr/bin/vigie-actor";

/// What to run, from the command line.
struct Request {
    /// Given to `vigie run --backend`.
    backend: String,
    /// What its `sensor-started` must name.
    expected_backend: String,
    cases: Vec<String>,
    actor: OsString,
}

fn main() -> ExitCode {
    let request = match parse(std::env::args_os().skip(1)) {
        Ok(request) => request,
        Err(error) => {
            eprintln!("vigie-vm-suite: {error:#}");
            return ExitCode::from(2);
        }
    };
    let mut world = World::new(&request.actor, &request.backend, &request.expected_backend);
    let mut failed = 0;
    for name in &request.cases {
        println!("{PREFIX} {name} start");
        let began = Instant::now();
        let outcome = match Case::named(name) {
            Some(case) => world.run(case),
            None => Err(anyhow::anyhow!("no such case in vigie-vm-suite")),
        };
        match outcome {
            Ok(()) => println!("{PREFIX} {name} ok {:.1}", began.elapsed().as_secs_f64()),
            Err(error) => {
                failed += 1;
                eprintln!("vigie-vm-suite: {name}: {error:?}");
                println!("{PREFIX} {name} fail {}", one_line(&format!("{error:#}")));
            }
        }
    }
    world.finish();
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Request> {
    let usage =
        "usage: vigie-vm-suite --backend NAME --expect-backend NAME --cases CASE[,CASE]... [--actor PATH]";
    let (mut backend, mut expected_backend, mut cases) = (None, None, None);
    let mut actor = OsString::from(DEFAULT_ACTOR);
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{} needs a value; {usage}", flag.display()))?;
        match flag.to_str() {
            Some("--backend") => backend = Some(value.to_string_lossy().into_owned()),
            Some("--expect-backend") => expected_backend = Some(value.to_string_lossy().into_owned()),
            Some("--cases") => {
                cases = Some(
                    value.to_string_lossy().split(',').filter(|c| !c.is_empty()).map(String::from).collect(),
                );
            }
            Some("--actor") => actor = value,
            _ => bail!("unknown argument {}; {usage}", flag.display()),
        }
    }
    let (Some(backend), Some(expected_backend), Some(cases)) = (backend, expected_backend, cases) else {
        bail!("{usage}")
    };
    Ok(Request { backend, expected_backend, cases, actor })
}

/// `text` on one line, cut to [`REASON_CHARS`]: the host reads one line per case (the whole
/// error went to stderr).
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
