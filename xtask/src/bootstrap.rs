//! `cargo xtask bootstrap`: check, and install when missing, everything building and
//! testing Vigie needs. Idempotent and fast when all is in place; prints one line per
//! thing it found or did.
//!
//! Other tasks call the parts they need: `build` only the toolchain, `run` the toolchain
//! and mounts, `test` everything.

mod bpf_linker;
mod ecs_definitions;
mod mounts;
mod packages;
mod toolchain;

use anyhow::Result;

use crate::privilege;

/// Every step: toolchain, mounts, test and VM commands, the ECS definitions the tests check against.
pub fn all() -> Result<()> {
    toolchain()?;
    let root = privilege::is_root()?;
    mounts::ensure(root)?;
    packages::ensure(root)?;
    // What `cargo xtask test --kernel NAME` boots guests with.
    packages::ensure_commands(crate::vm::COMMANDS, root)?;
    ecs_definitions::ensure()
}

/// What compiling needs: nightly with rust-src, and bpf-linker built on its LLVM.
pub fn toolchain() -> Result<()> {
    let nightly = toolchain::ensure()?;
    bpf_linker::ensure(&nightly.sysroot)
}

/// What loading and attaching programs needs: tracefs and bpffs.
pub fn mounts() -> Result<()> {
    mounts::ensure(privilege::is_root()?)
}

/// Commands of `table` (command, Debian package), apt-installed when missing; needs root.
pub fn commands(table: &'static [(&'static str, &'static str)]) -> Result<()> {
    packages::ensure_commands(table, privilege::is_root()?)
}

/// The first executable called `name` on xtask's PATH, like `which`.
pub fn find_command(name: &str) -> Result<Option<std::path::PathBuf>> {
    Ok(packages::find_command(name, &crate::command::search_path()?))
}

/// One progress line, on stderr so it never mixes with a tool's stdout.
fn say(message: &str) {
    eprintln!("[bootstrap] {message}");
}
