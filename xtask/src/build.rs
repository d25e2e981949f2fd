//! `cargo xtask build [--release]`: the `vigie` binary, after making sure the BPF
//! toolchain its build script (aya-build) needs is in place.

use std::path::PathBuf;

use anyhow::Result;

use crate::command::{self, cargo};
use crate::{bootstrap, workspace};

/// Cargo profile to build with.
#[derive(Clone, Copy)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    pub fn from_release_flag(release: bool) -> Self {
        if release {
            Self::Release
        } else {
            Self::Debug
        }
    }

    /// The folder of `<target>` cargo puts this profile's binaries in.
    fn dir_name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Release => "release",
        }
    }
}

/// The `build` task: toolchain bootstrap, then the binary.
pub fn run(profile: Profile) -> Result<()> {
    bootstrap::toolchain()?;
    let vigie = vigie(profile)?;
    eprintln!("[build] built {}", vigie.display());
    Ok(())
}

/// Builds `sensor-user`'s binaries and returns the absolute path of `vigie`. Assumes the
/// toolchain is bootstrapped; `command::cargo` puts bpf-linker on PATH.
pub fn vigie(profile: Profile) -> Result<PathBuf> {
    let mut build = cargo()?;
    build.args(["build", "--package", "sensor-user", "--bins"]);
    if let Profile::Release = profile {
        build.arg("--release");
    }
    eprintln!("[build] {}", command::describe(&build));
    command::run(&mut build)?;
    Ok(workspace::target_dir()?.join(profile.dir_name()).join("vigie"))
}
