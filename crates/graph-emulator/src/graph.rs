//! Graph `/v1.0` routes: bearer-token and role checks, Graph-shaped errors,
//! list paging with `$top`/`$select`/`$skiptoken`, and delta rounds with
//! their traps (partial objects, `@removed`, replays, empty pages, expiry).

// Early-return helpers carry the finished error `Response`; boxing it would
// only add an allocation on the error path of a test server.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

use super::login::{TokenError, new_guid, now, verify};
use super::model::{GraphObject, Kind, mix, rfc3339};
use super::state::{DeltaExpiry, DeltaProps, Entry, Fault, Inner, Round, Shared, lock};

type Q = Result<Query<HashMap<String, String>>, QueryRejection>;

/// `{"error":{"code","message","innerError":{date, request-id, client-request-id}}}`.
pub(crate) fn graph_error(status: StatusCode, code: &str, message: &str, headers: &HeaderMap) -> Response {
    let crid = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(new_guid);
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": rfc3339(now()),
                "request-id": new_guid(),
                "client-request-id": crid,
            }
        }
    });
    (status, axum::Json(body)).into_response()
}

/// Answer for an injected transport-level fault.
pub(crate) fn fault_response(f: &Fault, headers: &HeaderMap) -> Response {
    let (status, code, msg, retry) = match f {
        Fault::Throttle { retry_after_s } => (
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests are being made. Please retry after the Retry-After interval.",
            Some(*retry_after_s),
        ),
        Fault::Unavailable { retry_after_s } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please retry later.",
            *retry_after_s,
        ),
        Fault::GatewayTimeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "UnknownError",
            "The gateway did not receive a response in time.",
            None,
        ),
        Fault::ExpireDeltaTokens { .. } => (
            StatusCode::BAD_REQUEST,
            "syncStateNotFound",
            "The sync state generation is not found.",
            None,
        ),
        // Served by cutting the connection (see `observe`); a server that
        // cannot cut one says so instead of answering as if nothing failed.
        Fault::Reset | Fault::Truncate => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "This server cannot cut connections: start it with Emulator::start.",
            None,
        ),
    };
    let mut r = graph_error(status, code, msg, headers);
    if let Some(secs) = retry {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            secs.to_string()
                .parse()
                .unwrap_or(header::HeaderValue::from_static("1")),
        );
    }
    r
}

pub(crate) fn bad_request(msg: &str, h: &HeaderMap) -> Response {
    graph_error(StatusCode::BAD_REQUEST, "Request_BadRequest", msg, h)
}

/// Bearer token and role check shared by the directory-read routes.
fn authorize(s: &Inner, h: &HeaderMap, accepted: &[&str]) -> Result<(), Response> {
    let claims = bearer_claims(s, h)?;
    // Roles come from the token, not live consent: revoking consent does
    // not invalidate tokens already issued (as in Entra).
    let roles = claims.roles.unwrap_or_default();
    if roles.iter().any(|r| accepted.contains(&r.as_str())) {
        Ok(())
    } else {
        Err(forbidden(h))
    }
}

/// Graph's answer when the token lacks the permission (or the signed-in
/// user lacks the directory role) for a request.
pub(crate) fn forbidden(h: &HeaderMap) -> Response {
    graph_error(
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
        h,
    )
}

/// The checked claims of the request's bearer token, or Graph's 401.
pub(crate) fn bearer_claims(s: &Inner, h: &HeaderMap) -> Result<super::login::Claims, Response> {
    let token = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .unwrap_or_default();
    let claims = match verify(s, token) {
        Ok(c) => c,
        Err(e) => {
            let msg = match e {
                TokenError::Missing => "Access token is empty.",
                TokenError::Malformed => "CompactToken parsing failed with error code: 80049217",
                TokenError::BadSignature => "Access token validation failure.",
                TokenError::Expired => "Lifetime validation failed, the token is expired.",
                TokenError::WrongTenant => "Access token validation failure. Invalid audience.",
            };
            let mut r = graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", msg, h);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(
                    "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
                ),
            );
            return Err(r);
        }
    };
    Ok(claims)
}

