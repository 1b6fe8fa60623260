//! `certs init` and `certs issue` through the real binary, checked with
//! openssl as an administrator (or a supplicant) would read the files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::harness::*;

fn openssl(args: &[&str], cwd: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run openssl (Debian package openssl)")
}

fn text(cert: &str, cwd: &Path) -> String {
    let o = openssl(&["x509", "-in", cert, "-noout", "-text"], cwd);
    assert!(o.status.success(), "{}", stdout(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_a_ca_and_a_server_certificate_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run_cli(
        &["certs", "init", "--dir", "pki", "--server-name", "radius.test"],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", stdout(&o));
    let dir = tmp.path().join("pki");
    for f in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("server.key")), 0o600);

    let v = openssl(&["verify", "-CAfile", "ca.pem", "server.pem"], &dir);
    assert!(v.status.success(), "{}", stdout(&v));
    let t = text("server.pem", &dir);
    assert!(t.contains("DNS:radius.test"), "{t}");
    assert!(t.contains("CN = radius.test"), "{t}");
    assert!(t.contains("TLS Web Server Authentication"), "{t}");
    let ca = text("ca.pem", &dir);
    assert!(ca.contains("CA:TRUE"), "{ca}");
    assert!(ca.contains("Certificate Sign, CRL Sign"), "{ca}");

    let before = std::fs::read(dir.join("ca.key")).unwrap();
    let again = run_cli(&["certs", "init", "--dir", "pki"], tmp.path());
    assert_eq!(again.status.code(), Some(1), "{}", stdout(&again));
    assert!(stdout(&again).contains("ca.pem already exists"), "{}", stdout(&again));
    assert_eq!(std::fs::read(dir.join("ca.key")).unwrap(), before);
}

#[test]
fn issue_makes_client_certificates_that_verify_against_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(
        run_cli(&["certs", "init", "--dir", ".", "--server-name", "radius.test"], dir)
            .status
            .success()
    );

    let o = run_cli(
        &[
            "certs",
            "issue",
            "--upn",
            "alice@contoso.example",
            "--dir",
            ".",
            "--out",
            "alice",
        ],
        dir,
    );
    assert!(o.status.success(), "{}", stdout(&o));
    assert_eq!(mode(&dir.join("alice.key")), 0o600);
    let t = text("alice.pem", dir);
    assert!(
        t.contains("othername: UPN::alice@contoso.example")
            || t.contains("othername: 1.3.6.1.4.1.311.20.2.3::alice@contoso.example"),
        "{t}"
    );
    assert!(t.contains("TLS Web Client Authentication"), "{t}");
    let v = openssl(&["verify", "-CAfile", "ca.pem", "alice.pem"], dir);
    assert!(v.status.success(), "{}", stdout(&v));
    let again = run_cli(
        &[
            "certs",
            "issue",
            "--upn",
            "alice@contoso.example",
            "--dir",
            ".",
            "--out",
            "alice",
        ],
        dir,
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stdout(&again).contains("alice.pem already exists"),
        "{}",
        stdout(&again)
    );

    // Default file name: the identity made safe; a device id goes in the CN and a urn:uuid URI.
    let guid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    assert!(
        run_cli(&["certs", "issue", "--device-id", guid, "--dir", "."], dir)
            .status
            .success()
    );
    let t = text(&format!("{guid}.pem"), dir);
    assert!(
        t.contains(&format!("CN = {guid}")) && t.contains(&format!("URI:urn:uuid:{guid}")),
        "{t}"
    );
    assert!(
        run_cli(&["certs", "issue", "--cn", "host/pc1", "--dir", "."], dir)
            .status
            .success()
    );
    let t = text("host_pc1.pem", dir);
    assert!(
        t.contains("CN = host/pc1") && !t.contains("Subject Alternative Name"),
        "{t}"
    );

    // A CA key others may read is refused, naming it; usage errors are exit 2.
    std::fs::set_permissions(dir.join("ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run_cli(&["certs", "issue", "--cn", "bob", "--dir", "."], dir);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("ca.key has mode 0644"), "{}", stdout(&o));
    assert!(!dir.join("bob.pem").exists());
    assert_eq!(run_cli(&["certs", "issue", "--dir", "."], dir).status.code(), Some(2));
    assert_eq!(
        run_cli(&["certs", "issue", "--cn", "a", "--upn", "a@b", "--dir", "."], dir)
            .status
            .code(),
        Some(2)
    );
}
