//! The login (authority) side: `/{tenant}/oauth2/v2.0/token` for the client
//! credentials and password grants, `/{tenant}/adminconsent`, and the
//! JWT-shaped access tokens Graph routes check.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use super::model::rfc3339;
use super::state::{Inner, Shared, lock};

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random v4-shaped GUID for trace and request ids.
pub(crate) fn new_guid() -> String {
    use rand::RngExt;
    let b: [u8; 16] = rand::rng().random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Claims carried by emulator access tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub aud: String,
    pub iss: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub tid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// Absent (not empty) when nothing is consented, as in Entra.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Delegated scopes, space-separated; only in tokens issued to a signed-in
    /// user (device code), never together with `roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
}

fn sign(key: &[u8; 32], data: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub(crate) fn mint(key: &[u8; 32], claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256","kid":"emulator"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = URL_SAFE_NO_PAD.encode(sign(key, &signing_input));
    format!("{signing_input}.{sig}")
}

/// Why a bearer token was refused (all map to 401 InvalidAuthenticationToken).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    Missing,
    Malformed,
    BadSignature,
    Expired,
    WrongTenant,
}

pub(crate) fn verify(s: &Inner, token: &str) -> Result<Claims, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TokenError::Malformed)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&s.key).map_err(|_| TokenError::Malformed)?;
    mac.update(format!("{h}.{p}").as_bytes());
    mac.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if now() >= claims.exp {
        return Err(TokenError::Expired);
    }
    if claims.tid != s.tenant_id {
        return Err(TokenError::WrongTenant);
    }
    Ok(claims)
}

/// An Entra token-endpoint error: `{"error", "error_description": "AADSTSnnn: ...", "error_codes", ...}`.
/// Checks an RFC 7523 client assertion as Entra ID does: a registered
/// certificate (by `x5t`), an RS256 signature by its key, the token endpoint
/// as audience, the application as issuer and subject, and the time window.
fn check_assertion(
    app: &super::model::App,
    typ: Option<&String>,
    assertion: &str,
    token_url: &str,
    now: u64,
) -> Option<Response> {
    use base64::Engine as _;
    let bad = |code: u32, text: &str| Some(aad_error(StatusCode::UNAUTHORIZED, "invalid_client", code, text));
    if typ.map(String::as_str) != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
        return bad(
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented: client_assertion_type must be jwt-bearer.",
        );
    }
    let parts: Vec<&str> = assertion.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decode = |s: &str| {
        b64.decode(s)
            .ok()
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v).ok())
    };
    let (Some(header), Some(claims), Some(sig)) = (
        parts.first().and_then(|p| decode(p)),
        parts.get(1).and_then(|p| decode(p)),
        parts.get(2).and_then(|p| b64.decode(p).ok()),
    ) else {
        return bad(50027, "JWT token is invalid or malformed.");
    };
    if parts.len() != 3 || header["alg"] != "RS256" {
        return bad(50027, "JWT token is invalid or malformed.");
    }
    let x5t = header["x5t"].as_str().unwrap_or_default();
    let Some(cert) = app.certificates.iter().find(|c| c.x5t == x5t) else {
        return bad(
            700027,
            &format!(
                "Client assertion failed signature validation. The key was not found: no certificate with thumbprint {x5t} is registered on app '{}'.",
                app.client_id
            ),
        );
    };
    let signed = format!("{}.{}", parts[0], parts[1]);
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        &cert.public_key,
    );
    if key.verify(signed.as_bytes(), &sig).is_err() {
        return bad(700027, "Client assertion failed signature validation.");
    }
    if claims["aud"] != token_url {
        return bad(
            700212,
            &format!(
                "No matching federated identity record found for presented assertion audience '{}'.",
                claims["aud"]
            ),
        );
    }
    if claims["iss"] != app.client_id.as_str() || claims["sub"] != app.client_id.as_str() {
        return bad(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        );
    }
    let (nbf, exp) = (claims["nbf"].as_u64().unwrap_or(0), claims["exp"].as_u64().unwrap_or(0));
    // Five minutes of clock skew, as Entra ID allows.
    if exp + 300 < now || nbf > now + 300 {
        return bad(700024, "Client assertion is not within its valid time range.");
    }
    None
}

