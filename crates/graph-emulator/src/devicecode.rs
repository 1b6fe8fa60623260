//! The device authorization grant (RFC 8628) as Entra ID runs it:
//! `POST /{tenant}/oauth2/v2.0/devicecode`, the device-code grant at the
//! token endpoint (pending, slow_down, declined, expired, then a delegated
//! token), and the `/devicelogin` page where the administrator types the user
//! code and signs in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::login::{Claims, aad_error, mint, now, tenant_known, tenant_not_found};
use super::model::{GRAPH_APP_ID, GRAPH_CLI_CLIENT_ID};
use super::state::{DeviceCode, DeviceCodeState, Inner, Shared, lock};

/// `grant_type` of the device-code token request.
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Scopes that ask for the user's identity, not for Graph permissions.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// How long a finished or expired sign-in is remembered (so late polls still
/// get `expired_token` rather than an unknown-code error).
const KEEP_AFTER_EXPIRY: Duration = Duration::from_secs(600);

/// The device flow also accepts the multi-tenant aliases: the tenant is
/// then the one the administrator signs in to.
fn tenant_ok(s: &Inner, tenant: &str) -> bool {
    tenant_known(s, tenant) || tenant.eq_ignore_ascii_case("organizations") || tenant.eq_ignore_ascii_case("common")
}

/// Public clients allowed to start a device-code sign-in: Microsoft Graph
/// Command Line Tools (first party) and the tenant's own applications.
fn client_known(s: &Inner, client_id: &str) -> bool {
    client_id == GRAPH_CLI_CLIENT_ID || s.apps.iter().any(|a| a.client_id == client_id)
}

/// Graph permission names asked for in `scope`. A scope is `{resource}/{name}`
/// (Graph's URL or app id as resource) or a bare name, which means Graph.
/// OpenID scopes are dropped; `Err` carries a scope for another resource.
fn graph_scopes<'a>(s: &Inner, raw: &'a str) -> Result<Vec<String>, ForeignScope<'a>> {
    let mut out = Vec::new();
    for scope in raw.split_whitespace() {
        if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(scope)) {
            continue;
        }
        let name = match scope.rsplit_once('/') {
            Some((resource, name)) => {
                let resource = resource.trim_end_matches('/');
                let graph = resource == s.base_url
                    || resource.eq_ignore_ascii_case("https://graph.microsoft.com")
                    || resource.eq_ignore_ascii_case(GRAPH_APP_ID);
                if !graph {
                    return Err(ForeignScope(scope));
                }
                name
            }
            None => scope,
        };
        if !name.is_empty() && !out.iter().any(|x: &String| x.eq_ignore_ascii_case(name)) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// A scope asked for a resource other than Microsoft Graph.
struct ForeignScope<'a>(&'a str);

