//! The kernels `cargo xtask test --kernel NAME` boots: Debian's own packages, so the matrix
//! runs what the hosts this sensor is for run.

use anyhow::{bail, Result};

/// One kernel of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// The name given to `--kernel`.
    pub name: &'static str,
    /// The Debian package to resolve: a metapackage that depends on one `linux-image-*`.
    pub metapackage: &'static str,
    /// The version the resolved image package must start with (`linux-image-<series>`), so
    /// that an archive change cannot swap the kernel silently.
    pub series: &'static str,
    /// The backend `vigie run --backend auto` must report on it (`--expect-backend` overrides).
    pub backend: &'static str,
}

/// Every kernel of the matrix.
pub const KERNELS: &[Kernel] = &[
    // Bookworm's own kernel: no page cache tracepoints (they came in 6.10/6.11), but fentry.
    Kernel { name: "debian-12", metapackage: "linux-image-amd64", series: "6.1.", backend: "fentry" },
    // The 6.12 LTS kernel bookworm-security carries (the one trixie ships), with them.
    Kernel {
        name: "debian-12-6.12",
        metapackage: "linux-image-6.12-amd64",
        series: "6.12.",
        backend: "page-cache",
    },
];

/// The kernel called `name`, or an error listing the names there are.
pub fn named(name: &str) -> Result<Kernel> {
    if let Some(kernel) = KERNELS.iter().find(|kernel| kernel.name == name) {
        return Ok(*kernel);
    }
    let names: Vec<_> = KERNELS.iter().map(|kernel| kernel.name).collect();
    bail!("no kernel called {name:?} in the matrix; there are: {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::{named, KERNELS};

    #[test]
    fn names_are_unique_and_found() {
        for kernel in KERNELS {
            assert_eq!(named(kernel.name).unwrap(), *kernel);
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let error = named("debian-99").unwrap_err().to_string();
        assert!(error.contains("debian-12") && error.contains("debian-12-6.12"), "{error}");
    }
}
