//! EAP-TLS and EAP-TTLS/PAP through `eapol_test` (wpa_supplicant's test
//! client, Debian package eapoltest) against the real binary: TLS 1.2 and
//! 1.3, resumption, small fragments, certificates that must be refused,
//! identities from certificates mapped to Entra ID users and Intune
//! devices, and a resumption refused after a sync disabled the user.
//!
//! `eapol_test` exits 252 on a reject and counts mismatches too, so every
//! check reads its output (EAP-NOTES §9), not only its exit code.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use graph_emulator::Tenant;

use crate::harness::*;

/// A private CA with a server certificate, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let o = run_cli(
            &["certs", "init", "--dir", "pki", "--server-name", "radius.test"],
            dir.path(),
        );
        assert!(o.status.success(), "{}", stdout(&o));
        Pki { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join("pki").join(f)
    }

    /// `certs issue` with these arguments; returns the file stem.
    fn issue(&self, args: &[&str], out: &str) -> String {
        let mut a = vec!["certs", "issue", "--dir", "pki", "--out", out];
        a.extend_from_slice(args);
        let o = run_cli(&a, self.dir.path());
        assert!(o.status.success(), "{}", stdout(&o));
        out.to_string()
    }

    /// A client certificate made here with rcgen, signed by this CA, for
    /// what `certs issue` will not make (expired, Intune URIs).
    fn issue_custom(&self, out: &str, build: impl FnOnce(&mut rcgen::CertificateParams)) -> String {
        let ca_pem = std::fs::read_to_string(self.path("ca.pem")).unwrap();
        let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(self.path("ca.key")).unwrap()).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        build(&mut p);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(self.path(&format!("{out}.pem")), cert.pem()).unwrap();
        write_private(&self.path(&format!("{out}.key")), key.serialize_pem().as_bytes());
        out.to_string()
    }

    fn eap_section(&self, extra: &str) -> String {
        format!(
            "\n[eap]\ncertificate = {:?}\nprivate_key = {:?}\nca_file = {:?}\n{extra}\n",
            self.path("server.pem").display().to_string(),
            self.path("server.key").display().to_string(),
            self.path("ca.pem").display().to_string(),
        )
    }
}

/// One `eapol_test` run and what it printed.
struct Run {
    out: String,
}

impl Run {
    fn accepts(&self) -> usize {
        self.out.matches("(Access-Accept)").count()
    }
    fn rejects(&self) -> usize {
        self.out.matches("(Access-Reject)").count()
    }
    /// Accepted every time, with MPPE keys that match the MSK each time.
    fn assert_accepted(&self, times: usize) {
        assert_eq!(self.accepts(), times, "{}", self.out);
        assert_eq!(self.rejects(), 0, "{}", self.out);
        assert!(
            self.out.contains(&format!("MPPE keys OK: {times}  mismatch: 0")),
            "{}",
            self.out
        );
        assert!(self.out.trim_end().ends_with("SUCCESS"), "{}", self.out);
    }
    fn assert_rejected(&self) {
        assert_eq!(self.accepts(), 0, "{}", self.out);
        assert_eq!(self.rejects(), 1, "{}", self.out);
        assert!(self.out.trim_end().ends_with("FAILURE"), "{}", self.out);
    }
}

/// TLS 1.2 only, or 1.3 allowed (EAP-NOTES §9: Debian's build needs
/// `tls_disable_tlsv1_3=0` for 1.3).
const TLS12: &str = "tls_disable_tlsv1_3=1";
const TLS13: &str = "tls_disable_tlsv1_0=1 tls_disable_tlsv1_1=1 tls_disable_tlsv1_2=1 tls_disable_tlsv1_3=0";

fn tls_network(pki: &Pki, cert: &str, identity: &str, phase1: &str, extra: &str) -> String {
    format!(
        "network={{\n key_mgmt=WPA-EAP\n eap=TLS\n identity=\"{identity}\"\n ca_cert=\"{}\"\n client_cert=\"{}\"\n private_key=\"{}\"\n phase1=\"{phase1}\"\n domain_suffix_match=\"radius.test\"\n{extra}\n}}\n",
        pki.path("ca.pem").display(),
        pki.path(&format!("{cert}.pem")).display(),
        pki.path(&format!("{cert}.key")).display(),
    )
}

