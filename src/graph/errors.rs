//! Errors of the Graph client and the plain-words explanations shown to admins.
//!
//! The token endpoint (Entra ID) answers with AADSTS codes, Graph with JSON
//! `error.code` strings; both are mapped here so that `entra status` and the
//! logs can say what to do next, not only what went wrong.

use std::time::Duration;

/// Everything the Graph client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The token endpoint refused to issue a token.
    #[error("Entra ID refused the token request (AADSTS{code}, {error}): {explanation}")]
    Aadsts {
        code: u32,
        error: String,
        explanation: String,
        /// Microsoft's own text (carries trace and correlation ids for support).
        description: String,
    },
    /// Graph answered with a JSON error that is not handled more specifically.
    #[error("Microsoft Graph answered {status} {code}: {explanation}")]
    Graph {
        status: u16,
        code: String,
        message: String,
        explanation: String,
    },
    /// The token carries none or only some of the application permissions needed.
    #[error(
        "admin consent is missing for: {} (grant them with `entra consent`)",
        missing_roles.join(", ")
    )]
    ConsentMissing { missing_roles: Vec<String> },
    /// The link (a delta link, or the page link of an enumeration) can no
    /// longer be used: the enumeration must start over from its first URL.
    /// `location` is the fresh link from a 410's `Location` header, if any.
    #[error(
        "Graph no longer accepts the link (expired or unknown delta or page token); the enumeration must start over"
    )]
    DeltaExpired { location: Option<String> },
    /// 429 Too Many Requests for longer than the request's waiting budget.
    #[error(
        "{service} kept throttling (429 Too Many Requests): gave up after {answers} answers and {} of waiting{}",
        humantime::format_duration(*.waited),
        asked_text(*.asked)
    )]
    Throttled {
        service: &'static str,
        answers: u32,
        waited: Duration,
        /// The last `Retry-After`, when it was beyond what the budget had left.
        asked: Option<Duration>,
    },
    /// 503 Service Unavailable or 504 Gateway Timeout for longer than the
    /// request's waiting budget: an outage, not throttling.
    #[error(
        "{service} {}: gave up after {answers} answers and {} of waiting{}",
        unavailable_text(*.status),
        humantime::format_duration(*.waited),
        asked_text(*.asked)
    )]
    Unavailable {
        service: &'static str,
        status: u16,
        answers: u32,
        waited: Duration,
        asked: Option<Duration>,
    },
    /// Transport failure (DNS, connect, TLS, timeout, reset, body read),
    /// after the allowed attempts when it looked transient.
    #[error("HTTP transport error: {0}")]
    Http(#[from] reqwest::Error),
    /// An answer that does not have the documented shape.
    #[error("unexpected response: {0}")]
    BadResponse(String),
    /// Plain http to a non-loopback host, or a link that leaves the Graph host.
    #[error("insecure endpoint refused: {0}")]
    InsecureEndpoint(String),
    /// A configuration value that cannot be used at all (unparsable URL, bad tenant).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The PEM given as the application's certificate holds no certificate.
    #[error("no certificate in the PEM: {0}")]
    NoCertificate(#[source] rustls_pki_types::pem::Error),
    /// The PEM given as the application's certificate holds no PKCS#8
    /// private key.
    #[error("no PKCS#8 private key (BEGIN PRIVATE KEY) in the PEM: {0}")]
    NoPrivateKey(#[source] rustls_pki_types::pem::Error),
    /// The certificate's private key cannot sign client assertions.
    #[error("the private key is not a usable RSA key: {0}")]
    UnusableKey(#[source] aws_lc_rs::error::KeyRejected),
}

fn asked_text(asked: Option<Duration>) -> String {
    match asked {
        Some(d) => format!(
            " (it asked for {} more, beyond the waiting budget of the request)",
            humantime::format_duration(d)
        ),
        None => String::new(),
    }
}

fn unavailable_text(status: u16) -> &'static str {
    match status {
        504 => "timed out at its gateway (504 Gateway Timeout)",
        _ => "was unavailable (503 Service Unavailable)",
    }
}

/// Why a resource-owner password check did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Entra ID answered and refused this user's credentials or sign-in.
    #[error("password check failed (AADSTS{code}): {reason}")]
    PasswordCheck { code: u32, reason: PasswordFailure },
    /// Entra ID could not be reached or did not answer in time: the caller
    /// must treat the directory as unavailable, not the password as wrong.
    #[error("Entra ID unreachable for the password check: {0}")]
    Transport(reqwest::Error),
    /// Entra ID answered, but the failure is on the application's or the
    /// service's side (bad client secret, throttling, outage): not the user's.
    #[error("Entra ID could not check the password (AADSTS{code}): {explanation}")]
    Service { code: u32, explanation: String },
}

/// The user-attributable outcomes of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordFailure {
    WrongPassword,
    NoSuchUser,
    Disabled,
    PasswordExpired,
    Locked,
    MfaRequired,
    ConditionalAccess,
    /// Another `invalid_grant`-style refusal; the code says which.
    Other,
}

