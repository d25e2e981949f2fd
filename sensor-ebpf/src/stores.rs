//! Store servers: the processes of a database server whose data is a secret store (the
//! homeserver's Postgres, which keeps every access token). Nobody opens a watched file to
//! steal from it: a client asks the server over its socket. So what a store server sends on a
//! unix or loopback socket marks the receiving socket with the store (`channels::socket_fed`),
//! and whoever reads it is tainted unless it is a trusted service (the homeserver).
//!
//! The agent finds the servers (the listener of the store's socket, and its children) and
//! fills `STORE_SERVERS`; a server's children inherit it at fork (Postgres forks a backend
//! per connection). Store servers never take in taint themselves: a tainted server would keep
//! the syscall programs attached for good. Until the agent found a server, every check here
//! stops at a gate (an array load); after, a socket delivery costs one hash lookup of its
//! sender's pid.

use sensor_common::{counter, via, FileId, StoreServer, Taint, START_TICK_NS};

use crate::{
    emit::current_pid,
    gates,
    kernel::{current_start_ns, current_task, offsets, read},
    maps::STORE_SERVERS,
    taint,
};

/// Whether the agent found any store server (an array read, inlined by the verifier).
#[inline(always)]
pub fn any() -> bool {
    gates::is_open(counter::STORE_SERVERS)
}

/// The store `task` (thread group `pid`) serves, if it is a store server: the process the
/// agent found or its forked child, not a later process under its pid.
#[inline(always)]
pub fn served_by(task: *const u8, pid: u32) -> Option<StoreServer> {
    if !any() {
        return None;
    }
    // SAFETY: the value is copied out at once.
    let server = unsafe { STORE_SERVERS.get(pid) }.copied()?;
    let off = offsets();
    let leader: *const u8 = read(task, off.task_struct_group_leader).ok()?;
    let start: u64 = read(leader, off.task_struct_start_time).ok()?;
    (start / START_TICK_NS == server.start_tick).then_some(server)
}

/// What a socket carries once the current process, a store server, sent into it: the store's
/// data, from this server process (the socket is filled in by the caller; its reader becomes
/// the origin, `channels::socket_mark`). `None` if the current process serves no store.
#[inline(always)]
pub fn reply() -> Option<Taint> {
    let pid = current_pid();
    let server = served_by(current_task(), pid)?;
    let now = taint::now();
    Some(Taint {
        secret_id: server.secret_id,
        origin_pid: pid,
        read_ns: now,
        acquired_ns: now,
        via_kind: via::STORE_SOCKET,
        via_generation: 0,
        via: FileId::default(),
        origin_start_ns: current_start_ns(),
    })
}

/// The current process forked `child` (a thread group leader started at `start_ns`): a store
/// server's child serves the same store. A full map is counted (`taint-map-full`).
#[inline(always)]
pub fn forked(child: u32, start_ns: u64) {
    let Some(server) = served_by(current_task(), current_pid()) else { return };
    let inherited = StoreServer { start_tick: start_ns / START_TICK_NS, ..server };
    let _ = taint::counted(STORE_SERVERS.insert(child, inherited, 0));
}

/// The current process exec'd or exited: it no longer runs the server (an `archive_command`
/// a server starts is another program).
#[inline(always)]
pub fn left() {
    if any() {
        let _ = STORE_SERVERS.remove(current_pid());
    }
}
