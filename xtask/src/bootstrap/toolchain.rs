//! The nightly toolchain and its rust-src: the eBPF crate is built with
//! `-Z build-std=core` for `bpfel-unknown-none`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::say;
use crate::command::{self, tool};

/// The nightly toolchain, once checked.
pub struct Nightly {
    /// `rustc +nightly --print sysroot`: holds rust-src and the nightly's libLLVM.
    pub sysroot: PathBuf,
}

/// Checks that nightly exists (we do not install a whole toolchain behind the user's
/// back) and adds rust-src to it if missing.
pub fn ensure() -> Result<Nightly> {
    let version = command::output(tool("rustup")?.args(["run", "nightly", "rustc", "--version"])).context(
        "the nightly toolchain is missing or broken; install it with \
             `rustup toolchain install nightly`",
    )?;
    say(&format!("nightly toolchain: {version}"));

    let sysroot = PathBuf::from(command::output(
        tool("rustup")?.args(["run", "nightly", "rustc", "--print", "sysroot"]),
    )?);
    let library = sysroot.join("lib/rustlib/src/rust/library");
    if library.is_dir() {
        say("rust-src for nightly: present");
    } else {
        say("rust-src for nightly: missing, installing");
        command::run(tool("rustup")?.args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
        say("rust-src for nightly: installed");
    }
    Ok(Nightly { sysroot })
}