pub(crate) fn ok_json(body: Value) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
        )],
        body.to_string(),
    )
        .into_response()
}

fn parse_query(q: Q, h: &HeaderMap) -> Result<HashMap<String, String>, Response> {
    q.map(|Query(q)| q).map_err(|_| bad_request("Invalid query string.", h))
}

/// Validates `$select` against the kind's properties (case-insensitive, like
/// Graph) and returns canonical names.
fn parse_select(kind: Kind, raw: Option<&String>, h: &HeaderMap) -> Result<Option<Vec<String>>, Response> {
    let Some(raw) = raw else { return Ok(None) };
    let mut out = Vec::new();
    for p in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match kind.known_props().iter().find(|k| k.eq_ignore_ascii_case(p)) {
            Some(k) => {
                if !out.iter().any(|x: &String| x == k) {
                    out.push((*k).to_owned());
                }
            }
            None => {
                return Err(bad_request(
                    &format!(
                        "Could not find a property named '{p}' on type 'microsoft.graph.{}'.",
                        &kind.odata_type()[17..]
                    ),
                    h,
                ));
            }
        }
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

pub(crate) fn reject_unsupported(q: &HashMap<String, String>, allowed: &[&str], h: &HeaderMap) -> Result<(), Response> {
    match q.keys().find(|k| k.starts_with('$') && !allowed.contains(&k.as_str())) {
        Some(k) => Err(graph_error(
            StatusCode::BAD_REQUEST,
            "Request_UnsupportedQuery",
            &format!("The query option '{k}' is not supported by this emulator."),
            h,
        )),
        None => Ok(()),
    }
}

fn encode_token<T: Serialize>(t: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).unwrap_or_default())
}

fn decode_token<T: DeserializeOwned>(s: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(s.trim()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `$deltatoken`: where the next round starts. `i` is the emulator
/// instance that minted it (see `Inner::instance`), in every token below.
#[derive(Serialize, Deserialize)]
struct DeltaTok {
    i: u64,
    k: Kind,
    s: Option<Vec<String>>,
    q: u64,
    e: u64,
}

/// Delta `$skiptoken`: round, offset into its entries, page number.
#[derive(Serialize, Deserialize)]
struct SkipTok {
    i: u64,
    r: u64,
    o: usize,
    p: u64,
    e: u64,
}

/// List `$skiptoken`.
#[derive(Serialize, Deserialize)]
struct ListTok {
    i: u64,
    k: Kind,
    o: usize,
    t: usize,
    s: Option<Vec<String>>,
}

fn object_json(s: &Inner, kind: Kind, id: &str) -> Option<Map<String, Value>> {
    match kind {
        Kind::Users => s.users.get(id).map(GraphObject::to_json),
        Kind::Devices => s.devices.get(id).map(GraphObject::to_json),
        Kind::Groups => s.groups.get(id).map(GraphObject::to_json),
        Kind::ManagedDevices => s.managed.get(id).map(GraphObject::to_json),
    }
}

fn live_len(s: &Inner, kind: Kind) -> usize {
    match kind {
        Kind::Users => s.users.live.len(),
        Kind::Devices => s.devices.live.len(),
        Kind::Groups => s.groups.live.len(),
        Kind::ManagedDevices => s.managed.live.len(),
    }
}

fn live_json(s: &Inner, kind: Kind, from: usize, to: usize) -> Vec<Map<String, Value>> {
    fn f<T: GraphObject>(v: &[T], a: usize, b: usize) -> Vec<Map<String, Value>> {
        v.get(a..b.min(v.len()))
            .unwrap_or_default()
            .iter()
            .map(GraphObject::to_json)
            .collect()
    }
    match kind {
        Kind::Users => f(&s.users.live, from, to),
        Kind::Devices => f(&s.devices.live, from, to),
        Kind::Groups => f(&s.groups.live, from, to),
        Kind::ManagedDevices => f(&s.managed.live, from, to),
    }
}

fn live_ids(s: &Inner, kind: Kind) -> Vec<String> {
    fn f<T: GraphObject>(v: &[T]) -> Vec<String> {
        v.iter().map(|o| o.id().to_owned()).collect()
    }
    match kind {
        Kind::Users => f(&s.users.live),
        Kind::Devices => f(&s.devices.live),
        Kind::Groups => f(&s.groups.live),
        Kind::ManagedDevices => f(&s.managed.live),
    }
}

/// Keeps only `props` (all if `None`); `id` too when `with_id`. Absent
/// (null) properties stay absent rather than becoming `null`.
fn project(m: Map<String, Value>, props: Option<&[String]>, with_id: bool) -> Map<String, Value> {
    match props {
        None => m,
        Some(p) => m
            .into_iter()
            .filter(|(k, _)| (with_id && k == "id") || p.iter().any(|x| x == k))
            .collect(),
    }
}

/// Properties returned when no `$select` was given, as owned names.
fn effective_props(kind: Kind, select: &Option<Vec<String>>) -> Option<Vec<String>> {
    select.clone().or_else(|| {
        kind.default_props()
            .map(|d| d.iter().map(|p| (*p).to_owned()).collect())
    })
}

fn context(s: &Inner, kind: Kind) -> String {
    format!("{}/v1.0/$metadata#{}", s.base_url, kind.path())
}

/// `GET /v1.0/domains`.
pub(crate) async fn domains(State(shared): State<Shared>, h: HeaderMap) -> Response {
    let s = lock(&shared);
    if let Err(r) = authorize(
        &s,
        &h,
        &[
            "Domain.Read.All",
            "Domain.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ],
    ) {
        return r;
    }
    let value: Vec<Value> = s
        .domains
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "authenticationType": d.authentication_type,
                "isAdminManaged": true,
                "isDefault": d.is_default,
                "isInitial": d.is_initial,
                "isRoot": true,
                "isVerified": d.is_verified,
                "supportedServices": if d.is_default || d.is_initial { json!(["Email", "OfficeCommunicationsOnline"]) } else { json!([]) },
            })
        })
        .collect();
    ok_json(json!({"@odata.context": format!("{}/v1.0/$metadata#domains", s.base_url), "value": value}))
}

