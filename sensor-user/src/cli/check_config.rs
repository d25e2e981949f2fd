//! `vigie check-config [FILE]`: the config file loaded exactly as `vigie run --config FILE`
//! loads it, without touching the kernel; each problem printed as `FILE:LINE:COLUMN: what`.
//!
//! The verdict is the agent's loader's ([`Settings::from_args`], then the allowed readers'
//! identities); this module only finds where in the file each refused value is, so that every
//! unknown profile and missing allowed reader is named at once, not one per run.

use std::{
    fs,
    ops::Range,
    path::{Path, PathBuf},
};

use clap::{Args, ValueEnum};
use serde::Deserialize;
use toml::Spanned;

use super::{print, RunArgs};
use crate::{
    config::{allowed_readers, line_column, profiles, OutputTarget, Settings},
    error::Error,
};

/// Where the packaged unit keeps the configuration.
pub const DEFAULT_CONFIG: &str = "/etc/vigie/vigie.toml";

/// Options of `vigie check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    #[arg(value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub file: PathBuf,
}

/// Prints a one-line summary of what the file configures, or each problem on stderr and
/// [`Error::ConfigRejected`].
pub fn run(args: &CheckConfigArgs) -> Result<(), Error> {
    let path = &args.file;
    let loaded = Settings::from_args(RunArgs { config: Some(path.clone()), ..RunArgs::default() })
        .and_then(|settings| allowed_readers::resolve(&settings).map(|_| settings));
    match loaded {
        Ok(settings) => print(&summary(path, &settings)),
        Err(Error::ConfigInvalid { line, column, message, .. }) => {
            reject(path, &[Problem { line, column, message }])
        }
        Err(Error::ConfigRead { path, source }) => Err(Error::ConfigRead { path, source }),
        Err(err) => {
            let text = fs::read_to_string(path)
                .map_err(|source| Error::ConfigRead { path: path.clone(), source })?;
            let mut problems = problems(&text);
            if problems.is_empty() {
                problems.push(placed_anywhere(&text, &err));
            }
            reject(path, &problems)
        }
    }
}

/// One refused value and where it is.
#[derive(Debug, PartialEq, Eq)]
struct Problem {
    line: usize,
    column: usize,
    message: String,
}

/// The values the loader checks one by one against this host, with their places in the file.
/// The file already parsed as a config, so these fields have the shapes it gave them.
#[derive(Debug, Default, Deserialize)]
struct Placed {
    #[serde(default)]
    profiles: Vec<Spanned<String>>,
    #[serde(default)]
    allow_readers: Vec<Spanned<PathBuf>>,
    synapse_config: Option<Spanned<toml::Value>>,
}

/// Each unknown profile and each allowed reader that is missing or an interpreter, checked by
/// the loader's own functions, in file order.
fn problems(text: &str) -> Vec<Problem> {
    let placed: Placed = toml::from_str(text).unwrap_or_default();
    let at = |span: Range<usize>, err: &Error| {
        let (line, column) = line_column(text, span.start);
        Problem { line, column, message: err.to_string() }
    };
    let profiles = placed
        .profiles
        .iter()
        .filter_map(|name| profiles::builtin(name.get_ref()).err().map(|err| at(name.span(), &err)));
    let readers = placed.allow_readers.iter().filter_map(|path| {
        allowed_readers::trusted_executable("allowed reader", path.get_ref())
            .err()
            .map(|err| at(path.span(), &err))
    });
    let mut problems: Vec<Problem> = profiles.chain(readers).collect();
    problems.sort_by_key(|p| (p.line, p.column));
    problems
}

/// A refusal that no single listed value explains: a homeserver configuration that cannot be
/// read is placed at `synapse_config`, or else at the `matrix-synapse` profile that reads it;
/// anything else at the file's start.
fn placed_anywhere(text: &str, err: &Error) -> Problem {
    let placed: Placed = toml::from_str(text).unwrap_or_default();
    let offset = match err {
        Error::Synapse(_) => placed.synapse_config.map(|c| c.span().start).or_else(|| {
            placed.profiles.iter().find(|p| p.get_ref() == "matrix-synapse").map(|p| p.span().start)
        }),
        _ => None,
    };
    let (line, column) = line_column(text, offset.unwrap_or(0));
    Problem { line, column, message: err.to_string() }
}

