//! Tests of the admin module: the token file, and client and server over real loopback sockets.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::client::encode_path_segment;
use super::server::host_is_loopback;
use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Records the identities it is asked about, so tests can see what reached the backend.
struct FakeBackend {
    seen: Mutex<Vec<String>>,
    reload: Result<Value, &'static str>,
}

impl FakeBackend {
    fn new(reload: Result<Value, &'static str>) -> Arc<FakeBackend> {
        Arc::new(FakeBackend {
            seen: Mutex::new(Vec::new()),
            reload,
        })
    }
}

const METRICS_TEXT: &str = "# HELP radius_access_requests_total Access-Requests received.\n\
# TYPE radius_access_requests_total counter\n\
radius_access_requests_total{client=\"core-switch\"} 7\n";

impl AdminBackend for FakeBackend {
    fn lookup(&self, identity: &str) -> Value {
        self.seen.lock().unwrap().push(identity.to_owned());
        json!({ "identity": identity, "directory": "entra" })
    }
    fn status(&self) -> Value {
        json!({ "uptime_secs": 42, "listeners": ["127.0.0.1:1812"] })
    }
    fn metrics(&self) -> String {
        METRICS_TEXT.to_owned()
    }
    fn reload(&self) -> Result<Value, BoxError> {
        self.reload.clone().map_err(Into::into)
    }
}

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), AdminError>>,
}

async fn start(backend: Arc<FakeBackend>) -> Running {
    let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), TOKEN.to_owned(), backend)
        .await
        .unwrap();
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    Running { addr, shutdown, task }
}

async fn stop(running: Running) {
    running.shutdown.cancel();
    running.task.await.unwrap().unwrap();
}

/// Sends raw bytes and reads the whole answer: for requests reqwest would not send as written.
async fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8(answer).unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn token_is_created_0600_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = ensure_token(&state).unwrap();
    assert_eq!(first.len(), 64);
    assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
    let path = state.join(TOKEN_FILE);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(ensure_token(&state).unwrap(), first);
    assert_eq!(read_token(&state).unwrap(), first);
    // Only the token file is left behind: no temporary names.
    let names: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [TOKEN_FILE]);
}

#[test]
fn tokens_differ_between_state_dirs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert_ne!(ensure_token(a.path()).unwrap(), ensure_token(b.path()).unwrap());
}

#[test]
fn token_mode_is_tightened_when_0644() {
    let dir = tempfile::tempdir().unwrap();
    let first = ensure_token(dir.path()).unwrap();
    let path = dir.path().join(TOKEN_FILE);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(ensure_token(dir.path()).unwrap(), first);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn read_token_never_creates() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_token(dir.path()).unwrap_err();
    assert!(matches!(err, AdminError::TokenMissing { .. }), "{err}");
    assert!(err.to_string().contains("entra-radius serve"), "{err}");
    assert!(!dir.path().join(TOKEN_FILE).exists());
}

#[test]
fn empty_or_short_token_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TOKEN_FILE);
    for text in ["", "\n", "short\n", "has a space in it but is long enough to pass\n"] {
        std::fs::write(&path, text).unwrap();
        let err = ensure_token(dir.path()).unwrap_err();
        assert!(matches!(err, AdminError::Token { .. }), "{err}");
        let err = read_token(dir.path()).unwrap_err();
        assert!(matches!(err, AdminError::Token { .. }), "{err}");
        assert!(err.to_string().contains("delete the file"), "{err}");
    }
}

#[test]
fn hand_written_token_is_accepted_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TOKEN_FILE);
    std::fs::write(&path, format!("  {TOKEN}\n")).unwrap();
    assert_eq!(ensure_token(dir.path()).unwrap(), TOKEN);
    assert_eq!(read_token(dir.path()).unwrap(), TOKEN);
}

#[test]
fn host_check_accepts_loopback_only() {
    for host in [
        "localhost",
        "LOCALHOST:1818",
        "localhost.:1818",
        "127.0.0.1",
        "127.0.0.1:1818",
        "127.5.6.7:80",
        "[::1]",
        "[::1]:1818",
    ] {
        assert!(host_is_loopback(host), "{host} should be accepted");
    }
    for host in [
        "",
        "evil.example",
        "evil.example:1818",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "10.0.0.1:1818",
        "0.0.0.0:1818",
        "[::]:1818",
        "[::1",
        "[::1]x",
        "[::ffff:7f00:1]",
        "::1",
        "127.0.0.1:",
        "127.0.0.1:abc",
        "2130706433",
    ] {
        assert!(!host_is_loopback(host), "{host} should be refused");
    }
}

#[test]
fn path_segment_encoding() {
    assert_eq!(encode_path_segment("CONTOSO\\alice"), "CONTOSO%5Calice");
    assert_eq!(encode_path_segment("aa:bb:cc:dd:ee:ff"), "aa%3Abb%3Acc%3Add%3Aee%3Aff");
    assert_eq!(encode_path_segment("alice@contoso.com"), "alice%40contoso.com");
    assert_eq!(encode_path_segment("a/b c%?#"), "a%2Fb%20c%25%3F%23");
    assert_eq!(encode_path_segment("jö"), "j%C3%B6");
}

