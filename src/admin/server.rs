//! The admin API server: an axum router behind a Host check and a bearer token, on loopback only.

use std::future::IntoFuture;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::AdminError;
use super::api::{ApiError, AuthLogQuery, DisconnectSelection, IntegrationRequest, SessionsQuery};

/// The largest request body the API reads. No endpoint needs a body today; the limit keeps a
/// local client from making the server buffer without bound.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Prometheus' text exposition format, version 0.0.4.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// After shutdown is asked for, how long open connections may take to finish before `run`
/// returns anyway: a stalled client must not hold up the server's exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// An error of the layer behind the backend, which the admin API does not know by type: it
/// answers with its message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the API asks of the rest of the server (the app's backend implements it).
///
/// The methods are synchronous; the API calls each on tokio's blocking pool, so an
/// implementation may read files or take locks without stalling the runtime.
pub trait AdminBackend: Send + Sync + 'static {
    /// Explain how an identity is decided: JSON for the API.
    fn lookup(&self, identity: &str) -> serde_json::Value;
    /// Server status summary (uptime, listeners, replica counts, ...): JSON.
    fn status(&self) -> serde_json::Value;
    /// Per-client RADIUS counters etc. in the Prometheus text exposition format.
    fn metrics(&self) -> String;
    /// Reload the config (like SIGHUP). Ok(summary), or the error of the layer that refused
    /// it (its message names the file and line), answered 422.
    fn reload(&self) -> Result<serde_json::Value, BoxError>;
    /// The Entra ID integration's operations (`/v1/entra…`, `/v1/domains…`, `/v1/sync`). A
    /// backend without the integration answers 404.
    fn integration(&self, request: IntegrationRequest) -> Result<serde_json::Value, ApiError> {
        let _ = request;
        Err(ApiError {
            status: 404,
            message: "this server has no Entra ID integration".into(),
        })
    }
    /// The authentication history (`/v1/auth/log`): a JSON array of decisions. A backend
    /// without one answers 404.
    fn auth_log(&self, query: AuthLogQuery) -> Result<serde_json::Value, ApiError> {
        let _ = query;
        Err(ApiError {
            status: 404,
            message: "this server keeps no authentication history".into(),
        })
    }
    /// The active sessions (`GET /v1/sessions`): a JSON array.
    fn sessions(&self, query: SessionsQuery) -> Result<serde_json::Value, ApiError> {
        let _ = query;
        Err(ApiError {
            status: 404,
            message: "this server keeps no sessions".into(),
        })
    }
    /// Disconnect-Requests by hand (`POST /v1/sessions/disconnect`): a JSON
    /// array, one outcome per session; waits until every one has ended.
    fn disconnect(&self, selection: DisconnectSelection) -> Result<serde_json::Value, ApiError> {
        let _ = selection;
        Err(ApiError {
            status: 404,
            message: "this server keeps no sessions".into(),
        })
    }
}

/// The admin API, bound and ready to serve. Binding is a step of its own so that the caller
/// (and tests binding port 0) learns the address before serving starts.
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
}

impl AdminServer {
    /// Binds `addr`, refusing any address that is not loopback: the API is plain HTTP and
    /// must not be reachable from the network.
    pub async fn bind(
        addr: SocketAddr,
        token: String,
        backend: Arc<dyn AdminBackend>,
    ) -> Result<AdminServer, AdminError> {
        if !addr.ip().is_loopback() {
            return Err(AdminError::NotLoopback(addr));
        }
        let bind_error = |source| AdminError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(AdminServer {
            listener,
            local_addr,
            router: router(token, backend),
        })
    }

    /// The address actually bound (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then lets requests in flight finish (at most
    /// a few seconds) and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AdminError> {
        tracing::info!(addr = %self.local_addr, "admin API listening");
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let grace_over = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            served = serve.into_future() => served.map_err(AdminError::Serve),
            () = grace_over => {
                tracing::warn!(
                    "admin API: connections still open {} s after shutdown; closing anyway",
                    SHUTDOWN_GRACE.as_secs()
                );
                Ok(())
            }
        }
    }
}

