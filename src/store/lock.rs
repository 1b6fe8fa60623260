//! One server per state directory: `<state_dir>/entra-radius.lock`, held
//! with flock(2) for as long as the server runs.
//!
//! Two servers on one directory would both sync into the same replica and
//! checkpoints and both write its admin token and address; SQLite keeps the
//! file consistent, not the meaning. The kernel drops a flock when its holder
//! exits, however it exits, so a SIGKILLed server leaves no stale lock; the
//! PID written into the file only tells the next one whom it is waiting for.
//! Admin commands, `check-config` and tests that read the store do not take it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{StoreError, ensure_private_dir};

/// File name of the lock inside the state directory.
pub const LOCK_FILE: &str = "entra-radius.lock";

/// The state directory's lock; released when dropped (or when the process
/// ends).
#[derive(Debug)]
pub struct StateLock {
    // Never read: holding the open file is what holds the lock.
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the lock on `state_dir` (creating the directory, 0700, if
    /// needed), or fails with [`StoreError::Locked`] naming the process
    /// that holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, StoreError> {
        ensure_private_dir(state_dir)?;
        let path = state_dir.join(LOCK_FILE);
        let create_err = |source| StoreError::Create {
            path: path.clone(),
            source,
        };
        // No truncation on open: until the lock is ours, the file holds the
        // current holder's PID, which the error below reports.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(create_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StoreError::Locked {
                    dir: state_dir.to_path_buf(),
                    path,
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(source)) => return Err(StoreError::Lock { path, source }),
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        written.map_err(|source| StoreError::Lock {
            path: path.clone(),
            source,
        })?;
        Ok(StateLock { _file: file, path })
    }

    /// Full path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
