//! The allowed readers: executables whose opening of the watched secrets is their job (`sshd`
//! reading host keys, `su` reading `/etc/shadow`). Allowance is by executable identity, so it
//! cannot cover an interpreter, which runs whatever code it is handed: `python3` allowed would
//! be `python3 -c '<anything>'` allowed.

use std::path::Path;

use sensor_common::FileId;

use crate::{config::Settings, error::Error, state::secret_catalog::file_id};

/// File names of interpreters (a version suffix such as `python3.11` or `perl5.36` included).
const INTERPRETERS: [&str; 19] = [
    "python", "perl", "ruby", "node", "nodejs", "php", "lua", "luajit", "tclsh", "wish", "sh", "bash",
    "dash", "zsh", "ksh", "fish", "busybox", "awk", "gawk",
];

/// Identities of the allowed readers: the user's must exist and not be interpreters; the
/// profiles' are skipped where not installed.
pub fn resolve(settings: &Settings) -> Result<Vec<FileId>, Error> {
    let mut ids = Vec::new();
    for path in &settings.allow_readers {
        ids.push(trusted_executable("allowed reader", path)?);
    }
    let not_interpreter = |p: &&std::path::PathBuf| {
        interpreter_name(p).is_none() && p.canonicalize().is_ok_and(|r| interpreter_name(&r).is_none())
    };
    ids.extend(settings.profile_allow_readers.iter().filter(not_interpreter).filter_map(|p| file_id(p)));
    Ok(ids)
}

/// The identity of `path`, an executable trusted as `role`, which must exist and not be an
/// interpreter (the link's name or the file it leads to).
pub fn trusted_executable(role: &'static str, path: &Path) -> Result<FileId, Error> {
    let not_found = || Error::TrustedExecutable {
        role,
        path: path.to_owned(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    };
    let real = path.canonicalize().map_err(|_| not_found())?;
    if let Some(name) = interpreter_name(path).or_else(|| interpreter_name(&real)) {
        return Err(Error::Interpreter { role, path: path.to_owned(), name });
    }
    file_id(path).ok_or_else(not_found)
}

/// The interpreter `path` names, if it is one.
pub fn interpreter_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.' || c == '-');
    INTERPRETERS.contains(&base).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpreters_are_known_by_name_with_or_without_a_version() {
        for path in
            ["/usr/bin/python3", "/usr/bin/python3.11", "/usr/bin/perl5.36.0", "/bin/sh", "/usr/bin/node"]
        {
            assert!(interpreter_name(Path::new(path)).is_some(), "{path}");
        }
        for path in ["/usr/bin/ssh", "/usr/sbin/sshd", "/usr/bin/su", "/usr/bin/shred", "/usr/bin/pg_dump"] {
            assert!(interpreter_name(Path::new(path)).is_none(), "{path}");
        }
    }

    #[test]
    fn a_symlink_to_an_interpreter_is_an_interpreter() {
        // Debian's /usr/bin/python3 is a link to python3.N; /bin/sh one to dash.
        let target = Path::new("/bin/sh").canonicalize().unwrap();
        assert!(interpreter_name(&target).is_some(), "{}", target.display());
    }
}