impl PasswordFailure {
    /// Maps an AADSTS code of a password grant; `None` when the code is not
    /// about the user (so the caller reports a service problem instead).
    pub fn from_aadsts(code: u32) -> Option<PasswordFailure> {
        Some(match code {
            50126 => PasswordFailure::WrongPassword,
            50034 => PasswordFailure::NoSuchUser,
            50057 => PasswordFailure::Disabled,
            50055 => PasswordFailure::PasswordExpired,
            50053 => PasswordFailure::Locked,
            50076 | 50079 => PasswordFailure::MfaRequired,
            53003 => PasswordFailure::ConditionalAccess,
            _ => return None,
        })
    }
}

impl std::fmt::Display for PasswordFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordFailure::WrongPassword => "wrong user name or password",
            PasswordFailure::NoSuchUser => "no such user in the tenant",
            PasswordFailure::Disabled => "the account is disabled",
            PasswordFailure::PasswordExpired => "the password has expired",
            PasswordFailure::Locked => "the account is locked",
            PasswordFailure::MfaRequired => "multi-factor authentication is required",
            PasswordFailure::ConditionalAccess => "blocked by a Conditional Access policy",
            PasswordFailure::Other => "sign-in refused by Entra ID",
        })
    }
}

/// Plain words for an admin about an AADSTS code.
pub fn explain_aadsts(code: u32) -> &'static str {
    match code {
        7000215 => "the client secret is wrong: create a new one and run `entra provision` again",
        7000222 => "the client secret has expired: create a new one and run `entra provision` again",
        7000218 => "the request carried no client secret or certificate: run `entra provision` again",
        700027 => {
            "the certificate is not registered on the application, or the assertion was signed with another key: upload the certificate to the app registration or provision again with the right one"
        }
        700024 => "the client assertion is outside its validity window: check this machine's clock",
        700021 => "the client assertion names another application than the client id",
        700016 => {
            "the application was not found in the tenant: the client id or the tenant is wrong, or the application was deleted; run `entra provision` again"
        }
        90002 => "the tenant was not found: check the tenant id or domain name",
        70011 => "the requested scope is invalid: check graph_endpoint (the scope is `<graph_endpoint>/.default`)",
        50126 => "wrong user name or password",
        50034 => "the user does not exist in the tenant",
        50057 => "the account is disabled in Entra ID",
        50055 => "the password has expired and must be changed",
        50053 => "the account is locked (too many failed sign-ins, or blocked IP)",
        50076 | 50079 => "multi-factor authentication is required for this user, which a password check cannot satisfy",
        53003 => "sign-in was blocked by a Conditional Access policy",
        65001 => "admin consent is missing: run `entra consent`",
        65004 => "the administrator declined to consent: run `entra consent` again and accept",
        50011 => {
            "the application does not list the redirect URI http://localhost/consent: add it (platform Web) in the app registration, or run `entra provision` to let it be registered"
        }
        90094 | 90095 => {
            "granting consent needs an administrator (Global Administrator or Privileged Role Administrator)"
        }
        70016 => "the administrator has not finished signing in yet",
        70019 | 70020 => "the sign-in code expired or is unknown: run `entra provision` again for a new code",
        70000 => "the sign-in was declined or its code was already used: run `entra provision` again",
        _ => {
            "an Entra ID error without a known explanation: look the AADSTS code up in Microsoft's error-code reference"
        }
    }
}

/// Explanation for a Graph JSON error; `path` is the request path, used to
/// name the permission a 403 is about.
pub(crate) fn explain_graph(status: u16, code: &str, path: &str) -> String {
    match code {
        "Authorization_RequestDenied" | "Forbidden" | "accessDenied" => {
            match permission_for_path(path) {
                Some(perm) => format!(
                    "the application lacks the {perm} application permission (or admin consent for it): run `entra consent`"
                ),
                None => "the application lacks a permission for this request: run `entra consent`"
                    .to_string(),
            }
        }
        "InvalidAuthenticationToken" => {
            "Graph rejected the access token (expired or issued for another resource); check graph_endpoint and authority_host belong to the same cloud".to_string()
        }
        "Request_ResourceNotFound" | "ResourceNotFound" | "NotFound" => {
            "the object does not exist (any more)".to_string()
        }
        "Authorization_IdentityNotFound" => {
            "the application's service principal was not found in the tenant: run `entra provision` again".to_string()
        }
        _ if status == 403 => "access denied: check the granted application permissions with `entra status`".to_string(),
        _ if status >= 500 => "Microsoft Graph had an internal error; the next sync will retry".to_string(),
        _ => format!("Graph error {code} (HTTP {status})"),
    }
}

