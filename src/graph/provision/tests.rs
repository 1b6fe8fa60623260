//! Provisioning against a started emulator: sign-in through the
//! verification page as the admin's browser would, replication retries,
//! reuse on a second run, and the errors an administrator can meet.

use std::sync::{Arc, Mutex};

use graph_emulator::{self as emulator, Emulator, Tenant};

use super::*;
use crate::graph::{Credential, GraphClient, GraphConfig};

const ADMIN: &str = "admin@contosodemo.onmicrosoft.com";
const ADMIN_PW: &str = "admin-pw";

async fn start() -> Emulator {
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), Tenant::demo())
        .await
        .unwrap();
    emu.control().set_device_code_timing(0, 600);
    emu
}

fn quick() -> ProvisionOptions {
    ProvisionOptions {
        replication_base_delay: Duration::from_millis(5),
        replication_max_delay: Duration::from_millis(20),
        slow_down_step: Duration::from_millis(50),
        min_poll_interval: Duration::from_millis(20),
        ..ProvisionOptions::default()
    }
}

fn provisioner(emu: &Emulator) -> Provisioner {
    Provisioner::with_options(&emu.base_url(), &emu.base_url(), quick()).unwrap()
}

/// Collects progress steps.
fn recorder() -> (Arc<Mutex<Vec<ProvisionStep>>>, impl Fn(ProvisionStep) + Send + Sync) {
    let steps = Arc::new(Mutex::new(Vec::new()));
    let s = steps.clone();
    (steps, move |step| s.lock().unwrap().push(step))
}

/// What the admin does in the browser: opens the page, types the code, signs in.
async fn browser_sign_in(flow_uri: &str, user_code: &str, password: &str, decline: bool) -> u16 {
    let c = reqwest::Client::new();
    assert_eq!(c.get(flow_uri).send().await.unwrap().status().as_u16(), 200);
    let mut form = vec![("user_code", user_code), ("username", ADMIN), ("password", password)];
    if decline {
        form.push(("decline", "1"));
    }
    c.post(flow_uri).form(&form).send().await.unwrap().status().as_u16()
}

async fn sign_in(emu: &Emulator, p: &Provisioner) -> AdminToken {
    let flow = p.start_sign_in("organizations").await.unwrap();
    assert!(flow.verification_uri.starts_with(&emu.base_url()), "{flow:?}");
    assert!(flow.message.contains(&flow.user_code));
    let (token, status) = tokio::join!(p.wait_for_sign_in(&flow), async {
        // A moment later, so the client sees authorization_pending first.
        tokio::time::sleep(Duration::from_millis(150)).await;
        browser_sign_in(&flow.verification_uri, &flow.user_code, ADMIN_PW, false).await
    });
    assert_eq!(status, 200);
    token.unwrap()
}

fn graph_client(emu: &Emulator, app: &ProvisionedApp) -> GraphClient {
    GraphClient::new(GraphConfig {
        authority_host: emu.base_url(),
        graph_endpoint: emu.base_url(),
        tenant_id: app.tenant_id.clone(),
        client_id: app.client_id.clone(),
        credential: Credential::Secret(app.client_secret.to_string()),
    })
    .unwrap()
}

