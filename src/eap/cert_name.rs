//! Who an EAP-TLS client certificate names. The EAP identity is never
//! trusted (RFC 5216 §2.2, RFC 9190 §2.2: often `anonymous@realm`); only the
//! verified certificate is. The rules, first that applies wins:
//!
//! 1. SAN otherName UPN (1.3.6.1.4.1.311.20.2.3) → the user with that UPN;
//! 2. SAN URI `IntuneDeviceId://ID` → the Intune managed device `ID`, then
//!    its Entra device;
//! 3. SAN URI `urn:uuid:ID` or a CN that is a GUID → the Entra device whose
//!    device id is `ID` (Intune's `{{AAD_Device_ID}}`);
//! 4. the CN as a user name (`alice`, `alice@contoso.com`, `host/NAME`).
//!
//! Other URIs (Intune's `tag:microsoft.com,2022-09-14:sid:…`) are skipped.

use x509_parser::prelude::*;

const UPN_OID: &str = "1.3.6.1.4.1.311.20.2.3";

/// Which rule named the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertRule {
    SanUpn,
    IntuneDeviceId,
    DeviceIdUri,
    DeviceIdCn,
    CommonName,
}

impl CertRule {
    pub fn as_str(self) -> &'static str {
        match self {
            CertRule::SanUpn => "SAN UPN",
            CertRule::IntuneDeviceId => "SAN URI IntuneDeviceId",
            CertRule::DeviceIdUri => "SAN URI device id",
            CertRule::DeviceIdCn => "CN device id",
            CertRule::CommonName => "CN",
        }
    }
}

/// A name the certificate gives, with the rule that found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertName {
    pub rule: CertRule,
    /// Lower-cased for the GUID rules; as written for the others.
    pub value: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertNameError {
    #[error("certificate does not parse: {0}")]
    Parse(String),
    #[error("certificate carries no usable identity (no SAN UPN, no IntuneDeviceId or device-id URI, no CN)")]
    NoIdentity,
}

/// The identity the certificate (DER) names, by the first rule that applies.
pub fn cert_name(der: &[u8]) -> Result<CertName, CertNameError> {
    all_names(der)?.into_iter().next().ok_or(CertNameError::NoIdentity)
}

/// Every name the certificate gives, best rule first (`accounts lookup
/// --cert` shows them all).
pub fn all_names(der: &[u8]) -> Result<Vec<CertName>, CertNameError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertNameError::Parse(e.to_string()))?;
    let mut found: Vec<CertName> = Vec::new();
    let push = |found: &mut Vec<CertName>, rule, value: String| found.push(CertName { rule, value });
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::OtherName(oid, raw) if oid.to_id_string() == UPN_OID => {
                    if let Some(upn) = other_name_utf8(raw) {
                        push(&mut found, CertRule::SanUpn, upn);
                    }
                }
                GeneralName::URI(uri) => {
                    if let Some(id) = strip_prefix_ci(uri, "IntuneDeviceId://") {
                        push(
                            &mut found,
                            CertRule::IntuneDeviceId,
                            id.trim_end_matches('/').to_ascii_lowercase(),
                        );
                    } else if let Some(id) = strip_prefix_ci(uri, "urn:uuid:")
                        && is_guid(id)
                    {
                        push(&mut found, CertRule::DeviceIdUri, id.to_ascii_lowercase());
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(cn) = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) {
        let cn = cn.trim();
        if is_guid(cn) {
            push(&mut found, CertRule::DeviceIdCn, cn.to_ascii_lowercase());
        } else if !cn.is_empty() {
            push(&mut found, CertRule::CommonName, cn.to_string());
        }
    }
    found.sort_by_key(|n| n.rule as u8);
    Ok(found)
}

/// The value of an otherName: `[0] EXPLICIT UTF8String` (x509-parser hands
/// over the explicit tag and what it wraps).
fn other_name_utf8(raw: &[u8]) -> Option<String> {
    let (_, any) = x509_parser::der_parser::asn1_rs::Any::from_der(raw).ok()?;
    let inner = if any.tag().0 == 0 { any.data } else { raw };
    let (_, s) = x509_parser::der_parser::asn1_rs::Utf8String::from_der(inner).ok()?;
    Some(s.string())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(cn: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn upn(s: &str) -> SanType {
        let oid: Vec<u64> = UPN_OID.split('.').map(|x| x.parse().unwrap()).collect();
        SanType::OtherName((oid, rcgen::OtherNameValue::Utf8String(s.into())))
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    const DEV: &str = "6F1C2A3B-0000-4000-8000-00000000AB01";

    #[test]
    fn rules_in_order() {
        let c = cert(
            Some("Alice"),
            vec![
                uri("tag:microsoft.com,2022-09-14:sid:S-1-5-21"),
                upn("alice@contoso.com"),
            ],
        );
        assert_eq!(
            cert_name(&c).unwrap(),
            CertName {
                rule: CertRule::SanUpn,
                value: "alice@contoso.com".into()
            }
        );
        assert_eq!(all_names(&c).unwrap().len(), 2);

        let c = cert(
            Some(DEV),
            vec![uri("IntuneDeviceId://AAAA0000-1111-2222-3333-444455556666")],
        );
        let n = cert_name(&c).unwrap();
        assert_eq!(n.rule, CertRule::IntuneDeviceId);
        assert_eq!(n.value, "aaaa0000-1111-2222-3333-444455556666");

        let c = cert(Some("laptop"), vec![uri(&format!("urn:uuid:{DEV}"))]);
        assert_eq!(cert_name(&c).unwrap().rule, CertRule::DeviceIdUri);
        assert_eq!(cert_name(&c).unwrap().value, DEV.to_ascii_lowercase());

        let c = cert(Some(DEV), vec![]);
        assert_eq!(cert_name(&c).unwrap().rule, CertRule::DeviceIdCn);

        let c = cert(Some("host/PRINTER-01"), vec![uri("https://example.com/x")]);
        assert_eq!(
            cert_name(&c).unwrap(),
            CertName {
                rule: CertRule::CommonName,
                value: "host/PRINTER-01".into()
            }
        );
    }

    #[test]
    fn nothing_usable_and_garbage() {
        let c = cert(None, vec![uri("tag:microsoft.com,2022-09-14:sid:S-1-5-21")]);
        assert_eq!(cert_name(&c), Err(CertNameError::NoIdentity));
        assert!(matches!(cert_name(b"not a certificate"), Err(CertNameError::Parse(_))));
        assert!(!is_guid("6f1c2a3b-0000-4000-8000-00000000ab0"));
        assert!(!is_guid("6f1c2a3b+0000-4000-8000-00000000ab01"));
    }
}
