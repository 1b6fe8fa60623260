//! The state directory as an administrator meets it: a database that cannot
//! be read called so.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;

const REFUSAL_WAIT: Duration = Duration::from_secs(15);

/// A config for `state` in `dir`, as `TestServer::start` writes one.
fn config_in(dir: &Path, state: &Path) -> std::path::PathBuf {
    let path = dir.join("entra-radius.toml");
    std::fs::write(&path, format!("{}{}", base_config(state), localhost_client(""))).unwrap();
    path
}

#[test]
fn a_database_that_cannot_be_opened_is_cannot_read() {
    // A directory in its place: this fails for root too, which reads any file.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let db = state.join("entra-radius.db");
    std::fs::create_dir_all(&db).unwrap();
    let config = config_in(dir.path(), &state);
    let (code, out) = serve_expecting_exit(&config, REFUSAL_WAIT);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("cannot read {}:", db.display())), "{out}");
    assert!(!out.contains("cannot create"), "{out}");
}
