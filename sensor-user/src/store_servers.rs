//! The processes of a store's database server, found from `/proc`: the listener of its unix
//! socket (`/proc/net/unix`) or TCP port (`/proc/net/tcp`, `tcp6`), by the socket's inode
//! among every process's descriptors, and the listener's children running the same executable
//! (Postgres's backends and helpers, forked without exec). Looked for again on the agent's
//! ticks, so that a restarted server is found; from then on the kernel follows its forks.

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
};

use crate::{config::synapse_database::Endpoint, state::process_table::ProcessTable};

/// A listener's state in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";
/// `__SO_ACCEPTCON` in `/proc/net/unix`'s flags: a listening socket.
const UNIX_ACCEPTING: u32 = 0x1_0000;

/// One process of a store's server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub pid: u32,
    /// Start time, nanoseconds since boot (as the process table counts it).
    pub start_ns: u64,
}

/// What one look at `/proc` found for a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The inode of the listening socket, if something listens.
    pub listener: Option<u64>,
    /// The server's processes, the listener first.
    pub servers: Vec<Server>,
    /// Why there are none, if there are none.
    pub reason: Option<String>,
}

impl Found {
    /// Looks for the server listening at `endpoint` (`ns_per_tick`: the `/proc` clock).
    pub fn look(endpoint: &Endpoint, ns_per_tick: u64) -> Self {
        let inodes = listening_inodes(endpoint);
        let Some(&listener) = inodes.first() else {
            let reason = match endpoint {
                Endpoint::UnixSocket(path) => format!("no process listens on {}", path.display()),
                Endpoint::Tcp { port, .. } => format!("no process of this host listens on TCP port {port}"),
            };
            return Self { reason: Some(reason), ..Self::default() };
        };
        let table = ProcessTable::from_proc(ns_per_tick);
        let holders = holders_of(&inodes.iter().copied().collect());
        let mut servers: Vec<Server> = Vec::new();
        for process in table.iter().filter(|p| holders.contains(&p.pid)) {
            servers.push(Server { pid: process.pid, start_ns: process.start_ns });
        }
        // Children running the listener's program: forked without exec, they serve its data.
        let mut next = 0;
        while next < servers.len() {
            let parent = table.get(servers[next].pid).and_then(|p| p.exe_id);
            let children: Vec<Server> = table
                .iter()
                .filter(|p| p.ppid == servers[next].pid && p.exe_id.is_some() && p.exe_id == parent)
                .filter(|p| !servers.iter().any(|s| s.pid == p.pid))
                .map(|p| Server { pid: p.pid, start_ns: p.start_ns })
                .collect();
            servers.extend(children);
            next += 1;
        }
        let reason = servers.is_empty().then(|| "no process holds its listening socket".to_owned());
        Self { listener: Some(listener), servers, reason }
    }

    /// Whether the server this look found still listens: the same socket, held by the same
    /// first process (then the kernel follows its forks, and nothing need be looked for).
    pub fn still_listening(&self, endpoint: &Endpoint, ns_per_tick: u64) -> bool {
        let (Some(listener), Some(first)) = (self.listener, self.servers.first()) else { return false };
        listening_inodes(endpoint).contains(&listener)
            && start_ns(first.pid, ns_per_tick) == Some(first.start_ns)
            && holders_in(first.pid, &HashSet::from([listener]))
    }
}

/// Inodes of the sockets listening at `endpoint`.
fn listening_inodes(endpoint: &Endpoint) -> Vec<u64> {
    match endpoint {
        Endpoint::UnixSocket(path) => {
            let text = fs::read_to_string("/proc/net/unix").unwrap_or_default();
            unix_listeners(&text)
                .into_iter()
                .filter(|(_, bound)| same_socket(bound, path))
                .map(|(i, _)| i)
                .collect()
        }
        Endpoint::Tcp { port, .. } => ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .flat_map(|table| tcp_listeners(&fs::read_to_string(table).unwrap_or_default(), *port))
            .collect(),
    }
}