/// `GET /v1.0/{users,devices,groups,deviceManagement/managedDevices}`.
pub(crate) async fn list(kind: Kind, shared: Shared, h: HeaderMap, q: Q) -> Response {
    let s = lock(&shared);
    if let Err(r) = authorize(&s, &h, kind.accepted_roles()) {
        return r;
    }
    let q = match parse_query(q, &h) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Err(r) = reject_unsupported(&q, &["$select", "$top", "$skiptoken"], &h) {
        return r;
    }
    let (offset, top, select) = if let Some(tok) = q.get("$skiptoken") {
        match decode_token::<ListTok>(tok) {
            Some(t) if t.k == kind && t.i == s.instance => (t.o, t.t, t.s),
            _ => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "Directory_ExpiredPageToken",
                    "The specified page token value has expired and can no longer be included in your request.",
                    &h,
                );
            }
        }
    } else {
        let top = match q.get("$top").map(|t| t.parse::<usize>()) {
            None => 100,
            Some(Ok(n)) if (1..=999).contains(&n) => n,
            Some(_) => {
                return bad_request("Invalid page size specified: must be between 1 and 999 inclusive.", &h);
            }
        };
        let select = match parse_select(kind, q.get("$select"), &h) {
            Ok(s) => s,
            Err(r) => return r,
        };
        (0, top, select)
    };
    let props = effective_props(kind, &select);
    // A list with $select returns exactly the selected properties; id only if asked.
    let value: Vec<Value> = live_json(&s, kind, offset, offset + top)
        .into_iter()
        .map(|m| Value::Object(project(m, props.as_deref(), select.is_none())))
        .collect();
    let mut body = json!({"@odata.context": context(&s, kind), "value": value});
    if offset + top < live_len(&s, kind) {
        let tok = encode_token(&ListTok {
            i: s.instance,
            k: kind,
            o: offset + top,
            t: top,
            s: select,
        });
        body["@odata.nextLink"] = json!(format!("{}/v1.0/{}?$skiptoken={tok}", s.base_url, kind.path()));
    }
    ok_json(body)
}