fn random_user_code() -> String {
    use rand::RngExt;
    // Entra's codes are short, upper case, without look-alike characters.
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ23456789";
    let mut rng = rand::rng();
    (0..9)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn random_device_code() -> String {
    use rand::RngExt;
    let b: [u8; 48] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(b)
}

fn missing(p: &str) -> Response {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900144,
        &format!("The request body must contain the following parameter: '{p}'."),
    )
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub(crate) async fn devicecode(
    State(shared): State<Shared>,
    Path(tenant): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return missing("client_id");
    };
    let mut s = lock(&shared);
    if !tenant_ok(&s, &tenant) {
        return tenant_not_found(&tenant);
    }
    let Some(client_id) = form.get("client_id").filter(|c| !c.is_empty()) else {
        return missing("client_id");
    };
    if !client_known(&s, client_id) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                s.tenant_id
            ),
        );
    }
    let Some(scope) = form.get("scope").filter(|c| !c.trim().is_empty()) else {
        return missing("scope");
    };
    let scopes = match graph_scopes(&s, scope) {
        Ok(v) => v,
        Err(ForeignScope(bad)) => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70011,
                &format!(
                    "The provided value for the input parameter 'scope' is not valid. The scope {bad} is not valid."
                ),
            );
        }
    };
    let t = Instant::now();
    s.device_codes.retain(|d| t < d.expires_at + KEEP_AFTER_EXPIRY);
    let (interval_s, expires_s) = (s.device_interval_s, s.device_expires_s);
    let user_code = random_user_code();
    let device_code = random_device_code();
    let verification_uri = format!("{}/devicelogin", s.base_url);
    s.device_codes.push(DeviceCode {
        device_code: device_code.clone(),
        user_code: user_code.clone(),
        client_id: client_id.clone(),
        scopes,
        openid: scope.split_whitespace().any(|x| x.eq_ignore_ascii_case("openid")),
        interval: Duration::from_secs(interval_s),
        expires_at: t + Duration::from_secs(expires_s),
        last_poll: None,
        state: DeviceCodeState::Pending,
    });
    let body = json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": verification_uri,
        "expires_in": expires_s,
        "interval": interval_s,
        "message": format!(
            "To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate."
        ),
    });
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// The device-code grant at `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) fn poll(s: &mut Inner, tenant: &str, form: &HashMap<String, String>) -> Response {
    if !tenant_ok(s, tenant) {
        return tenant_not_found(tenant);
    }
    let Some(client_id) = form.get("client_id") else {
        return missing("client_id");
    };
    let Some(device_code) = form.get("device_code") else {
        return missing("device_code");
    };
    let bad_code = || {
        aad_error(
            StatusCode::BAD_REQUEST,
            "bad_verification_code",
            70019,
            "The provided value for the input parameter 'device_code' is not valid.",
        )
    };
    let Some(i) = s
        .device_codes
        .iter()
        .position(|d| &d.device_code == device_code && &d.client_id == client_id)
    else {
        return bad_code();
    };
    let t = Instant::now();
    let d = &mut s.device_codes[i];
    let last = d.last_poll.replace(t);
    if d.state == DeviceCodeState::Redeemed {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            70000,
            "The provided value for the input parameter 'device_code' is not valid: it was already redeemed.",
        );
    }
    if t >= d.expires_at {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "expired_token",
            70020,
            "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
        );
    }
    match d.state {
        DeviceCodeState::Declined => {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "authorization_declined",
                70000,
                "The user has declined the authorization request.",
            );
        }
        DeviceCodeState::Pending => {
            if last.is_some_and(|l| t.duration_since(l) < d.interval) {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "slow_down",
                    70016,
                    "The client is polling faster than the interval allows; wait longer between requests.",
                );
            }
            return aad_error(
                StatusCode::BAD_REQUEST,
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            );
        }
        DeviceCodeState::Approved | DeviceCodeState::Redeemed => {}
    }
    d.state = DeviceCodeState::Redeemed;
    let scopes = d.scopes.clone();
    let openid = d.openid;
    let secs = now();
    let claims = Claims {
        aud: s.base_url.clone(),
        iss: format!("https://sts.windows.net/{}/", s.tenant_id),
        iat: secs,
        nbf: secs,
        exp: secs + s.token_lifetime_s,
        tid: s.tenant_id.clone(),
        appid: Some(client_id.clone()),
        upn: Some(s.admin.user_principal_name.clone()),
        oid: Some(s.admin_oid.clone()),
        roles: None,
        scp: Some(scopes.join(" ")),
    };
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scopes.join(" "),
        "expires_in": s.token_lifetime_s,
        "ext_expires_in": s.token_lifetime_s,
        "access_token": mint(&s.key, &claims),
    });
    if openid {
        body["id_token"] = json!(mint(&s.key, &claims));
    }
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>"
    );
    (status, Html(html)).into_response()
}

/// `GET /devicelogin`: where the administrator types the code and signs in.
pub(crate) async fn devicelogin_page() -> Response {
    (
        StatusCode::OK,
        Html(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Enter code</title></head><body>\
             <h1>Enter code</h1><p>Enter the code displayed on your app or device, then sign in as the tenant's administrator.</p>\
             <form method=\"post\" action=\"/devicelogin\">\
             <p><label>Code <input name=\"user_code\" autocomplete=\"off\" required></label></p>\
             <p><label>User name <input name=\"username\" type=\"email\" required></label></p>\
             <p><label>Password <input name=\"password\" type=\"password\" required></label></p>\
             <p><button type=\"submit\">Sign in and allow</button> \
             <button type=\"submit\" name=\"decline\" value=\"1\">Sign in and cancel</button></p>\
             </form></body></html>",
        ),
    )
        .into_response()
}

/// `POST /devicelogin` (form: `user_code`, `username`, `password`, optional
/// `decline`): approves or declines a pending sign-in for the administrator.
pub(crate) async fn devicelogin_submit(
    State(shared): State<Shared>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return page(StatusCode::BAD_REQUEST, "Bad request", "The form could not be read.");
    };
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let mut s = lock(&shared);
    let Some(i) = s.pending_device_code(field("user_code")) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Code not recognised",
            "That code is unknown, already used or expired. Check the code and try again.",
        );
    };
    let admin_ok = field("username").eq_ignore_ascii_case(&s.admin.user_principal_name)
        && !s.admin.password.is_empty()
        && field("password") == s.admin.password;
    if !admin_ok {
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign-in failed",
            "Your account or password is incorrect.",
        );
    }
    if form.contains_key("decline") {
        s.device_codes[i].state = DeviceCodeState::Declined;
        return page(
            StatusCode::OK,
            "Sign-in cancelled",
            "You declined to sign in to the application on your device. You may close this window.",
        );
    }
    s.device_codes[i].state = DeviceCodeState::Approved;
    page(
        StatusCode::OK,
        "Signed in",
        "You have signed in to the application on your device. You may now close this window.",
    )
}
