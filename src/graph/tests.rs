//! Behaviour tests of the Graph client against fake servers on 127.0.0.1.

use std::time::{Duration, Instant};

use serde_json::json;

use super::testutil::{
    Canned, FakeServer, SECRET, TOKEN_PATH, config, fast_options, full_token, graph_error, oauth_error, token_answer,
};
use super::*;

fn client(fake: &FakeServer) -> GraphClient {
    GraphClient::with_options(config(&fake.base), fast_options()).unwrap()
}

/// A server whose token endpoint always succeeds and whose other paths are
/// answered by `graph`.
async fn graph_server(
    graph: impl Fn(&super::testutil::Recorded, usize) -> Canned + Send + Sync + 'static,
) -> FakeServer {
    FakeServer::start(move |req, n| {
        if req.path == TOKEN_PATH {
            full_token(n)
        } else {
            graph(req, n)
        }
    })
    .await
}

fn form_field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[tokio::test]
async fn token_is_fetched_with_client_credentials_and_cached() {
    let fake = FakeServer::start(|_, n| full_token(n)).await;
    let c = client(&fake);
    let t1 = c.token().await.unwrap();
    let t2 = c.token().await.unwrap();
    assert_eq!(t1.access_token, t2.access_token);
    assert_eq!(fake.count(TOKEN_PATH), 1, "second call must come from the cache");
    assert_eq!(t1.roles.len(), REQUIRED_ROLES.len());
    assert!(t1.expires_at > Instant::now() + Duration::from_secs(3500));

    let req = &fake.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(form_field(&req.body, "grant_type"), Some("client_credentials"));
    assert_eq!(form_field(&req.body, "client_secret"), Some(SECRET));
    let expected_scope = format!("{}/.default", fake.base)
        .replace(':', "%3A")
        .replace('/', "%2F");
    assert_eq!(form_field(&req.body, "scope"), Some(expected_scope.as_str()));
    let ua = req.headers.get("user-agent").unwrap().to_str().unwrap();
    assert!(ua.starts_with("entra-radius/"), "{ua}");
}

#[tokio::test]
async fn short_token_is_renewed_after_half_life() {
    // expires_in = 2 s: renewed from 1 s on, not before.
    let fake = FakeServer::start(|_, n| token_answer(n, REQUIRED_ROLES, 2)).await;
    let c = client(&fake);
    let t1 = c.token().await.unwrap();
    c.token().await.unwrap();
    assert_eq!(fake.count(TOKEN_PATH), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t2 = c.token().await.unwrap();
    assert_eq!(fake.count(TOKEN_PATH), 2, "token past half-life must be renewed");
    assert_ne!(t1.access_token, t2.access_token);
}

#[tokio::test]
async fn concurrent_token_callers_share_one_request() {
    let fake = FakeServer::start(|_, n| full_token(n).delay(Duration::from_millis(200))).await;
    let c = client(&fake);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let c = c.clone();
        set.spawn(async move { c.token().await.unwrap().access_token });
    }
    let tokens = set.join_all().await;
    assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(fake.count(TOKEN_PATH), 1);
}

#[tokio::test]
async fn aadsts_errors_are_mapped_with_explanations() {
    let cases = [
        (7000215, "invalid_client", "client secret is wrong"),
        (700016, "unauthorized_client", "not found in the tenant"),
        (90002, "invalid_request", "tenant was not found"),
    ];
    for (code, error, words) in cases {
        let fake = FakeServer::start(move |_, _| oauth_error(400, error, code)).await;
        let err = client(&fake).token().await.unwrap_err();
        match &err {
            GraphError::Aadsts {
                code: got,
                error: e,
                explanation,
                description,
            } => {
                assert_eq!(*got, code);
                assert_eq!(e, error);
                assert!(explanation.contains(words), "{explanation}");
                assert!(description.starts_with(&format!("AADSTS{code}")));
            }
            other => panic!("{code}: unexpected {other:?}"),
        }
        assert!(err.to_string().contains(words), "{err}");
    }
}

