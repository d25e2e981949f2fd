//! The "remote" host the tainted workloads send to: a network namespace of the bench's own
//! behind a veth pair, 10.214.0.2 (the tests use 10.213.N.x), with `vigie-load sink`
//! listening inside. Dropping it deletes the namespace and the veth, also on error; a
//! namespace left by a bench that was killed is swept at the next start.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::say;
use crate::command::{self, tool};

const NAMESPACE_PREFIX: &str = "vigie-bench-";
const VETH_PREFIX: &str = "vbench";
const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 1);
const REMOTE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 214, 0, 2);
const PREFIX_LEN: u8 = 24;
const SINK_PORT: u16 = 4242;
/// Nothing listens here: connects get a reset, which is all workload 6 needs.
const CLOSED_PORT: u16 = 4243;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The sink exits on its own after this long, should every cleanup fail.
const SINK_LIFETIME_SECS: u64 = 4 * 3600;

pub struct RemoteHost {
    namespace: String,
    veth: String,
    sink: Option<Child>,
}

impl RemoteHost {
    /// Creates the namespace, wires it and waits until the sink inside says `ready`.
    pub fn start(load: &Path) -> Result<Self> {
        sweep_leftovers();
        let pid = std::process::id();
        let mut remote = Self {
            namespace: format!("{NAMESPACE_PREFIX}{pid}"),
            veth: format!("{VETH_PREFIX}{pid}"),
            sink: None,
        };
        ip(&["netns", "add", &remote.namespace])?;
        // From here on, an early return drops `remote`, which deletes the namespace.
        remote.wire()?;
        remote.start_sink(load)?;
        say(&format!("remote host {REMOTE_ADDR} in namespace {}", remote.namespace));
        Ok(remote)
    }

    /// The sink: reads to EOF and answers the byte count.
    #[expect(clippy::unused_self, reason = "the address is only reachable while the host exists")]
    pub fn sink(&self) -> SocketAddr {
        SocketAddr::from((REMOTE_ADDR, SINK_PORT))
    }

    /// A port of the remote host where nothing listens.
    #[expect(clippy::unused_self, reason = "the address is only reachable while the host exists")]
    pub fn closed_port(&self) -> SocketAddr {
        SocketAddr::from((REMOTE_ADDR, CLOSED_PORT))
    }

    fn wire(&self) -> Result<()> {
        let (ns, veth) = (self.namespace.as_str(), self.veth.as_str());
        let host = format!("{HOST_ADDR}/{PREFIX_LEN}");
        let remote = format!("{REMOTE_ADDR}/{PREFIX_LEN}");
        #[rustfmt::skip]
        let steps: [&[&str]; 6] = [
            &["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
            &["addr", "add", &host, "dev", veth],
            &["link", "set", veth, "up"],
            &["-n", ns, "addr", "add", &remote, "dev", "eth0"],
            &["-n", ns, "link", "set", "eth0", "up"],
            &["-n", ns, "link", "set", "lo", "up"],
        ];
        steps.iter().try_for_each(|args| ip(args))
    }

    fn start_sink(&mut self, load: &Path) -> Result<()> {
        let mut sink = tool("ip")?
            .args(["netns", "exec", &self.namespace])
            .arg(load)
            .args(["sink", "--listen", &self.sink().to_string()])
            .args(["--max-seconds", &SINK_LIFETIME_SECS.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the sink in the namespace")?;
        let stdout = sink.stdout.take().context("sink stdout")?;
        // `ip netns exec` execs the sink in place, so the child is the sink.
        self.sink = Some(sink);
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.trim() == "ready" => Ok(()),
            Ok(line) => bail!("the sink said {line:?}, not ready"),
            Err(error) => bail!("the sink did not get ready: {error}"),
        }
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        if let Some(mut sink) = self.sink.take() {
            let _ = sink.kill();
            let _ = sink.wait();
        }
        delete(&self.namespace, &self.veth);
    }
}

/// Deletes the veth now (deleting the namespace frees it only later) and the namespace.
fn delete(namespace: &str, veth: &str) {
    let _ = ip(&["link", "delete", veth]);
    if let Err(error) = ip(&["netns", "delete", namespace]) {
        eprintln!("[bench] cleanup of namespace {namespace}: {error:#}");
    }
}

/// Removes namespaces of benches whose process is gone, with whatever still runs inside.
fn sweep_leftovers() {
    let Ok(list) = ip_output(&["netns", "list"]) else { return };
    for name in list.lines().filter_map(|line| line.split_whitespace().next()) {
        let Some(owner) = name.strip_prefix(NAMESPACE_PREFIX) else { continue };
        if owner.parse::<u32>().is_err() || PathBuf::from("/proc").join(owner).exists() {
            continue;
        }
        if let Ok(pids) = ip_output(&["netns", "pids", name]) {
            for pid in pids.split_whitespace() {
                let _ = tool("kill").and_then(|mut kill| command::output(kill.args(["-KILL", pid])));
            }
        }
        say(&format!("removing namespace {name} left by an earlier bench"));
        delete(name, &format!("{VETH_PREFIX}{owner}"));
    }
}

/// Runs `ip ARGS`; the error quotes the command and its stderr.
fn ip(args: &[&str]) -> Result<()> {
    ip_output(args).map(drop)
}

fn ip_output(args: &[&str]) -> Result<String> {
    command::output(tool("ip")?.args(args))
}
