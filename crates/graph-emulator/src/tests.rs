//! Behaviour tests: a started emulator driven over real HTTP with reqwest.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::*;

async fn start(t: Tenant) -> (Emulator, reqwest::Client) {
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), t).await.unwrap();
    (emu, reqwest::Client::new())
}

async fn raw_token(emu: &Emulator, c: &reqwest::Client, tenant: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = c
        .post(format!("{}/{tenant}/oauth2/v2.0/token", emu.base_url()))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn app_token(emu: &Emulator, c: &reqwest::Client, id: &str, secret: &str) -> String {
    let scope = format!("{}/.default", emu.base_url());
    let (st, body) = raw_token(
        emu,
        c,
        &emu.tenant_id(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(st, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

async fn get(c: &reqwest::Client, url: &str, tok: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = c.get(url).bearer_auth(tok).send().await.unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    (st, h, body)
}

/// Follows nextLinks to the deltaLink; returns every object seen and the deltaLink.
async fn round(c: &reqwest::Client, url: &str, tok: &str) -> (Vec<Value>, String) {
    let mut url = url.to_owned();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let (st, _, body) = get(c, &url, tok).await;
        assert_eq!(st, 200, "{body}");
        out.extend(body["value"].as_array().unwrap().iter().cloned());
        if let Some(d) = body["@odata.deltaLink"].as_str() {
            return (out, d.to_owned());
        }
        url = body["@odata.nextLink"].as_str().unwrap().to_owned();
    }
    panic!("no deltaLink");
}

async fn demo() -> (Emulator, reqwest::Client, String) {
    let (emu, c) = start(Tenant::demo()).await;
    let tok = app_token(&emu, &c, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    (emu, c, tok)
}

#[tokio::test]
async fn roles_claim_absent_before_consent_present_after() {
    let (emu, c) = start(Tenant::demo()).await;
    emu.control().revoke_consent(DEMO_CLIENT_ID);
    let t = app_token(&emu, &c, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    let p = payload(&t);
    assert!(p.get("roles").is_none(), "{p}");
    assert_eq!(p["tid"], emu.tenant_id());
    assert_eq!(p["appid"], DEMO_CLIENT_ID);
    assert!(p["exp"].as_u64().unwrap() > p["iat"].as_u64().unwrap());
    let (st, _, body) = get(&c, &format!("{}/v1.0/users", emu.base_url()), &t).await;
    assert_eq!(st, 403);
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    assert!(body["error"]["innerError"]["request-id"].is_string());

    // A redirect URI the app does not list: an error page, no redirect, no consent.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!(
            "{}/{}/adminconsent?client_id={DEMO_CLIENT_ID}&state=xyz&redirect_uri=http://localhost:4711/cb",
            emu.base_url(),
            emu.tenant_id()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("AADSTS50011"));
    let t = app_token(&emu, &c, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    assert!(payload(&t).get("roles").is_none());

    // Admin consent grants every requested role and redirects back (any port on localhost).
    let r = no_redirects
        .get(format!(
            "{}/{}/adminconsent?client_id={DEMO_CLIENT_ID}&state=xyz&redirect_uri=http://localhost:4711/consent",
            emu.base_url(),
            emu.tenant_id()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with("http://localhost:4711/consent?admin_consent=True&tenant="),
        "{loc}"
    );
    assert!(loc.ends_with("&state=xyz"));
    let t = app_token(&emu, &c, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    let roles = payload(&t)["roles"].clone();
    assert!(
        roles.as_array().unwrap().iter().any(|r| r == "User.Read.All"),
        "{roles}"
    );
    let (st, _, _) = get(&c, &format!("{}/v1.0/users", emu.base_url()), &t).await;
    assert_eq!(st, 200);

    // Only some roles: users allowed, devices denied.
    emu.control().grant_consent(DEMO_CLIENT_ID, &["User.Read.All"]);
    let t = app_token(&emu, &c, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    let (st, _, _) = get(&c, &format!("{}/v1.0/devices", emu.base_url()), &t).await;
    assert_eq!(st, 403);
    emu.shutdown().await;
}

#[tokio::test]
async fn admin_consent_unknown_client_redirects_with_error() {
    let (emu, _) = start(Tenant::demo()).await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{}/{}/adminconsent?client_id=nope&state=s&redirect_uri=http://localhost/cb",
            emu.base_url(),
            emu.tenant_id()
        ))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.contains("error=unauthorized_client&error_description=AADSTS700016"),
        "{loc}"
    );
}

#[tokio::test]
async fn client_credentials_error_codes() {
    let (emu, c) = start(Tenant::demo()).await;
    emu.control().add_app(App {
        client_id: "old-app".into(),
        secrets: vec![AppSecret {
            value: "old".into(),
            expires_at: Some(1),
            ..AppSecret::default()
        }],
        ..App::default()
    });
    let scope = format!("{}/.default", emu.base_url());
    let tid = emu.tenant_id();
    let cases: &[(&str, &str, &str, &str, u16, &str, u64)] = &[
        (&tid, DEMO_CLIENT_ID, "wrong", &scope, 401, "invalid_client", 7000215),
        (&tid, "old-app", "old", &scope, 401, "invalid_client", 7000222),
        (&tid, "no-such-app", "x", &scope, 400, "unauthorized_client", 700016),
        (
            "00000000-dead-beef-0000-000000000000",
            DEMO_CLIENT_ID,
            DEMO_CLIENT_SECRET,
            &scope,
            400,
            "invalid_request",
            90002,
        ),
        (
            &tid,
            DEMO_CLIENT_ID,
            DEMO_CLIENT_SECRET,
            "User.Read",
            400,
            "invalid_scope",
            70011,
        ),
    ];
    for (tenant, id, secret, scope, status, error, code) in cases {
        let (st, body) = raw_token(
            &emu,
            &c,
            tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("scope", scope),
            ],
        )
        .await;
        assert_eq!(st, *status, "{body}");
        assert_eq!(body["error"], *error, "{body}");
        assert_eq!(body["error_codes"][0], *code, "{body}");
        let d = body["error_description"].as_str().unwrap();
        assert!(d.starts_with(&format!("AADSTS{code}:")), "{d}");
        assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());
    }
    // The tenant may be named by a verified domain too.
    let (st, _) = raw_token(
        &emu,
        &c,
        "contoso.example",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ],
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn password_grant_error_codes() {
    let (emu, c) = start(Tenant::demo()).await;
    let tid = emu.tenant_id();
    let cases = [
        ("alice@contoso.example", "wrong", "invalid_grant", 50126),
        ("bob@contoso.example", "bob-pw", "invalid_grant", 50057),
        ("carol@contoso.example", "carol-pw", "interaction_required", 50076),
        ("dave@fabrikam.example", "dave-pw", "invalid_grant", 50126),
        ("nobody@contoso.example", "x", "invalid_grant", 50034),
    ];
    for (user, pw, error, code) in cases {
        let (st, body) = raw_token(
            &emu,
            &c,
            &tid,
            &[
                ("grant_type", "password"),
                ("client_id", DEMO_CLIENT_ID),
                ("username", user),
                ("password", pw),
                ("scope", "openid"),
            ],
        )
        .await;
        assert_eq!(st, 400, "{user}: {body}");
        assert_eq!(body["error"], error, "{user}");
        assert_eq!(body["error_codes"][0], code, "{user}");
    }
    let alice = emu.control().user(&Tenant::demo().users[0].id).unwrap();
    emu.control().update_user(&alice.id, |u| u.locked = true);
    let (_, body) = raw_token(
        &emu,
        &c,
        &tid,
        &[
            ("grant_type", "password"),
            ("client_id", DEMO_CLIENT_ID),
            ("username", "alice@contoso.example"),
            ("password", "alice-pw"),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(body["error_codes"][0], 50053);
    emu.control().update_user(&alice.id, |u| {
        u.locked = false;
        u.password_expired = true;
    });
    let (_, body) = raw_token(
        &emu,
        &c,
        &tid,
        &[
            ("grant_type", "password"),
            ("client_id", DEMO_CLIENT_ID),
            ("username", "alice@contoso.example"),
            ("password", "alice-pw"),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(body["error_codes"][0], 50055);
    emu.control().update_user(&alice.id, |u| u.password_expired = false);
    let (st, body) = raw_token(
        &emu,
        &c,
        &tid,
        &[
            ("grant_type", "password"),
            ("client_id", DEMO_CLIENT_ID),
            ("username", "ALICE@contoso.example"),
            ("password", "alice-pw"),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        payload(body["access_token"].as_str().unwrap())["upn"],
        "alice@contoso.example"
    );
}

#[tokio::test]
async fn graph_auth_failures() {
    let (emu, c, tok) = demo().await;
    let url = format!("{}/v1.0/users", emu.base_url());
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    let (st, _, _) = get(&c, &url, "not.a.token").await;
    assert_eq!(st, 401);
    // Tampered payload: signature no longer matches.
    let mut parts: Vec<&str> = tok.split('.').collect();
    let forged = URL_SAFE_NO_PAD
        .encode(br#"{"aud":"x","iss":"x","iat":0,"nbf":0,"exp":99999999999,"tid":"x","roles":["User.Read.All"]}"#);
    parts[1] = &forged;
    let (st, _, _) = get(&c, &url, &parts.join(".")).await;
    assert_eq!(st, 401);
    emu.control().set_token_lifetime(0);
    let expired = app_token(&emu, &c, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET).await;
    let (st, _, body) = get(&c, &url, &expired).await;
    assert_eq!(st, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"));
    // A malformed query is a Graph-shaped 400, not a panic.
    let (st, _, body) = get(&c, &format!("{url}?$top=abc"), &tok).await;
    assert_eq!(st, 400);
    assert!(body["error"]["code"].is_string());
    let (st, _, body) = get(&c, &format!("{url}?$select=nonsense"), &tok).await;
    assert_eq!(st, 400, "{body}");
    let (st, _, _) = get(&c, &format!("{url}/delta?$skiptoken=%%%"), &tok).await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn users_default_properties_lack_account_enabled() {
    let (emu, c, tok) = demo().await;
    let (st, _, body) = get(&c, &format!("{}/v1.0/users", emu.base_url()), &tok).await;
    assert_eq!(st, 200);
    let u = &body["value"][0];
    assert!(u.get("accountEnabled").is_none(), "{u}");
    assert!(u["userPrincipalName"].is_string() && u["id"].is_string());
    let (_, _, body) = get(
        &c,
        &format!("{}/v1.0/users?$select=accountEnabled,userPrincipalName", emu.base_url()),
        &tok,
    )
    .await;
    for u in body["value"].as_array().unwrap() {
        let keys: HashSet<&str> = u.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, HashSet::from(["accountEnabled", "userPrincipalName"]), "{u}");
    }
    // Null properties are omitted, not sent as null.
    let (_, _, body) = get(
        &c,
        &format!("{}/v1.0/users?$select=id,onPremisesSamAccountName", emu.base_url()),
        &tok,
    )
    .await;
    assert!(body["value"][0].get("onPremisesSamAccountName").is_none());
    let (_, _, body) = get(&c, &format!("{}/v1.0/domains", emu.base_url()), &tok).await;
    let fed: Vec<&Value> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["authenticationType"] == "Federated")
        .collect();
    assert_eq!(fed.len(), 1);
}

#[tokio::test]
async fn list_paging_with_top_and_skiptoken() {
    let t = Tenant::synthetic(250, 10, 3);
    let (emu, c) = start(t).await;
    let tok = app_token(&emu, &c, SYNTHETIC_CLIENT_ID, SYNTHETIC_CLIENT_SECRET).await;
    let mut url = format!("{}/v1.0/users?$top=999&$select=id", emu.base_url());
    let (_, _, body) = get(&c, &url, &tok).await;
    assert_eq!(body["value"].as_array().unwrap().len(), 250);
    assert!(body.get("@odata.nextLink").is_none());
    url = format!("{}/v1.0/users?$top=100&$select=id", emu.base_url());
    let mut ids = HashSet::new();
    let mut pages = 0;
    loop {
        let (_, _, body) = get(&c, &url, &tok).await;
        pages += 1;
        ids.extend(
            body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_owned()),
        );
        match body["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_owned(),
            None => break,
        }
    }
    assert_eq!((ids.len(), pages), (250, 3));
    let (st, _, _) = get(&c, &format!("{}/v1.0/users?$top=1000", emu.base_url()), &tok).await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn delta_rounds_full_then_changes() {
    let t = Tenant::synthetic(1000, 50, 11);
    let ids: Vec<String> = t.users.iter().map(|u| u.id.clone()).collect();
    let (emu, c) = start(t).await;
    let ctl = emu.control();
    let tok = app_token(&emu, &c, SYNTHETIC_CLIENT_ID, SYNTHETIC_CLIENT_SECRET).await;
    let sel = "$select=id,userPrincipalName,accountEnabled,displayName,mail";
    let (all, link) = round(&c, &format!("{}/v1.0/users/delta?{sel}", emu.base_url()), &tok).await;
    let distinct: HashSet<&str> = all.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 1000);
    assert!(all.len() > distinct.len(), "replays expected: {} objects", all.len());
    assert!(all.iter().all(|u| u.get("accountEnabled").is_some()));
    assert!(
        all.iter().all(|u| u.get("userType").is_none()),
        "only selected properties"
    );

    // No change: an empty round that still ends in a deltaLink.
    let (none, link) = round(&c, &link, &tok).await;
    assert!(none.is_empty(), "{none:?}");

    // A change to an untracked property is invisible.
    ctl.update_user(&ids[1], |u| u.user_type = "Guest".into());
    ctl.update_user(&ids[0], |u| u.account_enabled = !u.account_enabled);
    let (changed, link) = round(&c, &link, &tok).await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    let obj = changed[0].as_object().unwrap();
    let keys: HashSet<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, HashSet::from(["id", "accountEnabled"]));
    assert_eq!(obj["id"], ids[0].as_str());

    ctl.soft_delete_user(&ids[2]);
    let (soft, link) = round(&c, &link, &tok).await;
    assert_eq!(soft.len(), 1);
    assert_eq!(soft[0]["@removed"]["reason"], "changed");

    ctl.restore_user(&ids[2]);
    let (restored, link) = round(&c, &link, &tok).await;
    assert_eq!(restored.len(), 1);
    assert!(restored[0].get("@removed").is_none());
    assert!(restored[0]["userPrincipalName"].is_string() && restored[0]["accountEnabled"].is_boolean());

    ctl.delete_user(&ids[3]);
    let (hard, link) = round(&c, &link, &tok).await;
    assert_eq!(hard[0]["@removed"]["reason"], "deleted");
    assert_eq!(hard[0]["id"], ids[3].as_str());

    // Documented default mode: a changed object carries every tracked property.
    ctl.set_delta_props(DeltaProps::Documented);
    ctl.update_user(&ids[4], |u| u.display_name = "Renamed".into());
    let (full, _) = round(&c, &link, &tok).await;
    assert_eq!(full[0]["displayName"], "Renamed");
    assert!(full[0]["userPrincipalName"].is_string());
}

#[tokio::test]
async fn delta_pages_include_empty_pages_with_next_link() {
    let (emu, c) = start(Tenant::synthetic(3000, 0, 5)).await;
    let tok = app_token(&emu, &c, SYNTHETIC_CLIENT_ID, SYNTHETIC_CLIENT_SECRET).await;
    emu.control().set_delta_quirks(0, 50);
    emu.control().set_page_size(100);
    let mut url = format!("{}/v1.0/users/delta?$select=id", emu.base_url());
    let mut empty_with_next = 0;
    loop {
        let (_, _, body) = get(&c, &url, &tok).await;
        let n = body["value"].as_array().unwrap().len();
        assert!(n <= 100);
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                if n == 0 {
                    empty_with_next += 1;
                }
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert!(empty_with_next > 0);
}

#[tokio::test]
async fn expired_delta_tokens_410_and_variants() {
    let (emu, c, tok) = demo().await;
    let ctl = emu.control();
    let (_, link) = round(
        &c,
        &format!("{}/v1.0/users/delta?$select=id,accountEnabled", emu.base_url()),
        &tok,
    )
    .await;
    ctl.expire_delta_tokens();
    let (st, h, body) = get(&c, &link, &tok).await;
    assert_eq!(st, 410, "{body}");
    let loc = h["location"].to_str().unwrap().to_owned();
    assert!(
        loc.contains("/v1.0/users/delta?") && loc.ends_with("$deltatoken="),
        "{loc}"
    );
    // The Location starts a fresh full round with the same $select.
    let (all, link) = round(&c, &loc, &tok).await;
    assert_eq!(all.len(), 4);
    assert!(all[0].get("accountEnabled").is_some());
    // Fault variant with the JSON error code.
    ctl.fail_next(
        "/v1.0/users/delta",
        Fault::ExpireDeltaTokens {
            style: DeltaExpiry::SyncStateNotFound,
        },
        1,
    );
    let (st, _, body) = get(&c, &link, &tok).await;
    assert_eq!(st, 400);
    assert_eq!(body["error"]["code"], "syncStateNotFound");
    let (st, _, _) = get(&c, &link, &tok).await;
    assert_eq!(st, 200, "fault used up");
    ctl.set_delta_expiry_style(DeltaExpiry::ResyncRequired);
    ctl.expire_delta_tokens();
    let (_, _, body) = get(&c, &link, &tok).await;
    assert_eq!(body["error"]["code"], "resyncRequired");
}

#[tokio::test]
async fn throttle_fault_then_success_and_request_log() {
    let (emu, c, tok) = demo().await;
    emu.control()
        .fail_next("/v1.0/users", Fault::Throttle { retry_after_s: 7 }, 1);
    let url = format!("{}/v1.0/users", emu.base_url());
    let send = || {
        c.get(&url)
            .bearer_auth(&tok)
            .header("x-ms-throttle-priority", "low")
            .send()
    };
    let r = send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert_eq!(send().await.unwrap().status().as_u16(), 200);
    emu.control()
        .fail_next("/v1.0/", Fault::Unavailable { retry_after_s: None }, 1);
    let r = send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().get("retry-after").is_none());
    let log = emu.control().request_log();
    let users: Vec<_> = log.iter().filter(|l| l.path_and_query == "/v1.0/users").collect();
    assert_eq!(users.iter().map(|l| l.status).collect::<Vec<_>>(), vec![429, 200, 503]);
    assert!(
        users
            .iter()
            .all(|l| l.throttle_priority.as_deref() == Some("low") && l.has_authorization)
    );
}

#[tokio::test]
async fn control_over_http() {
    let (emu, c, tok) = demo().await;
    let base = emu.base_url();
    let r = c
        .post(format!("{base}/_emulator/faults"))
        .json(&serde_json::json!({"path_prefix": "/v1.0/devices", "fault": {"type": "GatewayTimeout"}, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (st, _, _) = get(&c, &format!("{base}/v1.0/devices"), &tok).await;
    assert_eq!(st, 504);
    let (_, link) = round(&c, &format!("{base}/v1.0/users/delta?$select=id,displayName"), &tok).await;
    let r = c
        .post(format!("{base}/_emulator/users"))
        .json(&serde_json::json!({"id": "new-user", "user_principal_name": "new@contoso.example", "display_name": "New", "account_enabled": true, "user_type": "Member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (added, _) = round(&c, &link, &tok).await;
    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["displayName"], "New");
    let r = c
        .post(format!("{base}/_emulator/users"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = c
        .post(format!("{base}/_emulator/expire-delta-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (st, _, _) = get(&c, &link, &tok).await;
    assert_eq!(st, 410);
    let log: Vec<LoggedRequest> = c
        .get(format!("{base}/_emulator/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log.iter().any(|l| l.status == 504));
}

#[tokio::test]
async fn groups_delta_members_and_removal() {
    let t = Tenant::demo();
    let eng = t.groups[0].clone();
    let (emu, c, tok) = demo().await;
    let (groups, link) = round(
        &c,
        &format!("{}/v1.0/groups/delta?$select=displayName,members", emu.base_url()),
        &tok,
    )
    .await;
    let g = groups.iter().find(|g| g["displayName"] == "Engineering").unwrap();
    let members = g["members@delta"].as_array().unwrap();
    assert_eq!(members.len(), 4);
    let types: HashSet<&str> = members.iter().map(|m| m["@odata.type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        HashSet::from([
            "#microsoft.graph.user",
            "#microsoft.graph.device",
            "#microsoft.graph.group"
        ])
    );
    emu.control().remove_group_member(&eng.id, &eng.members[1]);
    let (changed, _) = round(&c, &link, &tok).await;
    assert_eq!(changed.len(), 1);
    let md = changed[0]["members@delta"].as_array().unwrap();
    assert_eq!(md.len(), 1);
    assert_eq!(md[0]["id"], eng.members[1].as_str());
    assert_eq!(md[0]["@odata.type"], "#microsoft.graph.user");
    assert_eq!(md[0]["@removed"]["reason"], "deleted");
}

#[tokio::test]
async fn devices_delta_and_managed_device_macs() {
    let (emu, c, tok) = demo().await;
    let (devs, _) = round(&c, &format!("{}/v1.0/devices/delta", emu.base_url()), &tok).await;
    assert_eq!(devs.len(), 3);
    assert!(
        devs.iter()
            .all(|d| d["deviceId"].is_string() && d["trustType"].is_string() && d["accountEnabled"].is_boolean())
    );
    let (st, _, body) = get(
        &c,
        &format!(
            "{}/v1.0/deviceManagement/managedDevices?$select=azureADDeviceId,wiFiMacAddress,ethernetMacAddress",
            emu.base_url()
        ),
        &tok,
    )
    .await;
    assert_eq!(st, 200);
    let list = body["value"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    for d in list {
        let mac = d["wiFiMacAddress"].as_str().unwrap();
        assert_eq!(mac.len(), 12, "{mac}");
        assert!(
            mac.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)),
            "{mac}"
        );
        assert!(d.get("complianceState").is_none());
    }
    assert!(
        list.iter().any(|d| d.get("ethernetMacAddress").is_none()),
        "absent MAC omitted"
    );
}

#[test]
fn consent_redirects_match_like_entra() {
    use super::login::redirect_matches;
    let r = "http://localhost/consent";
    assert!(redirect_matches(r, "http://localhost/consent"));
    assert!(redirect_matches(r, "http://localhost:49152/consent"));
    assert!(redirect_matches(r, "http://localhost:49152/consent/"));
    assert!(!redirect_matches(r, "http://localhost:49152/other"));
    assert!(
        !redirect_matches(r, "http://127.0.0.1:49152/consent"),
        "localhost and 127.0.0.1 differ"
    );
    assert!(!redirect_matches(r, "https://evil.example/consent"));
    assert!(!redirect_matches(
        "https://app.example/cb",
        "https://app.example:444/cb"
    ));
    assert!(redirect_matches("https://app.example/cb", "https://app.example/cb"));
}

#[tokio::test]
async fn forgotten_page_links_expire_and_links_belong_to_one_emulator() {
    let (emu, c, tok) = demo().await;
    let ctl = emu.control();
    ctl.set_page_size(1);
    ctl.set_delta_quirks(0, 0);
    let base = emu.base_url();
    let first = format!("{base}/v1.0/users/delta?$select=id,accountEnabled");
    let (_, _, body) = get(&c, &first, &tok).await;
    let next = body["@odata.nextLink"].as_str().unwrap().to_owned();
    let (_, delta) = round(&c, &first, &tok).await;
    let r = c
        .post(format!("{base}/_emulator/forget-page-links"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // The round in progress is gone; a finished round's delta link is not.
    let (st, h, body) = get(&c, &next, &tok).await;
    assert_eq!(st, 410, "{body}");
    assert!(h.get("location").is_some());
    let (st, _, body) = get(&c, &delta, &tok).await;
    assert_eq!(st, 200, "{body}");

    // A second emulator, as after a restart: it has rounds with the same
    // numbers, but links of the first are not its own.
    let (other, c2, tok2) = demo().await;
    other.control().set_page_size(1);
    let other_first = first.replacen(&base, &other.base_url(), 1);
    for _ in 0..4 {
        let (st, _, _) = get(&c2, &other_first, &tok2).await;
        assert_eq!(st, 200);
    }
    for link in [&next, &delta] {
        let moved = link.replacen(&base, &other.base_url(), 1);
        let (st, _, body) = get(&c2, &moved, &tok2).await;
        assert_eq!(st, 410, "{moved}: {body}");
    }
    let list = format!("{base}/v1.0/users?$top=1");
    let (_, _, body) = get(&c, &list, &tok).await;
    let list_next = body["@odata.nextLink"]
        .as_str()
        .unwrap()
        .replacen(&base, &other.base_url(), 1);
    let (st, _, body) = get(&c2, &list_next, &tok2).await;
    assert_eq!(st, 400);
    assert_eq!(body["error"]["code"], "Directory_ExpiredPageToken");
}

#[tokio::test]
async fn transport_faults_cut_the_connection() {
    let (emu, c, tok) = demo().await;
    let base = emu.base_url();
    for fault in ["Reset", "Truncate"] {
        let r = c
            .post(format!("{base}/_emulator/faults"))
            .json(&serde_json::json!({"path_prefix": "/v1.0/users", "fault": {"type": fault}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let url = format!("{base}/v1.0/users");
    let e = c.get(&url).bearer_auth(&tok).send().await.unwrap_err();
    assert!(e.is_request(), "a reset is a failed request, not an answer: {e:?}");
    let r = c.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let e = r.text().await.unwrap_err();
    assert!(e.is_body() || e.is_decode(), "a cut-off body: {e:?}");
    let (st, _, body) = get(&c, &url, &tok).await;
    assert_eq!(st, 200, "faults used up");
    assert!(body["value"].is_array());
    let statuses: Vec<u16> = emu
        .control()
        .request_log()
        .iter()
        .filter(|l| l.path_and_query == "/v1.0/users")
        .map(|l| l.status)
        .collect();
    assert_eq!(statuses, vec![0, 200, 200]);
}
