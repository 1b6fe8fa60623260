//! Files that hold a secret (a client's `secret_file`, the application's
//! credential in the state directory, later an LDAP bind password or an EAP
//! private key): read only when nobody but their owner may read them, as ssh
//! treats private keys. A secret that others could read has to be assumed
//! known to them, so refusing it is safer than using it.
//!
//! Config and integration both read through here; this module uses nothing
//! else of the crate so that either may depend on it.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Permission bits that let group or others at the file.
const NOT_OWNER: u32 = 0o077;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error(
        "{} has mode {mode:04o}: group or others may read the secret it holds, so it is refused; \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
}

impl PrivateFileError {
    /// The file does not exist (callers with a fallback or a more helpful
    /// message for that case look here).
    pub fn is_not_found(&self) -> bool {
        matches!(self, PrivateFileError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads `path` if it is a regular file whose mode gives group and others
/// nothing. The mode is taken from the open file, so the file judged is the
/// one read even if the path is replaced in between.
pub fn read_private_file(path: &Path) -> Result<Vec<u8>, PrivateFileError> {
    let read_err = |source| PrivateFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & NOT_OWNER != 0 {
        return Err(PrivateFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(read_err)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, b"s3cret\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn owner_only_modes_are_read() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o400, 0o700] {
            let p = write(dir.path(), "s", mode);
            assert_eq!(read_private_file(&p).unwrap(), b"s3cret\n", "{mode:o}");
        }
    }

    #[test]
    fn group_or_world_access_is_refused_naming_file_mode_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o620] {
            let p = write(dir.path(), "s", mode);
            let e = read_private_file(&p).unwrap_err();
            assert!(matches!(e, PrivateFileError::TooOpen { .. }), "{mode:o}: {e:?}");
            let text = e.to_string();
            assert!(text.contains(&format!("{} has mode {mode:04o}", p.display())), "{text}");
            assert!(text.contains(&format!("chmod 600 {}", p.display())), "{text}");
        }
    }

    #[test]
    fn missing_and_non_regular_files_are_read_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_private_file(&dir.path().join("none")).unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        assert!(e.to_string().starts_with("cannot read "), "{e}");
        let sub = dir.path().join("d");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
        let e = read_private_file(&sub).unwrap_err();
        assert!(!e.is_not_found());
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
