//! Application credentials and access tokens (client-credentials flow, v2.0).
//!
//! Tokens are cached in the client and renewed before they expire; the
//! payload is decoded only to read `roles` (granted application permissions)
//! and `exp`, never to trust it: Graph checks the signature.

use std::time::{Duration, Instant};

use base64::Engine as _;

use super::errors::GraphError;
use crate::clock::now_unix;

/// How the application proves its identity to the token endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credential {
    /// A client secret. Never printed: `Debug` shows `Secret(<redacted>)`.
    Secret(String),
    /// A certificate registered on the application: each token request
    /// carries a fresh JWT client assertion signed with its RSA key.
    Certificate(std::sync::Arc<CertificateCredential>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Secret(<redacted>)"),
            Credential::Certificate(c) => write!(f, "Certificate(x5t={})", c.x5t),
        }
    }
}

/// The form fields that authenticate the application in a token request.
pub(crate) fn credential_fields(cred: &Credential, client_id: &str, token_url: &str) -> Vec<(&'static str, String)> {
    match cred {
        Credential::Secret(s) => vec![("client_secret", s.clone())],
        Credential::Certificate(c) => vec![
            ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
            ("client_assertion", c.assertion(client_id, token_url, now_unix())),
        ],
    }
}

/// RFC 7523's client assertion type.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A certificate and its RSA private key, as uploaded to the application.
/// The key never leaves this struct; `Debug` shows only the thumbprint.
pub struct CertificateCredential {
    /// base64url SHA-1 thumbprint of the certificate (the `x5t` header
    /// Entra ID uses to find the registered certificate).
    pub x5t: String,
    key: aws_lc_rs::rsa::KeyPair,
}

impl std::fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertificateCredential(x5t={}, key=<redacted>)", self.x5t)
    }
}

impl CertificateCredential {
    /// Reads a PEM file holding the certificate and its PKCS#8 RSA private
    /// key (the form `openssl pkcs12 -nodes` or most CAs hand out).
    pub fn from_pem(pem: &[u8]) -> Result<CertificateCredential, GraphError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
        let cert = CertificateDer::from_pem_slice(pem).map_err(GraphError::NoCertificate)?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(GraphError::NoPrivateKey)?;
        let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(key.secret_pkcs8_der()).map_err(GraphError::UnusableKey)?;
        let thumb = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        Ok(CertificateCredential {
            x5t: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumb.as_ref()),
            key,
        })
    }

    /// A client assertion (RFC 7523) for `audience` (the token endpoint),
    /// valid for ten minutes from `now`, signed RS256.
    pub fn assertion(&self, client_id: &str, audience: &str, now: i64) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "x5t": self.x5t });
        let mut jti = [0u8; 16];
        rand::fill(&mut jti);
        let claims = serde_json::json!({
            "aud": audience, "iss": client_id, "sub": client_id,
            "jti": hex::encode(jti), "nbf": now, "iat": now, "exp": now + 600,
        });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        // Signing with a valid RSA key into a buffer of the modulus length
        // does not fail.
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing");
        format!("{signing_input}.{}", b64(&sig))
    }
}

/// An access token for Graph.
#[derive(Clone)]
pub struct Token {
    /// The bearer token. Never printed: `Debug` redacts it.
    pub access_token: String,
    /// When the token stops being valid (local clock, from `expires_in`).
    pub expires_at: Instant,
    /// The `roles` claim: the application permissions granted by admin consent.
    pub roles: Vec<String>,
    /// The `tid` claim: the tenant's id (a GUID even when asked by domain name).
    pub tenant_id: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("roles", &self.roles)
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

/// The claims the client reads from a token payload.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub roles: Vec<String>,
    pub exp: Option<u64>,
    pub tid: Option<String>,
}

