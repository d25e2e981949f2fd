//! Outbound traffic of tainted processes: TCP connection attempts (IPv4 and IPv6) from the
//! socket state tracepoint, UDP sends and connects from the cgroup socket-address hooks, and
//! every send on a connected socket (also one connected before the taint) with its bytes.
//! Processes that never touched a secret cost one map lookup and produce nothing.

use aya_ebpf::{
    bindings::bpf_sock_addr,
    macros::{cgroup_sock_addr, tracepoint},
    programs::{SockAddrContext, TracePointContext},
};
use sensor_common::{family, transport, ConnectEvent, EventKind, SendKey, SendTotal};

use crate::{
    emit::{self, header},
    kernel::{offsets, read},
    maps::SEND_TOTALS,
    taint,
};

/// Field offsets of `sock:inet_sock_set_state` (stable since Linux 4.16).
mod set_state {
    pub const NEWSTATE: usize = 20;
    pub const DPORT: usize = 26;
    pub const FAMILY: usize = 28;
    pub const PROTOCOL: usize = 30;
    pub const DADDR: usize = 36;
    pub const DADDR_V6: usize = 56;
}
const TCP_SYN_SENT: i32 = 2;
const IPPROTO_TCP: u16 = 6;
const SOCK_DGRAM: u32 = 2;
/// cgroup sock_addr programs return 1 to let the operation proceed.
const ALLOW: i32 = 1;

/// `sock:inet_sock_set_state`: a move to SYN_SENT is a TCP connect, in the caller's context.
#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_set_state(&ctx);
    0
}

fn try_set_state(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: offsets of this tracepoint's fixed format, read with bpf_probe_read_kernel.
    unsafe {
        if ctx.read_at::<i32>(set_state::NEWSTATE)? != TCP_SYN_SENT
            || ctx.read_at::<u16>(set_state::PROTOCOL)? != IPPROTO_TCP
        {
            return Ok(());
        }
        let Some(mut event) = tainted_connect(transport::TCP) else {
            return Ok(());
        };
        event.family = ctx.read_at(set_state::FAMILY)?;
        event.port = ctx.read_at(set_state::DPORT)?;
        if event.family == family::INET6 {
            event.addr = ctx.read_at(set_state::DADDR_V6)?;
        } else {
            let v4: [u8; 4] = ctx.read_at(set_state::DADDR)?;
            event.addr[..4].copy_from_slice(&v4);
        }
        emit::output(event);
    }
    Ok(())
}

/// A connect record for the current process if it is tainted, destination still empty.
#[inline(always)]
fn tainted_connect(transport: u8) -> Option<ConnectEvent> {
    let taint = taint::current()?;
    Some(ConnectEvent {
        header: header(EventKind::Connect),
        taint,
        family: 0,
        port: 0,
        transport,
        _pad: [0; 3],
        addr: [0; 16],
        bytes: 0,
    })
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

/// Field offsets of `sock:sock_send_length`.
mod send_length {
    pub const SK: usize = 8;
    pub const FAMILY: usize = 16;
    pub const PROTOCOL: usize = 18;
    pub const RET: usize = 20;
}
const IPPROTO_UDP: u16 = 17;

/// `sock:sock_send_length`: every `sock_sendmsg` (write, send*, sendfile and splice into a
/// socket, io_uring sends) in the sender's context. Counts a tainted process's bytes per
/// destination; the first send to a destination is reported like a connect.
#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    let _ = try_send_length(&ctx);
    0
}

fn try_send_length(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: fixed fields of this tracepoint's format.
    let (sent, ip_family) =
        unsafe { (ctx.read_at::<i32>(send_length::RET)?, ctx.read_at::<u16>(send_length::FAMILY)?) };
    if sent <= 0 || (ip_family != family::INET && ip_family != family::INET6) {
        return Ok(());
    }
    let Some(mut event) = tainted_connect(transport::TCP) else { return Ok(()) };
    let off = offsets();
    // SAFETY: as above.
    let (sk, protocol) =
        unsafe { (ctx.read_at::<*const u8>(send_length::SK)?, ctx.read_at::<u16>(send_length::PROTOCOL)?) };
    let port = u16::from_be(read::<u16>(sk, off.sock_common_skc_dport)?);
    if port == 0 {
        // Unconnected UDP: the cgroup sendmsg hooks saw its destination.
        return Ok(());
    }
    if protocol == IPPROTO_UDP {
        event.transport = transport::UDP;
    } else if protocol != IPPROTO_TCP {
        return Ok(());
    }
    event.family = ip_family;
    event.port = port;
    if ip_family == family::INET6 {
        event.addr = read(sk, off.sock_common_skc_v6_daddr)?;
    } else {
        let v4: [u8; 4] = read(sk, off.sock_common_skc_daddr)?;
        event.addr[..4].copy_from_slice(&v4);
    }
    let key = SendKey { pid: event.header.pid, port, family: ip_family, addr: event.addr };
    let bytes = sent as u64;
    if let Some(total) = SEND_TOTALS.get_ptr_mut(key) {
        // SAFETY: a valid map value. The bpfel target has no atomic add in Rust: threads of
        // one process sending at the same instant on two CPUs may undercount by one send.
        unsafe {
            if (*total).acquired_ns == event.taint.acquired_ns {
                (*total).bytes += bytes;
                return Ok(());
            }
        }
    }
    SEND_TOTALS.insert(key, SendTotal { bytes, acquired_ns: event.taint.acquired_ns }, 0)?;
    event.bytes = bytes;
    emit::output(event);
    Ok(())
}