/// `(inode, path)` of every listening unix socket bound to a path, from `/proc/net/unix`.
fn unix_listeners(text: &str) -> Vec<(u64, PathBuf)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let inode = fields.get(6)?.parse().ok()?;
            let path = line.get(line.find(" /")? + 1..)?;
            (flags & UNIX_ACCEPTING != 0).then(|| (inode, PathBuf::from(path)))
        })
        .collect()
}

/// Inodes of the TCP sockets listening on `port`, from `/proc/net/tcp` or `tcp6`.
fn tcp_listeners(text: &str, port: u16) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = u16::from_str_radix(fields.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            let listening = *fields.get(3)? == TCP_LISTEN && local_port == port;
            listening.then(|| fields.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

/// Whether socket path `bound` (as the server bound it) is `configured`: the same name in the
/// same directory (`/var/run` is `/run`).
fn same_socket(bound: &Path, configured: &Path) -> bool {
    let dir = |p: &Path| p.parent().and_then(|d| fs::canonicalize(d).ok());
    bound == configured
        || (bound.file_name() == configured.file_name()
            && dir(bound).is_some()
            && dir(bound) == dir(configured))
}

/// Pids holding one of the sockets `inodes`.
fn holders_of(inodes: &HashSet<u64>) -> HashSet<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return HashSet::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| holders_in(pid, inodes))
        .collect()
}

/// Whether process `pid` holds one of the sockets `inodes`.
fn holders_in(pid: u32, inodes: &HashSet<u64>) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.filter_map(Result::ok).any(|fd| {
        let target = fs::read_link(fd.path()).unwrap_or_default();
        let text = target.to_string_lossy();
        text.strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']')?.parse::<u64>().ok())
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

/// The start time of process `pid` now, as the process table counts it.
fn start_ns(pid: u32, ns_per_tick: u64) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks: u64 = stat.get(stat.rfind(')')? + 2..)?.split(' ').nth(19)?.parse().ok()?;
    Some(ticks * ns_per_tick)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn proc_net_tables_are_read_for_listeners() {
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 4242 /srv/pg dir/.s.PGSQL.5432\n\
                    0000000000000000: 00000003 00000000 00000000 0001 03 4343 /srv/pg dir/.s.PGSQL.5432\n\
                    0000000000000000: 00000002 00000000 00010000 0001 01 4444\n";
        assert_eq!(unix_listeners(unix), [(4242, PathBuf::from("/srv/pg dir/.s.PGSQL.5432"))]);
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                   \x20  0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 777 1\n\
                   \x20  1: 0100007F:1538 0100007F:A0B2 01 00000000:00000000 00:00000000 00000000   105        0 778 1\n";
        assert_eq!(tcp_listeners(tcp, 5432), [777]);
        assert!(tcp_listeners(tcp, 5433).is_empty());
    }

    /// A socket this test listens on is found, held by this process; no listener is a reason.
    #[test]
    fn the_listener_of_a_socket_path_is_found() {
        let dir = std::env::temp_dir().join(format!("vigie-store-servers-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".s.PGSQL.5999");
        let _ = fs::remove_file(&path);
        let endpoint = Endpoint::UnixSocket(path.clone());
        let ns_per_tick = crate::system::ns_per_tick();
        let none = Found::look(&endpoint, ns_per_tick);
        assert!(
            none.servers.is_empty() && none.reason.as_deref().is_some_and(|r| r.contains(".s.PGSQL.5999"))
        );

        let listener = UnixListener::bind(&path).unwrap();
        let found = Found::look(&endpoint, ns_per_tick);
        assert_eq!(found.servers.first().map(|s| s.pid), Some(std::process::id()), "{found:?}");
        assert!(found.still_listening(&endpoint, ns_per_tick));
        drop(listener);
        fs::remove_file(&path).unwrap();
        assert!(!found.still_listening(&endpoint, ns_per_tick));
        fs::remove_dir_all(&dir).unwrap();
    }
}
