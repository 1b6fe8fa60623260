//! `certs init` and `certs issue`: a private CA, the EAP server certificate
//! and client certificates for EAP-TLS pilots and tests, written as PEM files
//! (keys mode 0600), like FreeRADIUS's `certs/bootstrap`. Never overwrites.
//!
//! Keys are ECDSA P-256 (rcgen's default), signatures ECDSA-SHA256. Validity:
//! CA 10 years, server 2 years, client 1 year, each starting an hour ago to
//! absorb clock skew between this machine and the peers.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::private_file::{PrivateFileError, read_private_file};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";

/// `--server-name` when the machine's hostname cannot be read or is no DNS name.
pub const FALLBACK_SERVER_NAME: &str = "radius.example";

const CA_DAYS: i64 = 3650;
const SERVER_DAYS: i64 = 730;
const CLIENT_DAYS: i64 = 365;

/// SAN otherName type of a Microsoft UPN (KB 814394).
pub const UPN_OID: [u64; 10] = [1, 3, 6, 1, 4, 1, 311, 20, 2, 3];

const ORGANIZATION: &str = "entra-radius";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsError {
    #[error("{} already exists; refusing to overwrite it (move it away or use another --dir)", path.display())]
    Exists { path: PathBuf },

    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },

    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },

    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    #[error(transparent)]
    PrivateKey(#[from] PrivateFileError),

    #[error("{}: not a usable {what}: {source}", path.display())]
    BadPem {
        path: PathBuf,
        what: &'static str,
        source: rcgen::Error,
    },

    #[error("{value:?} is not a valid {what}: {why}")]
    InvalidIdentity {
        what: &'static str,
        value: String,
        why: &'static str,
    },

    #[error("cannot make the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Whom a client certificate names (`certs issue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// A user: SAN otherName UPN (UTF8String) and CN = the UPN.
    Upn(String),
    /// An Entra device id (Graph `device.deviceId`): CN = the GUID and SAN
    /// URI `urn:uuid:GUID` (RFC 4122), lower case.
    DeviceId(String),
    /// Only a CN (e.g. `host/NAME` for an AD computer, or a local user name).
    Cn(String),
}

impl ClientIdentity {
    /// Checks the value and puts it in canonical form (a device id in lower case).
    pub fn validated(self) -> Result<ClientIdentity, CertsError> {
        let invalid = |what, value: &str, why| CertsError::InvalidIdentity {
            what,
            value: value.to_owned(),
            why,
        };
        match self {
            ClientIdentity::Upn(u) => {
                let (local, domain) = u.split_once('@').ok_or_else(|| invalid("UPN", &u, "it has no '@'"))?;
                if local.is_empty() || domain.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(invalid("UPN", &u, "expected user@domain without spaces"));
                }
                Ok(ClientIdentity::Upn(u))
            }
            ClientIdentity::DeviceId(g) => {
                if !is_guid(&g) {
                    return Err(invalid(
                        "device id",
                        &g,
                        "expected a GUID such as 0f8fad5b-d9cb-469f-a165-70867728950e",
                    ));
                }
                Ok(ClientIdentity::DeviceId(g.to_ascii_lowercase()))
            }
            ClientIdentity::Cn(c) => {
                if c.trim().is_empty() || c.chars().any(char::is_control) {
                    return Err(invalid("common name", &c, "it is empty or holds control characters"));
                }
                Ok(ClientIdentity::Cn(c))
            }
        }
    }

    fn common_name(&self) -> &str {
        match self {
            ClientIdentity::Upn(s) | ClientIdentity::DeviceId(s) | ClientIdentity::Cn(s) => s,
        }
    }

    /// The default `--out`: the identity made a safe file name (`host/pc1` → `host_pc1`).
    pub fn file_stem(&self) -> String {
        safe_file_stem(self.common_name())
    }
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Keeps letters, digits, `.`, `-`, `_` and `@`; anything else becomes `_`; no
/// leading dot (no hidden files, no `..`).
pub fn safe_file_stem(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches('.');
    if trimmed.is_empty() {
        "client".into()
    } else {
        trimmed.into()
    }
}