#[tokio::test]
async fn provisions_then_reuses_the_app_and_the_secret_works() {
    let emu = start().await;
    let p = provisioner(&emu);
    let token = sign_in(&emu, &p).await;
    assert_eq!(token.tenant_id, emu.tenant_id());
    assert_eq!(token.user.as_deref(), Some(ADMIN));
    assert!(token.scopes.iter().any(|s| s == PROVISION_SCOPE), "{token:?}");

    let (steps, progress) = recorder();
    let app = p.create_app(&token, "entra-radius", &progress).await.unwrap();
    assert!(!app.reused);
    assert_eq!(app.tenant_id, emu.tenant_id());
    let steps = steps.lock().unwrap().clone();
    // The emulator's default replication window fails the first service-principal call.
    assert_eq!(
        steps,
        vec![
            ProvisionStep::FindingApplication,
            ProvisionStep::CreatingApplication,
            ProvisionStep::CreatingServicePrincipal { attempt: 1 },
            ProvisionStep::WaitingForReplication {
                what: "creating the service principal".into(),
                attempt: 1,
                delay_ms: 5
            },
            ProvisionStep::CreatingServicePrincipal { attempt: 2 },
            ProvisionStep::AddingSecret,
            ProvisionStep::Done,
        ]
    );
    let model = emu.control().app(&app.client_id).unwrap();
    assert_eq!(model.display_name, "entra-radius");
    assert_eq!(model.required_roles, REQUIRED_ROLES);
    assert!(model.granted_roles.is_empty());
    assert_eq!(
        model.service_principal_id.as_deref(),
        Some(app.service_principal_id.as_str())
    );
    assert_eq!(model.object_id, app.app_object_id);
    assert!(app.secret_expires.ends_with('Z') && !app.secret_key_id.is_empty());

    // The secret gets a token; no roles until the admin-consent step.
    let client = graph_client(&emu, &app);
    match client.check_roles().await {
        Err(GraphError::ConsentMissing { missing_roles }) => assert_eq!(missing_roles, REQUIRED_ROLES),
        other => panic!("expected missing consent, got {other:?}"),
    }
    let consent = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{}/{}/adminconsent?client_id={}&state=s&redirect_uri=http://localhost:5000/consent",
            emu.base_url(),
            app.tenant_id,
            app.client_id
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status().as_u16(), 302);
    assert_eq!(client.check_roles().await.unwrap().len(), REQUIRED_ROLES.len());
    assert!(!client.domains().await.unwrap().is_empty());

    // Second run: same app and service principal, one more secret, both valid.
    let (steps, progress) = recorder();
    let again = p.create_app(&token, "entra-radius", &progress).await.unwrap();
    assert!(again.reused);
    assert!(again.missing_permissions.is_empty(), "{again:?}");
    assert_eq!(again.client_id, app.client_id);
    assert_eq!(again.service_principal_id, app.service_principal_id);
    assert_ne!(*again.client_secret, *app.client_secret);
    assert_eq!(
        steps.lock().unwrap().clone(),
        vec![
            ProvisionStep::FindingApplication,
            ProvisionStep::AddingSecret,
            ProvisionStep::Done
        ]
    );
    assert_eq!(emu.control().app(&app.client_id).unwrap().secrets.len(), 2);
    graph_client(&emu, &again).check_roles().await.unwrap();
    graph_client(&emu, &app).check_roles().await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn declined_expired_and_wrong_password() {
    let emu = start().await;
    let p = provisioner(&emu);

    let flow = p.start_sign_in(&emu.tenant_id()).await.unwrap();
    assert_eq!(
        browser_sign_in(&flow.verification_uri, &flow.user_code, "wrong", false).await,
        401
    );
    assert_eq!(
        browser_sign_in(&flow.verification_uri, &flow.user_code, ADMIN_PW, true).await,
        200
    );
    let err = p.wait_for_sign_in(&flow).await.unwrap_err();
    assert!(matches!(err, ProvisionError::SignInDeclined), "{err:?}");
    assert!(err.to_string().contains("declined"), "{err}");

    emu.control().set_device_code_timing(0, 1);
    let flow = p.start_sign_in("contoso.example").await.unwrap();
    let err = p.wait_for_sign_in(&flow).await.unwrap_err();
    assert!(matches!(err, ProvisionError::CodeExpired), "{err:?}");
    assert!(err.to_string().contains("expired"), "{err}");

    let err = p.start_sign_in("nowhere.example").await.unwrap_err();
    match &err {
        ProvisionError::Aadsts {
            code: 90002,
            explanation,
            ..
        } => assert!(explanation.contains("tenant")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p.start_sign_in("bad/tenant").await.unwrap_err(),
        ProvisionError::InvalidConfig(_)
    ));
    emu.shutdown().await;
}

