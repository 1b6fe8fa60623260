//! Running as a service: `[log]` (JSON lines, the level), no secret in any
//! log line, and systemd's readiness protocol (`Type=notify`).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::harness::*;

const PASSWORD: &str = "Wonderland-7f3a";
const WRONG: &str = "Wrong-Guess-19";

fn users() -> String {
    format!("[[local.users]]\nname = \"alice\"\npassword = \"{PASSWORD}\"\n")
}

fn pap(s: &TestServer, password: &str) -> std::process::Output {
    radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = alice, User-Password = \"{password}\", Message-Authenticator = 0x00"),
    )
}

#[test]
fn json_logs_carry_each_decision_and_never_a_secret() {
    let body = format!("{}{}\n[log]\nformat = \"json\"\n", localhost_client(""), users());
    let s = TestServer::start_logging(&body, "");
    assert_reply(&pap(&s, PASSWORD), "Access-Accept");
    assert_reply(&pap(&s, WRONG), "Access-Reject");
    s.wait_for_log("\"result\":\"reject\"");
    let token = std::fs::read_to_string(s.state_dir().join("admin.token")).unwrap();
    let (_, logs) = s.stop();

    let mut decisions = Vec::new();
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v[key].is_string(), "no {key} in {line}");
        }
        if v["message"] == "access decision" {
            decisions.push((v["identity"].clone(), v["method"].clone(), v["result"].clone()));
        }
    }
    assert_eq!(
        decisions,
        [
            ("alice".into(), "pap".into(), "accept".into()),
            ("alice".into(), "pap".into(), "reject".into())
        ],
        "{logs}"
    );
    for secret in [SECRET, PASSWORD, WRONG, token.trim()] {
        assert!(!logs.contains(secret), "{secret:?} in the log:\n{logs}");
    }
}

#[test]
fn the_level_comes_from_the_config_unless_rust_log_says_otherwise() {
    let body = format!(
        "{}{}\n[log]\nlevel = \"warn,entra_radius::auth=info\"\n",
        localhost_client(""),
        users()
    );
    let s = TestServer::start_logging(&body, "");
    assert_reply(&pap(&s, WRONG), "Access-Reject");
    s.wait_for_log("access decision");
    let token = std::fs::read_to_string(s.state_dir().join("admin.token")).unwrap();
    let (_, logs) = s.stop();
    assert!(!logs.contains(" starting"), "info outside auth is off:\n{logs}");

    // The text format at debug everywhere: still no secret.
    let s = TestServer::start_logging(&body, "debug");
    assert_reply(&pap(&s, PASSWORD), "Access-Accept");
    assert_reply(&pap(&s, WRONG), "Access-Reject");
    s.wait_for_log("wrong password");
    let debug_token = std::fs::read_to_string(s.state_dir().join("admin.token")).unwrap();
    let (_, debug_logs) = s.stop();
    for secret in [SECRET, PASSWORD, WRONG, token.trim(), debug_token.trim()] {
        assert!(
            !logs.contains(secret) && !debug_logs.contains(secret),
            "{secret:?} in a text log"
        );
    }

    // RUST_LOG wins over [log] level.
    let s = TestServer::start_logging(&body, "info");
    s.wait_for_log(" starting");
}

#[test]
fn systemd_is_told_when_the_server_is_ready_and_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let s = TestServer::start_env(&localhost_client(""), "info", &[("NOTIFY_SOCKET", path.as_os_str())]);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 10 s of the ready line");
    assert_eq!(&buf[..n], b"READY=1");
    let (status, logs) = s.stop();
    assert!(status.success(), "{logs}");
    let n = socket.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// The packaged unit passes `systemd-analyze verify` (with ExecStart