/// The machine's hostname when it is a usable DNS name, else [`FALLBACK_SERVER_NAME`].
pub fn default_server_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .find(|s| is_dns_name(s))
        .unwrap_or_else(|| FALLBACK_SERVER_NAME.into())
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `certs init`: creates `dir` if missing and writes `ca.pem`, `ca.key`,
/// `server.pem`, `server.key`. Returns the paths written, in that order.
pub fn init(dir: &Path, server_name: &str) -> Result<Vec<PathBuf>, CertsError> {
    if !is_dns_name(server_name) {
        return Err(CertsError::InvalidIdentity {
            what: "server name",
            value: server_name.into(),
            why: "expected a DNS name such as radius.corp.example",
        });
    }
    let paths: Vec<PathBuf> = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    refuse_existing(&paths)?;
    fs::create_dir_all(dir).map_err(|source| CertsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let now = OffsetDateTime::now_utc();

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name(&format!("entra-radius CA for {server_name}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca, now, CA_DAYS);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec![server_name.to_owned()])?;
    server.distinguished_name = name(server_name);
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    set_validity(&mut server, now, SERVER_DAYS);
    let server_cert = server.signed_by(&server_key, &issuer)?;

    write_new(&[
        (&paths[0], ca_cert.pem(), false),
        (&paths[1], ca_key.serialize_pem(), true),
        (&paths[2], server_cert.pem(), false),
        (&paths[3], server_key.serialize_pem(), true),
    ])?;
    Ok(paths)
}

/// `certs issue`: a client certificate for `identity` from the CA in `dir`,
/// written to `dir/OUT.pem` and `dir/OUT.key` (OUT defaults to
/// [`ClientIdentity::file_stem`]). Returns (certificate, key) paths.
pub fn issue(dir: &Path, identity: ClientIdentity, out: Option<&str>) -> Result<(PathBuf, PathBuf), CertsError> {
    let identity = identity.validated()?;
    let stem = out.map(safe_file_stem).unwrap_or_else(|| identity.file_stem());
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    refuse_existing(&[cert_path.clone(), key_path.clone()])?;

    let ca_cert_path = dir.join(CA_CERT);
    let ca_key_path = dir.join(CA_KEY);
    let ca_pem = fs::read_to_string(&ca_cert_path).map_err(|source| CertsError::Read {
        path: ca_cert_path.clone(),
        source,
    })?;
    let ca_key_bytes = read_private_file(&ca_key_path)?;
    let ca_key_pem = String::from_utf8_lossy(&ca_key_bytes);
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|source| CertsError::BadPem {
        path: ca_key_path,
        what: "private key",
        source,
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).map_err(|source| CertsError::BadPem {
        path: ca_cert_path,
        what: "CA certificate",
        source,
    })?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(identity.common_name());
    match &identity {
        ClientIdentity::Upn(upn) => {
            params.subject_alt_names = vec![SanType::OtherName((UPN_OID.to_vec(), upn.clone().into()))];
        }
        ClientIdentity::DeviceId(guid) => {
            params.subject_alt_names = vec![SanType::URI(format!("urn:uuid:{guid}").try_into()?)];
        }
        ClientIdentity::Cn(_) => {}
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, OffsetDateTime::now_utc(), CLIENT_DAYS);
    let cert = params.signed_by(&key, &issuer)?;

    write_new(&[(&cert_path, cert.pem(), false), (&key_path, key.serialize_pem(), true)])?;
    Ok((cert_path, key_path))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(params: &mut CertificateParams, now: OffsetDateTime, days: i64) {
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

fn refuse_existing(paths: &[PathBuf]) -> Result<(), CertsError> {
    match paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        Some(p) => Err(CertsError::Exists { path: p.clone() }),
        None => Ok(()),
    }
}

/// Writes every file with `create_new` (a file that appeared since the check
/// is still not overwritten), keys mode 0600 from the start; on any failure
/// removes the files this call created, so a rerun starts clean.
fn write_new(files: &[(&PathBuf, String, bool)]) -> Result<(), CertsError> {
    let mut written: Vec<&PathBuf> = Vec::new();
    for (path, text, private) in files {
        let result = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if *private { 0o600 } else { 0o644 })
            .open(path)
            .and_then(|mut f| {
                written.push(path);
                f.write_all(text.as_bytes())?;
                f.sync_all()
            });
        if let Err(source) = result {
            let exists = source.kind() == io::ErrorKind::AlreadyExists;
            for w in &written {
                let _ = fs::remove_file(w);
            }
            return Err(if exists {
                CertsError::Exists { path: (*path).clone() }
            } else {
                CertsError::Write {
                    path: (*path).clone(),
                    source,
                }
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::pem::parse_x509_pem;
    use x509_parser::prelude::*;

    fn pem_der(path: &Path) -> Vec<u8> {
        let text = fs::read(path).unwrap();
        let (_, pem) = parse_x509_pem(&text).unwrap();
        pem.contents
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn cn(cert: &X509Certificate<'_>) -> String {
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn days(cert: &X509Certificate<'_>) -> i64 {
        let v = cert.validity();
        (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400
    }

    #[test]
    fn init_makes_a_ca_and_a_server_certificate_it_signed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        init(&dir, "radius.test").unwrap();
        assert_eq!(mode(&dir.join(CA_KEY)), 0o600);
        assert_eq!(mode(&dir.join(SERVER_KEY)), 0o600);

        let ca_der = pem_der(&dir.join(CA_CERT));
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        assert!(ca.is_ca());
        let ku = ca.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        assert_eq!(days(&ca), CA_DAYS);

        let srv_der = pem_der(&dir.join(SERVER_CERT));
        let (_, srv) = X509Certificate::from_der(&srv_der).unwrap();
        assert_eq!(cn(&srv), "radius.test");
        assert!(!srv.is_ca());
        let eku = srv.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let san = srv.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names, vec![GeneralName::DNSName("radius.test")]);
        assert_eq!(days(&srv), SERVER_DAYS);
        srv.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(srv.issuer(), ca.subject());
    }

    #[test]
    fn init_refuses_to_overwrite_any_file_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(SERVER_KEY), "mine").unwrap();
        let e = init(tmp.path(), "radius.test").unwrap_err();
        assert!(
            matches!(&e, CertsError::Exists { path } if path.ends_with(SERVER_KEY)),
            "{e:?}"
        );
        assert!(e.to_string().contains("server.key already exists"), "{e}");
        assert!(!tmp.path().join(CA_KEY).exists());
        assert_eq!(fs::read_to_string(tmp.path().join(SERVER_KEY)).unwrap(), "mine");
    }

    #[test]
    fn init_refuses_a_server_name_that_is_no_dns_name() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            init(tmp.path(), "not a name"),
            Err(CertsError::InvalidIdentity { .. })
        ));
    }

    fn issued(dir: &Path, id: ClientIdentity) -> (Vec<u8>, PathBuf) {
        let (cert, key) = issue(dir, id, None).unwrap();
        assert_eq!(mode(&key), 0o600);
        (pem_der(&cert), cert)
    }

    #[test]
    fn issue_for_a_upn_puts_it_in_the_upn_other_name_and_the_cn() {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), "radius.test").unwrap();
        let (der, path) = issued(tmp.path(), ClientIdentity::Upn("alice@contoso.example".into()));
        assert!(path.ends_with("alice@contoso.example.pem"));
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cn(&c), "alice@contoso.example");
        let san = c.subject_alternative_name().unwrap().unwrap();
        let [GeneralName::OtherName(oid, raw)] = san.value.general_names.as_slice() else {
            panic!("{:?}", san.value.general_names)
        };
        assert_eq!(oid.to_id_string(), "1.3.6.1.4.1.311.20.2.3");
        // [0] EXPLICIT { UTF8String "alice@contoso.example" }
        assert_eq!(&raw[raw.len() - 21..], b"alice@contoso.example");
        assert_eq!(raw[2], 0x0c, "UTF8String tag");
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(days(&c), CLIENT_DAYS);
        let ca_der = pem_der(&tmp.path().join(CA_CERT));
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        c.verify_signature(Some(ca.public_key())).unwrap();
    }

    #[test]
    fn issue_for_a_device_id_puts_it_in_the_cn_and_a_urn_uuid() {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), "radius.test").unwrap();
        let guid = "0F8FAD5B-D9CB-469F-A165-70867728950E";
        let (der, path) = issued(tmp.path(), ClientIdentity::DeviceId(guid.into()));
        let lower = guid.to_ascii_lowercase();
        assert!(path.ends_with(format!("{lower}.pem")));
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cn(&c), lower);
        let san = c.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI(&format!("urn:uuid:{lower}"))]
        );
    }

    #[test]
    fn issue_with_a_cn_only_has_no_san_and_a_safe_default_file_name() {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), "radius.test").unwrap();
        let (der, path) = issued(tmp.path(), ClientIdentity::Cn("host/pc1.corp.example".into()));
        assert!(path.ends_with("host_pc1.corp.example.pem"));
        let (_, c) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cn(&c), "host/pc1.corp.example");
        assert!(c.subject_alternative_name().unwrap().is_none());
        assert!(
            c.extensions()
                .iter()
                .all(|e| !matches!(e.parsed_extension(), ParsedExtension::SubjectAlternativeName(_)))
        );
    }

    #[test]
    fn issue_refuses_an_open_ca_key_overwrites_and_bad_identities() {
        let tmp = tempfile::tempdir().unwrap();
        init(tmp.path(), "radius.test").unwrap();
        issue(tmp.path(), ClientIdentity::Cn("bob".into()), Some("b")).unwrap();
        let e = issue(tmp.path(), ClientIdentity::Cn("bob".into()), Some("b")).unwrap_err();
        assert!(e.to_string().contains("b.pem already exists"), "{e}");

        for bad in [
            ClientIdentity::Upn("alice".into()),
            ClientIdentity::DeviceId("not-a-guid".into()),
            ClientIdentity::Cn(" ".into()),
        ] {
            assert!(matches!(
                issue(tmp.path(), bad, Some("x")),
                Err(CertsError::InvalidIdentity { .. })
            ));
        }

        let ca_key = tmp.path().join(CA_KEY);
        fs::set_permissions(&ca_key, fs::Permissions::from_mode(0o640)).unwrap();
        let e = issue(tmp.path(), ClientIdentity::Cn("carol".into()), None).unwrap_err();
        assert!(
            matches!(e, CertsError::PrivateKey(PrivateFileError::TooOpen { .. })),
            "{e:?}"
        );
        assert!(!tmp.path().join("carol.pem").exists());
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(safe_file_stem("../etc/passwd"), "_etc_passwd");
        assert_eq!(safe_file_stem("..."), "client");
        assert_eq!(safe_file_stem("DOMAIN\\pc$"), "DOMAIN_pc_");
    }

    #[test]
    fn default_server_name_is_a_dns_name() {
        assert!(is_dns_name(&default_server_name()));
        assert!(!is_dns_name("a..b") && !is_dns_name("-a") && is_dns_name("radius.example"));
    }
}
