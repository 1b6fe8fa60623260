//! Microsoft Graph / Entra ID emulator: the stand-in tenant for tests,
//! benchmarks and `serve --demo`. One loopback HTTP server answers both the
//! login endpoints (`/{tenant}/oauth2/v2.0/token`, `/{tenant}/adminconsent`,
//! `/{tenant}/oauth2/v2.0/devicecode` with its `/devicelogin` page) and Graph
//! (`/v1.0/...`, including application registration for `entra provision`),
//! so its base URL is both authority host and Graph endpoint. It follows the documented behaviour, traps included: the small
//! default user property set, `$select`-only tracking, partial objects and
//! `@removed` in delta rounds, replays and empty pages, 410 on expired delta
//! tokens, tokens without `roles` before consent, and (when injected) the
//! network's failures: connections reset under a request, answers cut off
//! mid-body. Test controls live under
//! `/_emulator/...` and in [`Control`].
//!
//! Differences from the real service: admin consent is granted at once (no
//! sign-in UI); tokens are HMAC-signed, not RSA; `$filter` is refused with
//! 400 except `displayName eq '…'` on applications and `appId eq '…'` on
//! service principals, and `$count`, `$search`, `$expand` always are;
//! throttling only happens when injected; no resource-unit budget.
//!
//! Device-code sign-in: only the tenant's one administrator can sign in at
//! `/devicelogin` (a plain form, no MFA, no consent prompt: the requested
//! scopes are granted as asked); `organizations` and `common` resolve to the
//! emulated tenant; `slow_down` is answered when polls come faster than
//! `interval`, but the interval is not raised afterwards; the AADSTS numbers
//! of `slow_down`, `authorization_declined` and `bad_verification_code` are
//! the emulator's choice. Delegated tokens carry `scp` and no `roles`, and are
//! only honoured by the application-registration routes (directory reads
//! still need application roles).
//!
//! Application registration: only delegated tokens with
//! `Application.ReadWrite.All` may use it (no `OwnedBy`, no check of the
//! signed-in user's directory role); `requiredResourceAccess` keeps only the
//! Graph application roles the sync uses; the replication window is a count
//! of failing calls ([`Control::set_replication_delay`]), not a time, and the
//! lists see a new app at once; a client-credentials token needs the app's
//! service principal (AADSTS7000229 before it exists), as in Entra.

mod apps;
mod conn;
mod control_http;
mod devicecode;
mod graph;
mod login;
mod model;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_provision;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use model::{
    ALL_ROLES, AdminUser, App, AppCertificate, AppSecret, CONSENT_REDIRECT_URI, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET,
    Device, Domain, GRAPH_APP_ID, GRAPH_APP_ROLE_IDS, GRAPH_CLI_CLIENT_ID, Group, Kind, ManagedDevice,
    SYNTHETIC_CLIENT_ID, SYNTHETIC_CLIENT_SECRET, Tenant, User,
};
pub use state::{Control, DeltaExpiry, DeltaProps, Fault, LoggedRequest};