/// pointing at the binary under test, as the .deb puts it at
/// /usr/bin/entra-radius), and the packaged config passes `check-config`
/// and serves (with loopback ports and a temporary state directory instead
/// of the machine's).
#[test]
fn the_packaged_unit_verifies_and_the_packaged_config_serves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/debian");
    let unit = std::fs::read_to_string(root.join("entra-radius.service")).unwrap();
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/entra-radius",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line:?} in the unit");
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("entra-radius.service");
    std::fs::write(&copy, unit.replace("/usr/bin/entra-radius", bin())).unwrap();
    let o = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    // Complaints about units installed on this machine (an installed
    // FreeRADIUS's, say) are not about ours.
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !["/lib/systemd/", "/usr/lib/systemd/", "/etc/systemd/"]
                .iter()
                .any(|d| l.starts_with(d))
        })
        .collect();
    assert!(o.status.success() && ours.is_empty(), "{stderr}");

    let packaged = root.join("entra-radius.toml");
    let o = run_cli(&["check-config", "--config", packaged.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&packaged).unwrap();
    let state = dir.path().join("state");
    let local = text
        .replace(r#"["0.0.0.0:1812", "[::]:1812"]"#, r#"["127.0.0.1:0"]"#)
        .replace(r#"["0.0.0.0:1813", "[::]:1813"]"#, r#"["127.0.0.1:0"]"#)
        .replace(r#""127.0.0.1:1818""#, r#""127.0.0.1:0""#)
        .replace(
            r#""/var/lib/entra-radius""#,
            &format!("{:?}", state.display().to_string()),
        );
    let settings: Vec<&str> = local.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    assert!(
        settings
            .iter()
            .all(|l| !l.contains("0.0.0.0") && !l.contains("/var/lib")),
        "{local}"
    );
    let s = TestServer::start_raw(&local, dir);
    let (status, logs) = s.stop();
    assert!(status.success(), "{logs}");
}

/// `cargo deb` (from the debug build the tests use, so that the test needs
/// no release build): what the package holds, with which modes, its
/// conffile and maintainer scripts; then the binary unpacked from it checks
/// the packaged config with the packaged dictionaries.
#[test]
fn the_deb_holds_the_service_and_its_binary_runs_from_the_unpacked_tree() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // bin() is TARGET/debug/entra-radius.
    let target = std::path::Path::new(bin()).parent().unwrap().parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("entra-radius.deb");
    let o = std::process::Command::new("cargo")
        .args(["deb", "--profile", "dev", "--no-build", "--fast", "--no-strip", "-o"])
        .arg(&deb)
        .current_dir(manifest)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("cargo deb (scripts/test installs cargo-deb)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let contents = std::process::Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb)
        .output()
        .unwrap();
    let contents = String::from_utf8_lossy(&contents.stdout).into_owned();
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/entra-radius"),
        ("-rw-r-----", "./etc/entra-radius/entra-radius.toml"),
        ("-rw-r--r--", "./usr/lib/systemd/system/entra-radius.service"),
        ("-rw-r--r--", "./usr/share/entra-radius/dictionaries/dictionary"),
        ("-rw-r--r--", "./usr/share/doc/entra-radius/README.md"),
    ] {
        assert!(
            contents.lines().any(|l| l.starts_with(mode) && l.ends_with(path)),
            "no {mode} {path} in\n{contents}"
        );
    }
    let info = |field: &str| {
        let o = std::process::Command::new("dpkg-deb")
            .args(["-I"])
            .arg(&deb)
            .arg(field)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(info("conffiles").trim(), "/etc/entra-radius/entra-radius.toml");
    let postinst = info("postinst");
    assert!(postinst.contains("adduser --system --group"), "{postinst}");
    assert!(
        postinst.contains("systemctl"),
        "the unit is enabled and started:\n{postinst}"
    );
    assert!(info("control").contains("Depends: adduser"), "{}", info("control"));

    let root = dir.path().join("root");
    let st = std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let config = root.join("etc/entra-radius/entra-radius.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "# dictionary_dir = \"/usr/share/entra-radius/dictionaries\"",
        &format!(
            "dictionary_dir = {:?}",
            root.join("usr/share/entra-radius/dictionaries").display().to_string()
        ),
    );
    assert!(text.lines().any(|l| l.starts_with("dictionary_dir = ")), "{text}");
    std::fs::write(&config, text).unwrap();
    let o = std::process::Command::new(root.join("usr/bin/entra-radius"))
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(": OK:"),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
