//! SIGHUP: the configuration read again and applied without losing kernel state.
//!
//! What the agent holds in user space or in maps it can update (new secrets, allowed
//! readers, trusted networks, the output) changes live; what is frozen into the loaded
//! programs or was read once at start (backend, `keep_loaded`, ring size, taint window, services,
//! stores, sinks, removed secrets) is named as ignored until a restart. A configuration that does not
//! load leaves the running one in place.

use crate::{
    config::Settings,
    error::Error,
    format::ecs::{self, ConfigReport, Vigie},
    kernel::Sensor,
    pipeline::Pipeline,
    sinks::output::Output,
};
use sensor_common::FileId;

/// Reopens the output and applies `fresh` (the configuration read again) over `running`,
/// writing what was done as `config-reloaded`, or why nothing was as `config-reload-failed`.
/// `allowed` resolves the allowed readers' identities. Only kernel map errors are returned.
pub fn apply(
    running: &mut Settings,
    fresh: Result<Settings, Error>,
    allowed: impl Fn(&Settings) -> Result<Vec<FileId>, Error>,
    output: &mut Output,
    pipeline: &mut Pipeline,
    sensor: &mut Sensor,
) -> Result<(), Error> {
    // Whatever the configuration says, logrotate moved the file: a new one at the path.
    let reopened = output.reopen();
    let checked = fresh.and_then(|fresh| {
        reopened?;
        let exes = allowed(&fresh)?;
        if fresh.output != running.output {
            output.retarget(fresh.output.as_ref())?;
        }
        Ok((fresh, exes))
    });
    let (fresh, exes) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            output.write(&pipeline.state(ecs::CONFIG_RELOAD_FAILED, failure_report(&error)));
            return Ok(());
        }
    };
    let changes = Changes::between(running, &fresh);
    sensor.set_allowed_exes(&exes)?;
    pipeline.set_trusted_nets(fresh.trusted_nets.clone());
    pipeline.catalog_mut().add_patterns(&changes.new_secrets);
    running.secret_patterns.extend(changes.new_secrets.iter().cloned());
    running.trusted_nets = fresh.trusted_nets;
    running.allow_readers = fresh.allow_readers;
    running.profile_allow_readers = fresh.profile_allow_readers;
    running.output = fresh.output;
    output.write(&pipeline.state(ecs::CONFIG_RELOADED, changes.report()));
    Ok(())
}

/// How the settings read on SIGHUP differ from the running ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Patterns to watch from now on.
    pub new_secrets: Vec<String>,
    /// Settings that changed and are applied now.
    pub applied: Vec<&'static str>,
    /// Settings that changed but need a restart.
    pub ignored: Vec<&'static str>,
}

impl Changes {
    /// Compares the running settings with those just read.
    pub fn between(running: &Settings, fresh: &Settings) -> Self {
        let mut changes = Self {
            new_secrets: fresh
                .secret_patterns
                .iter()
                .filter(|p| !running.secret_patterns.contains(p))
                .cloned()
                .collect(),
            ..Self::default()
        };
        if !changes.new_secrets.is_empty() {
            changes.applied.push("secrets");
        }
        if running.secret_patterns.iter().any(|p| !fresh.secret_patterns.contains(p)) {
            changes.ignored.push("secrets (removed)");
        }
        let live = [
            ("trusted_nets", running.trusted_nets != fresh.trusted_nets),
            (
                "allow_readers",
                running.allow_readers != fresh.allow_readers
                    || running.profile_allow_readers != fresh.profile_allow_readers,
            ),
            ("output", running.output != fresh.output),
        ];
        let frozen = [
            ("backend", running.backend != fresh.backend),
            ("keep_loaded", running.keep_loaded != fresh.keep_loaded),
            ("ring_buffer_bytes", running.ring_buffer_bytes != fresh.ring_buffer_bytes),
            ("taint_window", running.taint_window != fresh.taint_window),
            ("services", running.services != fresh.services),
            ("stores", running.stores != fresh.stores),
            ("journal", running.journal != fresh.journal),
            ("metrics", running.metrics != fresh.metrics),
            ("format", running.schema != fresh.schema),
            ("sinks", running.sinks != fresh.sinks),
        ];
        changes.applied.extend(live.into_iter().filter(|(_, changed)| *changed).map(|(name, _)| name));
        changes.ignored.extend(frozen.into_iter().filter(|(_, changed)| *changed).map(|(name, _)| name));
        changes
    }

    /// The `vigie` section of the `config-reloaded` document.
    pub fn report(&self) -> Vigie {
        let config = ConfigReport {
            applied: Some(self.applied.clone()),
            ignored: Some(self.ignored.clone()),
            error: None,
        };
        Vigie { config: Some(config), ..Vigie::default() }
    }
}

/// The `vigie` section of the `config-reload-failed` document: the running configuration
/// stays.
pub fn failure_report(error: &Error) -> Vigie {
    let config = ConfigReport { applied: None, ignored: None, error: Some(error.to_string()) };
    Vigie { config: Some(config), ..Vigie::default() }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::*;
    use crate::config::OutputTarget;

    fn settings() -> Settings {
        Settings {
            secret_patterns: vec!["/etc/shadow".to_owned(), "/srv/**/.env".to_owned()],
            trusted_nets: vec!["127.0.0.0/8".parse().unwrap()],
            allow_readers: Vec::new(),
            profile_allow_readers: Vec::new(),
            output: Some(OutputTarget::Stdout),
            schema: crate::format::Schema::Ecs,
            sinks: Vec::new(),
            ring_buffer_bytes: 1 << 20,
            taint_window: None,
            services: Vec::new(),
            stores: Vec::new(),
            backend: crate::kernel::backend::Choice::default(),
            keep_loaded: None,
            journal: None,
            metrics: None,
        }
    }

    #[test]
    fn the_same_settings_change_nothing() {
        assert_eq!(Changes::between(&settings(), &settings()), Changes::default());
    }

    #[test]
    fn live_settings_are_applied_and_frozen_ones_named() {
        let mut fresh = settings();
        fresh.secret_patterns = vec!["/etc/shadow".to_owned(), "/srv/app/key.pem".to_owned()];
        fresh.trusted_nets.push("10.0.0.0/8".parse().unwrap());
        fresh.allow_readers.push(PathBuf::from("/usr/bin/backup"));
        fresh.output = Some(OutputTarget::File(PathBuf::from("/var/log/vigie.jsonl")));
        fresh.sinks = vec![crate::config::sink_specs::parse_sink_url("syslog+udp://127.0.0.1:514").unwrap()];
        fresh.taint_window = Some(Duration::from_mins(1));
        fresh.journal = crate::config::journal::JournalSettings::merge(None, None, false);
        fresh.metrics = Some("127.0.0.1:9717".parse().unwrap());
        let changes = Changes::between(&settings(), &fresh);
        assert_eq!(changes.new_secrets, ["/srv/app/key.pem"]);
        assert_eq!(changes.applied, ["secrets", "trusted_nets", "allow_readers", "output"]);
        assert_eq!(changes.ignored, ["secrets (removed)", "taint_window", "journal", "metrics", "sinks"]);
    }
}