#[tokio::test]
async fn a_token_without_the_scope_or_an_app_token_is_forbidden() {
    let emu = start().await;
    let p = provisioner(&emu);
    let flow = p
        .start_sign_in_with_scope("organizations", "User.Read openid")
        .await
        .unwrap();
    assert!(emu.control().approve_device_code(&flow.user_code));
    let token = p.wait_for_sign_in(&flow).await.unwrap();
    let (_, progress) = recorder();
    let err = p.create_app(&token, "entra-radius", &progress).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Forbidden { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("Application Administrator"), "{text}");
    assert!(text.contains("Application.ReadWrite.All"), "{text}");

    // The pre-registered app's own token (app-only) is refused the same way.
    let demo = GraphClient::new(GraphConfig {
        authority_host: emu.base_url(),
        graph_endpoint: emu.base_url(),
        tenant_id: emu.tenant_id(),
        client_id: emulator::DEMO_CLIENT_ID.into(),
        credential: Credential::Secret(emulator::DEMO_CLIENT_SECRET.into()),
    })
    .unwrap();
    let app_only = AdminToken {
        tenant_id: emu.tenant_id(),
        user: None,
        scopes: Vec::new(),
        expires_at: Instant::now() + Duration::from_secs(60),
        access_token: Zeroizing::new(demo.token().await.unwrap().access_token),
    };
    let err = p.create_app(&app_only, "entra-radius", &progress).await.unwrap_err();
    assert!(matches!(err, ProvisionError::Forbidden { .. }), "{err:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn replication_retries_are_bounded() {
    let emu = start().await;
    emu.control().set_replication_delay(100);
    let p = Provisioner::with_options(
        &emu.base_url(),
        &emu.base_url(),
        ProvisionOptions {
            replication_attempts: 3,
            ..quick()
        },
    )
    .unwrap();
    let token = sign_in(&emu, &p).await;
    let (steps, progress) = recorder();
    let err = p.create_app(&token, "slow app", &progress).await.unwrap_err();
    match &err {
        ProvisionError::Replication {
            what,
            attempts: 3,
            last,
        } => {
            assert_eq!(what, "creating the service principal");
            assert!(last.contains("does not reference a valid application object"), "{last}");
        }
        other => panic!("{other:?}"),
    }
    let waits: Vec<u64> = steps
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| match s {
            ProvisionStep::WaitingForReplication { delay_ms, .. } => Some(*delay_ms),
            _ => None,
        })
        .collect();
    assert_eq!(waits, vec![5, 10]);

    // Once replicated, running again reuses the half-made app and finishes it.
    emu.control().set_replication_delay(0);
    let (steps, progress) = recorder();
    let app = p.create_app(&token, "slow app", &progress).await.unwrap();
    assert!(app.reused);
    assert!(
        steps
            .lock()
            .unwrap()
            .contains(&ProvisionStep::CreatingServicePrincipal { attempt: 1 })
    );
    let model = emu.control().app(&app.client_id).unwrap();
    assert_eq!(
        model.service_principal_id.as_deref(),
        Some(app.service_principal_id.as_str())
    );

    // An app registered by hand without the permissions is reused, and
    // what it lacks is reported.
    emu.control().add_app(emulator::App {
        client_id: "manual".into(),
        display_name: "by hand".into(),
        required_roles: vec!["User.Read.All".into()],
        ..emulator::App::default()
    });
    let (_, progress) = recorder();
    let app = p.create_app(&token, "by hand", &progress).await.unwrap();
    assert!(app.reused);
    assert_eq!(app.missing_permissions, &REQUIRED_ROLES[1..]);

    // Two apps of the same name: provisioning refuses to guess.
    emu.control().add_app(emulator::App {
        client_id: "dup-1".into(),
        display_name: "dup".into(),
        ..emulator::App::default()
    });
    emu.control().add_app(emulator::App {
        client_id: "dup-2".into(),
        display_name: "dup".into(),
        ..emulator::App::default()
    });
    let (_, progress) = recorder();
    let err = p.create_app(&token, "dup", &progress).await.unwrap_err();
    assert!(
        matches!(err, ProvisionError::AmbiguousApplication { count: 2, .. }),
        "{err:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn secrets_never_show_in_debug() {
    let emu = start().await;
    let p = provisioner(&emu);
    let flow = p.start_sign_in("organizations").await.unwrap();
    let device_code = flow.device_code.to_string();
    let shown = format!("{flow:?} {flow:#?}");
    assert!(!shown.contains(&device_code), "{shown}");
    assert!(shown.contains(&flow.user_code));
    assert!(emu.control().approve_device_code(&flow.user_code));
    let token = p.wait_for_sign_in(&flow).await.unwrap();
    let shown = format!("{token:?} {token:#?}");
    assert!(!shown.contains(token.access_token.as_str()), "{shown}");
    let (_, progress) = recorder();
    let app = p.create_app(&token, "entra-radius", &progress).await.unwrap();
    let shown = format!("{app:?} {app:#?} {p:?}");
    assert!(!shown.contains(app.client_secret.as_str()), "{shown}");
    assert!(shown.contains(&app.client_id));
    emu.shutdown().await;
}

#[test]
fn poll_errors_map_to_actions() {
    let e = |error: &str| OAuthError {
        code: 0,
        error: error.into(),
        description: String::new(),
    };
    let step = Duration::from_secs(5);
    let i = Duration::from_secs(5);
    assert_eq!(next_poll_interval(e("authorization_pending"), i, step).unwrap(), i);
    assert_eq!(
        next_poll_interval(e("slow_down"), i, step).unwrap(),
        Duration::from_secs(10)
    );
    assert!(matches!(
        next_poll_interval(e("authorization_declined"), i, step),
        Err(ProvisionError::SignInDeclined)
    ));
    assert!(matches!(
        next_poll_interval(e("access_denied"), i, step),
        Err(ProvisionError::SignInDeclined)
    ));
    assert!(matches!(
        next_poll_interval(e("expired_token"), i, step),
        Err(ProvisionError::CodeExpired)
    ));
    let err = next_poll_interval(
        OAuthError {
            code: 70019,
            error: "bad_verification_code".into(),
            description: "AADSTS70019: …".into(),
        },
        i,
        step,
    )
    .unwrap_err();
    assert!(err.to_string().contains("AADSTS70019"), "{err}");
}

#[test]
fn role_ids_cover_the_required_roles_and_match_the_emulator() {
    for role in REQUIRED_ROLES {
        assert!(app_role_id(role).is_some(), "{role}");
    }
    assert_eq!(GRAPH_APP_ROLE_IDS, emulator::GRAPH_APP_ROLE_IDS);
    assert_eq!(GRAPH_RESOURCE_APP_ID, emulator::GRAPH_APP_ID);
    assert_eq!(SIGN_IN_CLIENT_ID, emulator::GRAPH_CLI_CLIENT_ID);
}

#[test]
fn filters_are_quoted_and_escaped() {
    let f = format!("displayName eq '{}'", odata_quote("O'Brien & co"));
    assert_eq!(f, "displayName eq 'O''Brien & co'");
    assert_eq!(query_escape(&f), "displayName%20eq%20%27O%27%27Brien%20%26%20co%27");
}

#[test]
fn replication_delays_double_up_to_the_cap() {
    let o = ProvisionOptions::default();
    let d: Vec<u64> = (1..=7).map(|a| replication_delay(&o, a).as_secs()).collect();
    assert_eq!(d, vec![1, 2, 4, 8, 16, 30, 30]);
}

#[test]
fn endpoints_must_be_https_or_loopback() {
    assert!(matches!(
        Provisioner::new("http://login.example.com", "https://graph.microsoft.com"),
        Err(ProvisionError::InsecureEndpoint(_))
    ));
    assert!(Provisioner::new("https://login.microsoftonline.com", "http://127.0.0.1:9").is_ok());
    assert!(matches!(
        Provisioner::new("not a url", "https://graph.microsoft.com"),
        Err(ProvisionError::InvalidConfig(_))
    ));
}

#[test]
fn futures_can_run_in_a_background_task() {
    fn assert_send<T: Send>(_: &T) {}
    let p = Provisioner::new("https://login.microsoftonline.com", "https://graph.microsoft.com").unwrap();
    let token = AdminToken {
        tenant_id: "t".into(),
        user: None,
        scopes: Vec::new(),
        expires_at: Instant::now(),
        access_token: Zeroizing::new(String::new()),
    };
    let (_, progress) = recorder();
    assert_send(&p.start_sign_in("organizations"));
    assert_send(&p.create_app(&token, "x", &progress));
    let flow = DeviceCodeFlow {
        user_code: String::new(),
        verification_uri: String::new(),
        message: String::new(),
        expires_at: Instant::now(),
        interval: Duration::ZERO,
        tenant: "organizations".into(),
        device_code: Zeroizing::new(String::new()),
    };
    assert_send(&p.wait_for_sign_in(&flow));
}
