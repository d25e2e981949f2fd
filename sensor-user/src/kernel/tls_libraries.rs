//! The TLS libraries of this host, found as the dynamic loader finds them: its cache
//! (`ldconfig -p`), then the standard multiarch directories. A process that links one of them
//! statically, or loads a copy from elsewhere, is not covered.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Command,
};

use crate::state::secret_catalog::file_id;

/// A library and the (program, symbol) entry uprobes attached to it.
pub struct TlsLibrary {
    pub soname: &'static str,
    pub probes: &'static [(&'static str, &'static str)],
}

/// OpenSSL 3 and 1.1, and `GnuTLS`.
pub const TLS_LIBRARIES: [TlsLibrary; 3] = [
    TlsLibrary { soname: "libssl.so.3", probes: &OPENSSL_PROBES },
    TlsLibrary { soname: "libssl.so.1.1", probes: &OPENSSL_PROBES },
    TlsLibrary { soname: "libgnutls.so.30", probes: &GNUTLS_PROBES },
];

/// The (program, symbol) pairs of OpenSSL's writes, and of `GnuTLS`'s.
pub const OPENSSL_PROBES: [(&str, &str); 2] = [("ssl_write", "SSL_write"), ("ssl_write_ex", "SSL_write_ex")];
pub const GNUTLS_PROBES: [(&str, &str); 1] = [("gnutls_record_send", "gnutls_record_send")];

/// Where the loader looks when its cache does not name a library.
const MULTIARCH_DIRS: [&str; 6] =
    ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

/// Every file of `library` on this host, once per file identity (merged `/usr` makes
/// `/lib/...` and `/usr/lib/...` one file: a second uprobe on it would copy every byte twice).
pub fn find(library: &TlsLibrary, cache: &str) -> Vec<PathBuf> {
    let cached = cache.lines().filter_map(|line| cached_path(line, library.soname));
    let standard = MULTIARCH_DIRS.iter().map(|dir| Path::new(dir).join(library.soname));
    let mut seen = HashSet::new();
    cached.chain(standard).filter(|path| file_id(path).is_some_and(|id| seen.insert(id))).collect()
}

/// The loader cache as `ldconfig -p` prints it; empty when it cannot run.
pub fn loader_cache() -> String {
    Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// The path of a `ldconfig -p` line `\tNAME (FLAGS) => PATH` for `soname`.
fn cached_path(line: &str, soname: &str) -> Option<PathBuf> {
    let (name, path) = line.trim().split_once(" => ")?;
    (name.split_whitespace().next() == Some(soname)).then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_line_names_its_library_only() {
        let line = "\tlibssl.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so.3";
        assert_eq!(
            cached_path(line, "libssl.so.3"),
            Some(PathBuf::from("/lib/x86_64-linux-gnu/libssl.so.3"))
        );
        assert_eq!(cached_path(line, "libssl.so.1.1"), None);
        assert_eq!(cached_path("\tlibssl3.so (libc6,x86-64) => /lib/libssl3.so", "libssl.so.3"), None);
    }
}