/// Which of the required application permissions covers a Graph path.
fn permission_for_path(path: &str) -> Option<&'static str> {
    let p = path.to_ascii_lowercase();
    let seg = p
        .trim_start_matches('/')
        .split_once('/')
        .map(|(_, rest)| rest)
        .unwrap_or("");
    if seg.starts_with("devicemanagement") {
        Some("DeviceManagementManagedDevices.Read.All")
    } else if seg.starts_with("users") {
        Some("User.Read.All")
    } else if seg.starts_with("groups") {
        Some("GroupMember.Read.All")
    } else if seg.starts_with("devices") {
        Some("Device.Read.All")
    } else if seg.starts_with("domains") {
        Some("Domain.Read.All")
    } else {
        None
    }
}

/// The fields of an OAuth2 error answer from the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub code: u32,
    pub error: String,
    pub description: String,
}

/// Parses `{"error":…,"error_description":"AADSTS…: …","error_codes":[…]}`.
/// The code comes from `error_codes`, else from the `AADSTSnnn:` prefix, else 0.
pub(crate) fn parse_oauth_error(body: &serde_json::Value) -> Option<OAuthError> {
    let error = body.get("error")?.as_str()?.to_string();
    let description = body
        .get("error_description")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    let code = body
        .get("error_codes")
        .and_then(|c| c.as_array())
        .and_then(|c| c.first())
        .and_then(|c| c.as_u64())
        .and_then(|c| u32::try_from(c).ok())
        .or_else(|| aadsts_prefix(&description))
        .unwrap_or(0);
    Some(OAuthError {
        code,
        error,
        description,
    })
}

fn aadsts_prefix(description: &str) -> Option<u32> {
    let rest = description.trim_start().strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Builds the `Aadsts` error for a token-endpoint refusal.
pub(crate) fn aadsts_error(e: OAuthError) -> GraphError {
    let explanation = if e.code == 0 {
        format!("Entra ID refused the request ({})", e.error)
    } else {
        explain_aadsts(e.code).to_string()
    };
    GraphError::Aadsts {
        code: e.code,
        error: e.error,
        explanation,
        description: e.description,
    }
}

/// Parses Graph's `{"error":{"code":…,"message":…}}`.
pub(crate) fn parse_graph_error(body: &serde_json::Value) -> Option<(String, String)> {
    let err = body.get("error")?;
    let code = err.get("code")?.as_str()?.to_string();
    let message = err.get("message").and_then(|m| m.as_str()).unwrap_or("").to_string();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_error_code_from_error_codes_or_prefix() {
        let with_codes = serde_json::json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided.",
            "error_codes": [7000215]
        });
        let e = parse_oauth_error(&with_codes).unwrap();
        assert_eq!(e.code, 7000215);
        assert_eq!(e.error, "invalid_client");

        let prefix_only = serde_json::json!({
            "error": "invalid_request",
            "error_description": "AADSTS90002: Tenant 'x' not found."
        });
        assert_eq!(parse_oauth_error(&prefix_only).unwrap().code, 90002);

        let neither = serde_json::json!({"error": "temporarily_unavailable"});
        assert_eq!(parse_oauth_error(&neither).unwrap().code, 0);
        assert!(parse_oauth_error(&serde_json::json!({"x": 1})).is_none());
    }

    #[test]
    fn aadsts_explanations_are_specific() {
        assert!(explain_aadsts(7000215).contains("client secret is wrong"));
        assert!(explain_aadsts(7000222).contains("expired"));
        assert!(explain_aadsts(700016).contains("not found in the tenant"));
        assert!(explain_aadsts(90002).contains("tenant was not found"));
        assert!(explain_aadsts(70011).contains("scope"));
        assert!(explain_aadsts(53003).contains("Conditional Access"));
        assert!(explain_aadsts(65001).contains("consent"));
        assert!(explain_aadsts(1).contains("AADSTS code"));
        let e = aadsts_error(OAuthError {
            code: 123456,
            error: "invalid_request".into(),
            description: String::new(),
        });
        assert!(e.to_string().contains("AADSTS123456"), "{e}");
    }

    #[test]
    fn forbidden_names_the_permission_for_the_path() {
        let cases = [
            ("/v1.0/users/delta", "User.Read.All"),
            ("/v1.0/groups/delta", "GroupMember.Read.All"),
            ("/v1.0/devices/delta", "Device.Read.All"),
            ("/v1.0/domains", "Domain.Read.All"),
            (
                "/v1.0/deviceManagement/managedDevices",
                "DeviceManagementManagedDevices.Read.All",
            ),
        ];
        for (path, perm) in cases {
            let text = explain_graph(403, "Authorization_RequestDenied", path);
            assert!(text.contains(perm), "{path}: {text}");
        }
    }

    #[test]
    fn password_failures_map_from_codes() {
        assert_eq!(
            PasswordFailure::from_aadsts(50126),
            Some(PasswordFailure::WrongPassword)
        );
        assert_eq!(PasswordFailure::from_aadsts(50079), Some(PasswordFailure::MfaRequired));
        assert_eq!(PasswordFailure::from_aadsts(7000215), None);
    }
}