fn expired(s: &Inner, kind: Kind, style: DeltaExpiry, select: Option<&[String]>, h: &HeaderMap) -> Response {
    match style {
        DeltaExpiry::Gone => {
            let mut loc = format!("{}/v1.0/{}/delta?", s.base_url, kind.path());
            if let Some(sel) = select {
                loc.push_str(&format!("$select={}&", sel.join(",")));
            }
            loc.push_str("$deltatoken=");
            let mut r = graph_error(
                StatusCode::GONE,
                "resyncRequired",
                "Resync required. Replace any local cached copy of the data with the results of a full synchronization, starting from the URL in the Location header.",
                h,
            );
            if let Ok(v) = header::HeaderValue::from_str(&loc) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        DeltaExpiry::SyncStateNotFound => graph_error(
            StatusCode::BAD_REQUEST,
            "syncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
            h,
        ),
        DeltaExpiry::ResyncRequired => graph_error(
            StatusCode::BAD_REQUEST,
            "resyncRequired",
            "Resync required. The delta token is no longer valid; start a full synchronization.",
            h,
        ),
    }
}

fn member_ref(id: &str, t: &str, removed: bool) -> Value {
    let mut v = json!({"@odata.type": t, "id": id});
    if removed {
        v["@removed"] = json!({"reason": "deleted"});
    }
    v
}

fn render_entry(s: &Inner, r: &Round, e: &Entry, minimal: bool) -> Option<Value> {
    let props = effective_props(r.kind, &r.select);
    let members_tracked = r.kind == Kind::Groups && props.as_ref().is_some_and(|p| p.iter().any(|x| x == "members"));
    match e {
        Entry::Removed(id, reason) => Some(json!({"id": id, "@removed": {"reason": reason}})),
        Entry::Full(id) => {
            let mut m = project(object_json(s, r.kind, id)?, props.as_deref(), true);
            if members_tracked && let Some(g) = s.groups.get(id) {
                let members: Vec<Value> = g
                    .members
                    .iter()
                    .map(|mid| member_ref(mid, s.member_type(mid), false))
                    .collect();
                m.insert("members@delta".into(), Value::Array(members));
            }
            Some(Value::Object(m))
        }
        Entry::Partial { id, fields, members } => {
            let full = object_json(s, r.kind, id)?;
            let mut m = if minimal {
                let mut m = Map::new();
                m.insert("id".into(), json!(id));
                for f in fields {
                    // A property changed to null is sent as null (documented).
                    m.insert(f.clone(), full.get(f).cloned().unwrap_or(Value::Null));
                }
                m
            } else {
                project(full, props.as_deref(), true)
            };
            if !members.is_empty() {
                let list: Vec<Value> = members
                    .iter()
                    .map(|(mid, t, added)| member_ref(mid, t, !added))
                    .collect();
                m.insert("members@delta".into(), Value::Array(list));
            }
            Some(Value::Object(m))
        }
    }
}

fn render_page(s: &Inner, round_id: u64, offset: usize, page: u64, minimal: bool) -> Response {
    let Some(r) = s.rounds.get(&round_id) else {
        return graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "Round vanished.",
            &HeaderMap::new(),
        );
    };
    let len = r.entries.len();
    let h = mix(round_id.wrapping_mul(1_000_003) ^ page);
    let mut value = Vec::new();
    let next_offset = if page > 0 && offset < len && h % 100 < s.empty_pct {
        // Trap: an empty page that still has a nextLink.
        offset
    } else {
        let end = (offset + s.page_size).min(len);
        value.extend(
            r.entries[offset..end]
                .iter()
                .filter_map(|e| render_entry(s, r, e, minimal)),
        );
        // Trap: replay an object already sent on an earlier page of this round.
        // The second chunk always replays (when replays are on) so every multi-page
        // round exercises the client's dedup; later pages by chance.
        if s.replay_pct > 0 && offset > 0 && (offset <= s.page_size || (h >> 8) % 100 < s.replay_pct) {
            let j = (h >> 16) as usize % offset;
            value.extend(render_entry(s, r, &r.entries[j], minimal));
        }
        end
    };
    let mut body = json!({"@odata.context": context(s, r.kind), "value": value});
    if next_offset >= len {
        let tok = encode_token(&DeltaTok {
            i: s.instance,
            k: r.kind,
            s: r.select.clone(),
            q: r.end_seq,
            e: r.epoch,
        });
        body["@odata.deltaLink"] = json!(format!("{}/v1.0/{}/delta?$deltatoken={tok}", s.base_url, r.kind.path()));
    } else {
        let tok = encode_token(&SkipTok {
            i: s.instance,
            r: round_id,
            o: next_offset,
            p: page + 1,
            e: r.epoch,
        });
        body["@odata.nextLink"] = json!(format!("{}/v1.0/{}/delta?$skiptoken={tok}", s.base_url, r.kind.path()));
    }
    ok_json(body)
}

