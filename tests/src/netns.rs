//! A remote host the tests may send traffic to: a network namespace of their own behind a veth
//! pair, with `vigie-actor listen` running inside (TCP and UDP on one port, and UDP on the DNS
//! port). Never any other address (see the test rules).

use std::fs::{self, File, TryLockError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::line_reader::spawn_line_reader;

/// Prefix of every namespace we create; `<prefix><pid>-<n>` lets a later run sweep leftovers.
const NAMESPACE_PREFIX: &str = "vigie-it-";
/// Where subnet leases live; a lease is an flock, so it dies with the process holding it.
const LEASE_DIR: &str = "/run/vigie-itest";
/// Port the listener binds in every namespace (each namespace has its own port space).
const LISTEN_PORT: u16 = 4242;
/// The DNS port, bound for UDP only: tests send resolver queries to it.
const DNS_PORT: u16 = 53;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Linux limit on an interface name, without the trailing NUL.
const IFNAME_MAX: usize = 15;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A namespace at `10.213.N.2` / `fd00:5647:N::2`, reached from the host through a veth whose
/// host end is `.1` / `::1`. Dropping it (also while a test panics) kills the listener and
/// deletes the namespace, which removes the veth pair with it.
#[derive(Debug)]
pub struct RemoteHost {
    namespace: String,
    host_veth: String,
    subnet: u8,
    listener: Option<Child>,
    _lease: File,
}

impl RemoteHost {
    /// Creates the namespace and veth pair, and waits until `actor_exe listen` is ready inside.
    ///
    /// # Errors
    /// When not root, when `ip` fails, or when the listener does not say `ready` in time.
    pub fn start(actor_exe: impl AsRef<Path>) -> Result<Self> {
        sweep_leftovers();
        let (subnet, lease) = lease_subnet()?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let host_veth = format!("vit{pid}-{id}");
        ensure!(host_veth.len() <= IFNAME_MAX, "veth name {host_veth} is too long");
        let namespace = format!("{NAMESPACE_PREFIX}{pid}-{id}");
        ip(&["netns", "add", &namespace])?;
        // From here on, an early return drops `remote`, which deletes the namespace.
        let mut remote = RemoteHost { namespace, host_veth, subnet, listener: None, _lease: lease };
        remote.wire()?;
        remote.start_listener(actor_exe.as_ref())?;
        Ok(remote)
    }

    /// The namespace's IPv4 address.
    #[must_use]
    pub fn ipv4(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 2)
    }

    /// The namespace's IPv6 address.
    #[must_use]
    pub fn ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x5647, u16::from(self.subnet), 0, 0, 0, 0, 2)
    }

    /// The port the listener binds, TCP and UDP, on both addresses.
    #[must_use]
    pub fn port(&self) -> u16 {
        LISTEN_PORT
    }

    /// `ipv4():port()`.
    #[must_use]
    pub fn tcp_v4(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ipv4()), self.port())
    }

    /// `[ipv6()]:port()`.
    #[must_use]
    pub fn tcp_v6(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(self.ipv6()), self.port())
    }

    /// `ipv4():53`, where the namespace receives UDP as a DNS resolver would.
    #[must_use]
    pub fn dns_v4(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ipv4()), DNS_PORT)
    }

    /// The namespace's name, as `ip netns list` shows it.
    #[must_use]
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The host end of the veth pair.
    #[must_use]
    pub fn host_veth(&self) -> &str {
        &self.host_veth
    }

    fn wire(&self) -> Result<()> {
        let (ns, veth, n) = (self.namespace.as_str(), self.host_veth.as_str(), self.subnet);
        let host_v6 = Ipv6Addr::new(0xfd00, 0x5647, u16::from(n), 0, 0, 0, 0, 1);
        #[rustfmt::skip]
        let steps: [&[&str]; 8] = [
            &["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
            &["addr", "add", &format!("10.213.{n}.1/24"), "dev", veth],
            &["-6", "addr", "add", &format!("{host_v6}/64"), "dev", veth, "nodad"],
            &["link", "set", veth, "up"],
            &["-n", ns, "addr", "add", &format!("{}/24", self.ipv4()), "dev", "eth0"],
            &["-n", ns, "-6", "addr", "add", &format!("{}/64", self.ipv6()), "dev", "eth0", "nodad"],
            &["-n", ns, "link", "set", "eth0", "up"],
            &["-n", ns, "link", "set", "lo", "up"],
        ];
        steps.iter().try_for_each(|args| ip(args))
    }

    fn start_listener(&mut self, actor_exe: &Path) -> Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(actor_exe)
            .args(["listen", &LISTEN_PORT.to_string(), "--udp", &DNS_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("spawn `ip netns exec … vigie-actor listen`")?;
        let stdout = child.stdout.take().context("listener stdout")?;
        // `ip netns exec` execs the actor in place, so this pid is the listener's.
        self.listener = Some(child);
        let (lines, _reader) = spawn_line_reader(stdout);
        match lines.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line == "ready" => Ok(()),
            Ok(line) => bail!("listener in {} said {line:?}, not ready", self.namespace),
            Err(error) => bail!("listener in {} not ready: {error}", self.namespace),
        }
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = listener.kill();
            let _ = listener.wait();
        }
        // Deleting the namespace frees the veth only later, from a kernel work queue; delete it
        // now so the subnet is really free when the lease is released after this.
        for args in [["link", "delete", &self.host_veth], ["netns", "delete", &self.namespace]] {
            if let Err(error) = ip(&args) {
                eprintln!("cleanup of {}: {error:#}", self.namespace);
            }
        }
    }
}

/// `vigie-it-PID-N` → `vitPID-N`: short enough for an interface name, and derivable when
/// sweeping a namespace whose creator died.
fn host_veth_of(namespace: &str) -> String {
    let suffix = namespace.strip_prefix(NAMESPACE_PREFIX).unwrap_or(namespace);
    format!("vit{suffix}")
}

/// Runs `ip ARGS`, turning a failure into an error that quotes the command and its stderr.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run `ip` (is iproute2 installed?)")?;
    ensure!(
        output.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Takes the first free `10.213.N.0/24`, N in 1..=254, across every test process on the host.
fn lease_subnet() -> Result<(u8, File)> {
    fs::create_dir_all(LEASE_DIR).with_context(|| format!("create {LEASE_DIR} (root needed)"))?;
    for n in 1..=254u8 {
        let path = Path::new(LEASE_DIR).join(format!("subnet-{n}.lock"));
        let file = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => return Ok((n, file)),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("lock {}", path.display()))
            }
        }
    }
    bail!("all 254 test subnets are in use")
}

/// Deletes namespaces left by test processes that were killed before their drops ran; each
/// still holds a veth whose host end has a test address.
fn sweep_leftovers() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(owner) = name.strip_prefix(NAMESPACE_PREFIX).and_then(|rest| rest.split('-').next()) else {
            continue;
        };
        if Path::new("/proc").join(owner).exists() {
            continue;
        }
        kill_processes_in(name);
        let _ = ip(&["link", "delete", &host_veth_of(name)]);
        let _ = ip(&["netns", "delete", name]);
    }
}

fn kill_processes_in(namespace: &str) {
    let Ok(output) = Command::new("ip").args(["netns", "pids", namespace]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            // SAFETY: plain syscall; the pid was inside a namespace only our tests create.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