#[derive(Clone)]
struct ApiState {
    token: Arc<str>,
    backend: Arc<dyn AdminBackend>,
}

/// The API's router, every route and the fallback behind the Host check and the token. Public
/// so that tests can serve it in-process.
pub fn router(token: String, backend: Arc<dyn AdminBackend>) -> Router {
    let state = ApiState {
        token: token.into(),
        backend,
    };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/accounts/{identity}", get(lookup))
        .route("/v1/reload", post(reload))
        .route("/v1/auth/log", get(auth_log))
        .route("/v1/sessions", get(sessions))
        .route("/v1/sessions/disconnect", post(disconnect))
        .route("/metrics", get(metrics))
        .route("/v1/entra", get(|s| integration(s, IntegrationRequest::Status)))
        .route("/v1/entra/enable", post(|s| integration(s, IntegrationRequest::Enable)))
        .route(
            "/v1/entra/disable",
            post(|s, body| with_body(s, body, IntegrationRequest::Disable)),
        )
        .route(
            "/v1/entra/provision",
            get(|s| integration(s, IntegrationRequest::ProvisionProgress))
                .post(|s, body| with_body(s, body, IntegrationRequest::ProvisionStart)),
        )
        .route(
            "/v1/entra/credentials",
            put(|s, body| with_body(s, body, IntegrationRequest::SetCredentials)),
        )
        .route(
            "/v1/entra/consent",
            get(consent_url).post(|s, body| with_body(s, body, IntegrationRequest::ConsentResult)),
        )
        .route("/v1/domains", get(|s| integration(s, IntegrationRequest::Domains)))
        .route(
            "/v1/domains/selection",
            post(|s, body| with_body(s, body, IntegrationRequest::SelectDomains)),
        )
        .route(
            "/v1/sync",
            get(|s| integration(s, IntegrationRequest::SyncStatus))
                .post(|s| integration(s, IntegrationRequest::SyncNow)),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // `layer` (not `route_layer`) so that the fallbacks are guarded too: without the token
        // nobody learns which paths exist.
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Host check, then token check, then the body limit; only then the handler.
async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if !request_host_is_loopback(&request) {
        tracing::info!(
            method = %request.method(),
            path = request.uri().path(),
            "admin API: refused a request whose Host is not loopback"
        );
        return error_response(
            StatusCode::FORBIDDEN,
            "the Host header must name a loopback address (localhost, 127.0.0.1 or [::1])",
        );
    }
    if !bearer_matches(request.headers(), &state.token) {
        // The header itself is never logged: a wrong token may be a right one for elsewhere.
        tracing::warn!(
            method = %request.method(),
            path = request.uri().path(),
            "admin API: refused a request with a missing or wrong bearer token"
        );
        let mut response = error_response(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    // Reading the whole (small) body here enforces the limit for every endpoint at once,
    // whether or not its handler reads the body.
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the request body is over {} KiB or could not be read",
                    MAX_BODY_BYTES / 1024
                ),
            );
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// The Host header (or, without one, the URI's authority) must name loopback. A browser sends
/// the name it resolved, so a page on evil.example whose DNS now answers 127.0.0.1 is refused.
fn request_host_is_loopback(request: &Request) -> bool {
    match request.headers().get(header::HOST) {
        Some(value) => value.to_str().is_ok_and(host_is_loopback),
        None => request
            .uri()
            .authority()
            .is_some_and(|authority| host_is_loopback(authority.as_str())),
    }
}

/// `localhost`, a 127.0.0.0/8 address or `[::1]`, each with an optional port.
pub fn host_is_loopback(host: &str) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok && inside.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return false,
        None => host,
    };
    name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("localhost.")
        || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// `Authorization: Bearer <token>`, the scheme case-insensitive (RFC 7235), the token compared
/// in constant time so that response timing does not reveal how much of a guess was right.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, presented)) = value.split_once(' ') else {
        return false;
    };
    let presented = presented.trim();
    // An empty token never matches, even if the server were somehow given an empty one.
    scheme.eq_ignore_ascii_case("bearer")
        && !presented.is_empty()
        && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Runs a backend call on the blocking pool; a panic in it becomes a 500, not a dropped
