//! `vigie run [options]`: its command line.

use std::path::PathBuf;

use clap::Args;
use ipnet::IpNet;

use crate::{
    config::{
        sink_specs::{parse_sink_url, SinkSpec},
        synapse_config::Volume,
    },
    format::Schema,
    kernel::backend::Choice,
};

/// Options of `vigie run`; each adds to what the config file says.
#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Built-in profile to watch (`default`, `none`, `matrix-synapse`); repeatable. Default: `default`.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,

    /// A secret file (or glob) to watch; repeatable.
    #[arg(long = "secret", value_name = "PATH")]
    pub secrets: Vec<String>,

    /// A destination network that is not "off this machine" (loopback always is); repeatable.
    #[arg(long = "trusted-net", value_name = "CIDR", value_parser = parse_cidr)]
    pub trusted_nets: Vec<IpNet>,

    /// An executable whose reads of secrets are normal (they do not taint); repeatable.
    #[arg(long = "allow-reader", value_name = "EXE")]
    pub allow_readers: Vec<PathBuf>,

    /// A trusted service known by its executable alone (not an interpreter): nothing it takes
    /// in taints it, reading its memory does; repeatable. Services known by their arguments,
    /// user or cgroup are declared in the config file.
    #[arg(long = "service", value_name = "EXE")]
    pub services: Vec<PathBuf>,

    /// Where JSON lines go: a file (appended) or `-` for stdout. Default: stdout.
    #[arg(long, value_name = "PATH")]
    pub output: Option<String>,

    /// The schema of the documents written: `ecs` (default) or `ocsf`.
    #[arg(long = "format", value_enum, value_name = "SCHEMA")]
    pub schema: Option<Schema>,

    /// Another place documents go, as a URL: `-`, `file:///PATH`, `syslog+udp://HOST:PORT`,
    /// `syslog+tcp://HOST:PORT`, `syslog+unix:///dev/log`, `https://…` (a webhook);
    /// repeatable. With sinks and no `--output`, stdout is not written.
    #[arg(long = "sink", value_name = "URL", value_parser = parse_sink_url)]
    pub sinks: Vec<SinkSpec>,

    /// Taint older than this many seconds no longer alerts. Default: a process's lifetime.
    #[arg(long, value_name = "SECS")]
    pub taint_window: Option<u64>,

    /// The homeserver's config file or directory, as its command line names it (profile
    /// `matrix-synapse`); repeatable. Default: Debian's `/etc/matrix-synapse/homeserver.yaml`
    /// and `conf.d`.
    #[arg(long = "synapse-config", value_name = "PATH")]
    pub synapse_configs: Vec<PathBuf>,

    /// The user (name or uid) the homeserver runs as (profile `matrix-synapse`).
    #[arg(long, value_name = "USER")]
    pub synapse_user: Option<String>,

    /// A container volume of the homeserver, as `docker run -v` writes it; repeatable.
    #[arg(long = "synapse-volume", value_name = "HOST_DIR:CONTAINER_DIR")]
    pub synapse_volumes: Vec<Volume>,

    /// The kernel hook set: `auto` picks `page-cache` where the kernel has its tracepoints
    /// (Linux 6.11+), else `fentry`, else `kprobe`, and `syscalls` where none of them runs.
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub backend: Option<Choice>,

    /// Leave the kernel programs attached when the agent stops, pinned under `--pin-dir`: the
    /// next agent takes them over (taint, marks, unread records), so a restart opens no window.
    /// `vigie unload` removes them.
    #[arg(long)]
    pub keep_loaded: bool,

    /// Where `--keep-loaded` pins the programs and maps (in the BPF file system). Default:
    /// `/sys/fs/bpf/vigie`.
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,

    /// Serve Prometheus metrics at `http://ADDR/metrics` (e.g. `127.0.0.1:9717`). Default: off.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Size of the kernel ring buffer in bytes (a power of two, at least 4096).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = parse_ring_size)]
    pub ring_buffer_bytes: u32,

    /// The journal (an `SQLite` database) that `vigie history` and `vigie explain` read. Default:
    /// `/var/lib/vigie/journal.db`.
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,

    /// Keep no journal.
    #[arg(long, conflicts_with = "journal")]
    pub no_journal: bool,
}

/// A CIDR (`10.0.0.0/8`) or a single address (`192.0.2.7`, a /32 or /128).
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not a CIDR (expected e.g. 10.0.0.0/8 or fd00::/8)"))
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
    let bytes: u32 = text.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if bytes < 4096 || !bytes.is_power_of_two() {
        return Err(format!("{bytes} is not a power of two of at least 4096"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_single_addresses_parse() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse_cidr("fd00::/8").unwrap().to_string(), "fd00::/8");
    }

    #[test]
    fn malformed_cidrs_are_named_in_the_error() {
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", ""] {
            let err = parse_cidr(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn ring_size_must_be_a_page_multiple_power_of_two() {
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert!(parse_ring_size("5000").is_err());
        assert!(parse_ring_size("2048").is_err());
    }
}
