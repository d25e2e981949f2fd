//! Outbound traffic of tainted processes: TCP connection attempts (IPv4 and IPv6) from the
//! socket state tracepoint, UDP sends and connects from the cgroup socket-address hooks, and
//! every send on a connected socket (also one connected before the taint) with its bytes;
//! socket deliveries and reads that carry taint between local processes. Until a process is
//! tainted or a socket marked, every program here stops at a gate (an array load).

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_tracepoint, cgroup_sock_addr, fexit, kprobe, kretprobe, raw_tracepoint},
    programs::{
        BtfTracePointContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext,
        SockAddrContext,
    },
};
use sensor_common::{counter, family, transport, ConnectEvent, EventKind, SendKey, SendTotal, Taint};

use crate::{
    atomic, channels,
    emit::{self, header},
    gates,
    kernel::{offsets, read, socket_sk},
    maps::{SENDING, SEND_TOTALS},
    outbound, stores, taint, tls,
};

const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const SOCK_DGRAM: u32 = 2;
/// cgroup sock_addr programs return 1 to let the operation proceed.
const ALLOW: i32 = 1;

/// `inet_sock_set_state(sk, oldstate, newstate)` as a raw tracepoint: a move to SYN_SENT
/// is a TCP connect, in the caller's context; a move to CLOSE, which every TCP socket makes
/// before it is freed, drops the socket's mark (`channels::socket_closed`). Raw, so the other
/// state changes of every connection cost one compare, not a trace record.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let newstate: i32 = ctx.arg(2);
    if newstate == TCP_CLOSE && channels::sockets_marked() {
        let _ = channels::socket_closed(ctx.arg(0));
    }
    if newstate == TCP_SYN_SENT {
        if let Some(mut event) = tainted_connect_after_channels(transport::TCP, true) {
            if destination(ctx.arg(0), &mut event).is_ok() {
                emit::output(event);
            }
        }
    }
    0
}

/// Fills `event`'s destination from a connected socket; fails for other families and for
/// sockets without a peer port.
#[inline(always)]
fn destination(sk: *const u8, event: &mut ConnectEvent) -> Result<(), i32> {
    let peer = peer(sk)?;
    event.family = peer.family;
    event.port = peer.port;
    event.addr = peer.addr;
    Ok(())
}

/// Where a connected IP socket sends to.
pub struct Peer {
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    /// 4 bytes for IPv4 (rest zero), 16 for IPv6, network order.
    pub addr: [u8; 16],
}

/// The peer of a connected socket; fails for other families and for sockets without a peer
/// port.
#[inline(always)]
pub fn peer(sk: *const u8) -> Result<Peer, i32> {
    let off = offsets();
    let family = read(sk, off.sock_common_skc_family)?;
    let port = u16::from_be(read::<u16>(sk, off.sock_common_skc_dport)?);
    if port == 0 {
        return Err(-1);
    }
    let mut addr = [0; 16];
    match family {
        family::INET6 => addr = read(sk, off.sock_common_skc_v6_daddr)?,
        family::INET => {
            let v4: [u8; 4] = read(sk, off.sock_common_skc_daddr)?;
            addr[..4].copy_from_slice(&v4);
        }
        _ => return Err(-1),
    }
    Ok(Peer { family, port, addr })
}

/// `transport::TCP` or `UDP` for a TCP or UDP socket, `None` for other protocols.
#[inline(always)]
pub fn ip_transport(sk: *const u8) -> Result<Option<u8>, i32> {
    Ok(match read::<u16>(sk, offsets().sock_sk_protocol)? {
        IPPROTO_TCP => Some(transport::TCP),
        IPPROTO_UDP => Some(transport::UDP),
        _ => None,
    })
}

/// [`tainted_connect`], once a marked channel the current process holds had its say
/// (`channels::took_from_held_channels`, with `store_replies`).
#[inline(always)]
fn tainted_connect_after_channels(transport: u8, store_replies: bool) -> Option<ConnectEvent> {
    let taint = taint::current().or_else(|| {
        let _ = channels::took_from_held_channels(store_replies);
        taint::current()
    })?;
    Some(connect_event(taint, transport))
}

/// A connect record for the current process if it is tainted, destination still empty.
#[inline(always)]
fn tainted_connect(transport: u8) -> Option<ConnectEvent> {
    taint::current().map(|taint| connect_event(taint, transport))
}

/// A connect record for the current process, tainted with `taint`, destination still empty.
#[inline(always)]
fn connect_event(taint: Taint, transport: u8) -> ConnectEvent {
    ConnectEvent {
        header: header(EventKind::Connect),
        taint,
        family: 0,
        port: 0,
        transport,
        _pad: [0; 3],
        addr: [0; 16],
        bytes: 0,
    }
}

