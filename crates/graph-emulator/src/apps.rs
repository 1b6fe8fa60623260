//! Application registration through Graph, for delegated (signed-in
//! administrator) tokens: `/v1.0/applications` (create, `displayName` filter,
//! get, `addPassword`) and `/v1.0/servicePrincipals` (create, `appId`
//! filter), with the replication window right after an application is
//! created. Created apps join the tenant's [`App`]s, so client credentials,
//! admin consent and sync work with them like with the seeded ones.

// Early-return helpers carry the finished error `Response`.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::graph::{bad_request, bearer_claims, forbidden, graph_error, ok_json, reject_unsupported};
use super::login::{new_guid, now};
use super::model::{App, AppSecret, GRAPH_APP_ID, GRAPH_APP_ROLE_IDS, rfc3339};
use super::state::{Inner, Shared, lock};

/// The delegated permission the registration routes need.
const WRITE_SCOPE: &str = "Application.ReadWrite.All";

/// Default lifetime of a password credential without `endDateTime`: two years.
const DEFAULT_SECRET_LIFETIME_S: u64 = 2 * 365 * 86_400;

/// Only a signed-in user's token with `Application.ReadWrite.All` in `scp`
/// may register applications here; app-only tokens are refused too (the
/// emulator does not model `Application.ReadWrite.OwnedBy`).
fn authorize_write(s: &Inner, h: &HeaderMap) -> Result<(), Response> {
    let claims = bearer_claims(s, h)?;
    let scopes = claims.scp.unwrap_or_default();
    if scopes.split_whitespace().any(|x| x.eq_ignore_ascii_case(WRITE_SCOPE)) {
        Ok(())
    } else {
        Err(forbidden(h))
    }
}

fn not_found(id: &str, h: &HeaderMap) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        h,
    )
}

fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Parses `{property} eq '{value}'`, the one `$filter` shape the emulator
/// answers (`''` inside the quotes is a quote). `None` for anything else.
pub(crate) fn eq_filter(filter: &str, property: &str) -> Option<String> {
    let (prop, rest) = filter.trim().split_once(' ')?;
    if !prop.eq_ignore_ascii_case(property) {
        return None;
    }
    let quoted = rest.trim_start().strip_prefix("eq ")?.trim();
    let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
    // Every quote inside must be doubled.
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// `$filter` of a list call: `Ok(None)` without one, the value of the one
/// supported shape, or Graph's 400 for any other.
fn list_filter(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    property: &str,
    h: &HeaderMap,
) -> Result<Option<String>, Response> {
    let Ok(Query(q)) = q else {
        return Err(bad_request("Invalid query string.", h));
    };
    reject_unsupported(&q, &["$filter"], h)?;
    match q.get("$filter") {
        None => Ok(None),
        Some(f) => eq_filter(f, property).map(Some).ok_or_else(|| {
            graph_error(
                StatusCode::BAD_REQUEST,
                "Request_UnsupportedQuery",
                &format!("The emulator only supports $filter={property} eq '...'."),
                h,
            )
        }),
    }
}

/// Role names asked for as Graph application permissions (`type: Role`).
/// Unknown ids and other resources are accepted and not kept.
fn required_roles(rra: &Value) -> Vec<String> {
    let mut roles = Vec::new();
    for res in rra.as_array().into_iter().flatten() {
        if res["resourceAppId"].as_str() != Some(GRAPH_APP_ID) {
            continue;
        }
        for access in res["resourceAccess"].as_array().into_iter().flatten() {
            if access["type"].as_str() != Some("Role") {
                continue;
            }
            let id = access["id"].as_str().unwrap_or_default();
            if let Some((name, _)) = GRAPH_APP_ROLE_IDS.iter().find(|(_, rid)| rid.eq_ignore_ascii_case(id))
                && !roles.iter().any(|r| r == name)
            {
                roles.push((*name).to_owned());
            }
        }
    }
    roles
}

fn app_json(s: &Inner, a: &App) -> Value {
    let access: Vec<Value> = a
        .required_roles
        .iter()
        .filter_map(|r| GRAPH_APP_ROLE_IDS.iter().find(|(n, _)| n == r))
        .map(|(_, id)| json!({"id": id, "type": "Role"}))
        .collect();
    let rra = if access.is_empty() {
        json!([])
    } else {
        json!([{"resourceAppId": GRAPH_APP_ID, "resourceAccess": access}])
    };
    let passwords: Vec<Value> = a
        .secrets
        .iter()
        .map(|x| {
            json!({
                "customKeyIdentifier": null,
                "displayName": x.display_name,
                "endDateTime": x.expires_at.map(rfc3339),
                "hint": x.value.chars().take(3).collect::<String>(),
                "keyId": x.key_id,
                "secretText": null,
            })
        })
        .collect();
    json!({
        "@odata.context": format!("{}/v1.0/$metadata#applications/$entity", s.base_url),
        "id": a.object_id,
        "appId": a.client_id,
        "displayName": a.display_name,
        "signInAudience": a.sign_in_audience,
        "publisherDomain": s.domains.iter().find(|d| d.is_initial).map(|d| d.id.clone()),
        "requiredResourceAccess": rra,
        "passwordCredentials": passwords,
        "keyCredentials": [],
    })
}

fn sp_json(s: &Inner, a: &App, sp_id: &str) -> Value {
    json!({
        "id": sp_id,
        "appId": a.client_id,
        "displayName": a.display_name,
        "appDisplayName": a.display_name,
        "accountEnabled": true,
        "appOwnerOrganizationId": s.tenant_id,
        "servicePrincipalType": "Application",
        "signInAudience": a.sign_in_audience,
    })
}

/// Takes one call of an application's replication window; `true` when the
/// call must fail as if the object were not replicated yet.
fn still_replicating(s: &mut Inner, app_id: &str) -> bool {
    match s.replicating.get_mut(app_id) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// `POST /v1.0/applications`.
pub(crate) async fn create_application(
    State(shared): State<Shared>,
    h: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let mut s = lock(&shared);
    if let Err(r) = authorize_write(&s, &h) {
        return r;
    }
    let Ok(Json(body)) = body else {
        return bad_request("Invalid JSON body.", &h);
    };
    let Some(name) = body["displayName"].as_str().map(str::trim).filter(|n| !n.is_empty()) else {
        return bad_request("Property 'displayName' is required.", &h);
    };
    let app = App {
        client_id: new_guid(),
        object_id: new_guid(),
        display_name: name.to_owned(),
        sign_in_audience: body["signInAudience"].as_str().unwrap_or("AzureADMyOrg").to_owned(),
        service_principal_id: None,
        secrets: Vec::new(),
        required_roles: required_roles(&body["requiredResourceAccess"]),
        granted_roles: Vec::new(),
        certificates: Vec::new(),
        redirect_uris: body["web"]["redirectUris"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    };
    let delay = s.replication_delay;
    s.replicating.insert(app.client_id.clone(), delay);
    let out = app_json(&s, &app);
    s.apps.push(app);
    created(out)
}

/// `GET /v1.0/applications` (optionally `$filter=displayName eq '…'`).
pub(crate) async fn list_applications(
    State(shared): State<Shared>,
    h: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let s = lock(&shared);
    if let Err(r) = authorize_write(&s, &h) {
        return r;
    }
    let name = match list_filter(q, "displayName", &h) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let value: Vec<Value> = s
        .apps
        .iter()
        .filter(|a| name.as_ref().is_none_or(|n| a.display_name.eq_ignore_ascii_case(n)))
        .map(|a| app_json(&s, a))
        .collect();
    ok_json(json!({"@odata.context": format!("{}/v1.0/$metadata#applications", s.base_url), "value": value}))
}

/// `GET /v1.0/applications/{id}` (object id).
pub(crate) async fn get_application(State(shared): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let s = lock(&shared);
    if let Err(r) = authorize_write(&s, &h) {
        return r;
    }
    match s.apps.iter().find(|a| a.object_id == id) {
        Some(a) => ok_json(app_json(&s, a)),
        None => not_found(&id, &h),
    }
}

/// `POST /v1.0/applications/{id}/addPassword`.
pub(crate) async fn add_password(
    State(shared): State<Shared>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let mut s = lock(&shared);
    if let Err(r) = authorize_write(&s, &h) {
        return r;
    }
    let Some(i) = s.apps.iter().position(|a| a.object_id == id) else {
        return not_found(&id, &h);
    };
    let app_id = s.apps[i].client_id.clone();
    if still_replicating(&mut s, &app_id) {
        return not_found(&id, &h);
    }
    let cred = body
        .ok()
        .map(|Json(b)| b["passwordCredential"].clone())
        .unwrap_or(Value::Null);
    let t = now();
    let end = match cred["endDateTime"].as_str() {
        None => t + DEFAULT_SECRET_LIFETIME_S,
        Some(e) => match parse_rfc3339(e) {
            Some(v) => v,
            None => return bad_request(&format!("Invalid value '{e}' for property 'endDateTime'."), &h),
        },
    };
    let secret = AppSecret {
        value: new_secret(),
        key_id: new_guid(),
        display_name: cred["displayName"].as_str().unwrap_or_default().to_owned(),
        expires_at: Some(end),
    };
    let out = json!({
        "@odata.context": format!("{}/v1.0/$metadata#microsoft.graph.passwordCredential", s.base_url),
        "customKeyIdentifier": null,
        "displayName": secret.display_name,
        "endDateTime": rfc3339(end),
        "hint": secret.value.chars().take(3).collect::<String>(),
        "keyId": secret.key_id,
        "secretText": secret.value,
        "startDateTime": rfc3339(t),
    });
    s.apps[i].secrets.push(secret);
    ok_json(out)
}

/// `POST /v1.0/servicePrincipals` (`{"appId": …}`).
pub(crate) async fn create_service_principal(
    State(shared): State<Shared>,
    h: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let mut s = lock(&shared);
    if let Err(r) = authorize_write(&s, &h) {
        return r;
    }
    let Ok(Json(body)) = body else {
        return bad_request("Invalid JSON body.", &h);
    };
    let app_id = body["appId"].as_str().unwrap_or_default().to_owned();
    let known = s.apps.iter().position(|a| a.client_id == app_id);
    let Some(i) = known.filter(|_| !still_replicating(&mut s, &app_id)) else {
        // Graph's answer for an appId it cannot see (yet).
        let message =
            format!("The appId '{app_id}' of the service principal does not reference a valid application object.");
        let body = json!({"error": {
            "code": "Request_BadRequest",
            "message": message,
            "details": [{"code": "NoBackingApplicationObject", "message": message, "target": "appId"}],
            "innerError": {"date": rfc3339(now()), "request-id": new_guid()},
        }});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    if s.apps[i].service_principal_id.is_some() {
        return graph_error(
            StatusCode::CONFLICT,
            "Request_MultipleObjectsWithSameKeyValue",
            "Another object with the same value for property servicePrincipalNames already exists.",
            &h,
        );
    }
    let sp_id = new_guid();
    s.apps[i].service_principal_id = Some(sp_id.clone());
    let out = sp_json(&s, &s.apps[i], &sp_id);
    created(out)
}

/// `GET /v1.0/servicePrincipals` (optionally `$filter=appId eq '…'`).
pub(crate) async fn list_service_principals(
    State(shared): State<Shared>,
    h: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let s = lock(&shared);
    if let Err(r) = authorize_write(&s, &h) {
        return r;
    }
    let app_id = match list_filter(q, "appId", &h) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let value: Vec<Value> = s
        .apps
        .iter()
        .filter(|a| app_id.as_ref().is_none_or(|id| a.client_id.eq_ignore_ascii_case(id)))
        .filter_map(|a| a.service_principal_id.as_ref().map(|sp| sp_json(&s, a, sp)))
        .collect();
    ok_json(json!({"@odata.context": format!("{}/v1.0/$metadata#servicePrincipals", s.base_url), "value": value}))
}

/// A 40-character secret from the characters Entra's generated secrets use.
fn new_secret() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789~._-";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// RFC 3339 UTC (`2026-01-01T00:00:00Z`, fractional seconds allowed) → Unix seconds.
pub(crate) fn parse_rfc3339(v: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339(v.trim()).ok()?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_filter_shapes() {
        assert_eq!(eq_filter("displayName eq 'x y'", "displayName").as_deref(), Some("x y"));
        assert_eq!(
            eq_filter("displayName eq 'O''Brien'", "displayName").as_deref(),
            Some("O'Brien")
        );
        assert_eq!(eq_filter("displayName eq 'O'Brien'", "displayName"), None);
        assert_eq!(eq_filter("startswith(displayName,'x')", "displayName"), None);
        assert_eq!(eq_filter("appId eq 'x'", "displayName"), None);
        assert_eq!(eq_filter("displayName ne 'x'", "displayName"), None);
    }

    #[test]
    fn rfc3339_round_trip() {
        for secs in [0u64, 1_709_285_400, 1_900_000_000] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs));
        }
        assert_eq!(parse_rfc3339("2024-03-01T09:30:00.1234567Z"), Some(1_709_285_400));
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