fn ttls_network(pki: &Pki, user: &str, password: &str, phase1: &str) -> String {
    format!(
        "network={{\n key_mgmt=WPA-EAP\n eap=TTLS\n identity=\"{user}\"\n anonymous_identity=\"anonymous@contoso.example\"\n password=\"{password}\"\n phase2=\"auth=PAP\"\n ca_cert=\"{}\"\n phase1=\"{phase1}\"\n}}\n",
        pki.path("ca.pem").display(),
    )
}

fn eapol(server: SocketAddr, pki: &Pki, network: &str, args: &[&str]) -> Run {
    let conf = tempfile::NamedTempFile::new_in(pki.dir.path()).unwrap();
    std::fs::write(conf.path(), network).unwrap();
    let out = Command::new("eapol_test")
        .arg("-c")
        .arg(conf.path())
        .args(["-a", &server.ip().to_string(), "-p", &server.port().to_string()])
        .args(["-s", SECRET, "-t", "15", "-M", "02:00:00:00:00:99"])
        .args(args)
        .output()
        .expect("run eapol_test (Debian package eapoltest)");
    Run {
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn metric(s: &TestServer, line_start: &str) -> u64 {
    let m = s.metrics();
    m.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{m}"))
}

#[test]
fn eap_tls_and_ttls_for_a_local_user_in_both_tls_versions() {
    let pki = Pki::new();
    pki.issue(&["--cn", "alice"], "alice");
    let body = format!("{}{USERS}{}", localhost_client(""), pki.eap_section(""));
    let s = TestServer::start(&body);

    // TLS 1.3, then a resumption by ticket (-r 1).
    let r = eapol(
        s.auth,
        &pki,
        &tls_network(&pki, "alice", "anonymous@contoso.example", TLS13, ""),
        &["-r", "1"],
    );
    r.assert_accepted(2);
    assert!(r.out.contains("Using TLS version TLSv1.3"), "{}", r.out);
    assert!(r.out.contains("Commitment Message"), "{}", r.out);
    assert!(r.out.contains("resumed=1"), "{}", r.out);

    // TLS 1.2, then a resumption by session id.
    let r = eapol(
        s.auth,
        &pki,
        &tls_network(&pki, "alice", "alice", TLS12, ""),
        &["-r", "1"],
    );
    r.assert_accepted(2);
    assert!(r.out.contains("Using TLS version TLSv1.2"), "{}", r.out);
    assert!(r.out.contains("resumed=1"), "{}", r.out);

    // TTLS with inner PAP, both versions; a wrong password is refused.
    eapol(s.auth, &pki, &ttls_network(&pki, "alice", "wonderland", TLS13), &[]).assert_accepted(1);
    eapol(s.auth, &pki, &ttls_network(&pki, "alice", "wonderland", TLS12), &[]).assert_accepted(1);
    eapol(s.auth, &pki, &ttls_network(&pki, "alice", "nope", TLS13), &[]).assert_rejected();
    s.wait_for_log("method=\"eap-ttls\" directory=\"local\" result=\"reject\" reason=wrong password");

    assert_eq!(metric(&s, "entra_radius_eap_handshakes_total{version=\"1.3\"}"), 4);
    assert_eq!(metric(&s, "entra_radius_eap_handshakes_total{version=\"1.2\"}"), 3);
    assert_eq!(metric(&s, "entra_radius_eap_resumptions_total"), 2);
    assert_eq!(
        metric(&s, "entra_radius_eap_conversations_finished_total{outcome=\"accept\"}"),
        6
    );
    assert_eq!(
        metric(&s, "entra_radius_eap_conversations_finished_total{outcome=\"reject\"}"),
        1
    );
    assert_eq!(metric(&s, "entra_radius_eap_conversations "), 0);
}

#[test]
fn ttls_inner_pap_binds_to_ad_and_a_computer_certificate_finds_its_ad_account() {
    let pki = Pki::new();
    pki.issue(&["--cn", "host/PC1"], "pc1");
    pki.issue(&["--cn", "host/PC2"], "pc2");
    pki.issue(&["--cn", "nosuchpc$"], "ghost");
    let body = format!(
        "{}{}\n[directory]\norder = [\"ad\", \"local\"]\n\n[[policy]]\ngroup = \"VPN\"\nvlan = \"42\"\n\n[[policy]]\nkind = \"device\"\nvlan = \"30\"\n{}",
        localhost_client(""),
        crate::ad::ldaps_section(),
        pki.eap_section("")
    );
    let s = TestServer::start(&body);

    // TTLS inner PAP: the AD bind, both ways; the anonymous outer identity
    // plays no part.
    eapol(
        s.auth,
        &pki,
        &ttls_network(&pki, "alice@corp.example.test", "Alice-Pass1", TLS13),
        &[],
    )
    .assert_accepted(1);
    s.wait_for_log("method=\"eap-ttls\" directory=\"ad\" result=\"accept\" reason=password accepted by AD (bind)");
    eapol(s.auth, &pki, &ttls_network(&pki, "alice", "Wrong-Pass1", TLS12), &[]).assert_rejected();
    s.wait_for_log("AD refused the password: wrong password (AD: 52e)");

    // EAP-TLS: the certificate's CN host/PC1 is the AD computer PC1$.
    eapol(s.auth, &pki, &tls_network(&pki, "pc1", "host/pc1", TLS13, ""), &[]).assert_accepted(1);
    s.wait_for_log("method=\"eap-tls\" directory=\"ad\" result=\"accept\"");
    // PC2 was never given a password: disabled in AD.
    eapol(s.auth, &pki, &tls_network(&pki, "pc2", "host/pc2", TLS13, ""), &[]).assert_rejected();
    s.wait_for_log("account disabled in ad: account disabled in AD (userAccountControl) (certificate host/PC2 (CN))");
    eapol(s.auth, &pki, &tls_network(&pki, "ghost", "ghost", TLS13, ""), &[]).assert_rejected();
    s.wait_for_log("the certificate names no known account");
}

#[test]
fn small_fragments_both_ways() {
    let pki = Pki::new();
    pki.issue(&["--cn", "alice"], "alice");
    let body = format!(
        "{}{USERS}{}",
        localhost_client(""),
        pki.eap_section("fragment_size = 300")
    );
    let s = TestServer::start(&body);
    for phase1 in [TLS12, TLS13] {
        let r = eapol(
            s.auth,
            &pki,
            &tls_network(&pki, "alice", "x", phase1, " fragment_size=300"),
            &[],
        );
        r.assert_accepted(1);
        // The server's flight came in pieces (L and M on the first), none
        // over 300 bytes of TLS data: EAP header 5, flags 1, data 300.
        assert!(r.out.contains("Flags 0xc0"), "{}", r.out);
        let sizes: Vec<usize> = r
            .out
            .split("SSL: Received packet(len=")
            .skip(1)
            .filter_map(|t| t.split(')').next()?.parse().ok())
            .collect();
        assert!(sizes.iter().all(|n| *n <= 306), "{sizes:?}");
        // And the client's came in pieces the server acknowledged.
        assert!(r.out.contains("more fragments will follow"), "{}", r.out);
    }
}

/// `test-auth --eap-tls`: the project's own supplicant (rustls) against
/// the server, both versions, small fragments both ways, and what it must
/// refuse on its side (a server certificate from another CA or with
/// another name) or be refused.
#[test]
fn test_auth_holds_an_eap_tls_conversation() {
    let pki = Pki::new();
    pki.issue(&["--cn", "alice"], "alice");
    pki.issue(&["--cn", "nobody"], "nobody");
    let other = Pki::new();
    let body = format!(
        "{}{USERS}{}",
        localhost_client(""),
        pki.eap_section("fragment_size = 300")
    );
    let s = TestServer::start(&body);
    let server = s.auth.to_string();
    let foreign_ca = other.path("ca.pem").display().to_string();
    let test_auth = |cert: &str, extra: &[&str]| {
        let (pem, key) = (format!("pki/{cert}.pem"), format!("pki/{cert}.key"));
        let mut args = vec![
            "test-auth",
            "--server",
            &server,
            "--eap-tls",
            "--cert",
            &pem,
            "--key",
            &key,
        ];
        args.extend_from_slice(extra);
        let o = run_cli(&args, pki.dir.path());
        (o.status.code(), stdout(&o))
    };
    let verified = ["--ca", "pki/ca.pem", "--server-name", "radius.test"];

    for (version, fragment) in [("1.3", "1024"), ("1.2", "200")] {
        let mut args = verified.to_vec();
        args.extend_from_slice(&["--tls-version", version, "--fragment-size", fragment]);
        let (code, out) = test_auth("alice", &args);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains(&format!("TLS version {version}")), "{out}");
        assert!(out.contains("Received Access-Accept"), "{out}");
        assert!(out.contains("EAP result: EAP-Success"), "{out}");
        assert!(out.contains("MS-MPPE-Recv-Key and MS-MPPE-Send-Key match"), "{out}");
    }
    s.wait_for_log_count("method=\"eap-tls\" directory=\"local\" result=\"accept\"", 2);

    // Without --ca it still works, and says the server was not verified.
    let (code, out) = test_auth("alice", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("warning: no --ca"), "{out}");

    // A certificate for no account: the server refuses it.
    let (code, out) = test_auth("nobody", &verified);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("Received Access-Reject"), "{out}");
    assert!(out.contains("EAP result: EAP-Failure"), "{out}");

    // The server's certificate from another CA, or not for the pinned
    // name: this side refuses the handshake and the server rejects.
    for extra in [
        vec!["--ca", foreign_ca.as_str()],
        vec!["--ca", "pki/ca.pem", "--server-name", "other.test"],
    ] {
        let (code, out) = test_auth("alice", &extra);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            out.contains("TLS error on this side: invalid peer certificate"),
            "{out}"
        );
        assert!(out.contains("Received Access-Reject"), "{out}");
    }

    // Files that are not what they should be are named.
    let o = run_cli(
        &[
            "test-auth",
            "--server",
            &server,
            "--eap-tls",
            "--cert",
            "pki/ca.key",
            "--key",
            "pki/alice.key",
        ],
        pki.dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pki/ca.key"), "{:?}", o);
}