pub(crate) fn aad_error(status: StatusCode, error: &str, code: u32, text: &str) -> Response {
    let trace = new_guid();
    let corr = new_guid();
    let ts = rfc3339(now()).replace('T', " ");
    let description = format!("AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}");
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    )
        .into_response()
}

pub(crate) fn tenant_known(s: &Inner, tenant: &str) -> bool {
    tenant.eq_ignore_ascii_case(&s.tenant_id) || s.domains.iter().any(|d| d.id.eq_ignore_ascii_case(tenant))
}

pub(crate) fn tenant_not_found(tenant: &str) -> Response {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token(
    State(shared): State<Shared>,
    Path(tenant): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    let mut s = lock(&shared);
    if form.get("grant_type").map(String::as_str) == Some(super::devicecode::DEVICE_CODE_GRANT) {
        return super::devicecode::poll(&mut s, &tenant, &form);
    }
    if !tenant_known(&s, &tenant) {
        return tenant_not_found(&tenant);
    }
    let missing = |p: &str| {
        aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{p}'."),
        )
    };
    let Some(grant) = form.get("grant_type") else {
        return missing("grant_type");
    };
    let Some(client_id) = form.get("client_id") else {
        return missing("client_id");
    };
    let Some(app) = s.apps.iter().find(|a| &a.client_id == client_id) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
                s.tenant_id
            ),
        );
    };
    let t = now();
    match grant.as_str() {
        "client_credentials" => {
            // Entra issues app tokens only to apps installed in the tenant.
            if app.service_principal_id.is_none() {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client",
                    7000229,
                    &format!(
                        "The client application {client_id} is missing service principal in the tenant {}.",
                        s.tenant_id
                    ),
                );
            }
            if let Some(assertion) = form.get("client_assertion") {
                let token_url = format!("{}/{tenant}/oauth2/v2.0/token", s.base_url);
                if let Some(resp) = check_assertion(app, form.get("client_assertion_type"), assertion, &token_url, t) {
                    return resp;
                }
            } else {
                let Some(secret) = form.get("client_secret") else {
                    return aad_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        7000218,
                        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                    );
                };
                match app.secrets.iter().find(|x| &x.value == secret) {
                    None => {
                        return aad_error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_client",
                            7000215,
                            &format!(
                                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                            ),
                        );
                    }
                    Some(x) if x.expires_at.is_some_and(|e| e <= t) => {
                        return aad_error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_client",
                            7000222,
                            &format!(
                                "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app."
                            ),
                        );
                    }
                    Some(_) => {}
                }
            }
            let scope = form.get("scope").map(String::as_str).unwrap_or_default();
            let resource = scope.strip_suffix("/.default").map(|r| r.trim_end_matches('/'));
            let ok = resource.is_some_and(|r| {
                r == s.base_url || r == "https://graph.microsoft.com" || r == "00000003-0000-0000-c000-000000000000"
            });
            if !ok {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    70011,
                    &format!(
                        "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                    ),
                );
            }
            let claims = Claims {
                aud: s.base_url.clone(),
                iss: format!("https://sts.windows.net/{}/", s.tenant_id),
                iat: t,
                nbf: t,
                exp: t + s.token_lifetime_s,
                tid: s.tenant_id.clone(),
                appid: Some(client_id.clone()),
                upn: None,
                oid: None,
                roles: (!app.granted_roles.is_empty()).then(|| app.granted_roles.clone()),
                scp: None,
            };
            token_response(&s, &claims, false)
        }
        "password" => password_grant(&s, &form, client_id, t),
        other => aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