#[tokio::test]
async fn missing_roles_are_reported_by_name() {
    let fake = FakeServer::start(|_, n| token_answer(n, &[], 3599)).await;
    match client(&fake).check_roles().await.unwrap_err() {
        GraphError::ConsentMissing { missing_roles } => {
            assert_eq!(missing_roles, REQUIRED_ROLES);
        }
        other => panic!("unexpected {other:?}"),
    }

    let some = &["User.Read.All", "Domain.Read.All", "Device.Read.All"];
    let fake = FakeServer::start(move |_, n| token_answer(n, some, 3599)).await;
    let err = client(&fake).check_roles().await.unwrap_err();
    match &err {
        GraphError::ConsentMissing { missing_roles } => assert_eq!(
            missing_roles,
            &["GroupMember.Read.All", "DeviceManagementManagedDevices.Read.All"]
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("GroupMember.Read.All"));
}

#[tokio::test]
async fn check_roles_takes_a_fresh_token() {
    // First token has no roles (before consent), later ones have all of them.
    let fake = FakeServer::start(|_, n| {
        if n == 0 {
            token_answer(n, &[], 3599)
        } else {
            full_token(n)
        }
    })
    .await;
    let c = client(&fake);
    assert!(c.token().await.unwrap().roles.is_empty());
    let roles = c.check_roles().await.unwrap();
    assert_eq!(roles.len(), REQUIRED_ROLES.len());
    assert_eq!(fake.count(TOKEN_PATH), 2);
}

// Paused time: the clock moves only when every task waits on a timer, so
// it moves by exactly what the client chose to sleep.
#[tokio::test(start_paused = true)]
async fn throttled_429_honours_retry_after() {
    let fake = graph_server(|_, n| {
        if n == 0 {
            graph_error(429, "TooManyRequests").header("retry-after", "1")
        } else {
            Canned::json(200, json!({"ok": true}))
        }
    })
    .await;
    let c = client(&fake);
    c.token().await.unwrap();
    let started = tokio::time::Instant::now();
    let v = c.get_json("/v1.0/users", true).await.unwrap();
    let slept = started.elapsed();
    assert_eq!(v, json!({"ok": true}));
    // The one wait was the Retry-After, not the 10-50 ms backoff.
    assert!(
        slept >= Duration::from_secs(1) && slept < Duration::from_secs(2),
        "slept {slept:?}"
    );
    let reqs = fake.graph_requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.headers.get("x-ms-throttle-priority").unwrap(), "low");
        assert!(
            r.headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bearer ey")
        );
    }
}

#[tokio::test]
async fn foreground_requests_carry_no_priority_header() {
    let fake = graph_server(|_, _| Canned::json(200, json!({}))).await;
    client(&fake).get_json("/v1.0/organization", false).await.unwrap();
    assert!(fake.graph_requests()[0].headers.get("x-ms-throttle-priority").is_none());
}

#[tokio::test]
async fn service_unavailable_without_retry_after_backs_off() {
    let fake = graph_server(|_, n| {
        if n < 2 {
            graph_error(503, "serviceNotAvailable")
        } else {
            Canned::json(200, json!({"value": []}))
        }
    })
    .await;
    let page = client(&fake).get_page("/v1.0/users/delta").await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(fake.graph_requests().len(), 3);
}

#[tokio::test]
async fn gives_up_once_the_waiting_budget_is_spent() {
    let fake = graph_server(|_, n| {
        if n % 2 == 0 {
            graph_error(504, "gatewayTimeout")
        } else {
            graph_error(429, "TooManyRequests").header("retry-after", "0")
        }
    })
    .await;
    // Each wait is at least the backoff base (10 ms): a few answers fit.
    let opts = GraphOptions {
        max_throttle_wait: Duration::from_millis(45),
        ..fast_options()
    };
    let c = GraphClient::with_options(super::testutil::config(&fake.base), opts).unwrap();
    let answers = match c.get_json("/v1.0/users", true).await.unwrap_err() {
        GraphError::Throttled { answers, .. } => answers,
        GraphError::Unavailable {
            answers, status: 504, ..
        } => answers,
        other => panic!("unexpected {other:?}"),
    };
    assert!(answers > 1, "{answers}");
    assert_eq!(fake.graph_requests().len(), answers as usize);
}