#[tokio::test]
async fn status_over_loopback() {
    let running = start(FakeBackend::new(Ok(json!({})))).await;
    let client = AdminClient::new(running.addr, TOKEN.to_owned()).unwrap();
    let status = client.get_json("/v1/status").await.unwrap();
    assert_eq!(status["uptime_secs"], 42);
    // A path without its leading slash means the same.
    assert_eq!(client.get_json("v1/status").await.unwrap(), status);
    stop(running).await;
}

#[tokio::test]
async fn lookup_identities_reach_the_backend_unchanged() {
    let backend = FakeBackend::new(Ok(json!({})));
    let running = start(backend.clone()).await;
    let client = AdminClient::new(running.addr, TOKEN.to_owned()).unwrap();
    let identities = [
        "CONTOSO\\alice",
        "aa:bb:cc:dd:ee:ff",
        "alice@contoso.com",
        "AA-BB-CC-DD-EE-FF",
        "aabb.ccdd.eeff",
        "host/laptop.contoso.com",
        "name with spaces%20and ?#&+",
        "jöhn.doe@contoso.com",
    ];
    for identity in identities {
        let answer = client.lookup(identity).await.unwrap();
        assert_eq!(answer["identity"], identity);
    }
    assert_eq!(*backend.seen.lock().unwrap(), identities);
    stop(running).await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let running = start(FakeBackend::new(Ok(json!({})))).await;
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/metrics", running.addr))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    assert_eq!(response.text().await.unwrap(), METRICS_TEXT);
    stop(running).await;
}

#[tokio::test]
async fn reload_success_returns_the_summary() {
    let running = start(FakeBackend::new(Ok(json!({ "clients": 3 })))).await;
    let client = AdminClient::new(running.addr, TOKEN.to_owned()).unwrap();
    let summary = client.post_json("/v1/reload", &json!({})).await.unwrap();
    assert_eq!(summary, json!({ "clients": 3 }));
    stop(running).await;
}

#[tokio::test]
async fn reload_error_is_422_with_its_message() {
    let message = "/etc/entra-radius.toml line 12: unknown key `secrett`";
    let running = start(FakeBackend::new(Err(message))).await;
    let client = AdminClient::new(running.addr, TOKEN.to_owned()).unwrap();
    match client.post_json("/v1/reload", &json!({})).await {
        Err(AdminError::Api {
            status: 422,
            message: got,
        }) => assert_eq!(got, message),
        other => panic!("expected Api 422, got {other:?}"),
    }
    stop(running).await;
}

#[tokio::test]
async fn wrong_token_is_unauthorized_naming_the_file() {
    let running = start(FakeBackend::new(Ok(json!({})))).await;
    let dir = tempfile::tempdir().unwrap();
    ensure_token(dir.path()).unwrap(); // a different, random token
    let client = AdminClient::from_state_dir(running.addr, dir.path()).unwrap();
    let err = client.get_json("/v1/status").await.unwrap_err();
    match &err {
        AdminError::Unauthorized { path } => assert_eq!(path, &dir.path().join(TOKEN_FILE)),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(err.to_string().contains("refused the token"), "{err}");
    // The lookup path is guarded just the same.
    let client = AdminClient::new(running.addr, "x".repeat(64)).unwrap();
    assert!(matches!(
        client.lookup("alice").await,
        Err(AdminError::Unauthorized { .. })
    ));
    stop(running).await;
}

#[tokio::test]
async fn missing_token_is_401_with_www_authenticate() {
    let running = start(FakeBackend::new(Ok(json!({})))).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}", running.addr);
    for request in [
        http.get(format!("{base}/v1/status")),
        http.get(format!("{base}/metrics")),
        // Unknown paths too: nobody without the token learns which paths exist.
        http.get(format!("{base}/v1/nothing-here")),
        http.get(format!("{base}/v1/status")).header("authorization", "Bearer "),
        http.get(format!("{base}/v1/status"))
            .header("authorization", format!("Basic {TOKEN}")),
        http.get(format!("{base}/v1/status")).bearer_auth(&TOKEN[..63]),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({ "error": "missing or wrong bearer token" }));
    }
    // The scheme is case-insensitive (RFC 7235).
    let response = http
        .get(format!("{base}/v1/status"))
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    stop(running).await;
}

#[tokio::test]
async fn unknown_path_is_404_json_and_wrong_method_405() {
    let running = start(FakeBackend::new(Ok(json!({})))).await;
    let client = AdminClient::new(running.addr, TOKEN.to_owned()).unwrap();
    match client.get_json("/v1/nothing-here").await {
        Err(AdminError::Api { status: 404, message }) => {
            assert_eq!(message, "no such endpoint: /v1/nothing-here")
        }
        other => panic!("expected Api 404, got {other:?}"),
    }
    // An empty identity is no endpoint either.
    assert!(matches!(
        client.get_json("/v1/accounts/").await,
        Err(AdminError::Api { status: 404, .. })
    ));
    match client.post_json("/v1/status", &json!({})).await {
        Err(AdminError::Api { status: 405, message }) => {
            assert_eq!(message, "POST is not allowed on /v1/status")
        }
        other => panic!("expected Api 405, got {other:?}"),
    }
    stop(running).await;
}