/// The payload of a JWT as JSON, decoded without checking it: `None` for an
/// opaque (non-JWT) token or a payload that is not base64url JSON.
pub(crate) fn jwt_payload(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    // JWTs use unpadded base64url, but tolerate padding from odd issuers.
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The claims of a token's payload. An opaque (non-JWT) token yields empty
/// claims, which `check_roles` then reports as missing consent.
pub(crate) fn decode_claims(token: &str) -> Claims {
    let Some(json) = jwt_payload(token) else {
        return Claims::default();
    };
    let roles = json
        .get("roles")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let exp = json.get("exp").and_then(|e| e.as_u64());
    let tid = json.get("tid").and_then(|t| t.as_str()).map(str::to_string);
    Claims { roles, exp, tid }
}

/// Lifetime of a fresh token: `expires_in` (seconds; a number, or a string as
/// older endpoints send it), else `exp` against `now` (Unix seconds).
pub(crate) fn lifetime(expires_in: Option<&serde_json::Value>, exp: Option<u64>, now: i64) -> Option<Duration> {
    let from_expires_in =
        expires_in.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())));
    if let Some(secs) = from_expires_in {
        return Some(Duration::from_secs(secs));
    }
    let now = u64::try_from(now).unwrap_or(0);
    exp.map(|exp| Duration::from_secs(exp.saturating_sub(now)))
}

/// How long before expiry a long-lived token is renewed.
pub(crate) const RENEW_MARGIN: Duration = Duration::from_secs(5 * 60);

/// When to renew a token of the given lifetime: 5 minutes before expiry, or
/// at half-life when the token lives less than 10 minutes (so short-lived
/// tokens are not renewed on every call).
pub(crate) fn renew_after(lifetime: Duration) -> Duration {
    let margin = RENEW_MARGIN.min(lifetime / 2);
    lifetime - margin
}

/// A cached token and when to renew it.
#[derive(Clone)]
pub(crate) struct Cached {
    pub token: Token,
    pub renew_at: Instant,
}

#[cfg(test)]
mod tests {
    use super::super::testutil::fake_jwt;
    use super::*;

    #[test]
    fn claims_are_decoded_from_payload() {
        let jwt = fake_jwt(&serde_json::json!({"roles": ["User.Read.All", "Domain.Read.All"], "exp": 1700000000u64}));
        let c = decode_claims(&jwt);
        assert_eq!(c.roles, vec!["User.Read.All", "Domain.Read.All"]);
        assert_eq!(c.exp, Some(1_700_000_000));
        assert_eq!(decode_claims("opaque-token"), Claims::default());
        assert_eq!(decode_claims("a.!!!.c"), Claims::default());
    }

    #[test]
    fn renewal_schedule() {
        // One-hour token: renewed 5 minutes before expiry.
        assert_eq!(renew_after(Duration::from_secs(3599)), Duration::from_secs(3299));
        // Short token: renewed at half-life.
        assert_eq!(renew_after(Duration::from_secs(10)), Duration::from_secs(5));
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn lifetime_accepts_number_string_or_exp() {
        let n = serde_json::json!(3599);
        let s = serde_json::json!("3599");
        let now = 1_700_000_000;
        assert_eq!(lifetime(Some(&n), None, now), Some(Duration::from_secs(3599)));
        assert_eq!(lifetime(Some(&s), None, now), Some(Duration::from_secs(3599)));
        let l = lifetime(None, Some(now as u64 + 100), now).unwrap();
        assert!(l <= Duration::from_secs(100) && l >= Duration::from_secs(98));
        assert_eq!(lifetime(None, Some(now as u64 - 5), now), Some(Duration::ZERO));
        assert_eq!(lifetime(None, None, now), None);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credential::Secret("s3cr3t-value".into());
        let t = Token {
            access_token: "eyJ-very-secret-token".into(),
            expires_at: Instant::now(),
            roles: vec!["User.Read.All".into()],
            tenant_id: None,
        };
        let out = format!("{c:?} {t:?} {c:#?} {t:#?}");
        assert!(!out.contains("s3cr3t-value"), "{out}");
        assert!(!out.contains("very-secret"), "{out}");
        assert!(out.contains("User.Read.All"));
    }
}
