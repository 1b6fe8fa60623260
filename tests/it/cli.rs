//! check-config and test-auth as an administrator uses them.

use std::process::Command;

use crate::harness::*;

#[test]
fn check_config_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, format!("{}{USERS}", localhost_client(""))).unwrap();
    let o = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("OK: 1 clients, 1 local users, 1 local MACs"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[clients]]\nname = \"sw\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\nrequire_message_authenticator = \"sometimes\"\n").unwrap();
    let o = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}:5:", path.display())), "{err}");
    assert!(err.contains("require_message_authenticator"), "{err}");

    std::fs::write(&path, "[[local.macs]]\nmac = \"zz-11-22-33-44-55\"\n").unwrap();
    let o = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}:2:7: local.macs[0].mac: not a MAC address", path.display())),
        "{err}"
    );

    let o = run_cli(&["check-config", "--config", "/nonexistent/entra.toml"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/entra.toml: cannot read"));
}

#[test]
fn serve_refuses_a_bad_config_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nauth_listen = \"not-a-list\"\n").unwrap();
    let o = run_cli(&["serve", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.toml:2:"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_config_and_serve_refuse_a_secret_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("nas.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "{}[[clients]]\nname = \"sw\"\naddress = \"10.0.0.1\"\nsecret_file = \"nas.secret\"\n",
            base_config(&dir.path().join("state"))
        ),
    )
    .unwrap();
    let expected = format!(
        "{}:12:15: clients[0].secret_file: {} has mode 0644: group or others may read the secret it holds",
        path.display(),
        secret.display()
    );
    let fix = format!("run `chmod 600 {}`", secret.display());

    let o = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&expected) && err.contains(&fix), "{err}");

    let (code, out) = serve_expecting_exit(&path, std::time::Duration::from_secs(10));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&expected) && out.contains(&fix), "{out}");

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", stdout(&o));
}

#[test]
fn test_auth_reports_accept_reject_and_mab() {
    let s = TestServer::start(&format!("{}{USERS}", localhost_client("")));
    let server = s.auth.to_string();
    let run = |extra: &[&str]| {
        let mut args = vec!["test-auth", "--server", &server, "--timeout", "1", "--attempts", "2"];
        args.extend_from_slice(extra);
        Command::new(bin()).args(&args).output().unwrap()
    };
    let o = run(&["--user", "alice", "--password", "wonderland"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("Received Access-Accept"));
    assert!(
        stdout(&o).contains("Message-Authenticator = 0x"),
        "attributes are named from the dictionary:\n{}",
        stdout(&o)
    );
    let o = run(&["--user", "alice", "--password", "wonderland", "--chap"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run(&["--user", "alice", "--password", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("Received Access-Reject"));
    for mac in ["02:00:00:00:00:01", "0200.0000.0001"] {
        let o = run(&["--mab", mac]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    }
    let o = run(&["--mab", "02-00-00-00-00-01", "--call-check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // A wrong secret: the server stays silent and test-auth says so.
    let o = run(&["--user", "alice", "--password", "wonderland", "--secret", "wrong"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("no reply from"), "{}", stdout(&o));
}

#[test]
#[cfg(feature = "demo")]
fn serve_demo_answers_the_commands_it_prints() {
    // --demo binds the default ports; run it on a private copy of the
    // defaults so that tests can run in parallel with a real server.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.toml");
    std::fs::write(
        &path,
        format!("{}{}", base_config(&dir.path().join("state")), localhost_client("")),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--demo", "--config", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // (command, what its comment promises)
    let mut commands: Vec<(String, String)> = Vec::new();
    let mut eapol: Vec<(String, String)> = Vec::new();
    let mut ready = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        assert!(!line.contains("demo failed"), "{line}");
        if let Some(rest) = line.trim().strip_prefix("cargo run --release -- ") {
            let (cmd, comment) = rest.split_once('#').unwrap_or((rest, ""));
            commands.push((cmd.trim().to_string(), comment.trim().to_string()));
        }
        if let Some(rest) = line.trim().strip_prefix("eapol_test ") {
            let (cmd, comment) = rest.split_once('#').unwrap_or((rest, ""));
            eapol.push((cmd.trim().to_string(), comment.trim().to_string()));
        }
        if line == "entra-radius demo ready" {
            ready = true;
            break;
        }
    }
    assert!(ready, "the demo never said it was ready; commands so far: {commands:?}");
    assert!(commands.len() >= 8, "{commands:?}");
    let cfg = path.to_str().unwrap();
    for (c, comment) in &commands {
        let mut args: Vec<&str> = c.split_whitespace().collect();
        if args[0] != "test-auth" {
            args.extend(["--config", cfg]);
        }
        let o = Command::new(bin()).args(&args).output().unwrap();
        let expect_accept = !comment.contains("Reject");
        assert_eq!(o.status.success(), expect_accept, "{c} ({comment}): {}", stdout(&o));
        if comment.contains("VLAN 20") {
            assert!(stdout(&o).contains("Tunnel-Private-Group-Id"), "{c}: {}", stdout(&o));
        }
    }
    // The 802.1X commands, through eapol_test as printed.
    assert_eq!(eapol.len(), 5, "{eapol:?}");
    for (c, comment) in &eapol {
        let o = Command::new("eapol_test").args(c.split_whitespace()).output().unwrap();
        let out = stdout(&o);
        let last = out.trim_end().lines().last().unwrap_or_default().to_string();
        if comment.contains("Reject") {
            assert!(
                out.contains("(Access-Reject)") && last == "FAILURE",
                "{c} ({comment}): {out}"
            );
        } else {
            assert!(
                out.contains("(Access-Accept)") && last == "SUCCESS",
                "{c} ({comment}): {out}"
            );
            assert!(out.contains("MPPE keys OK: 1  mismatch: 0"), "{c}: {out}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
