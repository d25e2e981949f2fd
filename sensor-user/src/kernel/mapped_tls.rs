//! TLS code that a process maps but the host's loader does not name: a library linking OpenSSL
//! statically (`cryptography`'s `_rust.abi3.so`), a wheel's bundled `libssl` (`psycopg2_binary.libs`).
//! Found in `/proc/PID/maps`, by file identity, and the entry sites of its TLS writes read from
//! its ELF symbols, dynamic or `.symtab`. Reading an ELF file is slow (a `_rust.abi3.so` is
//! megabytes): this runs in the background, the attach on the event loop takes the offsets.

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
};

use sensor_common::FileId;

use super::tls_libraries::{GNUTLS_PROBES, OPENSSL_PROBES};
use super::uprobe_site;

/// A file mapped by a process: its identity, its path as the process names it, and the path
/// that reaches it from here (through the process's root, for one in a container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedFile {
    pub id: FileId,
    pub path: PathBuf,
    pub reachable: PathBuf,
}

/// Where a file's TLS writes are probed: (program, symbol, offset in the file).
pub type Sites = Vec<(&'static str, &'static str, u64)>;

/// The distinct files `pid` maps, but those in `skip`; empty when it is gone.
pub fn mapped_files(pid: u32, skip: &HashSet<FileId>) -> Vec<MappedFile> {
    let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else { return Vec::new() };
    let root = PathBuf::from(format!("/proc/{pid}/root"));
    let mut seen = HashSet::new();
    maps.lines()
        .filter_map(parse_line)
        .filter(|(id, _)| !skip.contains(id) && seen.insert(*id))
        .map(|(id, path)| MappedFile {
            id,
            reachable: root.join(path.strip_prefix("/").unwrap_or(&path)),
            path,
        })
        .collect()
}

/// The identity and path of a `/proc/PID/maps` line
/// `START-END PERMS OFFSET MAJOR:MINOR INODE PATH` of a file mapping.
fn parse_line(line: &str) -> Option<(FileId, PathBuf)> {
    let mut fields = line.splitn(6, ' ');
    let (_, _, _, dev, inode) =
        (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let path = fields.next()?.trim_start();
    let inode: u64 = inode.parse().ok()?;
    if inode == 0 || !path.starts_with('/') || path.ends_with(" (deleted)") {
        return None;
    }
    let (major, minor) = dev.split_once(':')?;
    let (major, minor) = (u32::from_str_radix(major, 16).ok()?, u32::from_str_radix(minor, 16).ok()?);
    Some((FileId::new(major << 20 | minor, inode), PathBuf::from(path)))
}

/// The TLS write sites the ELF file at `path` defines: OpenSSL's, else `GnuTLS`'s; empty for
/// a file that is no ELF or defines neither.
///
/// # Errors
/// When the file cannot be read.
pub fn tls_sites(path: &Path) -> std::io::Result<Sites> {
    let file = fs::read(path)?;
    let Ok(elf) = object::File::parse(&*file) else { return Ok(Vec::new()) };
    let sites = |probes: &[(&'static str, &'static str)]| -> Sites {
        probes
            .iter()
            .filter_map(|&(program, symbol)| {
                Some((program, symbol, uprobe_site::file_site(&elf, &file, symbol)?))
            })
            .collect()
    };
    let openssl = sites(&OPENSSL_PROBES);
    Ok(if openssl.is_empty() { sites(&GNUTLS_PROBES) } else { openssl })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maps_line_gives_the_files_kernel_identity_and_path() {
        let line = "7f3c1a000000-7f3c1a0a1000 r-xp 00022000 fd:01 1835059                    \
                    /usr/lib/x86_64-linux-gnu/libssl.so.3";
        assert_eq!(
            parse_line(line),
            Some((
                FileId::new(0xfd << 20 | 1, 1_835_059),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libssl.so.3")
            ))
        );
    }

    #[test]
    fn anonymous_special_and_deleted_mappings_are_no_files() {
        assert_eq!(
            parse_line("7ffd5a3e1000-7ffd5a402000 rw-p 00000000 00:00 0                          [stack]"),
            None
        );
        assert_eq!(parse_line("7f3c19e00000-7f3c19e21000 rw-p 00000000 00:00 0 "), None);
        assert_eq!(parse_line("7f3c19e00000-7f3c19e21000 r-xp 00000000 00:01 2055 /memfd:x (deleted)"), None);
    }

    #[test]
    fn a_process_maps_each_file_once_and_skipped_ones_not_at_all() {
        let pid = std::process::id();
        let files = mapped_files(pid, &HashSet::new());
        let exe = crate::state::secret_catalog::file_id(Path::new("/proc/self/exe"));
        assert!(files.iter().any(|f| Some(f.id) == exe), "its own executable: {files:?}");
        let ids: HashSet<FileId> = files.iter().map(|f| f.id).collect();
        assert_eq!(ids.len(), files.len(), "no file twice");
        assert!(mapped_files(pid, &ids).is_empty());
    }

    #[test]
    fn the_system_libssl_defines_both_openssl_writes_and_libc_neither() {
        let Some(libssl) = ["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libssl.so.3"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
        else {
            return;
        };
        let sites = tls_sites(libssl).expect("readable");
        let names: Vec<&str> = sites.iter().map(|&(_, symbol, _)| symbol).collect();
        assert_eq!(names, ["SSL_write", "SSL_write_ex"]);
        assert!(sites.iter().all(|&(_, _, offset)| offset > 0));
        let libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6");
        if libc.exists() {
            assert!(tls_sites(libc).expect("readable").is_empty());
        }
    }
}
