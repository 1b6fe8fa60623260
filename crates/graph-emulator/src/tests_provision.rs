//! Behaviour tests of the device-code sign-in and of application
//! registration through Graph, over real HTTP with reqwest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const ADMIN: &str = "admin@contosodemo.onmicrosoft.com";
const ADMIN_PW: &str = "admin-pw";

async fn start() -> (Emulator, reqwest::Client) {
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), Tenant::demo())
        .await
        .unwrap();
    (emu, reqwest::Client::new())
}

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

async fn devicecode(emu: &Emulator, c: &reqwest::Client, tenant: &str, scope: &str) -> (u16, Value) {
    let r = c
        .post(format!("{}/{tenant}/oauth2/v2.0/devicecode", emu.base_url()))
        .form(&[("client_id", GRAPH_CLI_CLIENT_ID), ("scope", scope)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn poll(emu: &Emulator, c: &reqwest::Client, device_code: &str) -> (u16, Value) {
    let r = c
        .post(format!("{}/organizations/oauth2/v2.0/token", emu.base_url()))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("client_id", GRAPH_CLI_CLIENT_ID),
            ("device_code", device_code),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn devicelogin(c: &reqwest::Client, uri: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = c.post(uri).form(form).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Signs the admin in with the given scope; returns the access token.
async fn admin_token(emu: &Emulator, c: &reqwest::Client, scope: &str) -> String {
    let (st, dc) = devicecode(emu, c, &emu.tenant_id(), scope).await;
    assert_eq!(st, 200, "{dc}");
    assert!(emu.control().approve_device_code(dc["user_code"].as_str().unwrap()));
    let (st, tok) = poll(emu, c, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, 200, "{tok}");
    tok["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn device_code_pending_slow_down_then_approved_in_the_browser() {
    let (emu, c) = start().await;
    emu.control().set_device_code_timing(30, 600);
    for tenant in [
        emu.tenant_id(),
        "contoso.example".into(),
        "organizations".into(),
        "common".into(),
    ] {
        let (st, body) = devicecode(&emu, &c, &tenant, "openid x").await;
        assert_eq!(st, 200, "{tenant}: {body}");
    }
    let (st, body) = devicecode(&emu, &c, "nowhere.example", "openid").await;
    assert_eq!((st, body["error_codes"][0].as_u64()), (400, Some(90002)), "{body}");

    let scope = format!("{}/Application.ReadWrite.All openid profile", emu.base_url());
    let (st, dc) = devicecode(&emu, &c, &emu.tenant_id(), &scope).await;
    assert_eq!(st, 200, "{dc}");
    assert_eq!(dc["interval"], 30);
    assert_eq!(dc["expires_in"], 600);
    let uri = dc["verification_uri"].as_str().unwrap();
    assert_eq!(uri, format!("{}/devicelogin", emu.base_url()));
    let user_code = dc["user_code"].as_str().unwrap();
    assert!(dc["message"].as_str().unwrap().contains(user_code));
    let device_code = dc["device_code"].as_str().unwrap();

    let (st, body) = poll(&emu, &c, device_code).await;
    assert_eq!(st, 400);
    assert_eq!(body["error"], "authorization_pending", "{body}");
    assert_eq!(body["error_codes"][0], 70016);
    // Polled again at once, well inside the 30 s interval.
    let (_, body) = poll(&emu, &c, device_code).await;
    assert_eq!(body["error"], "slow_down", "{body}");

    let page = c.get(uri).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("name=\"user_code\""));
    let (st, _) = devicelogin(
        &c,
        uri,
        &[("user_code", user_code), ("username", ADMIN), ("password", "wrong")],
    )
    .await;
    assert_eq!(st, 401);
    let (st, _) = devicelogin(
        &c,
        uri,
        &[("user_code", "NOPE12345"), ("username", ADMIN), ("password", ADMIN_PW)],
    )
    .await;
    assert_eq!(st, 400);
    let lower = user_code.to_ascii_lowercase();
    let (st, text) = devicelogin(
        &c,
        uri,
        &[("user_code", &lower), ("username", ADMIN), ("password", ADMIN_PW)],
    )
    .await;
    assert_eq!(st, 200, "{text}");

    let (st, tok) = poll(&emu, &c, device_code).await;
    assert_eq!(st, 200, "{tok}");
    let claims = payload(tok["access_token"].as_str().unwrap());
    assert_eq!(claims["scp"], "Application.ReadWrite.All", "{claims}");
    assert_eq!(claims["upn"], ADMIN);
    assert_eq!(claims["tid"], emu.tenant_id());
    assert!(claims["oid"].is_string());
    assert!(claims.get("roles").is_none(), "{claims}");
    assert_eq!(payload(tok["id_token"].as_str().unwrap())["tid"], emu.tenant_id());
    // A device code is redeemed once.
    let (st, body) = poll(&emu, &c, device_code).await;
    assert_eq!((st, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    emu.shutdown().await;
}

#[tokio::test]
async fn device_code_declined_expired_and_unknown() {
    let (emu, c) = start().await;
    emu.control().set_device_code_timing(0, 600);
    let (_, dc) = devicecode(&emu, &c, "organizations", "Application.ReadWrite.All").await;
    let uri = dc["verification_uri"].as_str().unwrap();
    let (st, _) = devicelogin(
        &c,
        uri,
        &[
            ("user_code", dc["user_code"].as_str().unwrap()),
            ("username", ADMIN),
            ("password", ADMIN_PW),
            ("decline", "1"),
        ],
    )
    .await;
    assert_eq!(st, 200);
    let (_, body) = poll(&emu, &c, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "authorization_declined", "{body}");

    let (_, dc) = devicecode(&emu, &c, "organizations", "Application.ReadWrite.All").await;
    assert!(emu.control().decline_device_code(dc["user_code"].as_str().unwrap()));
    assert!(!emu.control().approve_device_code(dc["user_code"].as_str().unwrap()));
    let (_, body) = poll(&emu, &c, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "authorization_declined", "{body}");

    emu.control().set_device_code_timing(0, 0);
    let (_, dc) = devicecode(&emu, &c, "organizations", "Application.ReadWrite.All").await;
    let (_, body) = poll(&emu, &c, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "expired_token", "{body}");
    assert_eq!(body["error_codes"][0], 70020);
    assert!(!emu.control().approve_device_code(dc["user_code"].as_str().unwrap()));

    let (_, body) = poll(&emu, &c, "no-such-device-code").await;
    assert_eq!(body["error"], "bad_verification_code", "{body}");

    // Unknown public client and scopes of another resource are refused up front.
    let r = c
        .post(format!("{}/organizations/oauth2/v2.0/devicecode", emu.base_url()))
        .form(&[("client_id", "not-an-app"), ("scope", "openid")])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_codes"][0], 700016, "{body}");
    let (st, body) = devicecode(&emu, &c, "organizations", "https://vault.azure.net/user_impersonation").await;
    assert_eq!((st, body["error_codes"][0].as_u64()), (400, Some(70011)), "{body}");
    emu.shutdown().await;
}

#[tokio::test]
async fn application_registration_with_replication_and_consent() {
    let (emu, c) = start().await;
    emu.control().set_device_code_timing(0, 600);
    let base = emu.base_url();
    let tok = admin_token(&emu, &c, "https://graph.microsoft.com/Application.ReadWrite.All").await;
    let access: Vec<Value> = GRAPH_APP_ROLE_IDS
        .iter()
        .map(|(_, id)| json!({"id": id, "type": "Role"}))
        .collect();
    let r = c
        .post(format!("{base}/v1.0/applications"))
        .bearer_auth(&tok)
        .json(&json!({
            "displayName": "entra-radius",
            "signInAudience": "AzureADMyOrg",
            "requiredResourceAccess": [{"resourceAppId": GRAPH_APP_ID, "resourceAccess": access}],
            "web": {"redirectUris": ["http://localhost/consent"]},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let app: Value = r.json().await.unwrap();
    let (object_id, app_id) = (app["id"].as_str().unwrap(), app["appId"].as_str().unwrap());
    assert_eq!(
        app["requiredResourceAccess"][0]["resourceAccess"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    let model = emu.control().app(app_id).unwrap();
    assert_eq!(model.required_roles, ALL_ROLES);
    assert!(model.granted_roles.is_empty() && model.certificates.is_empty());
    assert_eq!(model.service_principal_id, None);

    // The replication window: the first service-principal call fails like Graph's.
    let sp = |c: &reqwest::Client| {
        c.post(format!("{base}/v1.0/servicePrincipals"))
            .bearer_auth(&tok)
            .json(&json!({"appId": app_id}))
            .send()
    };
    let r = sp(&c).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    assert_eq!(
        body["error"]["message"],
        format!("The appId '{app_id}' of the service principal does not reference a valid application object.")
    );
    let r = sp(&c).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let sp_body: Value = r.json().await.unwrap();
    assert_eq!(sp_body["appId"], app_id);
    assert_eq!(sp(&c).await.unwrap().status().as_u16(), 409);

    let r = c
        .post(format!("{base}/v1.0/applications/{object_id}/addPassword"))
        .bearer_auth(&tok)
        .json(&json!({"passwordCredential": {"displayName": "radius", "endDateTime": "2099-01-01T00:00:00Z"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let pw: Value = r.json().await.unwrap();
    let secret = pw["secretText"].as_str().unwrap().to_owned();
    assert_eq!(pw["endDateTime"], "2099-01-01T00:00:00Z");
    assert!(pw["keyId"].is_string() && secret.starts_with(pw["hint"].as_str().unwrap()));

    // Filters: exactly the supported shapes.
    let list = |path: String| {
        let c = c.clone();
        let tok = tok.clone();
        async move {
            let r = c.get(path).bearer_auth(&tok).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, body) = list(format!(
        "{base}/v1.0/applications?$filter=displayName eq 'entra-radius'"
    ))
    .await;
    assert_eq!(st, 200);
    assert_eq!(body["value"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["value"][0]["appId"], app_id);
    assert!(body["value"][0]["passwordCredentials"][0]["secretText"].is_null());
    let (_, body) = list(format!("{base}/v1.0/applications?$filter=displayName eq 'other'")).await;
    assert_eq!(body["value"].as_array().unwrap().len(), 0);
    let (st, _) = list(format!("{base}/v1.0/applications?$filter=startswith(displayName,'e')")).await;
    assert_eq!(st, 400);
    let (st, _) = list(format!("{base}/v1.0/applications?$top=5")).await;
    assert_eq!(st, 400);
    let (_, body) = list(format!("{base}/v1.0/servicePrincipals?$filter=appId eq '{app_id}'")).await;
    assert_eq!(body["value"][0]["id"], sp_body["id"], "{body}");
    let (st, body) = list(format!("{base}/v1.0/applications/{object_id}")).await;
    assert_eq!((st, body["displayName"].as_str()), (200, Some("entra-radius")));
    let (st, body) = list(format!("{base}/v1.0/applications/00000000-0000-0000-0000-000000000000")).await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (404, Some("Request_ResourceNotFound"))
    );

    // The new secret gets an app token, without roles until admin consent.
    let scope = format!("{base}/.default");
    let app_token = || {
        c.post(format!("{base}/{}/oauth2/v2.0/token", emu.tenant_id()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", app_id),
                ("client_secret", secret.as_str()),
                ("scope", scope.as_str()),
            ])
            .send()
    };
    let body: Value = app_token().await.unwrap().json().await.unwrap();
    let claims = payload(body["access_token"].as_str().unwrap());
    assert!(claims.get("roles").is_none(), "{claims}");
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{base}/{}/adminconsent?client_id={app_id}&state=s&redirect_uri=http://localhost:5000/consent",
            emu.tenant_id()
        ))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["location"].to_str().unwrap().contains("admin_consent=True"));
    let body: Value = app_token().await.unwrap().json().await.unwrap();
    let claims = payload(body["access_token"].as_str().unwrap());
    assert_eq!(claims["roles"].as_array().unwrap().len(), 5, "{claims}");
    emu.shutdown().await;
}

#[tokio::test]
async fn registration_needs_a_delegated_token_with_the_scope() {
    let (emu, c) = start().await;
    emu.control().set_device_code_timing(0, 600);
    emu.control().set_replication_delay(2);
    let base = emu.base_url();
    let create = |tok: String| {
        c.post(format!("{base}/v1.0/applications"))
            .bearer_auth(tok)
            .json(&json!({"displayName": "x"}))
            .send()
    };
    let narrow = admin_token(&emu, &c, "User.Read openid").await;
    let r = create(narrow).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");

    // An app-only token is refused, whatever roles it holds.
    let r = c
        .post(format!("{base}/{}/oauth2/v2.0/token", emu.tenant_id()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let app_only = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(create(app_only.clone()).await.unwrap().status().as_u16(), 403);
    // ... and a delegated token is no good for directory reads.
    let wide = admin_token(&emu, &c, "Application.ReadWrite.All").await;
    let r = c
        .get(format!("{base}/v1.0/users"))
        .bearer_auth(&wide)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // A replication window of two: addPassword 404s twice, then works; a
    // client-credentials token needs the service principal.
    let r = create(wide.clone()).await.unwrap();
    let app: Value = r.json().await.unwrap();
    let add = || {
        c.post(format!(
            "{base}/v1.0/applications/{}/addPassword",
            app["id"].as_str().unwrap()
        ))
        .bearer_auth(&wide)
        .json(&json!({"passwordCredential": {"displayName": "x"}}))
        .send()
    };
    assert_eq!(add().await.unwrap().status().as_u16(), 404);
    assert_eq!(add().await.unwrap().status().as_u16(), 404);
    let pw: Value = add().await.unwrap().json().await.unwrap();
    let r = c
        .post(format!("{base}/{}/oauth2/v2.0/token", emu.tenant_id()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app["appId"].as_str().unwrap()),
            ("client_secret", pw["secretText"].as_str().unwrap()),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_codes"][0], 7000229, "{body}");
    emu.shutdown().await;
}

#[tokio::test]
async fn device_codes_and_timing_over_the_control_api() {
    let (emu, c) = start().await;
    let base = emu.base_url();
    let r = c
        .post(format!("{base}/_emulator/settings"))
        .json(&json!({"device_interval_s": 0, "device_expires_in_s": 120, "replication_delay": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (_, dc) = devicecode(&emu, &c, "organizations", "Application.ReadWrite.All").await;
    assert_eq!(
        (dc["interval"].as_u64(), dc["expires_in"].as_u64()),
        (Some(0), Some(120))
    );
    let code = dc["user_code"].as_str().unwrap();
    let approve = |code: String| c.post(format!("{base}/_emulator/device-codes/{code}/approve")).send();
    assert_eq!(approve(code.to_owned()).await.unwrap().status().as_u16(), 204);
    assert_eq!(approve(code.to_owned()).await.unwrap().status().as_u16(), 404);
    let (st, tok) = poll(&emu, &c, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(st, 200, "{tok}");

    // Replication delay 0: the service principal is created at the first call.
    let tok = tok["access_token"].as_str().unwrap();
    let app: Value = c
        .post(format!("{base}/v1.0/applications"))
        .bearer_auth(tok)
        .json(&json!({"displayName": "quick"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c
        .post(format!("{base}/v1.0/servicePrincipals"))
        .bearer_auth(tok)
        .json(&json!({"appId": app["appId"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let (_, dc) = devicecode(&emu, &c, "organizations", "Application.ReadWrite.All").await;
    let code = dc["user_code"].as_str().unwrap();
    let r = c
        .post(format!("{base}/_emulator/device-codes/{code}/decline"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (_, body) = poll(&emu, &c, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "authorization_declined");
    emu.shutdown().await;
}