use state::{Inner, Shared, lock};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    #[error("the emulator only listens on loopback, not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A running emulator. Dropping it without [`Emulator::shutdown`] leaves the
/// server task running until the runtime ends.
pub struct Emulator {
    addr: SocketAddr,
    tenant_id: String,
    control: Control,
    /// Stops the server (graceful shutdown of axum).
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Emulator {
    /// Binds `addr` (loopback only; port 0 picks one) and starts serving.
    pub async fn start(addr: SocketAddr, tenant: Tenant) -> Result<Emulator, EmulatorError> {
        if !addr.ip().is_loopback() {
            return Err(EmulatorError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let key: [u8; 32] = {
            use rand::RngExt;
            rand::rng().random()
        };
        let tenant_id = tenant.id.clone();
        let mut inner = Inner::new(tenant, key);
        inner.base_url = format!("http://{local}");
        let shared: Shared = std::sync::Arc::new(std::sync::Mutex::new(inner));
        let app = router(shared.clone());
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<conn::Cut>();
            let served = axum::serve(conn::CuttableListener(listener), app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "graph emulator stopped");
            }
        });
        Ok(Emulator {
            addr: local,
            tenant_id,
            control: Control { shared },
            cancel,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`: authority host and Graph endpoint at once.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn tenant_id(&self) -> String {
        self.tenant_id.clone()
    }

    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stops accepting, lets in-flight requests finish, waits for the task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "graph emulator task failed");
        }
    }
}

fn router(shared: Shared) -> Router {
    let s = shared.clone();
    let graph = Router::new()
        .route("/v1.0/domains", get(graph::domains))
        .route("/v1.0/users", get(|st, h, q| graph::list(Kind::Users, pick(st), h, q)))
        .route(
            "/v1.0/users/delta",
            get(|st, h, q| graph::delta(Kind::Users, pick(st), h, q)),
        )
        .route(
            "/v1.0/devices",
            get(|st, h, q| graph::list(Kind::Devices, pick(st), h, q)),
        )
        .route(
            "/v1.0/devices/delta",
            get(|st, h, q| graph::delta(Kind::Devices, pick(st), h, q)),
        )
        .route(
            "/v1.0/groups",
            get(|st, h, q| graph::list(Kind::Groups, pick(st), h, q)),
        )
        .route(
            "/v1.0/groups/delta",
            get(|st, h, q| graph::delta(Kind::Groups, pick(st), h, q)),
        )
        .route(
            "/v1.0/deviceManagement/managedDevices",
            get(|st, h, q| graph::list(Kind::ManagedDevices, pick(st), h, q)),
        )
        .route(
            "/v1.0/applications",
            get(apps::list_applications).post(apps::create_application),
        )
        .route("/v1.0/applications/{id}", get(apps::get_application))
        .route("/v1.0/applications/{id}/addPassword", post(apps::add_password))
        .route(
            "/v1.0/servicePrincipals",
            get(apps::list_service_principals).post(apps::create_service_principal),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(login::token))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(devicecode::devicecode))
        .route(
            "/devicelogin",
            get(devicecode::devicelogin_page).post(devicecode::devicelogin_submit),
        )
        .route("/{tenant}/adminconsent", get(login::admin_consent))
        .route("/{tenant}/v2.0/adminconsent", get(login::admin_consent));
    graph
        .merge(control_http::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(s, observe))
        .with_state(shared)
}

fn pick(State(s): State<Shared>) -> Shared {
    s
}

async fn not_found(h: axum::http::HeaderMap) -> Response {
    graph::graph_error(
        axum::http::StatusCode::BAD_REQUEST,
        "BadRequest",
        "Resource not found for the segment.",
        &h,
    )
}

/// Logs every request, answers injected faults before routing (cutting the
/// connection for the transport ones), and stamps Graph's `request-id` /
/// `client-request-id` headers.
async fn observe(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let headers = req.headers().clone();
    let header_str = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = req.uri().path().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| path.clone());
    let method = req.method().to_string();
    let fault = if path.starts_with("/_emulator") {
        None
    } else {
        lock(&shared).take_fault(&path, false)
    };
    let cut = req.extensions().get::<ConnectInfo<conn::Cut>>().map(|c| c.0.clone());
    let mut answered = true;
    let mut resp = match (fault, cut) {
        (None, _) => next.run(req).await,
        (Some(Fault::Reset), Some(cut)) => {
            cut.reset();
            answered = false;
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        (Some(Fault::Truncate), Some(cut)) => {
            cut.truncate();
            next.run(req).await
        }
        (Some(f), _) => graph::fault_response(&f, &headers),
    };
    let crid = header_str("client-request-id").unwrap_or_else(login::new_guid);
    if let Ok(v) = axum::http::HeaderValue::from_str(&crid) {
        resp.headers_mut().insert("client-request-id", v);
    }
    if let Ok(v) = axum::http::HeaderValue::from_str(&login::new_guid()) {
        resp.headers_mut().insert("request-id", v);
    }
    lock(&shared).push_log(LoggedRequest {
        method,
        path_and_query,
        throttle_priority: header_str("x-ms-throttle-priority"),
        has_authorization: headers.contains_key(axum::http::header::AUTHORIZATION),
        client_request_id: header_str("client-request-id"),
        status: if answered { resp.status().as_u16() } else { 0 },
    });
    resp
}