/// Prints each problem as `FILE:LINE:COLUMN: what` on stderr.
fn reject(path: &Path, problems: &[Problem]) -> Result<(), Error> {
    for Problem { line, column, message } in problems {
        eprintln!("{}:{line}:{column}: {message}", path.display());
    }
    Err(Error::ConfigRejected { path: path.to_owned(), count: problems.len() })
}

/// `FILE: ok: ...`, what the agent would run with, on one line.
fn summary(path: &Path, settings: &Settings) -> String {
    let output = match &settings.output {
        Some(OutputTarget::Stdout) => "stdout".to_owned(),
        Some(OutputTarget::File(file)) => file.display().to_string(),
        None => "none".to_owned(),
    };
    let journal =
        settings.journal.as_ref().map_or_else(|| "none".to_owned(), |j| j.path.display().to_string());
    let metrics = settings.metrics.map_or_else(|| "off".to_owned(), |addr| addr.to_string());
    let kept =
        settings.keep_loaded.as_ref().map_or_else(|| "off".to_owned(), |dir| dir.display().to_string());
    format!(
        "{}: ok: {} secret patterns, {} trusted nets, {} allowed readers, {} services, backend {}, \
         keep_loaded {kept}, output {output} ({}), {} sinks, journal {journal}, metrics {metrics}",
        path.display(),
        settings.secret_patterns.len(),
        settings.trusted_nets.len(),
        settings.allow_readers.len() + settings.profile_allow_readers.len(),
        settings.services.len(),
        name(&settings.backend),
        name(&settings.schema),
        settings.sinks.len(),
    )
}

/// A choice as the config file spells it (`page-cache`, `ocsf`).
fn name(choice: &impl ValueEnum) -> String {
    choice.to_possible_value().map(|value| value.get_name().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unknown_profile_and_missing_reader_is_placed_in_file_order() {
        let text = "profiles = [\"default\", \"nope\"]\nallow_readers = [\n  \"/usr/bin/env\",\n  \
                    \"/no/such/reader\",\n  \"/bin/sh\",\n]\n";
        let found = problems(text);
        let places: Vec<(usize, usize)> = found.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(places, [(1, 24), (4, 3), (5, 3)], "{found:#?}");
        assert!(found[0].message.contains("\"nope\""), "{found:#?}");
        assert!(found[1].message.contains("/no/such/reader"), "{found:#?}");
        assert!(found[2].message.contains("interpreter"), "{found:#?}");
    }

    #[test]
    fn an_unreadable_homeserver_config_is_placed_at_the_setting_that_names_it() {
        let err = Error::Synapse(crate::config::synapse_config::SynapseConfigError::NoServerName {
            paths: "/srv/homeserver.yaml".to_owned(),
        });
        let text = "profiles = [\"default\", \"matrix-synapse\"]\n";
        let problem = placed_anywhere(text, &err);
        assert_eq!((problem.line, problem.column), (1, 24), "{problem:?}");
        let text = format!("{text}\nsynapse_config = \"/srv/homeserver.yaml\"\n");
        let problem = placed_anywhere(&text, &err);
        assert_eq!((problem.line, problem.column), (3, 18), "{problem:?}");
        assert!(problem.message.contains("server_name"), "{problem:?}");
        let elsewhere = placed_anywhere(&text, &Error::NoBpfPermission);
        assert_eq!((elsewhere.line, elsewhere.column), (1, 1), "{elsewhere:?}");
    }

    #[test]
    fn a_file_whose_values_all_hold_has_no_placed_problem() {
        assert_eq!(problems("profiles = [\"none\"]\nallow_readers = [\"/usr/bin/env\"]\n"), []);
    }
}