/// Reports a UDP destination taken from a cgroup sock_addr context.
#[inline(always)]
fn udp_destination(ctx: &SockAddrContext, ip_family: u16) {
    let sa: *const bpf_sock_addr = ctx.sock_addr;
    // SAFETY: the kernel hands sock_addr programs a valid context; these are direct,
    // verifier-rewritten context loads.
    unsafe {
        if (*sa).type_ != SOCK_DGRAM {
            return;
        }
        let Some(mut event) = tainted_connect(transport::UDP) else {
            return;
        };
        event.family = ip_family;
        event.port = u16::from_be((*sa).user_port as u16);
        if ip_family == family::INET6 {
            for (i, word) in [(*sa).user_ip6[0], (*sa).user_ip6[1], (*sa).user_ip6[2], (*sa).user_ip6[3]]
                .iter()
                .enumerate()
            {
                event.addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
            }
        } else {
            event.addr[..4].copy_from_slice(&(*sa).user_ip4.to_ne_bytes());
        }
        emit::output(event);
    }
}

/// UDP `sendto`/`sendmsg` with an IPv4 destination.
#[cgroup_sock_addr(sendmsg4)]
pub fn udp_sendmsg4(ctx: SockAddrContext) -> i32 {
    udp_destination(&ctx, family::INET);
    ALLOW
}

/// UDP `sendto`/`sendmsg` with an IPv6 destination.
#[cgroup_sock_addr(sendmsg6)]
pub fn udp_sendmsg6(ctx: SockAddrContext) -> i32 {
    udp_destination(&ctx, family::INET6);
    ALLOW
}

/// `connect` of an IPv4 UDP socket (later sends carry no address).
#[cgroup_sock_addr(connect4)]
pub fn udp_connect4(ctx: SockAddrContext) -> i32 {
    udp_destination(&ctx, family::INET);
    ALLOW
}

/// `connect` of an IPv6 UDP socket.
#[cgroup_sock_addr(connect6)]
pub fn udp_connect6(ctx: SockAddrContext) -> i32 {
    udp_destination(&ctx, family::INET6);
    ALLOW
}

/// `sk_data_ready(sk)`: data queued for a socket's reader, in the sender's context for unix
/// and loopback deliveries (`channels::socket_fed`). Until a process is tainted or a store
/// server known it stops at two array reads.
#[btf_tracepoint(function = "sk_data_ready")]
pub fn socket_fed(ctx: BtfTracePointContext) -> i32 {
    if taint::anyone_tainted() || stores::any() {
        let _ = channels::socket_fed(ctx.arg(0));
    }
    0
}

/// `sock_recv_length(sk, ret, flags)`: every `sock_recvmsg`, in the reader's context; a read
/// of a socket that carries a secret taints the reader (`channels::socket_read`). Until a
/// socket is marked or a store server known it stops at two array reads.
#[btf_tracepoint(function = "sock_recv_length")]
pub fn socket_received(ctx: BtfTracePointContext) -> i32 {
    let received: i32 = ctx.arg(1);
    if received > 0 && channels::sockets_marked() {
        let _ = channels::socket_read(ctx.arg(0));
    }
    0
}

/// `tcp_sendmsg_locked(sk, msg, skb, size_goal)`: every pass of a TCP send's copy loop, in the
/// sender's context, with the sender's buffer: a trusted service's sends off the host are copied
/// here (`outbound::service_tcp_send`). Until a service is trusted it stops at an array read.
#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn service_send(ctx: BtfTracePointContext) -> i32 {
    if services_trusted() {
        let _ = outbound::service_tcp_send(ctx.arg(0), ctx.arg(1));
    }
    0
}

/// Whether the agent has trusted any service's process (an array read).
#[inline(always)]
fn services_trusted() -> bool {
    gates::is_open(counter::TRUSTED_SERVICES)
}

/// `sock_send_length(sk, ret, flags)` as a raw tracepoint: every `sock_sendmsg` (write,
/// send*, sendfile and splice into a socket, io_uring sends) in the sender's context. What a
/// tainted process sends on a unix socket taints its peer; on an IP socket its bytes are
/// counted per destination, and the first send to a destination is reported like a connect.
/// A send inside a TLS write names that write's destination (`tls::sent_within_call`).
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn sock_send_length(ctx: RawTracePointContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    if tls::calls_pending() {
        let _ = tls::sent_within_call(sk);
    }
    if services_trusted() {
        outbound::service_send_done();
    }
    let sent: i32 = ctx.arg(1);
    if sent > 0 {
        if taint::current().is_none() {
            let _ = channels::sends_after_store_reply(sk);
        }
        let _ = sent_by_current(sk, sent);
    }
    0
}