#[tokio::test]
async fn unauthorized_once_renews_the_token_and_retries() {
    let fake = graph_server(|_, n| {
        if n == 0 {
            graph_error(401, "InvalidAuthenticationToken")
        } else {
            Canned::json(200, json!({"value": [{"id": "1"}]}))
        }
    })
    .await;
    let page = client(&fake).get_page("/v1.0/users/delta").await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(fake.count(TOKEN_PATH), 2, "the token must be renewed once");
    let reqs = fake.graph_requests();
    assert_eq!(reqs.len(), 2);
    assert_ne!(
        reqs[0].headers.get("authorization"),
        reqs[1].headers.get("authorization"),
        "the retry must carry the new token"
    );
}

#[tokio::test]
async fn unauthorized_twice_is_reported_with_explanation() {
    let fake = graph_server(|_, _| graph_error(401, "InvalidAuthenticationToken")).await;
    match client(&fake).get_json("/v1.0/users", true).await.unwrap_err() {
        GraphError::Graph {
            status,
            code,
            explanation,
            ..
        } => {
            assert_eq!(status, 401);
            assert_eq!(code, "InvalidAuthenticationToken");
            assert!(explanation.contains("access token"), "{explanation}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(fake.graph_requests().len(), 2);
}

#[tokio::test]
async fn gone_is_delta_expired_with_location() {
    let fake = graph_server(|_, _| {
        graph_error(410, "SyncStateInvalid").header(
            "location",
            "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=fresh",
        )
    })
    .await;
    match client(&fake)
        .get_page("/v1.0/users/delta?$deltatoken=old")
        .await
        .unwrap_err()
    {
        GraphError::DeltaExpired { location } => assert_eq!(
            location.as_deref(),
            Some("https://graph.microsoft.com/v1.0/users/delta?$deltatoken=fresh")
        ),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn sync_state_errors_are_delta_expired() {
    for code in ["syncStateNotFound", "resyncRequired"] {
        let fake = graph_server(move |_, _| graph_error(400, code)).await;
        match client(&fake)
            .get_page("/v1.0/groups/delta?$deltatoken=x")
            .await
            .unwrap_err()
        {
            GraphError::DeltaExpired { location } => assert_eq!(location, None),
            other => panic!("{code}: unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn forbidden_explains_which_permission_is_missing() {
    let fake = graph_server(|_, _| graph_error(403, "Authorization_RequestDenied")).await;
    let url = users_delta_url(&fake.base, USER_SELECT);
    let err = client(&fake).get_page(&url).await.unwrap_err();
    match &err {
        GraphError::Graph {
            status,
            code,
            message,
            explanation,
        } => {
            assert_eq!(*status, 403);
            assert_eq!(code, "Authorization_RequestDenied");
            assert_eq!(message, "Authorization_RequestDenied happened");
            assert!(explanation.contains("User.Read.All"), "{explanation}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Not retried: a 403 will not go away by itself.
    assert_eq!(fake.graph_requests().len(), 1);
}

#[tokio::test]
async fn get_page_reads_items_and_links() {
    let fake = graph_server(|req, _| {
        if req.query.as_deref().is_some_and(|q| q.contains("skiptoken")) {
            Canned::json(
                200,
                json!({"value": [{"id": "3"}], "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=d"}),
            )
        } else {
            // An empty-looking page may still carry a nextLink.
            Canned::json(
                200,
                json!({"value": [{"id": "1"}, {"id": "2"}], "@odata.nextLink": "NEXT"}),
            )
        }
    })
    .await;
    let c = client(&fake);
    let first = c.get_page(&users_delta_url(&fake.base, USER_SELECT)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.next_link.as_deref(), Some("NEXT"));
    assert_eq!(first.delta_link, None);
    let q = fake.graph_requests()[0].query.clone().unwrap();
    assert!(q.starts_with("$select=id,userPrincipalName,accountEnabled"), "{q}");

    let next = format!("{}/v1.0/users/delta?$skiptoken=abc", fake.base);
    let last = c.get_page(&next).await.unwrap();
    assert_eq!(last.items, vec![json!({"id": "3"})]);
    assert_eq!(last.next_link, None);
    assert!(last.delta_link.unwrap().ends_with("$deltatoken=d"));

    let fake = graph_server(|_, _| Canned::json(200, json!({"nope": 1}))).await;
    assert!(matches!(
        client(&fake).get_page("/v1.0/users/delta").await.unwrap_err(),
        GraphError::BadResponse(_)
    ));
}

#[tokio::test]
async fn domains_follow_next_link() {
    let fake = graph_server(|req, _| {
        if req.query.as_deref() == Some("page=2") {
            Canned::json(
                200,
                json!({"value": [{"id": "fabrikam.com", "authenticationType": "Federated", "isDefault": false, "isInitial": false, "isVerified": true}]}),
            )
        } else {
            let host = req.headers.get("host").unwrap().to_str().unwrap().to_string();
            Canned::json(
                200,
                json!({
                    "value": [
                        {"id": "contoso.onmicrosoft.com", "authenticationType": "Managed", "isDefault": false, "isInitial": true, "isVerified": true},
                        {"id": "contoso.com", "authenticationType": "Managed", "isDefault": true, "isInitial": false, "isVerified": true}
                    ],
                    "@odata.nextLink": format!("http://{host}/v1.0/domains?page=2")
                }),
            )
        }
    })
    .await;
    let domains = client(&fake).domains().await.unwrap();
    let names: Vec<_> = domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["contoso.onmicrosoft.com", "contoso.com", "fabrikam.com"]);
    assert!(domains[0].is_initial && !domains[0].federated);
    assert!(domains[1].is_default);
    assert!(domains[2].federated && domains[2].is_verified);
    // Foreground: an admin is waiting for `domains list`.
    assert!(
        fake.graph_requests()
            .iter()
            .all(|r| r.headers.get("x-ms-throttle-priority").is_none())
    );
}

#[tokio::test]
async fn links_to_other_hosts_are_refused() {
    let fake = graph_server(|_, _| Canned::json(200, json!({"value": []}))).await;
    let c = client(&fake);
    let err = c
        .get_page("https://evil.example.com/v1.0/users/delta?$skiptoken=x")
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::InsecureEndpoint(_)), "{err:?}");
    assert!(fake.requests().is_empty(), "no token may be fetched or sent");
}

// Paused time: the 200 ms answers end only once every request sent is
// waiting at the server.
#[tokio::test(start_paused = true)]
async fn in_flight_requests_are_bounded() {
    let fake = graph_server(|_, _| Canned::json(200, json!({})).delay(Duration::from_millis(200))).await;
    let opts = GraphOptions {
        max_in_flight: 2,
        ..fast_options()
    };
    let c = GraphClient::with_options(super::testutil::config(&fake.base), opts).unwrap();
    c.token().await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let c = c.clone();
        set.spawn(async move { c.get_json("/v1.0/users", true).await.unwrap() });
    }
    set.join_all().await;
    // 4 requests of 200 ms: the server saw 2 at a time, never more.
    assert_eq!(fake.graph_requests().len(), 4);
    assert_eq!(fake.max_in_flight(), 2);
}

#[test]
fn validate_endpoint_allows_https_and_loopback_http_only() {
    for ok in [
        "https://graph.microsoft.com",
        "https://login.microsoftonline.us/",
        "http://127.0.0.1:8080",
        "http://127.1.2.3",
        "http://[::1]:9000",
        "http://localhost:3000",
        "http://LOCALHOST",
    ] {
        assert!(validate_endpoint(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://example.com",
        "http://10.0.0.1",
        "http://[fe80::1]",
        "http://localhost.evil.com",
    ] {
        assert!(
            matches!(validate_endpoint(bad), Err(GraphError::InsecureEndpoint(_))),
            "{bad}"
        );
    }
    for invalid in [
        "ftp://graph.microsoft.com",
        "not a url",
        "https://user:pw@graph.microsoft.com",
    ] {
        assert!(
            matches!(validate_endpoint(invalid), Err(GraphError::InvalidConfig(_))),
            "{invalid}"
        );
    }
}

#[test]
fn new_refuses_bad_config() {
    let mut cfg = config("http://127.0.0.1:1");
    cfg.graph_endpoint = "http://graph.example.com".into();
    assert!(matches!(
        GraphClient::new(cfg).unwrap_err(),
        GraphError::InsecureEndpoint(_)
    ));
    let mut cfg = config("http://127.0.0.1:1");
    cfg.tenant_id = "contoso/../x".into();
    assert!(matches!(
        GraphClient::new(cfg).unwrap_err(),
        GraphError::InvalidConfig(_)
    ));
}

#[tokio::test]
async fn password_grant_failures_are_mapped() {
    let cases = [
        (50126, "invalid_grant", PasswordFailure::WrongPassword),
        (50057, "invalid_grant", PasswordFailure::Disabled),
        (50076, "interaction_required", PasswordFailure::MfaRequired),
        (50053, "invalid_grant", PasswordFailure::Locked),
        (50055, "invalid_grant", PasswordFailure::PasswordExpired),
        (53003, "invalid_grant", PasswordFailure::ConditionalAccess),
        (50034, "invalid_grant", PasswordFailure::NoSuchUser),
    ];
    for (code, error, want) in cases {
        let fake = FakeServer::start(move |_, _| oauth_error(400, error, code)).await;
        match client(&fake).check_password("alice@contoso.com", "hunter2").await {
            Err(PasswordError::PasswordCheck { code: got, reason }) => {
                assert_eq!((got, reason), (code, want));
            }
            other => panic!("{code}: unexpected {other:?}"),
        }
        let req = &fake.requests()[0];
        assert_eq!(form_field(&req.body, "grant_type"), Some("password"));
        assert_eq!(form_field(&req.body, "scope"), Some("openid"));
        assert_eq!(form_field(&req.body, "password"), Some("hunter2"));
    }
}

#[tokio::test]
async fn password_grant_success_and_service_errors() {
    let fake = FakeServer::start(|_, _| {
        Canned::json(
            200,
            json!({"token_type": "Bearer", "access_token": "x", "id_token": "y"}),
        )
    })
    .await;
    client(&fake)
        .check_password("alice@contoso.com", "right")
        .await
        .unwrap();

    // A bad client secret is the application's problem, not a wrong password.
    let fake = FakeServer::start(|_, _| oauth_error(401, "invalid_client", 7000215)).await;
    match client(&fake).check_password("alice@contoso.com", "pw").await {
        Err(PasswordError::Service { code, explanation }) => {
            assert_eq!(code, 7000215);
            assert!(explanation.contains("client secret"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn password_check_transport_error_is_separate() {
    // Bind then drop a listener: the port is then (almost certainly) refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = GraphClient::new(config(&format!("http://127.0.0.1:{port}"))).unwrap();
    match c.check_password("alice@contoso.com", "pw").await {
        Err(PasswordError::Transport(e)) => assert!(e.is_connect(), "{e:?}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn debug_output_never_contains_secrets() {
    let fake = FakeServer::start(|_, n| full_token(n)).await;
    let c = client(&fake);
    let token = c.token().await.unwrap();
    let out = format!(
        "{:?} {:#?} {:?} {:?}",
        config(&fake.base),
        c,
        token,
        Credential::Secret(SECRET.into())
    );
    assert!(!out.contains(SECRET), "{out}");
    assert!(!out.contains(&token.access_token), "{out}");
    assert!(out.contains("contoso.onmicrosoft.com"));
}

#[test]
fn first_round_urls() {
    let base = "https://graph.microsoft.com/";
    assert_eq!(
        users_delta_url(base, USER_SELECT),
        "https://graph.microsoft.com/v1.0/users/delta?$select=id,userPrincipalName,accountEnabled,mail,displayName,userType,onPremisesSyncEnabled,onPremisesSamAccountName,onPremisesDomainName,onPremisesSecurityIdentifier,proxyAddresses,lastPasswordChangeDateTime"
    );
    assert_eq!(
        groups_delta_url(base, GROUP_SELECT),
        "https://graph.microsoft.com/v1.0/groups/delta?$select=displayName,members"
    );
    assert!(
        devices_delta_url(base, DEVICE_SELECT)
            .starts_with("https://graph.microsoft.com/v1.0/devices/delta?$select=id,deviceId,")
    );
    assert_eq!(
        managed_devices_url(base, MANAGED_DEVICE_SELECT),
        "https://graph.microsoft.com/v1.0/deviceManagement/managedDevices?$select=id,azureADDeviceId,wiFiMacAddress,ethernetMacAddress,complianceState"
    );
}

#[test]
fn backoff_is_full_jitter_within_the_cap() {
    let base = Duration::from_secs(1);
    let cap = Duration::from_secs(60);
    for attempt in 1..=40 {
        let ceiling = (base * 2u32.saturating_pow(attempt - 1)).min(cap);
        for _ in 0..20 {
            assert!(client::backoff(base, cap, attempt) <= ceiling);
        }
    }
    // Jitter: not always the same value.
    let samples: std::collections::HashSet<_> = (0..50).map(|_| client::backoff(base, cap, 6)).collect();
    assert!(samples.len() > 1);
}

/// A client of the demo tenant served by the project's emulator, with short
/// backoff (10-50 ms).
async fn emulated(opts: GraphOptions) -> (graph_emulator::Emulator, GraphClient) {
    use graph_emulator::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Emulator, Tenant};
    let emu = Emulator::start("127.0.0.1:0".parse().unwrap(), Tenant::demo())
        .await
        .unwrap();
    let cfg = GraphConfig {
        authority_host: emu.base_url(),
        graph_endpoint: emu.base_url(),
        tenant_id: emu.tenant_id(),
        client_id: DEMO_CLIENT_ID.into(),
        credential: Credential::Secret(DEMO_CLIENT_SECRET.into()),
    };
    let c = GraphClient::with_options(cfg, opts).unwrap();
    (emu, c)
}

/// Statuses the emulator answered on `path` (0: the connection was cut).
fn statuses(emu: &graph_emulator::Emulator, path: &str) -> Vec<u16> {
    emu.control()
        .request_log()
        .iter()
        .filter(|l| l.path_and_query.split('?').next() == Some(path))
        .map(|l| l.status)
        .collect()
}

#[tokio::test]
async fn resets_and_cut_off_answers_are_retried() {
    use graph_emulator::Fault;
    let (emu, c) = emulated(fast_options()).await;
    emu.control().fail_next("/v1.0/users/delta", Fault::Reset, 2);
    emu.control().fail_next("/v1.0/users/delta", Fault::Truncate, 2);
    let page = c
        .get_page(&users_delta_url(&emu.base_url(), USER_SELECT))
        .await
        .unwrap();
    assert!(!page.items.is_empty());
    assert_eq!(statuses(&emu, "/v1.0/users/delta"), vec![0, 0, 200, 200, 200]);
}

#[tokio::test]
async fn unavailable_is_waited_out_past_six_answers_within_the_budget() {
    use graph_emulator::Fault;
    let (emu, c) = emulated(fast_options()).await;
    // Retry-After: 0 still waits the backoff base (10 ms here) each time.
    emu.control()
        .fail_next("/v1.0/users/delta", Fault::Unavailable { retry_after_s: Some(0) }, 9);
    c.get_page(&users_delta_url(&emu.base_url(), USER_SELECT))
        .await
        .unwrap();
    let seen = statuses(&emu, "/v1.0/users/delta");
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert_eq!(seen.last(), Some(&200));
}

#[tokio::test]
async fn a_retry_after_beyond_the_budget_is_not_waited_for() {
    use graph_emulator::Fault;
    let opts = GraphOptions {
        max_throttle_wait: Duration::from_secs(2),
        ..fast_options()
    };
    let (emu, c) = emulated(opts).await;
    emu.control()
        .fail_next("/v1.0/users/delta", Fault::Throttle { retry_after_s: 30 }, 1);
    let url = users_delta_url(&emu.base_url(), USER_SELECT);
    // Only a guard against a client that sleeps the 30 s: nothing is timed.
    let answer = tokio::time::timeout(Duration::from_secs(20), c.get_page(&url))
        .await
        .expect("the client waited although the budget could not cover the wait");
    let err = answer.unwrap_err();
    assert!(matches!(err, GraphError::Throttled { .. }), "{err:?}");
    assert!(err.to_string().contains("30s"), "{err}");
    assert_eq!(statuses(&emu, "/v1.0/users/delta"), vec![429]);
}

#[tokio::test]
async fn throttling_and_unavailability_are_told_apart() {
    use graph_emulator::Fault;
    let cases = [
        (Fault::Throttle { retry_after_s: 0 }, "429", "throttl"),
        (Fault::Unavailable { retry_after_s: None }, "503", "unavailable"),
        (Fault::GatewayTimeout, "504", "gateway timeout"),
    ];
    for (fault, status, words) in cases {
        let opts = GraphOptions {
            max_throttle_wait: Duration::from_millis(100),
            ..fast_options()
        };
        let (emu, c) = emulated(opts).await;
        emu.control().fail_next("/v1.0/users/delta", fault, 1000);
        let err = c
            .get_page(&users_delta_url(&emu.base_url(), USER_SELECT))
            .await
            .unwrap_err();
        let text = err.to_string().to_lowercase();
        assert!(text.contains(status) && text.contains(words), "{text}");
        if status != "429" {
            assert!(!text.contains("throttl"), "{text}");
        }
        assert!(statuses(&emu, "/v1.0/users/delta").len() > 1, "{text}");
    }
}

#[tokio::test]
async fn expired_and_unknown_page_links_mean_start_over() {
    use graph_emulator::DeltaExpiry;
    let (emu, c) = emulated(fast_options()).await;
    let ctl = emu.control();
    ctl.set_page_size(1);
    ctl.set_delta_quirks(0, 0);
    let base = emu.base_url();
    let first = users_delta_url(&base, USER_SELECT);
    let expired = |r: Result<Page, GraphError>| matches!(r, Err(GraphError::DeltaExpired { .. }));
    for style in [DeltaExpiry::Gone, DeltaExpiry::SyncStateNotFound] {
        ctl.set_delta_expiry_style(style);
        let next = c.get_page(&first).await.unwrap().next_link.unwrap();
        ctl.forget_page_links();
        assert!(expired(c.get_page(&next).await), "{style:?}");
    }
    // Links Graph does not recognise at all: a 400, not an expiry code.
    for link in [
        format!("{base}/v1.0/users/delta?$skiptoken=bm90LWEtdG9rZW4"),
        format!("{base}/v1.0/users/delta?$deltatoken=bm90LWEtdG9rZW4"),
        format!("{base}/v1.0/users?$skiptoken=bm90LWEtdG9rZW4"),
    ] {
        let r = c.get_page(&link).await;
        assert!(expired(r), "{link}");
    }
    // A 400 to a request of our own making is reported as such.
    match c.get_page(&format!("{base}/v1.0/users/delta?$select=nope")).await {
        Err(GraphError::Graph { status: 400, .. }) => {}
        other => panic!("{other:?}"),
    }
}
