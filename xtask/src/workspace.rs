//! Where the workspace and its build output live, so every task builds into and runs
//! from the same place.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The workspace root: the folder above this crate.
pub fn root() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().with_context(|| format!("cannot resolve the workspace root {}", root.display()))
}

/// The target directory cargo builds into: `$CARGO_TARGET_DIR` if set, made absolute
/// against the current directory as cargo does, else `<workspace>/target`.
pub fn target_dir() -> Result<PathBuf> {
    match env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => std::path::absolute(&dir)
            .with_context(|| format!("cannot make CARGO_TARGET_DIR={} absolute", Path::new(&dir).display())),
        None => Ok(root()?.join("target")),
    }
}

/// `$HOME`, needed to find `~/.cargo` and `~/.local/share`.
pub fn home_dir() -> Result<PathBuf> {
    env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set: cannot locate ~/.cargo or ~/.local/share")
}

/// `$CARGO_HOME/bin` (default `~/.cargo/bin`): rustup's proxies and `cargo install`ed
/// tools such as bpf-linker live there.
pub fn cargo_bin_dir() -> Result<PathBuf> {
    match env::var_os("CARGO_HOME").filter(|home| !home.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join("bin")),
        None => Ok(home_dir()?.join(".cargo").join("bin")),
    }
}

/// `$XDG_DATA_HOME` (default `~/.local/share`): per-user data that outlives clones of
/// the repository and `cargo clean`.
pub fn data_home() -> Result<PathBuf> {
    // The XDG spec says to ignore a relative XDG_DATA_HOME.
    match env::var_os("XDG_DATA_HOME").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => Ok(dir),
        _ => Ok(home_dir()?.join(".local").join("share")),
    }
}