/// `inet_sendmsg(sock, msg, size)` at its exit: an IPv4 socket's send, where the kernel lacks
/// `sock_send_length` (before Linux 6.3) and runs fentry programs. These kernels inline
/// `sock_sendmsg` into the syscalls that send, so the sends are seen one level down, at the
/// socket family's send function: counted per destination and followed to unix peers as
/// [`sock_send_length`] does, but for sendfile and splice into a socket (another path there).
/// TLS destinations and a store server's replies need that tracepoint.
#[fexit(function = "inet_sendmsg")]
pub fn inet_send_exit(ctx: FExitContext) -> i32 {
    family_send_exit(&ctx)
}

/// [`inet_send_exit`] for IPv6 sockets.
#[fexit(function = "inet6_sendmsg")]
pub fn inet6_send_exit(ctx: FExitContext) -> i32 {
    family_send_exit(&ctx)
}

/// [`inet_send_exit`] for unix stream sockets.
#[fexit(function = "unix_stream_sendmsg")]
pub fn unix_stream_send_exit(ctx: FExitContext) -> i32 {
    family_send_exit(&ctx)
}

/// [`inet_send_exit`] for unix datagram sockets.
#[fexit(function = "unix_dgram_sendmsg")]
pub fn unix_dgram_send_exit(ctx: FExitContext) -> i32 {
    family_send_exit(&ctx)
}

/// The kprobe backend's [`inet_send_exit`] and its siblings: a kprobe attached to each socket
/// family's `sendmsg(sock, msg, size)` keeps the socket for its return (a kretprobe has no
/// arguments), once anything is tainted or marked.
#[kprobe]
pub fn family_send_entry(ctx: ProbeContext) -> u32 {
    if taint::anyone_tainted() || channels::anything_marked() {
        let socket = ctx.arg::<*const u8>(0).ok_or(-1);
        let sk = socket.and_then(socket_sk);
        if let Ok(sk) = sk {
            let _ = taint::counted(SENDING.insert(bpf_get_current_pid_tgid(), sk as u64, 0));
        }
    }
    0
}

/// The return of a send [`family_send_entry`] kept.
#[kretprobe]
pub fn family_send_return(ctx: RetProbeContext) -> u32 {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let Some(sk) = (unsafe { SENDING.get(thread) }).copied() else { return 0 };
    let _ = SENDING.remove(thread);
    let sent: i32 = ctx.ret();
    if sent > 0 {
        let _ = sent_by_current(sk as *const u8, sent);
    }
    0
}

/// The exit of a `proto_ops.sendmsg(sock, msg, size)`.
#[inline(always)]
fn family_send_exit(ctx: &FExitContext) -> i32 {
    // An fexit program's arguments are followed by the return value.
    let sent: i32 = ctx.arg(3);
    if sent > 0 {
        if let Ok(sk) = socket_sk(ctx.arg::<*const u8>(0)) {
            let _ = sent_by_current(sk, sent);
        }
    }
    0
}

/// The current process just handed `sent` bytes to socket `sk`: if it is tainted (or becomes
/// so through a marked channel it holds), see [`sent_by_tainted`].
#[inline(always)]
fn sent_by_current(sk: *const u8, sent: i32) -> Result<(), i32> {
    match tainted_connect_after_channels(transport::TCP, false) {
        Some(event) => sent_by_tainted(sk, sent, event),
        None => Ok(()),
    }
}

#[inline(always)]
fn sent_by_tainted(sk: *const u8, sent: i32, mut event: ConnectEvent) -> Result<(), i32> {
    let off = offsets();
    if read::<u16>(sk, off.sock_common_skc_family)? == channels::AF_UNIX {
        return channels::sent_to_unix_socket(sk, &event.taint);
    }
    // Unconnected UDP has no peer port here: the cgroup sendmsg hooks saw its destination.
    destination(sk, &mut event)?;
    let Some(transport) = ip_transport(sk)? else { return Ok(()) };
    event.transport = transport;
    let key = SendKey { pid: event.header.pid, port: event.port, family: event.family, addr: event.addr };
    let bytes = sent as u64;
    if let Some(total) = SEND_TOTALS.get_ptr_mut(key) {
        // SAFETY: a valid map value. Atomic: threads of one process sending at the same
        // instant on two CPUs are both counted.
        unsafe {
            if (*total).acquired_ns == event.taint.acquired_ns {
                atomic::add(&raw mut (*total).bytes, bytes);
                return Ok(());
            }
        }
    }
    // A full map loses the byte count, never the record.
    let total = SendTotal {
        bytes,
        acquired_ns: event.taint.acquired_ns,
        taint: event.taint,
        uid: event.header.uid,
        transport: u32::from(event.transport),
    };
    let kept = SEND_TOTALS.insert(key, total, 0);
    let _ = taint::counted_as(counter::SEND_TOTALS_FULL, kept);
    event.bytes = bytes;
    emit::output(event);
    Ok(())
}
