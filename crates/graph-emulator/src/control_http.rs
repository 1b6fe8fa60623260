//! `/_emulator/...`: the [`Control`] operations over HTTP, for tests that
//! drive the real binary (including `POST /_emulator/device-codes/{user_code}/approve`
//! or `/decline` for device-code sign-ins). No auth: the emulator only listens on loopback.

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::graph::graph_error;
use super::model::{Device, Group, ManagedDevice, User};
use super::state::{Control, DeltaExpiry, DeltaProps, Fault, Shared, lock};

fn ctl(s: Shared) -> Control {
    Control { shared: s }
}

fn bad_json(e: &JsonRejection) -> Response {
    graph_error(
        StatusCode::BAD_REQUEST,
        "Request_BadRequest",
        &format!("Invalid JSON body: {e}"),
        &HeaderMap::new(),
    )
}

fn done() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct DeleteOpts {
    #[serde(default)]
    soft: bool,
}

#[derive(Deserialize)]
struct FaultReq {
    path_prefix: String,
    fault: Fault,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
struct ConsentReq {
    client_id: String,
    roles: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExpireReq {
    style: Option<DeltaExpiry>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    page_size: Option<usize>,
    token_lifetime_s: Option<u64>,
    delta_props: Option<DeltaProps>,
    replay_pct: Option<u8>,
    empty_page_pct: Option<u8>,
    /// Device-code `interval` / `expires_in` (set together; a missing one keeps its value).
    device_interval_s: Option<u64>,
    device_expires_in_s: Option<u64>,
    replication_delay: Option<u32>,
}

#[derive(Deserialize)]
struct MemberReq {
    member_id: String,
}

macro_rules! object_routes {
    ($r:expr, $path:literal, $ty:ty, $exists:expr, $update:ident, $add:ident, $del:ident, $soft:ident, $restore:ident) => {
        $r.route(
                                    $path,
                                    post(
                                        |State(s): State<Shared>, body: Result<Json<$ty>, JsonRejection>| async move {
                                            let Json(o) = match body {
                                                Ok(b) => b,
                                                Err(e) => return bad_json(&e),
                                            };
                                            let c = ctl(s.clone());
                                            // Upsert: an existing object is updated so the change is
                                            // tracked per property, not as a re-add.
                                            let exists = $exists(&s, &o.id);
                                            if exists {
                                                c.$update(&o.id.clone(), move |x| *x = o);
                                            } else {
                                                c.$add(o);
                                            }
                                            done()
                                        },
                                    ),
                                )
                                .route(
                                    concat!($path, "/{id}"),
                                    delete(
                                        |State(s): State<Shared>,
                                         Path(id): Path<String>,
                                         q: Result<Query<DeleteOpts>, QueryRejection>| async move {
                                            let c = ctl(s);
                                            if q.is_ok_and(|Query(q)| q.soft) {
                                                c.$soft(&id);
                                            } else {
                                                c.$del(&id);
                                            }
                                            done()
                                        },
                                    ),
                                )
                                .route(
                                    concat!($path, "/{id}/restore"),
                                    post(
                                        |State(s): State<Shared>, Path(id): Path<String>| async move {
                                            ctl(s).$restore(&id);
                                            done()
                                        },
                                    ),
                                )
    };
}

pub(crate) fn routes() -> Router<Shared> {
    let r = Router::new();
    let r = object_routes!(
        r,
        "/_emulator/users",
        User,
        |s: &Shared, id: &str| lock(s).users.get(id).is_some(),
        update_user,
        add_user,
        delete_user,
        soft_delete_user,
        restore_user
    );
    let r = object_routes!(
        r,
        "/_emulator/devices",
        Device,
        |s: &Shared, id: &str| lock(s).devices.get(id).is_some(),
        update_device,
        add_device,
        delete_device,
        soft_delete_device,
        restore_device
    );
    let r = object_routes!(
        r,
        "/_emulator/managedDevices",
        ManagedDevice,
        |s: &Shared, id: &str| lock(s).managed.get(id).is_some(),
        update_managed_device,
        add_managed_device,
        delete_managed_device,
        soft_delete_managed_device,
        restore_managed_device
    );
    let r = object_routes!(
        r,
        "/_emulator/groups",
        Group,
        |s: &Shared, id: &str| lock(s).groups.get(id).is_some(),
        update_group,
        add_group,
        delete_group,
        soft_delete_group,
        restore_group
    );
    r.route(
        "/_emulator/groups/{id}/members",
        post(
            |State(s): State<Shared>, Path(id): Path<String>, body: Result<Json<MemberReq>, JsonRejection>| async move {
                match body {
                    Ok(Json(m)) => {
                        ctl(s).add_group_member(&id, &m.member_id);
                        done()
                    }
                    Err(e) => bad_json(&e),
                }
            },
        ),
    )
    .route(
        "/_emulator/groups/{id}/members/{member}",
        delete(
            |State(s): State<Shared>, Path((id, member)): Path<(String, String)>| async move {
                ctl(s).remove_group_member(&id, &member);
                done()
            },
        ),
    )
    .route(
        "/_emulator/faults",
        post(
            |State(s): State<Shared>, body: Result<Json<FaultReq>, JsonRejection>| async move {
                match body {
                    Ok(Json(f)) => {
                        ctl(s).fail_next(&f.path_prefix, f.fault, f.times);
                        done()
                    }
                    Err(e) => bad_json(&e),
                }
            },
        ),
    )
    .route(
        "/_emulator/expire-delta-tokens",
        post(|State(s): State<Shared>, body: Option<Json<ExpireReq>>| async move {
            let c = ctl(s);
            if let Some(style) = body.and_then(|Json(b)| b.style) {
                c.set_delta_expiry_style(style);
            }
            c.expire_delta_tokens();
            done()
        }),
    )
    .route(
        "/_emulator/forget-page-links",
        post(|State(s): State<Shared>| async move {
            ctl(s).forget_page_links();
            done()
        }),
    )
    .route(
        "/_emulator/consent",
        post(
            |State(s): State<Shared>, body: Result<Json<ConsentReq>, JsonRejection>| async move {
                match body {
                    Ok(Json(b)) => {
                        let roles: Vec<&str> = b.roles.iter().map(String::as_str).collect();
                        ctl(s).grant_consent(&b.client_id, &roles);
                        done()
                    }
                    Err(e) => bad_json(&e),
                }
            },
        ),
    )
    .route(
        "/_emulator/consent/{client_id}",
        delete(|State(s): State<Shared>, Path(id): Path<String>| async move {
            ctl(s).revoke_consent(&id);
            done()
        }),
    )
    .route(
        "/_emulator/settings",
        post(
            |State(s): State<Shared>, body: Result<Json<Settings>, JsonRejection>| async move {
                let Json(b) = match body {
                    Ok(b) => b,
                    Err(e) => return bad_json(&e),
                };
                let c = ctl(s.clone());
                if let Some(n) = b.page_size {
                    c.set_page_size(n);
                }
                if let Some(t) = b.token_lifetime_s {
                    c.set_token_lifetime(t);
                }
                if let Some(m) = b.delta_props {
                    c.set_delta_props(m);
                }
                if b.device_interval_s.is_some() || b.device_expires_in_s.is_some() {
                    let (i, e) = {
                        let g = lock(&s);
                        (g.device_interval_s, g.device_expires_s)
                    };
                    c.set_device_code_timing(b.device_interval_s.unwrap_or(i), b.device_expires_in_s.unwrap_or(e));
                }
                if let Some(n) = b.replication_delay {
                    c.set_replication_delay(n);
                }
                if b.replay_pct.is_some() || b.empty_page_pct.is_some() {
                    let (r, e) = {
                        let g = lock(&s);
                        (g.replay_pct as u8, g.empty_pct as u8)
                    };
                    c.set_delta_quirks(b.replay_pct.unwrap_or(r), b.empty_page_pct.unwrap_or(e));
                }
                done()
            },
        ),
    )
    .route(
        "/_emulator/device-codes/{user_code}/{action}",
        post(
            |State(s): State<Shared>, Path((code, action)): Path<(String, String)>| async move {
                let c = ctl(s);
                let settled = match action.as_str() {
                    "approve" => c.approve_device_code(&code),
                    "decline" => c.decline_device_code(&code),
                    _ => return StatusCode::NOT_FOUND.into_response(),
                };
                if settled {
                    done()
                } else {
                    graph_error(
                        StatusCode::NOT_FOUND,
                        "Request_ResourceNotFound",
                        "No pending device code has this user code.",
                        &HeaderMap::new(),
                    )
                }
            },
        ),
    )
    .route(
        "/_emulator/requests",
        get(|State(s): State<Shared>, _q: Query<HashMap<String, String>>| async move { Json(ctl(s).request_log()) }),
    )
}