/// connection.
async fn call_backend<T, F>(call: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(call).await.map_err(|e| {
        tracing::error!("admin API: the backend failed while answering: {e}");
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server failed while answering; see its log",
        )
    })
}

async fn status(State(state): State<ApiState>) -> Response {
    match call_backend(move || state.backend.status()).await {
        Ok(value) => Json(value).into_response(),
        Err(response) => response,
    }
}

async fn lookup(State(state): State<ApiState>, identity: Result<Path<String>, PathRejection>) -> Response {
    // axum has already percent-decoded the segment: `CONTOSO%5Calice` arrives as `CONTOSO\alice`.
    let Path(identity) = match identity {
        Ok(identity) => identity,
        Err(rejection) => {
            return error_response(StatusCode::BAD_REQUEST, &rejection.body_text());
        }
    };
    match call_backend(move || state.backend.lookup(&identity)).await {
        Ok(value) => Json(value).into_response(),
        Err(response) => response,
    }
}

async fn reload(State(state): State<ApiState>) -> Response {
    tracing::info!("admin API: config reload requested");
    match call_backend(move || state.backend.reload()).await {
        Ok(Ok(summary)) => Json(summary).into_response(),
        Ok(Err(e)) => error_response(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        Err(response) => response,
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    match call_backend(move || state.backend.metrics()).await {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(response) => response,
    }
}

async fn auth_log(
    State(state): State<ApiState>,
    query: Result<axum::extract::Query<AuthLogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let axum::extract::Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return error_response(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    answer(call_backend(move || state.backend.auth_log(query)).await)
}

async fn sessions(
    State(state): State<ApiState>,
    query: Result<axum::extract::Query<SessionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let axum::extract::Query(query) = match query {
        Ok(q) => q,
        Err(rejection) => return error_response(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    answer(call_backend(move || state.backend.sessions(query)).await)
}

async fn disconnect(State(state): State<ApiState>, body: axum::body::Bytes) -> Response {
    let selection: DisconnectSelection = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("the request body is not valid: {e}")),
    };
    tracing::info!("admin API: Disconnect-Request asked for");
    answer(call_backend(move || state.backend.disconnect(selection)).await)
}

/// A backend operation's answer: its JSON, or its error with its status.
fn answer(result: Result<Result<serde_json::Value, ApiError>, Response>) -> Response {
    match result {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(e)) => error_response(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &e.message,
        ),
        Err(response) => response,
    }
}

/// Runs one integration operation on the blocking pool: the backend may wait on Graph.
async fn integration(State(state): State<ApiState>, request: IntegrationRequest) -> Response {
    answer(call_backend(move || state.backend.integration(request)).await)
}

/// Parses a JSON body (an empty body means the defaults) into a request; a body that does not
/// parse is a 400 naming the problem.
async fn with_body<B, F>(state: State<ApiState>, body: axum::body::Bytes, make: F) -> Response
where
    B: serde::de::DeserializeOwned + Default,
    F: FnOnce(B) -> IntegrationRequest,
{
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(B::default())
    } else {
        serde_json::from_slice::<B>(&body)
    };
    match parsed {
        Ok(b) => integration(state, make(b)).await,
        Err(e) => error_response(StatusCode::BAD_REQUEST, &format!("the request body is not valid: {e}")),
    }
}

#[derive(serde::Deserialize)]
struct ConsentQuery {
    redirect_uri: String,
}

async fn consent_url(
    state: State<ApiState>,
    query: Result<axum::extract::Query<ConsentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match query {
        Ok(axum::extract::Query(q)) => {
            integration(
                state,
                IntegrationRequest::ConsentUrl {
                    redirect_uri: q.redirect_uri,
                },
            )
            .await
        }
        Err(e) => error_response(StatusCode::BAD_REQUEST, &e.body_text()),
    }
}

async fn not_found(uri: Uri) -> Response {
    error_response(StatusCode::NOT_FOUND, &format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{method} is not allowed on {}", uri.path()),
    )
}
