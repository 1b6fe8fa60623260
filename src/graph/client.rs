//! Microsoft Graph client: tokens, GETs with throttling-aware retries, paging,
//! domains and resource-owner password checks.
//!
//! One `GraphClient` per tenant; it is cheap to clone (an `Arc` inside) so the
//! sync worker, the admin API and the password checker can share its token
//! cache and its in-flight limit.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use reqwest::header::{ACCEPT, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use tokio::sync::{Mutex, Semaphore};
use tracing::{debug, info, warn};

use super::errors::{
    GraphError, PasswordError, PasswordFailure, aadsts_error, explain_aadsts, explain_graph, parse_graph_error,
    parse_oauth_error,
};
use super::token::{Cached, Credential, Token, decode_claims, lifetime, renew_after};
use crate::clock::now_unix;

/// Application permissions the sync needs (checked against the token's `roles`).
pub const REQUIRED_ROLES: &[&str] = &[
    "User.Read.All",
    "GroupMember.Read.All",
    "Device.Read.All",
    "Domain.Read.All",
    "DeviceManagementManagedDevices.Read.All",
];

/// The [`REQUIRED_ROLES`] that `granted` lacks (names compared ignoring case).
pub fn missing_roles(granted: &[String]) -> Vec<String> {
    REQUIRED_ROLES
        .iter()
        .filter(|r| !granted.iter().any(|g| g.eq_ignore_ascii_case(r)))
        .map(|r| r.to_string())
        .collect()
}

/// User properties tracked by the users delta (only `$select`ed ones are tracked).
pub const USER_SELECT: &[&str] = &[
    "id",
    "userPrincipalName",
    "accountEnabled",
    "mail",
    "displayName",
    "userType",
    "onPremisesSyncEnabled",
    "onPremisesSamAccountName",
    "onPremisesDomainName",
    "onPremisesSecurityIdentifier",
    "proxyAddresses",
    "lastPasswordChangeDateTime",
];

/// Device properties tracked by the devices delta (Entra devices carry no MAC).
pub const DEVICE_SELECT: &[&str] = &[
    "id",
    "deviceId",
    "displayName",
    "accountEnabled",
    "operatingSystem",
    "trustType",
    "isCompliant",
    "isManaged",
];

/// Group properties tracked by the groups delta: `members` yields `members@delta`.
pub const GROUP_SELECT: &[&str] = &["displayName", "members"];

/// Intune managed-device properties: the source of MAC addresses.
pub const MANAGED_DEVICE_SELECT: &[&str] = &[
    "id",
    "azureADDeviceId",
    "wiFiMacAddress",
    "ethernetMacAddress",
    "complianceState",
];

/// Where and as whom the client talks to Entra ID and Graph.
#[derive(Clone)]
pub struct GraphConfig {
    /// e.g. `https://login.microsoftonline.com` (national clouds differ).
    pub authority_host: String,
    /// e.g. `https://graph.microsoft.com`.
    pub graph_endpoint: String,
    /// Tenant id (GUID) or a verified domain name of the tenant.
    pub tenant_id: String,
    pub client_id: String,
    pub credential: Credential,
}

impl std::fmt::Debug for GraphConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Written by hand so that a future credential field can never leak
        // through a derived Debug; Credential's own Debug is redacted too.
        f.debug_struct("GraphConfig")
            .field("authority_host", &self.authority_host)
            .field("graph_endpoint", &self.graph_endpoint)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .finish()
    }
}

/// Retry and concurrency limits of a client.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// Attempts per request, the first included, when the request fails in
    /// transit (refused or reset connection, timeout, an answer cut off).
    pub max_attempts: u32,
    /// Graph requests in flight at once per client.
    pub max_in_flight: usize,
    /// Exponential backoff (full jitter) when no `Retry-After` is given.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Upper bound on a server-sent `Retry-After`, so a bogus header cannot
    /// stall the worker indefinitely.
    pub max_retry_after: Duration,
    /// Total time one request may spend waiting out 429/503/504 answers
    /// (their `Retry-After`, else backoff) before it gives up.
    pub max_throttle_wait: Duration,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            max_attempts: 6,
            max_in_flight: 4,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
            max_throttle_wait: Duration::from_secs(600),
        }
    }
}