pub(crate) fn token_response(s: &Inner, claims: &Claims, id_token: bool) -> Response {
    let access = mint(&s.key, claims);
    let mut body = json!({
        "token_type": "Bearer",
        "expires_in": s.token_lifetime_s,
        "ext_expires_in": s.token_lifetime_s,
        "access_token": access,
    });
    if id_token {
        body["scope"] = json!("openid profile email");
        body["id_token"] = json!(mint(&s.key, claims));
    }
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// Resource-owner password grant. Check order follows Entra: unknown user,
/// federated domain (no cloud password to check), lockout, password, then
/// account state and MFA.
fn password_grant(s: &Inner, form: &HashMap<String, String>, client_id: &str, t: u64) -> Response {
    let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'username' and 'password'.",
        );
    };
    s.password_grants.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let grant = |code: u32, text: &str| aad_error(StatusCode::BAD_REQUEST, "invalid_grant", code, text);
    let Some(u) = s
        .users
        .live
        .iter()
        .find(|u| u.user_principal_name.eq_ignore_ascii_case(username))
    else {
        return grant(
            50034,
            &format!(
                "The user account {username} does not exist in the {} directory. To sign into this application, the account must be added to the directory.",
                s.tenant_id
            ),
        );
    };
    let domain = username.rsplit('@').next().unwrap_or_default();
    let federated = s
        .domains
        .iter()
        .any(|d| d.id.eq_ignore_ascii_case(domain) && d.authentication_type == "Federated");
    let bad_password = "Error validating credentials due to invalid username or password.";
    if federated {
        return grant(50126, bad_password);
    }
    if u.locked {
        return grant(
            50053,
            "Your account is locked because you've tried to sign in too many times with an incorrect user ID or password.",
        );
    }
    if u.password.as_deref() != Some(password.as_str()) {
        return grant(50126, bad_password);
    }
    if !u.account_enabled {
        return grant(50057, "The user account is disabled.");
    }
    if u.password_expired {
        return grant(50055, "The password is expired.");
    }
    if u.mfa_required {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "interaction_required",
            50076,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access this resource.",
        );
    }
    let claims = Claims {
        aud: s.base_url.clone(),
        iss: format!("https://sts.windows.net/{}/", s.tenant_id),
        iat: t,
        nbf: t,
        exp: t + s.token_lifetime_s,
        tid: s.tenant_id.clone(),
        appid: Some(client_id.to_owned()),
        upn: Some(u.user_principal_name.clone()),
        oid: Some(u.id.clone()),
        roles: None,
        scp: None,
    };
    token_response(s, &claims, true)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub(crate) fn enc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A redirect URI as Entra ID matches it against a registered one: exactly,
/// except that for `http://localhost` and `http://127.0.0.1` the port is
/// ignored (loopback listeners pick a free port).
pub(crate) fn redirect_matches(registered: &str, asked: &str) -> bool {
    fn split(u: &str) -> Option<(&str, &str, &str)> {
        let rest = u.strip_prefix("http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        Some((host, path, authority))
    }
    if registered == asked {
        return true;
    }
    match (split(registered), split(asked)) {
        (Some((rh, rp, _)), Some((ah, ap, _))) => {
            matches!(rh, "localhost" | "127.0.0.1") && rh == ah && rp.trim_end_matches('/') == ap.trim_end_matches('/')
        }
        _ => false,
    }
}

/// `GET /{tenant}/adminconsent` (and `/{tenant}/v2.0/adminconsent`). The real
/// endpoint shows a sign-in and consent UI first; the emulator consents at
/// once, as if the admin had clicked Accept.
pub(crate) async fn admin_consent(
    State(shared): State<Shared>,
    Path(tenant): Path<String>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return aad_error(StatusCode::BAD_REQUEST, "invalid_request", 900144, "Malformed query.");
    };
    let Some(redirect) = q.get("redirect_uri") else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'redirect_uri'.",
        );
    };
    let state = q.get("state").map(String::as_str).unwrap_or_default();
    let client_id = q.get("client_id").map(String::as_str).unwrap_or_default();
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let mut s = lock(&shared);
    let tid = s.tenant_id.clone();
    let location = if !tenant_known(&s, &tenant) {
        format!(
            "{redirect}{sep}error=invalid_request&error_description={}&state={}",
            enc(&format!("AADSTS90002: Tenant '{tenant}' not found.")),
            enc(state)
        )
    } else if let Some(app) = s.apps.iter_mut().find(|a| a.client_id == client_id) {
        if !app.redirect_uris.iter().any(|r| redirect_matches(r, redirect)) {
            // Entra shows an error page here; it never redirects to an unregistered URI.
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50011,
                &format!(
                    "The redirect URI '{redirect}' specified in the request does not match the redirect URIs configured for the application '{client_id}'."
                ),
            );
        }
        app.granted_roles = app.required_roles.clone();
        format!(
            "{redirect}{sep}admin_consent=True&tenant={}&state={}",
            enc(&tid),
            enc(state)
        )
    } else {
        format!(
            "{redirect}{sep}error=unauthorized_client&error_description={}&state={}",
            enc(&format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tid}'."
            )),
            enc(state)
        )
    };
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}
