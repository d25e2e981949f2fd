//! Everything that can stop the agent, each with what the user needs to fix it.

use std::{io, path::PathBuf};

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead { path: PathBuf, source: io::Error },

    /// The configuration file is not valid TOML or has a bad field.
    #[error("config file {path}: line {line}, column {column}: {message}")]
    ConfigInvalid { path: PathBuf, line: usize, column: usize, message: String },

    /// `vigie check-config` found problems in the file, each printed as `FILE:LINE:COLUMN: what`.
    #[error("config file {path}: {count} problem(s): not valid")]
    ConfigRejected { path: PathBuf, count: usize },

    /// A profile name that is not built in.
    #[error("unknown profile {name:?} (built-in profiles: {known})")]
    UnknownProfile { name: String, known: String },

    /// An `--allow-reader` or `--service` executable that cannot be found.
    #[error("{role} {path}: {source}")]
    TrustedExecutable { role: &'static str, path: PathBuf, source: io::Error },

    /// An allowed reader, or a service known by its executable alone, that is an interpreter.
    #[error(
        "{role} {path} is an interpreter ({name}): it runs whatever code it is given, so it cannot \
         be trusted by executable; declare the program it runs as a service with its arguments \
         ([[services]] in the config file)"
    )]
    Interpreter { role: &'static str, path: PathBuf, name: String },

    /// The process lacks the privileges to load BPF programs.
    #[error(
        "no permission to load BPF programs: run vigie as root (or with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)"
    )]
    NoBpfPermission,

    /// The kernel's BTF is missing or lacks a field the programs read.
    #[error("kernel BTF {path}: {reason}")]
    KernelBtf { path: PathBuf, reason: String },

    /// This binary was built without bpf-linker, so it carries no kernel programs.
    #[error("this vigie was built without its eBPF programs (bpf-linker was missing); build it with `cargo xtask build`")]
    NoEbpfObject,

    /// The kernel kept marking files in the prefilter's words while the agent set its own bits.
    #[error("the kernel's PREFILTER map did not settle in {passes} passes: bits the agent sets keep being overwritten")]
    PrefilterUnsettled { passes: usize },

    /// The eBPF object could not be loaded into the kernel.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),

    /// The backend asked for cannot run on this kernel.
    #[error("backend {backend} cannot run here: {reason}")]
    BackendUnavailable { backend: crate::kernel::backend::Backend, reason: String },

    /// A program was refused by the verifier or could not be attached.
    #[error("program {program}: {source}")]
    Program { program: &'static str, source: aya::programs::ProgramError },

    /// A kernel map could not be found, read or written.
    #[error("map {map}: {source}")]
    Map { map: &'static str, source: aya::maps::MapError },

    /// A system facility the agent needs (tracefs, the cgroup v2 mount) is unavailable.
    #[error("{what}: {source}")]
    System { what: String, source: io::Error },

    /// The homeserver configuration the `matrix-synapse` profile reads is unusable.
    #[error(transparent)]
    Synapse(#[from] crate::config::synapse_config::SynapseConfigError),

    /// The journal could not be opened, or a command could not read it.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),

    /// The output sink could not be opened or written.
    #[error("output {path}: {source}")]
    Output { path: String, source: io::Error },

    /// The metrics address (`[metrics] listen`, `--metrics`) could not be listened on.
    #[error("metrics listen address {address}: {source}")]
    MetricsListen { address: std::net::SocketAddr, source: io::Error },
    /// A sink could not start: its spool or its token file is unusable.
    #[error("sink {sink}: {what}: {source}")]
    Sink { sink: String, what: String, source: io::Error },
}

impl Error {
    /// Wraps an I/O error of a system facility, naming it.
    pub fn system(what: impl Into<String>, source: io::Error) -> Self {
        Self::System { what: what.into(), source }
    }
}

/// The error and its causes on one line, each cause once.
pub fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}
