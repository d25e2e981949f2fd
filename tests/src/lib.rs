//! Harness for Vigie's kernel-level tests.
//!
//! A test builds a [`Lab`] (a secret in a temporary directory, a [`RemoteHost`] behind a veth
//! pair, a copy of the actor for barriers), starts a [`Sensor`] on it, makes an [`Actor`] do the
//! thing the test is about, then expects — or, after [`Lab::barrier`], rules out — the alert.
//!
//! ```no_run
//! use integration_tests::{alert, Lab, ALERT_TIMEOUT};
//!
//! // In an integration test of this crate: `Lab::new(actor_exe!())`.
//! let lab = Lab::new("target/debug/vigie-actor")?;
//! let sensor = lab.sensor()?;
//! let run = lab.actor().read(lab.secret()).tcp(lab.remote().tcp_v4()).run()?;
//! sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Privileged tests are `#[ignore]`d; `cargo xtask test` runs them as root with `VIGIE_BIN` set.

pub mod actor;
pub mod alert;
pub mod bpf_objects;
pub mod cli;
pub mod collector;
pub mod ecs_schema;
pub mod full_disk;
pub mod host_tools;
mod lab;
mod line_reader;
pub mod local_interface;
pub mod netns;
pub mod ocsf_schema;
pub mod poll;
pub mod prometheus;
pub mod remote_server;
pub mod ring_overflow;
pub mod rsyslog;
pub mod sensor;
pub mod synapse;
pub mod venv;

use std::time::Duration;

pub use actor::{Actor, ActorRun, RunningActor};
pub use lab::Lab;
pub use netns::RemoteHost;
pub use sensor::Sensor;

/// How long a test waits for an alert it caused; generous, as CI machines are slow.
pub const ALERT_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the `vigie-actor` binary; only integration tests (not this library) know it.
#[macro_export]
macro_rules! actor_exe {
    () => {
        env!("CARGO_BIN_EXE_vigie-actor")
    };
}
