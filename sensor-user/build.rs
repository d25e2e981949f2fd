//! Builds the kernel programs (`sensor-ebpf`) with aya-build and leaves the object in
//! `OUT_DIR/vigie` for `include_bytes_aligned!`.
//!
//! Without bpf-linker (a plain `cargo check`/`clippy` on a machine that never ran
//! `cargo xtask bootstrap`), an empty stub object is written instead; the agent then refuses
//! to start with a message saying how to build it properly.

use std::{env, fs, path::PathBuf};

const EBPF_PACKAGE: &str = "sensor-ebpf";
const OBJECT_NAME: &str = "vigie";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("OUT_DIR not set"))?);
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ebpf_dir = manifest_dir.join("..").join(EBPF_PACKAGE);
    println!("cargo:rerun-if-changed={}", manifest_dir.join("../sensor-common").display());
    println!("cargo:rerun-if-env-changed=PATH");

    let skip = env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let linker = which::which("bpf-linker");
    match &linker {
        Ok(found) => println!("cargo:rerun-if-changed={}", found.display()),
        // Where it may appear: each path cargo watches does not exist yet, so this script runs
        // again on every build until bootstrap installs it (a `cargo build` before
        // `cargo xtask bootstrap` does not leave a stub behind for good).
        Err(_) => {
            for dir in env::split_paths(&env::var_os("PATH").unwrap_or_default()) {
                println!("cargo:rerun-if-changed={}", dir.join("bpf-linker").display());
            }
        }
    }
    if skip || linker.is_err() {
        println!(
            "cargo:warning=bpf-linker not found (or AYA_BUILD_SKIP set): building vigie without its \
             eBPF programs; run `cargo xtask build` for a working binary"
        );
        fs::write(out_dir.join(OBJECT_NAME), [])?;
        return Ok(());
    }
    let root_dir =
        ebpf_dir.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: EBPF_PACKAGE, root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
