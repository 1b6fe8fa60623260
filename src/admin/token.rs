//! The admin token file: made by the server on first start, read by the CLI, never world-readable.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::RngExt;

use super::AdminError;

/// The token's file name inside the state directory.
pub const TOKEN_FILE: &str = "admin.token";

/// 32 random bytes: 256 bits, beyond guessing even at the API's full request rate.
const TOKEN_BYTES: usize = 32;

/// A token written by hand must still be hard to guess; 32 characters is what a 128-bit hex
/// token takes, and it rules out the empty file a crashed writer or a careless edit would leave.
const MIN_TOKEN_LEN: usize = 32;

/// Reads `state_dir/admin.token`, creating it (32 random bytes, hex, mode 0600) if missing, and
/// tightens its mode to 0600 if group or others may read it. Returns the token.
///
/// The file is born with mode 0600 (`O_EXCL` and the mode given to `open`), so it is never
/// readable by others, not even for an instant. It is written under a temporary name and then
/// hard-linked into place, so no reader ever sees a half-written token and, when two processes
/// race, one token wins and both return it.
pub fn ensure_token(state_dir: &Path) -> Result<String, AdminError> {
    let path = state_dir.join(TOKEN_FILE);
    let token_error = |source| AdminError::Token {
        path: path.clone(),
        source,
    };
    match read_valid(&path) {
        Ok(token) => {
            tighten_mode(&path).map_err(token_error)?;
            return Ok(token);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(token_error(e)),
    }
    // 0700: the directory also holds the SQLite state, which nobody else should read.
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(token_error)?;
    let token = hex::encode(rand::rng().random::<[u8; TOKEN_BYTES]>());
    let temp = state_dir.join(format!(
        ".{TOKEN_FILE}.{}.{}",
        std::process::id(),
        hex::encode(rand::rng().random::<[u8; 8]>())
    ));
    let written = write_new(&temp, &token).and_then(|()| fs::hard_link(&temp, &path));
    // The temporary name has done its job whether or not the link was made.
    let _ = fs::remove_file(&temp);
    match written {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the admin token");
            Ok(token)
        }
        // Another process created the token between our read and our link: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_valid(&path).map_err(token_error),
        Err(e) => Err(token_error(e)),
    }
}

/// Reads the token for the client side. Never creates it: a missing file means no server has
/// run with this state directory, and the error says so.
pub fn read_token(state_dir: &Path) -> Result<String, AdminError> {
    let path = state_dir.join(TOKEN_FILE);
    match read_valid(&path) {
        Ok(token) => Ok(token),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(AdminError::TokenMissing { path }),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(AdminError::Token { path, source: e }),
        Err(source) => Err(AdminError::TokenUnreadable { path, source }),
    }
}

/// Creates `path` exclusively with mode 0600 and writes the token to disk.
fn write_new(path: &Path, token: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Reads and checks the token: it goes into an HTTP header, so only visible ASCII is allowed.
fn read_valid(path: &Path) -> io::Result<String> {
    let text = fs::read_to_string(path)?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the token is empty or malformed (at least {MIN_TOKEN_LEN} visible ASCII characters expected): delete the file and restart the server to have a new one made"
            ),
        ));
    }
    Ok(token.to_owned())
}

/// Drops any group and other permission bits, keeping the owner's.
fn tighten_mode(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let tightened = mode & 0o600;
        fs::set_permissions(path, fs::Permissions::from_mode(tightened))?;
        tracing::warn!(
            path = %path.display(),
            "the admin token was readable by others (mode {mode:o}); tightened to {tightened:o}"
        );
    }
    Ok(())
}
