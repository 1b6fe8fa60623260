//! The state directory as an administrator meets it: one server at a time,
//! a database that is not ours (or was emptied) refused rather than silently
//! replaced, a database that cannot be read called so, and a missing or
//! too-open application credential reported once at startup.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use entra_radius::store::Store;
use entra_radius::store::integration::keys;

use crate::harness::*;

const REFUSAL_WAIT: Duration = Duration::from_secs(15);

/// A config for `state` in `dir`, as `TestServer::start` writes one.
fn config_in(dir: &Path, state: &Path) -> std::path::PathBuf {
    let path = dir.join("entra-radius.toml");
    std::fs::write(&path, format!("{}{}", base_config(state), localhost_client(""))).unwrap();
    path
}

#[test]
fn a_second_server_on_the_same_state_directory_is_refused_naming_the_first() {
    // The state directory outlives the first server's own directory.
    let keep = tempfile::tempdir().unwrap();
    let state = keep.path().join("state");
    let config = format!("{}{}", base_config(&state), localhost_client(""));
    let first = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    let other = tempfile::tempdir().unwrap();
    let other_config = config_in(other.path(), &state);

    let (code, out) = serve_expecting_exit(&other_config, REFUSAL_WAIT);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "the state directory {} is in use by another entra-radius server (PID {},",
            state.display(),
            first.pid()
        )),
        "{out}"
    );
    assert!(
        out.contains("stop it first, or give this server its own state_dir"),
        "{out}"
    );

    // Neither check-config nor the admin commands take the lock.
    let o = run_cli(
        &["check-config", "--config", first.config_path.to_str().unwrap()],
        keep.path(),
    );
    assert!(o.status.success(), "{}", stdout(&o));
    let o = first.cli(&["sync", "status"]);
    assert!(o.status.success(), "{}", stdout(&o));

    // SIGKILL leaves the dead server's PID in the lock file, but no lock.
    let lock = state.join("entra-radius.lock");
    let dead = first.pid();
    first.kill();
    assert_eq!(std::fs::read_to_string(&lock).unwrap().trim(), dead.to_string());
    let second = TestServer::start_raw(&config, other);
    assert_eq!(std::fs::read_to_string(&lock).unwrap().trim(), second.pid().to_string());
}

#[test]
fn an_emptied_or_foreign_database_in_a_used_state_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = config_in(dir.path(), &state);
    // A server ran here (it left its admin token), then the database was truncated.
    std::fs::create_dir(&state).unwrap();
    write_private(&state.join("admin.token"), &[b'a'; 64]);
    let db = state.join("entra-radius.db");
    write_private(&db, b"");
    let (code, out) = serve_expecting_exit(&config, REFUSAL_WAIT);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "{} is empty, but the state directory {} has been used before (it holds admin.token)",
            db.display(),
            state.display()
        )),
        "{out}"
    );
    assert!(out.contains("restore the database from a backup"), "{out}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "left as it was");

    // Another program's SQLite file.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE inventory (id INTEGER PRIMARY KEY);")
            .unwrap();
    }
    let (code, out) = serve_expecting_exit(&config, REFUSAL_WAIT);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("{} is not an entra-radius database", db.display())),
        "{out}"
    );

    // Deleting it is how to start afresh on purpose.
    std::fs::remove_file(&db).unwrap();
    let s = TestServer::start_raw(&std::fs::read_to_string(&config).unwrap(), dir);
    drop(s);
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

/// The state of an integration that was provisioned and can sync, as
/// `entra provision` and `domains select` leave it (the credential file aside).
fn provisioned(state: &Path) {
    let conn = Store::open(state).unwrap().conn().unwrap();
    for (k, v) in [
        (keys::ENABLED, "true"),
        (keys::TENANT_ID, "00000000-0000-0000-0000-00000000c0de"),
        (keys::CLIENT_ID, "00000000-0000-0000-0000-0000000000a1"),
        (keys::SELECTED_DOMAINS, "[\"contoso.example\"]"),
    ] {
        conn.set_setting(k, Some(v), 1).unwrap();
    }
}

/// Nothing listens there: a round that got as far as the network would fail
/// fast, without leaving the machine.
const NOWHERE: &str = "[entra]\nauthority_host = \"http://127.0.0.1:9\"\ngraph_endpoint = \"http://127.0.0.1:9\"\nsync_interval = \"1s\"\n";

#[test]
fn a_missing_credential_is_one_warning_at_startup_and_service_goes_on() {
    let s = TestServer::start_seeded(&format!("{}{USERS}{NOWHERE}", localhost_client("")), provisioned);
    let secret = s.state_dir().join("entra-client-secret");
    let warning = "WARN entra_radius::app: the Entra ID sync cannot run: cannot read the client secret";
    s.wait_for_log(warning);
    let logs = s.logs();
    assert!(
        logs.contains(&format!("{}: the file is missing", secret.display())),
        "{logs}"
    );
    assert!(logs.contains("run `entra-radius entra provision` again"), "{logs}");

    // Rounds retry every second; none of them says it again.
    std::thread::sleep(Duration::from_millis(3500));
    let logs = s.logs();
    assert_eq!(logs.matches("entra-client-secret").count(), 1, "{logs}");
    assert!(!logs.contains("ERROR"), "{logs}");
    let o = s.cli(&["entra", "status"]);
    assert!(stdout(&o).contains("credential is missing"), "{}", stdout(&o));

    // RADIUS goes on.
    let o = Command::new(bin())
        .args([
            "test-auth",
            "--server",
            &s.auth.to_string(),
            "--user",
            "alice",
            "--password",
            "wonderland",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn a_credential_others_can_read_is_refused_and_said_at_startup() {
    let s = TestServer::start_seeded(&format!("{}{NOWHERE}", localhost_client("")), |state| {
        provisioned(state);
        let secret = state.join("entra-client-secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    });
    let secret = s.state_dir().join("entra-client-secret");
    let reason = format!(
        "{} has mode 0644: group or others may read the secret it holds, so it is refused; run `chmod 600 {}`",
        secret.display(),
        secret.display()
    );
    s.wait_for_log("WARN entra_radius::app: the Entra ID sync cannot run: the client secret:");
    assert!(s.logs().contains(&reason), "{}", s.logs());
    // The sync refuses it too, with the same words.
    let o = s.cli(&["sync", "now", "--wait"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains(&reason), "{}", stdout(&o));
}
