//! The bench's Samba AD DC: the tests' DC (`tests/it/samba.rs`, included
//! by `benches/ad.rs`) with password complexity off, so that the load
//! generator's `user00000`/`pw-00000` accounts exist in AD too, the
//! service account, and those users added in one LDIF over LDAPS.

use std::time::Duration;

use base64::Engine as _;

use super::samba::{self, run};
pub use super::samba::{Dc, available};

pub const BASE_DN: &str = "DC=corp,DC=example,DC=test";
pub const SVC_DN: &str = "CN=svc-radius,CN=Users,DC=corp,DC=example,DC=test";
pub const SVC_PASSWORD: &str = "Svc-Radius-Pass1";

/// Provisions and starts the DC with `users` accounts `user{i:05}` /
/// `pw-{i:05}` and the service account; returns once it answers LDAP.
pub fn start(users: usize) -> Dc {
    let dc = samba::start(78, |tool| {
        tool(&[
            "domain",
            "passwordsettings",
            "set",
            "--complexity=off",
            "--min-pwd-length=1",
            "--history-length=0",
            "--max-pwd-age=0",
            "--min-pwd-age=0",
            "--account-lockout-threshold=0",
        ]);
        tool(&["user", "create", "svc-radius", SVC_PASSWORD]);
    });
    // The users in one LDIF over LDAPS (AD sets unicodePwd only over an
    // encrypted connection): far quicker than samba-tool per user.
    let mut ldif = String::with_capacity(users * 300);
    for i in 0..users {
        let name = format!("user{i:05}");
        let pw: Vec<u8> = format!("\"pw-{i:05}\"")
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        ldif.push_str(&format!(
            "dn: CN={name},CN=Users,{BASE_DN}\nchangetype: add\nobjectClass: user\nsAMAccountName: {name}\n\
             userPrincipalName: {name}@corp.example.test\nunicodePwd:: {}\nuserAccountControl: 512\n\n",
            base64::engine::general_purpose::STANDARD.encode(pw)
        ));
    }
    let path = dc.dir.join("users.ldif");
    std::fs::write(&path, ldif).unwrap();
    run(
        "ldapmodify",
        &[
            "-x",
            "-H",
            &format!("ldaps://{}", dc.addr),
            "-D",
            samba::ADMIN,
            "-w",
            samba::ADMIN_PASSWORD,
            "-f",
            path.to_str().unwrap(),
        ],
        &[
            ("LDAPTLS_CACERT", &dc.ca().display().to_string()),
            ("LDAPTLS_REQCERT", "demand"),
        ],
    );
    dc
}

/// The `[ad]` section of entra-radius's config for this DC, plain LDAP
/// (allowed to a loopback address only).
pub fn ad_section(dc: &Dc) -> String {
    let secret = dc.dir.join("svc.secret");
    std::fs::write(&secret, format!("{SVC_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    format!(
        "[ad]\nurls = [\"ldap://{}\"]\nstart_tls = false\nbind_dn = \"{SVC_DN}\"\nbind_password_file = \"{}\"\nbase_dn = \"{BASE_DN}\"\ntimeout = \"2s\"\n",
        dc.addr,
        secret.display()
    )
}

/// CPU time (utime + stime, clock ticks) of every process of the DC's
/// process group: what the LDAP searches and binds cost the DC.
pub fn cpu() -> Duration {
    let pgid = samba::pgid();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut ticks = 0u64;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|v| v.parse::<i32>().ok()) != Some(pgid) {
            continue;
        }
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}