#[test]
fn certificates_that_must_not_get_in() {
    let pki = Pki::new();
    pki.issue(&["--cn", "alice"], "alice");
    pki.issue(&["--cn", "nobody"], "nobody");
    pki.issue_custom("expired", |p| {
        p.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    pki.issue_custom("no-identity", |_| {});
    // A certificate from another CA, with a name the server knows.
    let other = Pki::new();
    other.issue(&["--cn", "alice"], "alice");
    std::fs::copy(other.path("alice.pem"), pki.path("foreign.pem")).unwrap();
    std::fs::copy(other.path("alice.key"), pki.path("foreign.key")).unwrap();

    let body = format!("{}{USERS}{}", localhost_client(""), pki.eap_section(""));
    let s = TestServer::start(&body);
    for (cert, reason) in [
        ("foreign", "not issued by a CA in ca_file"),
        ("expired", "client certificate expired"),
        ("nobody", "the certificate names no known account"),
        ("no-identity", "certificate carries no usable identity"),
    ] {
        for phase1 in [TLS12, TLS13] {
            eapol(s.auth, &pki, &tls_network(&pki, cert, "alice", phase1, ""), &[]).assert_rejected();
        }
        s.wait_for_log(reason);
    }
    // The EAP identity lies ("carol"); the certificate says alice, and
    // alice is who is let in and logged.
    let r = eapol(s.auth, &pki, &tls_network(&pki, "alice", "carol", TLS13, ""), &[]);
    r.assert_accepted(1);
    assert!(!s.logs().contains("identity=\"carol\""), "{}", s.logs());
}

#[test]
fn an_unknown_state_and_an_unoffered_method_are_refused() {
    let pki = Pki::new();
    let body = format!(
        "{}{USERS}{}",
        localhost_client(""),
        pki.eap_section("methods = [\"tls\"]")
    );
    let s = TestServer::start(&body);
    // TTLS is not offered: the supplicant's Nak gets a reject naming both lists.
    eapol(s.auth, &pki, &ttls_network(&pki, "alice", "wonderland", TLS12), &[]).assert_rejected();
    s.wait_for_log("this server offers [TLS]");
    // A Response with a State this server never issued.
    let out = radclient(
        s.auth,
        "auth",
        SECRET,
        "User-Name = \"x\", EAP-Message = 0x0201000e01616e6f6e796d6f7573, State = 0x00112233445566778899aabbccddeeff, Message-Authenticator = 0x00",
    );
    assert!(stdout(&out).contains("Access-Reject"), "{}", stdout(&out));
    assert!(stdout(&out).contains("EAP-Message = 0x04"), "{}", stdout(&out));
    s.wait_for_log("unknown or expired EAP State");
}

/// Entra ID users by SAN UPN, Intune devices by `IntuneDeviceId://` URI and
/// by device id in the CN, a disabled user, TTLS against Entra ID.
#[test]
fn certificates_map_to_entra_users_and_intune_devices() {
    let (_rt, emu) = start_emulator(Tenant::demo());
    let demo = Tenant::demo();
    let pki = Pki::new();
    pki.issue(&["--upn", "alice@contoso.example"], "alice");
    pki.issue(&["--upn", "bob@contoso.example"], "bob");
    let device_id = demo.devices[0].device_id.clone();
    pki.issue(&["--cn", &device_id], "laptop-cn");
    let managed = demo
        .managed_devices
        .iter()
        .find(|m| m.azure_ad_device_id == demo.devices[1].device_id)
        .unwrap()
        .id
        .clone();
    pki.issue_custom("phone-intune", |p| {
        p.distinguished_name.push(rcgen::DnType::CommonName, "CAROL-PHONE");
        p.subject_alt_names = vec![rcgen::SanType::URI(
            format!("IntuneDeviceId://{managed}").try_into().unwrap(),
        )];
    });
    let body = format!(
        "{}{}{}",
        localhost_client(""),
        entra_section(&emu.base_url(), "1h"),
        pki.eap_section("")
    );
    let tenant = emu.tenant_id();
    let s = TestServer::start_seeded(&body, |state| provision(state, &tenant, &["contoso.example"]));
    s.wait_for_log("intune MAC addresses synced");

    let anon = "anonymous@contoso.example";
    eapol(s.auth, &pki, &tls_network(&pki, "alice", anon, TLS13, ""), &[]).assert_accepted(1);
    s.wait_for_log("method=\"eap-tls\" directory=\"entra\" result=\"accept\"");
    eapol(s.auth, &pki, &tls_network(&pki, "bob", anon, TLS12, ""), &[]).assert_rejected();
    s.wait_for_log("account disabled in entra (certificate bob@contoso.example (SAN UPN))");
    eapol(s.auth, &pki, &tls_network(&pki, "laptop-cn", "host/x", TLS13, ""), &[]).assert_accepted(1);
    s.wait_for_log("identity=\"ALICE-LAPTOP\" method=\"eap-tls\" directory=\"entra\" result=\"accept\" reason=client certificate verified; the account is its CN device id");
    eapol(
        s.auth,
        &pki,
        &tls_network(&pki, "phone-intune", "host/x", TLS12, ""),
        &[],
    )
    .assert_accepted(1);
    s.wait_for_log("identity=\"CAROL-PHONE\" method=\"eap-tls\" directory=\"entra\" result=\"accept\" reason=client certificate verified; the account is its SAN URI IntuneDeviceId");

    // TTLS: the inner identity's password is checked by Entra ID.
    let grants = emu.control().password_grants();
    eapol(
        s.auth,
        &pki,
        &ttls_network(&pki, "alice@contoso.example", "alice-pw", TLS13),
        &[],
    )
    .assert_accepted(1);
    eapol(
        s.auth,
        &pki,
        &ttls_network(&pki, "alice@contoso.example", "wrong", TLS12),
        &[],
    )
    .assert_rejected();
    assert_eq!(emu.control().password_grants() - grants, 2);
    s.wait_for_log("method=\"eap-ttls\" directory=\"entra\" result=\"reject\" reason=Entra ID refused the password");

    // `accounts lookup --cert` names the rule and the account it maps to.
    let phone = pki.path("phone-intune.pem");
    let out = s.cli(&["accounts", "lookup", "--cert", phone.to_str().unwrap()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SAN URI IntuneDeviceId"), "{text}");
    assert!(
        text.contains(&format!("looked up as IntuneDeviceId://{managed}")),
        "{text}"
    );
    assert!(text.contains("CAROL-PHONE"), "{text}");
    let bob = pki.path("bob.pem");
    let text = stdout(&s.cli(&["accounts", "lookup", "--cert", bob.to_str().unwrap()]));
    assert!(
        text.contains("SAN UPN") && text.contains("bob@contoso.example"),
        "{text}"
    );
    assert!(text.contains("disabled"), "{text}");
}

/// A UDP relay between `eapol_test` and the server that holds the client's
/// packets once `hold` is set, so that something can change between the
/// first authentication and the re-authentication of `eapol_test -r 1`.
struct Relay {
    addr: SocketAddr,
    hold: Arc<AtomicBool>,
    accepts_seen: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    fn start(server: SocketAddr) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        let addr = front.local_addr().unwrap();
        let hold = Arc::new(AtomicBool::new(false));
        let accepts_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        {
            let (front, back, hold, client) = (
                front.try_clone().unwrap(),
                back.try_clone().unwrap(),
                hold.clone(),
                client.clone(),
            );
            std::thread::spawn(move || {
                front.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let mut held: Vec<Vec<u8>> = Vec::new();
                let mut buf = [0u8; 4096];
                let deadline = Instant::now() + Duration::from_secs(120);
                while Instant::now() < deadline {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        held.push(buf[..n].to_vec());
                    }
                    if !hold.load(Ordering::SeqCst) {
                        for p in held.drain(..) {
                            let _ = back.send(&p);
                        }
                    }
                }
            });
        }
        {
            let (front, accepts_seen, hold) = (front, accepts_seen.clone(), hold.clone());
            std::thread::spawn(move || {
                back.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let mut buf = [0u8; 4096];
                let deadline = Instant::now() + Duration::from_secs(120);
                while Instant::now() < deadline {
                    if let Ok(n) = back.recv(&mut buf) {
                        if n > 0 && buf[0] == 2 && accepts_seen.fetch_add(1, Ordering::SeqCst) == 0 {
                            // Hold what follows the first Access-Accept.
                            hold.store(true, Ordering::SeqCst);
                        }
                        if let Some(c) = *client.lock().unwrap() {
                            let _ = front.send_to(&buf[..n], c);
                        }
                    }
                }
            });
        }
        Relay {
            addr,
            hold,
            accepts_seen,
        }
    }
}

#[test]
fn a_user_disabled_by_a_sync_round_is_refused_on_resumption() {
    let (_rt, emu) = start_emulator(Tenant::demo());
    let pki = Pki::new();
    pki.issue(&["--upn", "alice@contoso.example"], "alice");
    let body = format!(
        "{}{}{}",
        localhost_client(""),
        entra_section(&emu.base_url(), "1h"),
        pki.eap_section("")
    );
    let tenant = emu.tenant_id();
    let s = TestServer::start_seeded(&body, |state| provision(state, &tenant, &["contoso.example"]));
    s.wait_for_log("intune MAC addresses synced");
    let relay = Relay::start(s.auth);

    for (phase1, n) in [(TLS13, 1), (TLS12, 2)] {
        emu.control()
            .update_user(&Tenant::demo().users[0].id, |u| u.account_enabled = true);
        let out = s.cli(&["sync", "now", "--wait"]);
        assert!(out.status.success(), "{}", stdout(&out));
        relay.accepts_seen.store(0, Ordering::SeqCst);
        relay.hold.store(false, Ordering::SeqCst);
        let network = tls_network(&pki, "alice", "anonymous@contoso.example", phase1, "");
        let (pki_ref, addr) = (&pki, relay.addr);
        std::thread::scope(|sc| {
            let run = sc.spawn(move || eapol(addr, pki_ref, &network, &["-r", "1"]));
            // The first authentication goes through; the re-authentication
            // waits in the relay while a round disables alice.
            let deadline = Instant::now() + Duration::from_secs(20);
            while !relay.hold.load(Ordering::SeqCst) {
                assert!(Instant::now() < deadline, "no first Access-Accept");
                std::thread::sleep(Duration::from_millis(10));
            }
            emu.control()
                .update_user(&Tenant::demo().users[0].id, |u| u.account_enabled = false);
            let out = s.cli(&["sync", "now", "--wait"]);
            assert!(out.status.success(), "{}", stdout(&out));
            relay.hold.store(false, Ordering::SeqCst);
            let r = run.join().unwrap();
            assert_eq!(r.accepts(), 1, "{}", r.out);
            assert_eq!(r.rejects(), 1, "{}", r.out);
            assert!(r.out.contains("resumed=1"), "{}", r.out);
        });
        // The refusal was of a resumed session (the server counted it).
        assert_eq!(metric(&s, "entra_radius_eap_resumptions_total"), n);
        s.wait_for_log_count(
            "account disabled in entra (certificate alice@contoso.example (SAN UPN))",
            n as usize,
        );
    }
}

#[test]
fn check_config_names_what_is_wrong_in_eap() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    let other = Pki::new();
    let dir = pki.dir.path();
    let check = |section: &str| {
        let path = dir.join("check.toml");
        std::fs::write(&path, format!("{}{}", localhost_client(""), section)).unwrap();
        let o = run_cli(&["check-config", "--config", path.to_str().unwrap()], dir);
        (o.status.code(), stdout(&o))
    };
    let (code, out) = check(&pki.eap_section(""));
    assert_eq!(code, Some(0), "{out}");

    // A key that does not belong to the certificate.
    let section = pki.eap_section("").replace(
        &pki.path("server.key").display().to_string(),
        &other.path("server.key").display().to_string(),
    );
    let (code, out) = check(&section);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("[eap]") && out.contains("server certificate or key refused"),
        "{out}"
    );

    // A private key others may read.
    std::fs::set_permissions(pki.path("server.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = check(&pki.eap_section(""));
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("eap.private_key"), "{out}");
    std::fs::set_permissions(pki.path("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    for (extra, key) in [
        ("methods = []", "eap.methods"),
        ("methods = [\"peap\"]", "methods"),
        ("fragment_size = 50", "eap.fragment_size"),
        ("tls_min_version = \"1.1\"", "tls_min_version"),
    ] {
        let (code, out) = check(&pki.eap_section(extra));
        assert_ne!(code, Some(0), "{extra}: {out}");
        assert!(out.contains(key), "{extra}: {out}");
    }
    let missing = pki.eap_section("").replace("ca.pem", "missing.pem");
    let (_, out) = check(&missing);
    assert!(out.contains("eap.ca_file") && out.contains("missing.pem"), "{out}");
}

fn md5_of(b: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(b).into()
}

/// An Access-Request carrying `eap` (and `state`), from raw bytes: what no
/// supplicant would send.
fn eap_request(id: u8, eap: &[u8], state: Option<&[u8]>, station: &str) -> Vec<u8> {
    use entra_radius::proto::{AttrType, Builder, ClientSecret, Code};
    let secret = ClientSecret::new(SECRET.as_bytes());
    // A Request Authenticator of its own per station and id, so that no
    // request is taken for a retransmission of another.
    let mut ra = [0u8; 16];
    let digest = md5_of(&[station.as_bytes(), &[id]].concat());
    ra.copy_from_slice(&digest);
    let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, id, ra);
    b.push(AttrType::USER_NAME, b"flood").unwrap();
    b.push(AttrType::CALLING_STATION_ID, station.as_bytes()).unwrap();
    b.push_split(AttrType::EAP_MESSAGE, eap).unwrap();
    if let Some(s) = state {
        b.push(AttrType::STATE, s).unwrap();
    }
    b.finish_request(&secret)
}

#[test]
fn identity_floods_and_oversized_tls_messages_are_refused_and_counted() {
    use entra_radius::proto::{AttrType, Code, Packet};
    let pki = Pki::new();
    let body = format!("{}{USERS}{}", localhost_client(""), pki.eap_section(""));
    let s = TestServer::start(&body);
    let identity = [2u8, 1, 0, 10, 1, b'f', b'l', b'o', b'o', b'd'];

    // One conversation first, kept for later: its State and the EAP
    // Identifier of the server's Start.
    let reply = exchange(s.auth, &eap_request(1, &identity, None, "02-00-00-ff-00-01")).unwrap();
    let reply = Packet::decode(&reply).unwrap();
    assert_eq!(reply.code(), Code::ACCESS_CHALLENGE);
    let state = reply.get(AttrType::STATE).unwrap().to_vec();
    let start_id = reply.get(AttrType::EAP_MESSAGE).unwrap()[1];

    // 4,500 more Identity Responses, each from another station: the table
    // holds 4,096, the rest are refused and counted.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4096];
    let (mut challenges, mut rejects) = (0, 0);
    for chunk in 0..45u32 {
        for i in 0..100u32 {
            let n = chunk * 100 + i;
            let station = format!("02-00-00-{:02x}-{:02x}-{:02x}", n >> 16, (n >> 8) & 0xff, n & 0xff);
            // Identifiers and stations differ, so no request is a duplicate.
            sock.send_to(&eap_request((n % 256) as u8, &identity, None, &station), s.auth)
                .unwrap();
        }
        for _ in 0..100 {
            let Ok((len, _)) = sock.recv_from(&mut buf) else { break };
            match Packet::decode(&buf[..len]).map(|p| p.code()) {
                Ok(Code::ACCESS_CHALLENGE) => challenges += 1,
                Ok(Code::ACCESS_REJECT) => rejects += 1,
                _ => {}
            }
        }
    }
    assert_eq!((challenges, rejects), (4095, 405));
    assert_eq!(
        metric(&s, "entra_radius_eap_conversations_finished_total{outcome=\"shed\"}"),
        405
    );
    assert_eq!(metric(&s, "entra_radius_eap_conversations "), 4096);
    s.wait_for_log("too many EAP conversations in progress (4096)");

    // The first conversation's peer announces a 100,000-byte TLS message:
    // refused (the cap is 64 KiB), with EAP-Failure, and the conversation
    // ends.
    let mut tls = vec![2u8, start_id, 0, 0, 13, 0xc0];
    tls.extend_from_slice(&100_000u32.to_be_bytes());
    tls.extend_from_slice(&[0x16; 200]);
    let len = tls.len() as u16;
    tls[2..4].copy_from_slice(&len.to_be_bytes());
    let reply = exchange(s.auth, &eap_request(2, &tls, Some(&state), "02-00-00-ff-00-01")).unwrap();
    let reply = Packet::decode(&reply).unwrap();
    assert_eq!(reply.code(), Code::ACCESS_REJECT);
    assert_eq!(reply.get(AttrType::EAP_MESSAGE).unwrap()[0], 4, "EAP-Failure");
    s.wait_for_log("TLS message of 100000 bytes exceeds the 65536-byte limit");
    // The same State from another station is refused without touching it.
    let reply = exchange(s.auth, &eap_request(3, &tls, Some(&state), "02-00-00-ff-00-02")).unwrap();
    assert_eq!(Packet::decode(&reply).unwrap().code(), Code::ACCESS_REJECT);
}