/// One page of a Graph collection.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<serde_json::Value>,
    /// `@odata.nextLink`: more pages follow.
    pub next_link: Option<String>,
    /// `@odata.deltaLink`: the round is complete; keep it for the next round.
    pub delta_link: Option<String>,
}

/// A tenant domain as `domains list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainInfo {
    pub name: String,
    pub federated: bool,
    pub is_default: bool,
    pub is_initial: bool,
    pub is_verified: bool,
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass):
/// `$filter` expressions, and the admin-consent URL's parameters.
pub fn query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks that an endpoint may carry credentials: https, or plain http to a
/// loopback host only (tests and the built-in emulator).
pub fn validate_endpoint(url: &str) -> Result<(), GraphError> {
    parse_endpoint(url).map(|_| ())
}

fn parse_endpoint(url: &str) -> Result<Url, GraphError> {
    let parsed = Url::parse(url).map_err(|e| GraphError::InvalidConfig(format!("{url:?}: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(GraphError::InvalidConfig(format!(
            "{url:?}: user info is not allowed in an endpoint"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(GraphError::InvalidConfig(format!("{url:?}: no host")));
    }
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        "http" => Err(GraphError::InsecureEndpoint(format!(
            "{url}: plain http is only allowed for loopback hosts; use https"
        ))),
        other => Err(GraphError::InvalidConfig(format!(
            "{url:?}: scheme {other:?} is not supported; use https"
        ))),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The tenant is put into the token URL's path, so only the characters of a
/// GUID or a domain name are accepted.
pub(crate) fn validate_tenant(tenant: &str) -> Result<(), GraphError> {
    let ok = !tenant.is_empty()
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(GraphError::InvalidConfig(format!(
            "tenant {tenant:?} is not a tenant id or domain name"
        )))
    }
}

fn trim_base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

fn with_select(graph_endpoint: &str, path: &str, select: &[&str]) -> String {
    let base = trim_base(graph_endpoint);
    if select.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?$select={}", select.join(","))
    }
}

/// First URL of a users delta round (query options only on the first call;
/// later calls follow the returned links verbatim).
pub fn users_delta_url(graph_endpoint: &str, select: &[&str]) -> String {
    with_select(graph_endpoint, "/v1.0/users/delta", select)
}

/// First URL of a devices delta round.
pub fn devices_delta_url(graph_endpoint: &str, select: &[&str]) -> String {
    with_select(graph_endpoint, "/v1.0/devices/delta", select)
}

/// First URL of a groups delta round; pass `GROUP_SELECT` to get `members@delta`.
pub fn groups_delta_url(graph_endpoint: &str, select: &[&str]) -> String {
    with_select(graph_endpoint, "/v1.0/groups/delta", select)
}

/// Intune managed devices: a plain list (no delta), read in full each round.
pub fn managed_devices_url(graph_endpoint: &str, select: &[&str]) -> String {
    with_select(graph_endpoint, "/v1.0/deviceManagement/managedDevices", select)
}

struct Inner {
    http: reqwest::Client,
    cfg: GraphConfig,
    graph_base: Url,
    token_url: String,
    scope: String,
    cache: Mutex<Option<Cached>>,
    permits: Semaphore,
    opts: GraphOptions,
}

/// The Graph client. Clones share the token cache and the in-flight limit.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("config", &self.inner.cfg)
            .field("options", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

/// Statuses that mean "try again later".
fn is_retryable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Names of the services in retry errors.
const GRAPH: &str = "Microsoft Graph";
const TOKEN_ENDPOINT: &str = "the Entra ID token endpoint";

/// Transport failures worth another attempt: the server's answer never
/// arrived whole, so the same request may well succeed (a refused or reset
/// connection, a timeout, a body cut off). Builder and redirect errors would
/// only fail again the same way.
fn is_transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
}

/// How long one request has waited out 429/503/504 answers so far.
#[derive(Debug, Default)]
struct BusyWaits {
    answers: u32,
    waited: Duration,
}

/// `Retry-After` in seconds; the HTTP-date form is not used by Graph and falls
/// back to backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

/// Exponential backoff with full jitter: uniform in `[0, min(cap, base·2^(attempt-1))]`.
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
    let ceiling = base.saturating_mul(factor).min(cap);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// Error codes that mean the link's state is gone (an expired delta token,
/// an expired page token) and the enumeration must start over.
fn is_expired_code(body: &serde_json::Value) -> bool {
    let err = body.get("error");
    let codes = [
        err.and_then(|e| e.get("code")),
        err.and_then(|e| e.get("innerError")).and_then(|e| e.get("code")),
    ];
    codes.into_iter().flatten().filter_map(|c| c.as_str()).any(|c| {
        ["syncStateNotFound", "resyncRequired", "Directory_ExpiredPageToken"]
            .iter()
            .any(|known| c.eq_ignore_ascii_case(known))
    })
}

/// A link Graph handed out carries its state in `$skiptoken` or
/// `$deltatoken`. A 400 to such a link says Graph does not recognise that
/// state any more (a restarted or failed-over service answers so too):
/// nothing in the link is ours to correct, so the enumeration starts over.
fn carries_graph_state(url: &Url) -> bool {
    url.query_pairs()
        .any(|(k, v)| (k == "$skiptoken" || k == "$deltatoken") && !v.is_empty())
}

fn parse_page(v: serde_json::Value) -> Result<Page, GraphError> {
    let serde_json::Value::Object(mut map) = v else {
        return Err(GraphError::BadResponse("a page that is not a JSON object".into()));
    };
    let items = match map.remove("value") {
        Some(serde_json::Value::Array(items)) => items,
        _ => {
            return Err(GraphError::BadResponse("a page without a `value` array".into()));
        }
    };
    let link = |map: &serde_json::Map<String, serde_json::Value>, key: &str| {
        map.get(key).and_then(|l| l.as_str()).map(str::to_string)
    };
    Ok(Page {
        items,
        next_link: link(&map, "@odata.nextLink"),
        delta_link: link(&map, "@odata.deltaLink"),
    })
}

fn domain_info(item: &serde_json::Value) -> Option<DomainInfo> {
    let flag = |k: &str| item.get(k).and_then(|b| b.as_bool()).unwrap_or(false);
    Some(DomainInfo {
        name: item.get("id")?.as_str()?.to_string(),
        federated: item
            .get("authenticationType")
            .and_then(|a| a.as_str())
            .is_some_and(|a| a.eq_ignore_ascii_case("Federated")),
        is_default: flag("isDefault"),
        is_initial: flag("isInitial"),
        is_verified: flag("isVerified"),
    })
}

/// A safety net against a server that keeps answering with nextLinks.
const MAX_DOMAIN_PAGES: usize = 1000;

/// Timeout of one password check: it sits on the RADIUS path.
const PASSWORD_TIMEOUT: Duration = Duration::from_secs(5);

impl GraphClient {
    /// A client with the default limits (6 attempts after transport
    /// failures, 10 minutes of waiting out 429/503/504 per request, 4
    /// requests in flight).
    pub fn new(cfg: GraphConfig) -> Result<GraphClient, GraphError> {
        GraphClient::with_options(cfg, GraphOptions::default())
    }

    /// A client with explicit retry and concurrency limits.
    pub fn with_options(cfg: GraphConfig, opts: GraphOptions) -> Result<GraphClient, GraphError> {
        let authority = parse_endpoint(&cfg.authority_host)?;
        let graph_base = parse_endpoint(&cfg.graph_endpoint)?;
        validate_tenant(&cfg.tenant_id)?;
        if cfg.client_id.trim().is_empty() {
            return Err(GraphError::InvalidConfig("client id is empty".into()));
        }
        if opts.max_attempts == 0 || opts.max_in_flight == 0 {
            return Err(GraphError::InvalidConfig(
                "max_attempts and max_in_flight must be at least 1".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("entra-radius/", env!("CARGO_PKG_VERSION")))
            // Graph and the token endpoint do not redirect these calls; not
            // following redirects keeps the bearer token on the configured host.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let token_url = format!("{}/{}/oauth2/v2.0/token", trim_base(authority.as_str()), cfg.tenant_id);
        let scope = format!("{}/.default", trim_base(&cfg.graph_endpoint));
        Ok(GraphClient {
            inner: Arc::new(Inner {
                http,
                graph_base,
                token_url,
                scope,
                cache: Mutex::new(None),
                permits: Semaphore::new(opts.max_in_flight),
                opts,
                cfg,
            }),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &GraphConfig {
        &self.inner.cfg
    }

    /// Client-credentials token for `{graph_endpoint}/.default`, cached and
    /// renewed 5 minutes before expiry (at half-life for short tokens).
    /// Concurrent callers share one refresh: the cache lock is held across it.
    pub async fn token(&self) -> Result<Token, GraphError> {
        let mut guard = self.inner.cache.lock().await;
        if let Some(c) = guard.as_ref()
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        match self.fetch_token().await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *guard = Some(fresh);
                Ok(token)
            }
            Err(e) => {
                // Renewal starts early, so a brief outage of the token endpoint
                // need not stop the sync while the current token still works.
                if let Some(c) = guard.as_ref()
                    && Instant::now() + Duration::from_secs(30) < c.token.expires_at
                {
                    warn!(error = %e, "token renewal failed; using the current token until it expires");
                    return Ok(c.token.clone());
                }
                Err(e)
            }
        }
    }

    /// Drops the cached token if it is the one given (so several requests
    /// that saw the same 401 cause one refresh, not one each).
    async fn invalidate(&self, used: Option<&str>) {
        let mut guard = self.inner.cache.lock().await;
        let matches = match (guard.as_ref(), used) {
            (Some(c), Some(used)) => c.token.access_token == used,
            _ => true,
        };
        if matches {
            *guard = None;
        }
    }

    async fn fetch_token(&self) -> Result<Cached, GraphError> {
        let cfg = &self.inner.cfg;
        let auth = super::token::credential_fields(&cfg.credential, &cfg.client_id, &self.inner.token_url);
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", cfg.client_id.as_str()),
            ("scope", self.inner.scope.as_str()),
            ("grant_type", "client_credentials"),
        ];
        form.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
        let mut busy = BusyWaits::default();
        let mut failures = 0u32;
        loop {
            // Measured before sending, so the lifetime is counted conservatively.
            let sent_at = Instant::now();
            let sent = self
                .inner
                .http
                .post(&self.inner.token_url)
                .header(ACCEPT, "application/json")
                .form(&form)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    if is_transient(&e) && self.pause_after_failure(&mut failures, "token", &e).await {
                        continue;
                    }
                    return Err(e.into());
                }
            };
            let status = resp.status();
            if is_retryable(status) {
                let wait = self.busy_wait(&mut busy, TOKEN_ENDPOINT, status, resp.headers())?;
                info!(
                    status = status.as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    answers = busy.answers,
                    "token endpoint busy; retrying"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) => {
                    if is_transient(&e) && self.pause_after_failure(&mut failures, "token", &e).await {
                        continue;
                    }
                    return Err(e.into());
                }
            };
            let body: serde_json::Value = serde_json::from_str(&text)
                .map_err(|_| GraphError::BadResponse(format!("token endpoint answered {status} without JSON")))?;
            if !status.is_success() {
                return Err(parse_oauth_error(&body).map(aadsts_error).unwrap_or_else(|| {
                    GraphError::BadResponse(format!("token endpoint answered {status} without an OAuth error"))
                }));
            }
            let access_token = body
                .get("access_token")
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| GraphError::BadResponse("token answer without access_token".into()))?
                .to_string();
            let claims = decode_claims(&access_token);
            let life = lifetime(body.get("expires_in"), claims.exp, now_unix())
                .ok_or_else(|| GraphError::BadResponse("token answer without expires_in or exp".into()))?;
            debug!(
                lifetime_s = life.as_secs(),
                roles = claims.roles.len(),
                "access token issued"
            );
            return Ok(Cached {
                token: Token {
                    access_token,
                    expires_at: sent_at + life,
                    roles: claims.roles,
                    tenant_id: claims.tid,
                },
                renew_at: sent_at + renew_after(life),
            });
        }
    }

    /// A token fetched now, not the cached one: a cached token keeps the
    /// roles it was issued with, so after a fresh consent only a new one
    /// shows the roles granted since.
    pub async fn fresh_token(&self) -> Result<Token, GraphError> {
        self.invalidate(None).await;
        self.token().await
    }

    /// Fetches a fresh token (consent may have just been granted, and a
    /// cached token keeps the roles it was issued with) and checks its roles
    /// against `REQUIRED_ROLES`. Returns the granted roles.
    pub async fn check_roles(&self) -> Result<Vec<String>, GraphError> {
        let token = self.fresh_token().await?;
        let missing = missing_roles(&token.roles);
        if missing.is_empty() {
            Ok(token.roles)
        } else {
            Err(GraphError::ConsentMissing { missing_roles: missing })
        }
    }

    /// How long to wait after a 429/503/504 answer, or the error to give
    /// up with once the request's waiting budget cannot cover the wait.
    fn busy_wait(
        &self,
        busy: &mut BusyWaits,
        service: &'static str,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Duration, GraphError> {
        let o = &self.inner.opts;
        busy.answers += 1;
        let asked = retry_after(headers).map(|w| w.min(o.max_retry_after));
        // Never less than the base: `Retry-After: 0`, or a jittered backoff
        // near 0, would otherwise hammer a service that said it is overloaded.
        let wait = asked
            .unwrap_or_else(|| backoff(o.backoff_base, o.backoff_cap, busy.answers))
            .max(o.backoff_base);
        if busy.waited + wait <= o.max_throttle_wait {
            busy.waited += wait;
            return Ok(wait);
        }
        let (answers, waited) = (busy.answers, busy.waited);
        Err(if status == StatusCode::TOO_MANY_REQUESTS {
            GraphError::Throttled {
                service,
                answers,
                waited,
                asked,
            }
        } else {
            GraphError::Unavailable {
                service,
                status: status.as_u16(),
                answers,
                waited,
                asked,
            }
        })
    }

    /// After a request failed in transit: waits the backoff and returns
    /// true when another attempt is allowed, else returns false at once.
    async fn pause_after_failure(
        &self,
        failures: &mut u32,
        path: &str,
        error: &(dyn std::fmt::Display + Sync),
    ) -> bool {
        let o = &self.inner.opts;
        if *failures + 1 >= o.max_attempts {
            return false;
        }
        *failures += 1;
        let wait = backoff(o.backoff_base, o.backoff_cap, *failures);
        warn!(%path, failures = *failures, wait_ms = wait.as_millis() as u64, %error, "request failed in transit; retrying");
        tokio::time::sleep(wait).await;
        true
    }

    /// Turns a path or an absolute link into a URL on the Graph host. An
    /// absolute link (a nextLink) on another origin is refused: the bearer
    /// token must only go to the configured Graph endpoint.
    fn resolve(&self, url: &str) -> Result<Url, GraphError> {
        let base = &self.inner.graph_base;
        if url.starts_with("http://") || url.starts_with("https://") {
            let target = Url::parse(url).map_err(|e| GraphError::BadResponse(format!("invalid link {url:?}: {e}")))?;
            if target.origin() != base.origin() {
                return Err(GraphError::InsecureEndpoint(format!(
                    "refusing to send the token to {}: not the Graph endpoint",
                    target.origin().ascii_serialization()
                )));
            }
            return Ok(target);
        }
        let path = url.trim_start_matches('/');
        let joined = format!("{}/{}", trim_base(base.as_str()), path);
        Url::parse(&joined).map_err(|e| GraphError::BadResponse(format!("invalid path {url:?}: {e}")))
    }

    /// Sends one request under the in-flight limit and reads the whole body
    /// while holding the permit (a response being read is still in flight).
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<Result<(StatusCode, HeaderMap, String), reqwest::Error>, GraphError> {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| GraphError::BadResponse("the client is shutting down".into()))?;
        let result = async {
            let resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.text().await?;
            Ok((status, headers, body))
        }
        .await;
        Ok(result)
    }

    /// GET a Graph URL (absolute link or path) and parse the JSON answer.
    ///
    /// Retries: 429/503/504 wait `Retry-After` seconds, else exponential
    /// backoff with full jitter, for at most `max_throttle_wait` in all, then
    /// `Throttled` (429) or `Unavailable` (503/504). A request that fails in
    /// transit (refused or reset connection, timeout, a body cut off or not
    /// whole JSON) backs off the same way, at most `max_attempts` attempts,
    /// then `Http` (or `BadResponse`). A 401 drops the token, fetches a new
    /// one and retries once. 410 → `DeltaExpired` with the `Location` link;
    /// `syncStateNotFound` / `resyncRequired` / `Directory_ExpiredPageToken`,
    /// or any 400 to a link carrying Graph's `$skiptoken` / `$deltatoken` →
    /// `DeltaExpired`; other JSON errors → `Graph`. `background` adds
    /// `x-ms-throttle-priority: low`.
    pub async fn get_json(&self, url: &str, background: bool) -> Result<serde_json::Value, GraphError> {
        let target = self.resolve(url)?;
        let path = target.path().to_string();
        let mut busy = BusyWaits::default();
        let mut failures = 0u32;
        let mut reauthenticated = false;
        loop {
            let token = self.token().await?;
            let mut req = self
                .inner
                .http
                .get(target.clone())
                .bearer_auth(&token.access_token)
                .header(ACCEPT, "application/json");
            if background {
                req = req.header("x-ms-throttle-priority", "low");
            }
            let (status, headers, body) = match self.exchange(req).await? {
                Ok(answer) => answer,
                Err(e) => {
                    if is_transient(&e) && self.pause_after_failure(&mut failures, &path, &e).await {
                        continue;
                    }
                    return Err(GraphError::Http(e));
                }
            };
            if status.is_success() {
                match serde_json::from_str(&body) {
                    Ok(v) => return Ok(v),
                    // A success whose JSON stops short is an answer cut off
                    // on the way, like a body that failed to arrive.
                    Err(e) => {
                        let e = format!("{path}: invalid JSON: {e}");
                        if self.pause_after_failure(&mut failures, &path, &e).await {
                            continue;
                        }
                        return Err(GraphError::BadResponse(e));
                    }
                }
            }
            if is_retryable(status) {
                let wait = match self.busy_wait(&mut busy, GRAPH, status, &headers) {
                    Ok(w) => w,
                    Err(e) => {
                        warn!(%path, answers = busy.answers, error = %e, "giving up on the request");
                        return Err(e);
                    }
                };
                info!(%path, status = status.as_u16(), answers = busy.answers, wait_ms = wait.as_millis() as u64, "Graph is busy; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == StatusCode::GONE {
                let location = headers.get(LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
                return Err(GraphError::DeltaExpired { location });
            }
            if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                // The token may have expired or been revoked early: one fresh
                // token and one more try; a second 401 is reported as is.
                reauthenticated = true;
                debug!(%path, "401 from Graph; renewing the token and retrying once");
                self.invalidate(Some(&token.access_token)).await;
                continue;
            }
            let json = serde_json::from_str::<serde_json::Value>(&body).ok();
            if json.as_ref().is_some_and(is_expired_code)
                || (status == StatusCode::BAD_REQUEST && carries_graph_state(&target))
            {
                return Err(GraphError::DeltaExpired { location: None });
            }
            return Err(match json.as_ref().and_then(parse_graph_error) {
                Some((code, message)) => GraphError::Graph {
                    status: status.as_u16(),
                    explanation: explain_graph(status.as_u16(), &code, &path),
                    code,
                    message,
                },
                None => GraphError::BadResponse(format!("{path}: HTTP {status} without a JSON error")),
            });
        }
    }

    /// One page of a collection (background priority: this is sync work).
    pub async fn get_page(&self, url: &str) -> Result<Page, GraphError> {
        parse_page(self.get_json(url, true).await?)
    }

    /// The tenant's domains, all pages (foreground: an admin is waiting).
    pub async fn domains(&self) -> Result<Vec<DomainInfo>, GraphError> {
        let mut url = "/v1.0/domains".to_string();
        let mut out = Vec::new();
        for _ in 0..MAX_DOMAIN_PAGES {
            let page = parse_page(self.get_json(&url, false).await?)?;
            for item in &page.items {
                let info =
                    domain_info(item).ok_or_else(|| GraphError::BadResponse("a domain without an `id`".into()))?;
                out.push(info);
            }
            match page.next_link {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
        Err(GraphError::BadResponse(format!(
            "/v1.0/domains: more than {MAX_DOMAIN_PAGES} pages"
        )))
    }

    /// Resource-owner password check of an Entra user (PAP). Every call is a
    /// live sign-in that shows in the sign-in log and counts toward smart
    /// lockout: callers must cache results and rate-limit failures.
    pub async fn check_password(&self, username: &str, password: &str) -> Result<(), PasswordError> {
        let cfg = &self.inner.cfg;
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", cfg.client_id.as_str()),
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
            ("scope", "openid"),
        ];
        // The application is a confidential client: it authenticates itself
        // too, so ROPC works without enabling public-client flows.
        let auth = super::token::credential_fields(&cfg.credential, &cfg.client_id, &self.inner.token_url);
        form.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
        let resp = self
            .inner
            .http
            .post(&self.inner.token_url)
            .header(ACCEPT, "application/json")
            .timeout(PASSWORD_TIMEOUT)
            .form(&form)
            .send()
            .await
            .map_err(PasswordError::Transport)?;
        let status = resp.status();
        let text = resp.text().await.map_err(PasswordError::Transport)?;
        if status.is_success() {
            return Ok(());
        }
        let parsed = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| parse_oauth_error(&v));
        let Some(err) = parsed else {
            return Err(PasswordError::Service {
                code: 0,
                explanation: format!("the token endpoint answered {status} without an OAuth error"),
            });
        };
        if let Some(reason) = PasswordFailure::from_aadsts(err.code) {
            return Err(PasswordError::PasswordCheck { code: err.code, reason });
        }
        // Other `invalid_grant` refusals are about the user's sign-in, except
        // missing consent, which is the application's problem.
        if err.error == "invalid_grant" && err.code != 65001 {
            return Err(PasswordError::PasswordCheck {
                code: err.code,
                reason: PasswordFailure::Other,
            });
        }
        Err(PasswordError::Service {
            code: err.code,
            explanation: explain_aadsts(err.code).to_string(),
        })
    }
}
