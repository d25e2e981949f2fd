//! Taint follows a reader into the children it forks after the read.

use anyhow::Result;
use integration_tests::{actor_exe, alert, Lab, ALERT_TIMEOUT};

#[test]
#[ignore = "needs root and BPF: run with cargo xtask test"]
fn child_forked_after_the_read_is_reported_with_the_reader_as_parent() -> Result<()> {
    let lab = Lab::new(actor_exe!())?;
    let sensor = lab.sensor()?;

    let run = lab.actor().read(lab.secret()).fork().tcp(lab.remote().tcp_v4()).run()?;
    let child = run.child_pid.expect("--fork reports the child");

    let alert = sensor.expect(alert::is_exfiltration_by(child), ALERT_TIMEOUT)?;
    assert_eq!(alert::parent_pid(&alert), Some(run.pid), "{alert:#}");
    assert!(
        alert::ancestry_pids(&alert).contains(&run.pid),
        "reader {} missing from vigie.ancestry: {alert:#}",
        run.pid
    );
    Ok(())
}