#[tokio::test]
async fn no_server_is_server_not_running() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = AdminClient::new(addr, TOKEN.to_owned()).unwrap();
    let err = client.get_json("/v1/status").await.unwrap_err();
    match &err {
        AdminError::ServerNotRunning { addr: got } => assert_eq!(*got, addr),
        other => panic!("expected ServerNotRunning, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("no entra-radius server answers on {addr}: start one with `entra-radius serve --config FILE`")
    );
}

#[tokio::test]
async fn non_loopback_addresses_are_refused() {
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:1818"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let result = AdminServer::bind(addr, TOKEN.to_owned(), FakeBackend::new(Ok(json!({})))).await;
        match result {
            Err(AdminError::NotLoopback(got)) => assert_eq!(got, addr),
            Err(other) => panic!("expected NotLoopback, got {other}"),
            Ok(_) => panic!("bound {addr}"),
        }
        // The client will not send the token there either.
        assert!(matches!(
            AdminClient::new(addr, TOKEN.to_owned()),
            Err(AdminError::NotLoopback(_))
        ));
    }
}

#[tokio::test]
async fn ipv6_loopback_works_where_available() {
    let Ok(server) = AdminServer::bind(
        "[::1]:0".parse().unwrap(),
        TOKEN.to_owned(),
        FakeBackend::new(Ok(json!({}))),
    )
    .await
    else {
        // Some containers have no IPv6 loopback; IPv4 is covered everywhere else.
        return;
    };
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let client = AdminClient::new(addr, TOKEN.to_owned()).unwrap();
    assert_eq!(client.get_json("/v1/status").await.unwrap()["uptime_secs"], 42);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn foreign_host_header_is_403_even_with_the_token() {
    let running = start(FakeBackend::new(Ok(json!({})))).await;
    let answer = raw_request(
        running.addr,
        &format!(
            "GET /v1/status HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("loopback"), "{answer}");
    assert!(!answer.contains("uptime_secs"), "{answer}");
    // Without any Host header: refused too.
    let answer = raw_request(
        running.addr,
        &format!("GET /v1/status HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.0 403"), "{answer}");
    // The same request with a loopback Host is answered.
    let answer = raw_request(
        running.addr,
        &format!(
            "GET /v1/status HTTP/1.1\r\nHost: localhost:{}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n",
            running.addr.port()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("uptime_secs"), "{answer}");
    stop(running).await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let running = start(FakeBackend::new(Ok(json!({})))).await;
    let client = AdminClient::new(running.addr, TOKEN.to_owned()).unwrap();
    let big = json!({ "padding": "x".repeat(MAX_BODY_BYTES) });
    match client.post_json("/v1/reload", &big).await {
        Err(AdminError::Api { status: 413, .. }) => {}
        other => panic!("expected Api 413, got {other:?}"),
    }
    // Just under the limit is fine.
    let small = json!({ "padding": "x".repeat(MAX_BODY_BYTES - 100) });
    client.post_json("/v1/reload", &small).await.unwrap();
    stop(running).await;
}

// Paused time: were the shutdown grace to run out instead, it would at once.
#[tokio::test(start_paused = true)]
async fn graceful_shutdown_returns_ok_and_closes_the_port() {
    let running = start(FakeBackend::new(Ok(json!({})))).await;
    let addr = running.addr;
    let client = AdminClient::new(addr, TOKEN.to_owned()).unwrap();
    // A request first, so an idle keep-alive connection is open during shutdown.
    client.get_json("/v1/status").await.unwrap();
    // And one whose end this test sees: answered, then left open.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(
        format!("GET /v1/status HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("}") {
        let mut buf = [0u8; 4096];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the answer");
        answer.extend_from_slice(&buf[..n]);
    }
    stop(running).await;
    // Graceful shutdown closed the idle connection: it did not wait for the grace.
    let mut rest = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(1), idle.read_to_end(&mut rest))
        .await
        .expect("the idle connection was left open")
        .unwrap();
    assert!(matches!(
        client.get_json("/v1/status").await,
        Err(AdminError::ServerNotRunning { .. })
    ));
}

#[test]
fn client_debug_hides_the_token() {
    let client = AdminClient::new("127.0.0.1:1818".parse().unwrap(), TOKEN.to_owned()).unwrap();
    let text = format!("{client:?}");
    assert!(!text.contains(TOKEN), "{text}");
}

// Paused time: the shutdown grace runs out as soon as nothing else can move.
#[tokio::test(start_paused = true)]
async fn a_stalled_client_does_not_hold_up_shutdown() {
    let running = start(FakeBackend::new(Ok(json!({})))).await;
    // Half a request, never finished: graceful shutdown would wait on it for ever.
    let mut stalled = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    stalled
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Only a guard against a server that waits for ever: the grace ends first.
    tokio::time::timeout(std::time::Duration::from_secs(3600), stop(running))
        .await
        .expect("the stalled client held up shutdown");
}
