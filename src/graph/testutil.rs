//! Test helpers: a fake HTTP server on 127.0.0.1 that answers from a closure
//! and records every request, plus fake tokens and a client config for it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;

use super::{Credential, GraphConfig, GraphOptions};

/// The tenant used by every test config.
pub const TENANT: &str = "contoso.onmicrosoft.com";
/// Path of the token endpoint for `TENANT`.
pub const TOKEN_PATH: &str = "/contoso.onmicrosoft.com/oauth2/v2.0/token";
/// The client secret of the test config: must never show up in output.
pub const SECRET: &str = "s3cr3t-value-never-printed";

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: String,
}

/// What the fake server answers.
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, v: serde_json::Value) -> Canned {
        Canned {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: v.to_string(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Canned {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn delay(mut self, d: Duration) -> Canned {
        self.delay = d;
        self
    }
}

/// `(request, index of this request among those to the same path)`.
type Handler = dyn Fn(&Recorded, usize) -> Canned + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    log: Mutex<Vec<Recorded>>,
    /// Requests being answered now, and the most there ever were.
    in_flight: Mutex<(usize, usize)>,
}

pub struct FakeServer {
    pub base: String,
    shared: Arc<Shared>,
}

impl FakeServer {
    pub async fn start(handler: impl Fn(&Recorded, usize) -> Canned + Send + Sync + 'static) -> FakeServer {
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            log: Mutex::new(Vec::new()),
            in_flight: Mutex::new((0, 0)),
        });
        let app = Router::new().fallback(serve).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeServer {
            base: format!("http://{addr}"),
            shared,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Requests whose path is exactly `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    /// The most requests the server was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.in_flight.lock().unwrap().1
    }

    /// Requests other than to the token endpoint.
    pub fn graph_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path != TOKEN_PATH).collect()
    }
}

async fn serve(State(s): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let rec = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body,
    };
    let canned = {
        let mut log = s.log.lock().unwrap();
        let n = log.iter().filter(|r| r.path == rec.path).count();
        log.push(rec.clone());
        (s.handler)(&rec, n)
    };
    {
        let mut n = s.in_flight.lock().unwrap();
        n.0 += 1;
        n.1 = n.1.max(n.0);
    }
    if !canned.delay.is_zero() {
        tokio::time::sleep(canned.delay).await;
    }
    s.in_flight.lock().unwrap().0 -= 1;
    let mut resp = Response::builder().status(canned.status);
    for (k, v) in canned.headers {
        resp = resp.header(k, v);
    }
    resp.body(Body::from(canned.body)).unwrap()
}

/// An unsigned JWT with the given payload (the client never checks signatures).
pub fn fake_jwt(payload: &serde_json::Value) -> String {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        enc.encode(br#"{"alg":"none","typ":"JWT"}"#),
        enc.encode(payload.to_string())
    )
}

/// A successful token answer; `n` is put in the token so tests can tell tokens apart.
pub fn token_answer(n: usize, roles: &[&str], expires_in: u64) -> Canned {
    let jwt = fake_jwt(&serde_json::json!({"roles": roles, "n": n}));
    Canned::json(
        200,
        serde_json::json!({"token_type": "Bearer", "expires_in": expires_in, "access_token": jwt}),
    )
}

/// A token answer with every required role and a one-hour lifetime.
pub fn full_token(n: usize) -> Canned {
    token_answer(n, super::REQUIRED_ROLES, 3599)
}

/// An OAuth error answer from the token endpoint.
pub fn oauth_error(status: u16, error: &str, code: u32) -> Canned {
    Canned::json(
        status,
        serde_json::json!({
            "error": error,
            "error_description": format!("AADSTS{code}: something went wrong. Trace ID: 0000"),
            "error_codes": [code],
            "trace_id": "0000",
        }),
    )
}

/// A Graph JSON error answer.
pub fn graph_error(status: u16, code: &str) -> Canned {
    Canned::json(
        status,
        serde_json::json!({"error": {"code": code, "message": format!("{code} happened"), "innerError": {"request-id": "r"}}}),
    )
}

/// Config pointing both endpoints at the fake server.
pub fn config(base: &str) -> GraphConfig {
    GraphConfig {
        authority_host: base.to_string(),
        graph_endpoint: base.to_string(),
        tenant_id: TENANT.to_string(),
        client_id: "11111111-2222-3333-4444-555555555555".to_string(),
        credential: Credential::Secret(SECRET.to_string()),
    }
}

/// Short backoff so retry tests run in milliseconds.
pub fn fast_options() -> GraphOptions {
    GraphOptions {
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
        ..GraphOptions::default()
    }
}
