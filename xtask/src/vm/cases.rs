//! Which in-guest cases a run asks for (their names are `vigie-vm-suite`'s, in
//! `tests/src/bin/vm_suite/cases.rs`), in the order they run: `counters` stops the shared
//! sensor, `loss` starts its own.

/// Every case: per backend, what issue 13 asks the matrix to prove.
pub const FULL: &[&str] = &[
    "backend",
    "direct-read",
    "mmap",
    "o-direct",
    "pipe",
    "derived-file",
    "io-uring",
    "open-by-handle",
    "benign",
    "counters",
    "loss",
];

/// `--quick`: the backend, one alert from a direct read, one through a pipe, the control.
pub const QUICK: &[&str] = &["backend", "direct-read", "pipe", "benign"];