/// `GET /v1.0/{users,devices,groups}/delta`.
pub(crate) async fn delta(kind: Kind, shared: Shared, h: HeaderMap, q: Q) -> Response {
    let mut s = lock(&shared);
    if let Err(r) = authorize(&s, &h, kind.accepted_roles()) {
        return r;
    }
    let q = match parse_query(q, &h) {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Err(r) = reject_unsupported(&q, &["$select", "$deltatoken", "$skiptoken"], &h) {
        return r;
    }
    let minimal = s.delta_props == DeltaProps::ChangedOnly
        || h.get_all("prefer").iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("return=minimal"))
        });
    let skip = q.get("$skiptoken");
    let dtok = q.get("$deltatoken").filter(|t| !t.is_empty());
    if skip.is_some() || dtok.is_some() {
        let path = format!("/v1.0/{}/delta", kind.path());
        if let Some(Fault::ExpireDeltaTokens { style }) = s.take_fault(&path, true) {
            let sel = dtok.and_then(|t| decode_token::<DeltaTok>(t)).and_then(|t| t.s);
            return expired(&s, kind, style, sel.as_deref(), &h);
        }
    }
    if let Some(skip) = skip {
        let Some(t) = decode_token::<SkipTok>(skip) else {
            return bad_request("Invalid skip token.", &h);
        };
        // Another instance's round ids mean nothing here: unknown, like a
        // round this instance forgot.
        let round_ok = s
            .rounds
            .get(&t.r)
            .filter(|r| r.kind == kind && t.i == s.instance)
            .map(|r| r.select.clone());
        match round_ok {
            Some(_) if t.e >= s.epoch => render_page(&s, t.r, t.o, t.p, minimal),
            Some(sel_) => {
                let style = s.expiry_style;
                expired(&s, kind, style, sel_.as_deref(), &h)
            }
            None => {
                let style = s.expiry_style;
                expired(&s, kind, style, None, &h)
            }
        }
        .into_response()
    } else if let Some(dtok) = dtok {
        let Some(t) = decode_token::<DeltaTok>(dtok) else {
            return bad_request("Invalid delta token.", &h);
        };
        if t.k != kind {
            return bad_request("The delta token belongs to another collection.", &h);
        }
        if t.e < s.epoch || t.i != s.instance {
            let style = s.expiry_style;
            return expired(&s, kind, style, t.s.as_deref(), &h);
        }
        let tracked =
            effective_props(kind, &t.s).unwrap_or_else(|| kind.known_props().iter().map(|p| (*p).to_owned()).collect());
        let members = kind == Kind::Groups && tracked.iter().any(|p| p == "members");
        let entries = s.changes(kind, t.q, &tracked, members);
        let round = Round {
            kind,
            select: t.s,
            entries,
            end_seq: s.seq,
            epoch: s.epoch,
        };
        let id = s.add_round(round);
        render_page(&s, id, 0, 0, minimal)
    } else {
        let select = match parse_select(kind, q.get("$select"), &h) {
            Ok(s) => s,
            Err(r) => return r,
        };
        let entries = live_ids(&s, kind).into_iter().map(Entry::Full).collect();
        let round = Round {
            kind,
            select,
            entries,
            end_seq: s.seq,
            epoch: s.epoch,
        };
        let id = s.add_round(round);
        render_page(&s, id, 0, 0, minimal)
    }
}
