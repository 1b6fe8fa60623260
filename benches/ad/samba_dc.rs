//! A Samba AD DC of the bench's own, adapted from tests/it/ad.rs:
//! provisioned into a temporary folder, LDAP only (`server services =
//! ldap`), on a loopback address of its own, with its own CA (for the LDAPS
//! connection that sets the users' passwords), password complexity off so
//! that the load generator's `user00000`/`pw-00000` accounts exist in AD
//! too; started in its own process group and killed (with the folder
//! removed) at exit.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

pub const BASE_DN: &str = "DC=corp,DC=example,DC=test";
pub const SVC_DN: &str = "CN=svc-radius,CN=Users,DC=corp,DC=example,DC=test";
pub const SVC_PASSWORD: &str = "Svc-Radius-Pass1";

pub struct Dc {
    pub dir: PathBuf,
    pub addr: String,
}

static PGID: AtomicI32 = AtomicI32::new(0);
static DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn stop_dc() {
    let pgid = PGID.load(Ordering::SeqCst);
    if pgid > 0 {
        // SAFETY: signals our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    if let Some(d) = DIR.get() {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn run(cmd: &str, args: &[&str], envs: &[(&str, &str)]) {
    let out = Command::new(cmd)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn available() -> bool {
    Command::new("samba").arg("--version").output().is_ok()
}

/// Provisions and starts the DC with `users` accounts `user{i:05}` /
/// `pw-{i:05}` and the service account; returns once it answers LDAP.
pub fn start(users: usize) -> Dc {
    let pid = std::process::id();
    let addr = format!("127.78.{}.{}", (pid / 250) % 250 + 1, pid % 250 + 2);
    let dir = tempfile::Builder::new().prefix("ad-bench-dc").tempdir().unwrap().keep();
    DIR.set(dir.clone()).unwrap();
    // SAFETY: registers a plain extern "C" function.
    unsafe { libc::atexit(stop_dc) };
    let d = dir.to_str().unwrap();
    run(
        "samba-tool",
        &[
            "domain",
            "provision",
            "--use-rfc2307",
            "--realm=CORP.EXAMPLE.TEST",
            "--domain=CORP",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--host-name=DC1",
            "--host-ip=127.0.0.1",
            "--adminpass=Adm1n-Pass9",
            &format!("--targetdir={d}"),
        ],
        &[],
    );
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).unwrap();
    let t = tls.to_str().unwrap();
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{t}/ca.key"),
            "-out",
            &format!("{t}/ca.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=Bench AD CA",
        ],
        &[],
    );
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{t}/key.pem"),
            "-out",
            &format!("{t}/req.csr"),
            "-subj",
            "/CN=dc1.corp.example.test",
        ],
        &[],
    );
    std::fs::write(
        tls.join("ext"),
        format!("subjectAltName=DNS:dc1.corp.example.test,IP:{addr}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &format!("{t}/req.csr"),
            "-CA",
            &format!("{t}/ca.pem"),
            "-CAkey",
            &format!("{t}/ca.key"),
            "-CAcreateserial",
            "-out",
            &format!("{t}/cert.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{t}/ext"),
        ],
        &[],
    );
    std::fs::set_permissions(tls.join("key.pem"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let conf = dir.join("etc/smb.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\n\tnetbios name = DC1\n\trealm = CORP.EXAMPLE.TEST\n\tworkgroup = CORP\n\
             \tserver role = active directory domain controller\n\tserver services = ldap\n\
             \tinterfaces = {addr}/8\n\tbind interfaces only = yes\n\tldap server require strong auth = no\n\
             \ttls enabled = yes\n\ttls keyfile = {t}/key.pem\n\ttls certfile = {t}/cert.pem\n\ttls cafile = {t}/ca.pem\n\
             \tprivate dir = {d}/private\n\tstate directory = {d}/state\n\tlock directory = {d}\n\
             \tcache directory = {d}/cache\n\tbinddns dir = {d}/bind-dns\n\tpid directory = {d}\n\
             \tncalrpc dir = {d}/ncalrpc\n\twinbindd socket directory = {d}/winbindd\n\
             \tntp signd socket directory = {d}/ntp_signd\n\tlog file = {d}/log.%m\n\tlog level = 0\n\
             \tidmap_ldb:use rfc2307 = yes\n"
        ),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    let tool = |args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-s", c]);
        run("samba-tool", &a, &[]);
    };
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
    let mut cmd = Command::new("samba");
    cmd.args(["-F", "-s", c])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().expect("samba");
    PGID.store(child.id() as i32, Ordering::SeqCst);
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = Command::new("ldapsearch")
            .args(["-x", "-H", &format!("ldap://{addr}"), "-b", "", "-s", "base"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Samba DC did not answer on {addr} within 60 s; see {d}/log.*"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
    let path = dir.join("users.ldif");
    std::fs::write(&path, ldif).unwrap();
    run(
        "ldapmodify",
        &[
            "-x",
            "-H",
            &format!("ldaps://{addr}"),
            "-D",
            "Administrator@CORP.EXAMPLE.TEST",
            "-w",
            "Adm1n-Pass9",
            "-f",
            path.to_str().unwrap(),
        ],
        &[
            ("LDAPTLS_CACERT", &format!("{t}/ca.pem")),
            ("LDAPTLS_REQCERT", "demand"),
        ],
    );
    Dc { dir, addr }
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
    let pgid = PGID.load(Ordering::SeqCst);
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
