//! Reading a secret without the `open` and `read` syscalls still taints: through `io_uring`
//! (also into a direct descriptor), a memory mapping, the ia32 gate, a file handle.

use anyhow::Result;
use integration_tests::{actor_exe, alert, Actor, Lab, ALERT_TIMEOUT};

/// `actor` gets at the secret's bytes some way, then connects to the remote.
fn assert_alert_names_the_secret(lab: &Lab, actor: Actor, how: &str) -> Result<()> {
    let sensor = lab.sensor()?;
    let run = actor.tcp(lab.remote().tcp_v4()).run()?;
    let alert = sensor.expect(alert::is_exfiltration_by(run.pid), ALERT_TIMEOUT)?;
    assert_eq!(alert::file_path(&alert), lab.secret().to_str(), "{how}: {alert:#}");
    assert_eq!(alert::origin_pid(&alert), Some(run.pid), "{how}: {alert:#}");
    Ok(())
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn secret_opened_and_read_through_io_uring_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let actor = lab.actor().uring_read(lab.secret());
    assert_alert_names_the_secret(&lab, actor, "IORING_OP_OPENAT + IORING_OP_READ")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn secret_opened_with_io_uring_openat2_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let actor = lab.actor().uring_read_openat2(lab.secret());
    assert_alert_names_the_secret(&lab, actor, "IORING_OP_OPENAT2 + IORING_OP_READ")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn secret_mapped_and_never_read_is_reported() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let actor = lab.actor().mmap(lab.secret());
    assert_alert_names_the_secret(&lab, actor, "mmap without read")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn a_read_through_the_ia32_gate_is_seen() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let actor = lab.actor().read_ia32(lab.secret());
    assert_alert_names_the_secret(&lab, actor, "int 0x80 open + read")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_open_by_file_handle_is_seen() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let actor = lab.actor().read_by_handle(lab.secret());
    assert_alert_names_the_secret(&lab, actor, "open_by_handle_at + read")
}

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn an_io_uring_direct_descriptor_is_seen() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let actor = lab.actor().uring_read_fixed(lab.secret());
    assert_alert_names_the_secret(&lab, actor, "IORING_OP_OPENAT into a slot + fixed read")
}
