//! A Samba AD DC of a process's own, for the AD tests (`ad.rs`) and the AD
//! benchmark (`benches/ad/samba_dc.rs`, which includes this file):
//! provisioned into a temporary folder (realm `CORP.EXAMPLE.TEST`, domain
//! `CORP`, administrator password [`ADMIN_PASSWORD`]), LDAP only (`server
//! services = ldap`), on a loopback address of its own, with its own CA in
//! `tls/` (`ca.pem`) for LDAPS and StartTLS; started in its own process
//! group, which is killed at exit with the folder removed.
#![allow(dead_code)] // each includer uses a part

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "Administrator@CORP.EXAMPLE.TEST";
pub const ADMIN_PASSWORD: &str = "Adm1n-Pass9";

pub struct Dc {
    pub dir: PathBuf,
    /// The DC's loopback address (LDAP on 389, LDAPS on 636).
    pub addr: String,
}

impl Dc {
    /// The CA that signed the DC's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }
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

/// Whether Samba is installed (`./scripts/test` installs it).
pub fn available() -> bool {
    Command::new("samba").arg("--version").output().is_ok()
}

/// The process group of the running DC (0 before it starts).
pub fn pgid() -> i32 {
    PGID.load(Ordering::SeqCst)
}

/// Runs `cmd` with `args` and `envs`; panics with its output if it fails.
pub fn run(cmd: &str, args: &[&str], envs: &[(&str, &str)]) {
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

/// Provisions and starts the DC on `127.{net}.x.y` (x and y from the
/// process id, so that parallel runs do not meet). `prepare` is given a
/// function that runs `samba-tool ARGS` against the DC's smb.conf, for the
/// accounts and settings wanted before the DC starts. Returns once the DC
/// answers LDAP. Call it once per process.
pub fn start(net: u8, prepare: impl FnOnce(&dyn Fn(&[&str]))) -> Dc {
    assert!(
        available(),
        "samba is not installed: run ./scripts/test, which installs samba samba-ad-dc samba-ad-provision ldb-tools ldap-utils"
    );
    let pid = std::process::id();
    let addr = format!("127.{net}.{}.{}", (pid / 250) % 250 + 1, pid % 250 + 2);
    let dir = tempfile::Builder::new().prefix("samba-dc").tempdir().unwrap().keep();
    DIR.set(dir.clone()).expect("one DC per process");
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
            &format!("--adminpass={ADMIN_PASSWORD}"),
            &format!("--targetdir={d}"),
        ],
        &[],
    );
    // A CA and a server certificate with SANs.
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).unwrap();
    let t = tls.to_str().unwrap();
    let (ca_key, ca, key, csr) = (
        format!("{t}/ca.key"),
        format!("{t}/ca.pem"),
        format!("{t}/key.pem"),
        format!("{t}/req.csr"),
    );
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca_args = [
        &["req", "-x509"][..],
        &ec,
        &["-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", "/CN=Test AD CA"],
    ];
    run("openssl", &ca_args.concat(), &[]);
    let csr_args = [
        &["req"][..],
        &ec,
        &["-keyout", &key, "-out", &csr, "-subj", "/CN=dc1.corp.example.test"],
    ];
    run("openssl", &csr_args.concat(), &[]);
    std::fs::write(
        tls.join("ext"),
        format!(
            "subjectAltName=DNS:dc1.corp.example.test,DNS:localhost,IP:{addr}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        ),
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
             \tntp signd socket directory = {d}/ntp_signd\n\tlog file = {d}/log.%m\n\tidmap_ldb:use rfc2307 = yes\n"
        ),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    prepare(&|args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-s", c]);
        run("samba-tool", &a, &[]);
    });
    let mut cmd = Command::new("samba");
    cmd.args(["-F", "-s", c])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().expect("samba");
    PGID.store(child.id() as i32, Ordering::SeqCst);
    // Reaped when it ends (killed at exit with its process group).
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
    Dc { dir, addr }
}
