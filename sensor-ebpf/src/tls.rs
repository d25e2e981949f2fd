//! TLS plaintext before encryption: entry uprobes on OpenSSL's `SSL_write`/`SSL_write_ex` and
//! GnuTLS's `gnutls_record_send`, attached to the libraries' files so every process using them
//! is covered. Every TLS write of the host pays the check "tainted or trusted?" and returns;
//! the bytes of those that are are copied at once (`outbound`). The library's socket is not in
//! its arguments, so the thread is remembered as in a TLS write (`TLS_CALLS`) and the socket
//! send it makes inside the call names the destination (`sent_within_call`).

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::uprobe, programs::ProbeContext};
use sensor_common::{counter, send_path};

use crate::{gates, maps::TLS_CALLS, network, outbound, taint};

/// `int SSL_write(SSL *ssl, const void *buf, int num)`.
#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    let len = ctx.arg::<i32>(2).and_then(|num| u64::try_from(num).ok());
    written(&ctx, send_path::OPENSSL, len);
    0
}

/// `int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)`.
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    written(&ctx, send_path::OPENSSL, ctx.arg::<u64>(2));
    0
}

/// `ssize_t gnutls_record_send(gnutls_session_t session, const void *data, size_t data_size)`.
#[uprobe]
pub fn gnutls_record_send(ctx: ProbeContext) -> u32 {
    written(&ctx, send_path::GNUTLS, ctx.arg::<u64>(2));
    0
}

/// A TLS write of `len` bytes at argument 1 on `path`.
#[inline(always)]
fn written(ctx: &ProbeContext, path: u8, len: Option<u64>) {
    let Some((sender, taint)) = outbound::current_sender() else { return };
    let (Some(buf), Some(len)) = (ctx.arg::<u64>(1), len) else { return };
    let Ok(record) = outbound::start(sender, taint, path, len) else { return };
    if taint::counted(TLS_CALLS.insert(bpf_get_current_pid_tgid(), record.call, 0)).is_ok() {
        gates::open(counter::TLS_CALLS);
    }
    outbound::copy(record, buf, len);
}

/// Whether any thread may be in a TLS write whose socket is not known yet: until one is,
/// every socket send skips the lookup (an array read).
#[inline(always)]
pub fn calls_pending() -> bool {
    gates::is_open(counter::TLS_CALLS)
}

/// Whether the current thread is in a TLS write whose socket is not known yet.
#[inline(always)]
pub fn in_call() -> bool {
    calls_pending() && TLS_CALLS.get_ptr(bpf_get_current_pid_tgid()).is_some()
}

/// The current thread sends on `sk` (`sock_sendmsg`): if it is in a TLS write, that write's
/// destination is `sk`'s peer, told in a record without bytes.
#[inline(always)]
pub fn sent_within_call(sk: *const u8) -> Result<(), i32> {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out at once.
    let Some(call) = (unsafe { TLS_CALLS.get(thread) }).copied() else { return Ok(()) };
    let _ = TLS_CALLS.remove(thread);
    let Some((sender, taint)) = outbound::current_sender() else { return Ok(()) };
    let peer = network::peer(sk)?;
    let Some(transport) = network::ip_transport(sk)? else { return Ok(()) };
    let record = outbound::start(sender, taint, send_path::TLS_DESTINATION, 0)?;
    record.call = call;
    record.transport = transport;
    outbound::set_destination(record, &peer);
    outbound::emit_head(record);
    Ok(())
}
