//! `entra provision`: registers the one application the integration uses,
//! on behalf of an administrator who signs in with the device-code flow.
//!
//! Steps, each idempotent so that provisioning can simply be run again:
//! find the application by display name (or create it, asking for
//! [`REQUIRED_ROLES`] as Microsoft Graph application permissions), find or
//! create its service principal, then add a new client secret. Directory
//! replication makes a just-created application invisible to the next calls
//! for a while; those calls are retried with bounded exponential backoff and
//! reported through [`ProvisionStep`]s. Admin consent stays a separate step
//! (`/adminconsent`), so the new app's token carries no roles until then.
//!
//! Secrets (device code, access token, client secret) are zeroized on drop
//! and never shown by `Debug` or logged.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use super::client::{REQUIRED_ROLES, query_escape, validate_endpoint, validate_tenant};
use super::errors::{GraphError, OAuthError, explain_aadsts, parse_graph_error, parse_oauth_error};
use super::token::jwt_payload;
use crate::clock::{Rfc3339, now_unix};

/// Microsoft Graph's application id: the `resourceAppId` of Graph
/// permissions in `requiredResourceAccess`, the same in every tenant.
pub const GRAPH_RESOURCE_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// The public client the administrator signs in with: Microsoft Graph
/// Command Line Tools (the client of the Graph PowerShell SDK and CLI). It is
/// a Microsoft first-party public client that exists in every tenant, may use
/// the device-code flow and may ask for Graph delegated scopes such as
/// `Application.ReadWrite.All` (an administrator consents on first use), so
/// nothing has to be registered before our own application exists.
pub const SIGN_IN_CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";

/// The delegated Graph permission provisioning needs (create applications
/// and service principals, add secrets).
/// The admin-consent redirect registered on the application: `entra
/// consent` listens on a free port of localhost with this path.
pub const CONSENT_REDIRECT_URI: &str = "http://localhost/consent";

pub const PROVISION_SCOPE: &str = "Application.ReadWrite.All";

/// `grant_type` of the device-code token request (RFC 8628).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// App-role ids of the Graph application permissions in [`REQUIRED_ROLES`]
/// (the `id` with `"type": "Role"` in `requiredResourceAccess`), from
/// Microsoft's Graph permissions reference; the same in every tenant.
pub const GRAPH_APP_ROLE_IDS: &[(&str, &str)] = &[
    ("User.Read.All", "df021288-bdef-4463-88db-98f22de89214"),
    ("GroupMember.Read.All", "98830695-27a2-44f7-8c18-0c3ebc9698f6"),
    ("Device.Read.All", "7438b122-aefc-4978-80ed-43db9fcc7715"),
    ("Domain.Read.All", "dbb9058a-0e50-45d7-ae91-66909b5d4664"),
    (
        "DeviceManagementManagedDevices.Read.All",
        "2f51be20-0bb4-4fed-bf7b-db946066c75e",
    ),
];

/// The app-role id of a Graph application permission we know.
pub fn app_role_id(role: &str) -> Option<&'static str> {
    GRAPH_APP_ROLE_IDS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(role))
        .map(|(_, id)| *id)
}

/// The Entra roles that may register applications for the whole tenant.
const ADMIN_ROLES_HINT: &str = "the signed-in account needs the Application Administrator or Cloud Application \
     Administrator role (Global Administrator works too), and the sign-in must grant Application.ReadWrite.All";

/// Limits of a [`Provisioner`].
#[derive(Debug, Clone)]
pub struct ProvisionOptions {
    /// Attempts per step, the first included, while a new application is
    /// not replicated yet (or Graph throttles), before giving up.
    pub replication_attempts: u32,
    /// First wait before retrying; doubled per attempt up to `replication_max_delay`.
    pub replication_base_delay: Duration,
    pub replication_max_delay: Duration,
    /// Added to the polling interval on each `slow_down` (RFC 8628: 5 s).
    pub slow_down_step: Duration,
    /// Shortest wait between two polls, whatever `interval` the server sent.
    pub min_poll_interval: Duration,
    /// Lifetime of the client secret that is added.
    pub secret_lifetime: Duration,
    /// Timeout of each HTTP request.
    pub request_timeout: Duration,
}

impl Default for ProvisionOptions {
    fn default() -> Self {
        ProvisionOptions {
            replication_attempts: 8,
            replication_base_delay: Duration::from_secs(1),
            replication_max_delay: Duration::from_secs(30),
            slow_down_step: Duration::from_secs(5),
            min_poll_interval: Duration::from_millis(100),
            // Two years, the longest lifetime the Entra portal offers.
            secret_lifetime: Duration::from_secs(730 * 86_400),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What provisioning is doing, for the admin API to report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum ProvisionStep {
    FindingApplication,
    CreatingApplication,
    CreatingServicePrincipal {
        attempt: u32,
    },
    /// A call failed because the new application has not replicated yet;
    /// the next attempt follows after `delay_ms`.
    WaitingForReplication {
        what: String,
        attempt: u32,
        delay_ms: u64,
    },
    AddingSecret,
    Done,
}

/// Why provisioning failed, in words an administrator can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    #[error("the administrator declined the sign-in request; run `entra provision` again to retry")]
    SignInDeclined,
    #[error("the sign-in code expired before the administrator signed in; run `entra provision` again for a new code")]
    CodeExpired,
    /// The login endpoint refused a request.
    #[error("Entra ID refused the sign-in (AADSTS{code}, {error}): {explanation}")]
    Aadsts {
        code: u32,
        error: String,
        explanation: String,
        /// Microsoft's own text (with trace and correlation ids).
        description: String,
    },
    /// Graph answered 403: the administrator lacks the rights.
    #[error("Microsoft Graph refused to {action} ({code}: {message}): {ADMIN_ROLES_HINT}")]
    Forbidden {
        action: String,
        code: String,
        message: String,
    },
    /// Another Graph error.
    #[error("Microsoft Graph could not {action}: HTTP {status} {code}: {message}")]
    Graph {
        action: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The application stayed invisible (or Graph kept throttling) for every attempt.
    #[error(
        "{what} failed {attempts} times while the new application replicated in the directory (last: {last}); wait a minute and run `entra provision` again, which reuses the application"
    )]
    Replication { what: String, attempts: u32, last: String },
    #[error(
        "{count} applications are named {name:?}: provisioning cannot tell which one to reuse; rename or delete the extra ones"
    )]
    AmbiguousApplication { name: String, count: usize },
    #[error("HTTP transport error: {0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected response: {0}")]
    BadResponse(String),
    #[error("insecure endpoint refused: {0}")]
    InsecureEndpoint(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl From<GraphError> for ProvisionError {
    fn from(e: GraphError) -> Self {
        match e {
            GraphError::InsecureEndpoint(m) => ProvisionError::InsecureEndpoint(m),
            other => ProvisionError::InvalidConfig(other.to_string()),
        }
    }
}

fn aadsts(e: OAuthError) -> ProvisionError {
    let explanation = if e.code == 0 {
        format!("Entra ID refused the request ({})", e.error)
    } else {
        explain_aadsts(e.code).to_string()
    };
    ProvisionError::Aadsts {
        code: e.code,
        error: e.error,
        explanation,
        description: e.description,
    }
}

/// A device-code sign-in in progress: show `message` (or `verification_uri`
/// and `user_code`) to the administrator, then [`Provisioner::wait_for_sign_in`].
pub struct DeviceCodeFlow {
    pub user_code: String,
    pub verification_uri: String,
    pub message: String,
    pub expires_at: Instant,
    /// Polling interval the server asked for.
    pub interval: Duration,
    /// The tenant named at sign-in (id, domain, or `organizations`).
    pub tenant: String,
    device_code: Zeroizing<String>,
}

impl std::fmt::Debug for DeviceCodeFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCodeFlow")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_at", &self.expires_at)
            .field("interval", &self.interval)
            .field("tenant", &self.tenant)
            .field("device_code", &"<redacted>")
            .finish()
    }
}

/// The administrator's delegated access token for Graph.
pub struct AdminToken {
    /// The tenant signed in to (`tid` claim).
    pub tenant_id: String,
    /// The administrator's sign-in name, when the token names one.
    pub user: Option<String>,
    /// Delegated scopes granted.
    pub scopes: Vec<String>,
    pub expires_at: Instant,
    access_token: Zeroizing<String>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("tenant_id", &self.tenant_id)
            .field("user", &self.user)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .field("access_token", &"<redacted>")
            .finish()
    }
}

impl AdminToken {
    /// Reads tenant, user and scopes from a token answer. The JWT payloads
    /// are decoded, not verified: they come straight from the token endpoint
    /// over TLS, and Graph checks the access token anyway.
    fn from_answer(body: &Value, sent_at: Instant) -> Result<AdminToken, ProvisionError> {
        let access = body["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ProvisionError::BadResponse("token answer without access_token".into()))?;
        let id = body["id_token"].as_str().and_then(jwt_payload).unwrap_or(Value::Null);
        let at = jwt_payload(access).unwrap_or(Value::Null);
        let claim = |k: &str| id[k].as_str().or_else(|| at[k].as_str()).map(str::to_owned);
        let tenant_id = claim("tid")
            .ok_or_else(|| ProvisionError::BadResponse("the sign-in token names no tenant (no `tid` claim)".into()))?;
        let user = claim("preferred_username")
            .or_else(|| claim("upn"))
            .or_else(|| claim("unique_name"));
        let scopes: Vec<String> = body["scope"]
            .as_str()
            .or_else(|| at["scp"].as_str())
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let life = body["expires_in"]
            .as_u64()
            .or_else(|| body["expires_in"].as_str().and_then(|s| s.trim().parse().ok()))
            .unwrap_or(3599);
        Ok(AdminToken {
            tenant_id,
            user,
            scopes,
            expires_at: sent_at + Duration::from_secs(life),
            access_token: Zeroizing::new(access.to_owned()),
        })
    }
}

/// The provisioned application and its new client secret.
pub struct ProvisionedApp {
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    pub app_object_id: String,
    pub service_principal_id: String,
    /// Shown once by Graph; store it now. Never in `Debug` or logs.
    pub client_secret: Zeroizing<String>,
    /// Graph's `keyId` of the new secret (to remove it later).
    pub secret_key_id: String,
    /// When the secret expires (RFC 3339, as Graph reports it).
    pub secret_expires: String,
    /// The application existed already (found by display name).
    pub reused: bool,
    /// Of [`REQUIRED_ROLES`], those a reused application does not ask for
    /// in `requiredResourceAccess`: admin consent cannot grant them until
    /// they are added to the app registration. Empty for a created app.
    pub missing_permissions: Vec<String>,
}

impl std::fmt::Debug for ProvisionedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionedApp")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("app_object_id", &self.app_object_id)
            .field("service_principal_id", &self.service_principal_id)
            .field("client_secret", &"<redacted>")
            .field("secret_key_id", &self.secret_key_id)
            .field("secret_expires", &self.secret_expires)
            .field("reused", &self.reused)
            .field("missing_permissions", &self.missing_permissions)
            .finish()
    }
}

/// Signs an administrator in and provisions the application through Graph.
#[derive(Debug, Clone)]
pub struct Provisioner {
    http: reqwest::Client,
    authority: String,
    graph: String,
    opts: ProvisionOptions,
}

/// Outcome of one Graph call: status and JSON body (`Null` if none).
type Answer = (StatusCode, Value);

impl Provisioner {
    /// `authority_host` e.g. `https://login.microsoftonline.com`,
    /// `graph_endpoint` e.g. `https://graph.microsoft.com`: https, or plain
    /// http to loopback only, as for the Graph client.
    pub fn new(authority_host: &str, graph_endpoint: &str) -> Result<Provisioner, ProvisionError> {
        Provisioner::with_options(authority_host, graph_endpoint, ProvisionOptions::default())
    }

    pub fn with_options(
        authority_host: &str,
        graph_endpoint: &str,
        opts: ProvisionOptions,
    ) -> Result<Provisioner, ProvisionError> {
        validate_endpoint(authority_host)?;
        validate_endpoint(graph_endpoint)?;
        if opts.replication_attempts == 0 {
            return Err(ProvisionError::InvalidConfig(
                "replication_attempts must be at least 1".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(opts.request_timeout)
            .user_agent(concat!("entra-radius/", env!("CARGO_PKG_VERSION")))
            // Keeps the bearer token on the configured hosts.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Provisioner {
            http,
            authority: authority_host.trim_end_matches('/').to_owned(),
            graph: graph_endpoint.trim_end_matches('/').to_owned(),
            opts,
        })
    }

    /// Starts a device-code sign-in for `tenant` (tenant id, a verified
    /// domain, or `organizations` to let the administrator's account decide).
    pub async fn start_sign_in(&self, tenant: &str) -> Result<DeviceCodeFlow, ProvisionError> {
        // The Graph permission, plus the OpenID scopes for an id_token that
        // names the tenant and the administrator.
        let scope = format!("{}/{PROVISION_SCOPE} openid profile", self.graph);
        self.start_sign_in_with_scope(tenant, &scope).await
    }

    async fn start_sign_in_with_scope(&self, tenant: &str, scope: &str) -> Result<DeviceCodeFlow, ProvisionError> {
        validate_tenant(tenant)?;
        let url = format!("{}/{tenant}/oauth2/v2.0/devicecode", self.authority);
        let resp = self
            .http
            .post(&url)
            .header(ACCEPT, "application/json")
            .form(&[("client_id", SIGN_IN_CLIENT_ID), ("scope", scope)])
            .send()
            .await?;
        let sent_at = Instant::now();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(parse_oauth_error(&body).map(aadsts).unwrap_or_else(|| {
                ProvisionError::BadResponse(format!("the device-code endpoint answered {status}"))
            }));
        }
        let text = |k: &str| body[k].as_str().map(str::to_owned);
        let number = |k: &str| {
            body[k]
                .as_u64()
                .or_else(|| body[k].as_str().and_then(|s| s.trim().parse().ok()))
        };
        let missing = |k: &str| ProvisionError::BadResponse(format!("device-code answer without {k}"));
        let device_code = text("device_code").ok_or_else(|| missing("device_code"))?;
        let user_code = text("user_code").ok_or_else(|| missing("user_code"))?;
        // The v1 endpoint spelled it verification_url.
        let verification_uri = text("verification_uri")
            .or_else(|| text("verification_url"))
            .ok_or_else(|| missing("verification_uri"))?;
        let expires_in = number("expires_in").unwrap_or(900);
        let message = text("message").unwrap_or_else(|| {
            format!("To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate.")
        });
        info!(%verification_uri, expires_in, "device-code sign-in started");
        Ok(DeviceCodeFlow {
            user_code,
            verification_uri,
            message,
            expires_at: sent_at + Duration::from_secs(expires_in),
            // RFC 8628: 5 seconds when the server names no interval.
            interval: Duration::from_secs(number("interval").unwrap_or(5)),
            tenant: tenant.to_owned(),
            device_code: Zeroizing::new(device_code),
        })
    }

    /// Polls the token endpoint every `interval` (longer after `slow_down`)
    /// until the administrator has signed in, declined, or the code expired.
    pub async fn wait_for_sign_in(&self, flow: &DeviceCodeFlow) -> Result<AdminToken, ProvisionError> {
        let url = format!("{}/{}/oauth2/v2.0/token", self.authority, flow.tenant);
        let mut interval = flow.interval;
        loop {
            let now = Instant::now();
            if now >= flow.expires_at {
                return Err(ProvisionError::CodeExpired);
            }
            let wait = interval.max(self.opts.min_poll_interval);
            tokio::time::sleep(wait.min(flow.expires_at - now)).await;
            let sent_at = Instant::now();
            let resp = self
                .http
                .post(&url)
                .header(ACCEPT, "application/json")
                .form(&[
                    ("grant_type", DEVICE_CODE_GRANT),
                    ("client_id", SIGN_IN_CLIENT_ID),
                    ("device_code", flow.device_code.as_str()),
                ])
                .send()
                .await?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                let token = AdminToken::from_answer(&body, sent_at)?;
                info!(tenant = %token.tenant_id, user = ?token.user, "administrator signed in");
                return Ok(token);
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                debug!(
                    status = status.as_u16(),
                    "token endpoint busy while polling; polling on"
                );
                continue;
            }
            let err = parse_oauth_error(&body).ok_or_else(|| {
                ProvisionError::BadResponse(format!("the token endpoint answered {status} without an OAuth error"))
            })?;
            interval = next_poll_interval(err, interval, self.opts.slow_down_step)?;
        }
    }

    /// Finds or creates the application named `display_name`, its service
    /// principal, and adds a new client secret. `progress` hears every step.
    pub async fn create_app(
        &self,
        token: &AdminToken,
        display_name: &str,
        progress: &(dyn Fn(ProvisionStep) + Send + Sync),
    ) -> Result<ProvisionedApp, ProvisionError> {
        let name = display_name.trim();
        if name.is_empty() {
            return Err(ProvisionError::InvalidConfig(
                "the application display name is empty".into(),
            ));
        }
        progress(ProvisionStep::FindingApplication);
        let filter = format!("displayName eq '{}'", odata_quote(name));
        let found = self
            .list(
                token,
                &format!("/v1.0/applications?$filter={}", query_escape(&filter)),
                "find the application",
            )
            .await?;
        let (object_id, client_id, missing_permissions) = match found.as_slice() {
            [] => {
                progress(ProvisionStep::CreatingApplication);
                let (object_id, client_id) = self.post_application(token, name).await?;
                info!(%client_id, "application created");
                (object_id, client_id, None)
            }
            [app] => {
                let id = str_field(app, "id")?;
                let app_id = str_field(app, "appId")?;
                let missing = missing_permissions(app);
                if missing.is_empty() {
                    info!(client_id = %app_id, "application found; reusing it");
                } else {
                    warn!(client_id = %app_id, missing = ?missing, "application found, but it does not ask for every permission the sync needs");
                }
                (id, app_id, Some(missing))
            }
            many => {
                return Err(ProvisionError::AmbiguousApplication {
                    name: name.to_owned(),
                    count: many.len(),
                });
            }
        };
        let service_principal_id = self.ensure_service_principal(token, &client_id, progress).await?;
        progress(ProvisionStep::AddingSecret);
        let secret = self.add_secret(token, &object_id, progress).await?;
        progress(ProvisionStep::Done);
        info!(%client_id, reused = missing_permissions.is_some(), "provisioning done");
        Ok(ProvisionedApp {
            tenant_id: token.tenant_id.clone(),
            client_id,
            app_object_id: object_id,
            service_principal_id,
            client_secret: Zeroizing::new(str_field(&secret, "secretText")?),
            secret_key_id: secret["keyId"].as_str().unwrap_or_default().to_owned(),
            secret_expires: secret["endDateTime"].as_str().unwrap_or_default().to_owned(),
            reused: missing_permissions.is_some(),
            missing_permissions: missing_permissions.unwrap_or_default(),
        })
    }

    async fn post_application(&self, token: &AdminToken, name: &str) -> Result<(String, String), ProvisionError> {
        let access: Vec<Value> = REQUIRED_ROLES
            .iter()
            .map(|r| {
                app_role_id(r)
                    .map(|id| json!({"id": id, "type": "Role"}))
                    .ok_or_else(|| ProvisionError::InvalidConfig(format!("no app-role id known for {r}")))
            })
            .collect::<Result<_, _>>()?;
        let body = json!({
            "displayName": name,
            "signInAudience": "AzureADMyOrg",
            "requiredResourceAccess": [{"resourceAppId": GRAPH_RESOURCE_APP_ID, "resourceAccess": access}],
            // Where `entra consent` receives the admin-consent answer; Entra
            // ID ignores the port of localhost redirect URIs when matching.
            "web": {"redirectUris": [CONSENT_REDIRECT_URI]},
        });
        let action = "create the application";
        let (status, app) = self
            .call(token, Method::POST, "/v1.0/applications", Some(&body))
            .await?;
        if status != StatusCode::CREATED && status != StatusCode::OK {
            return Err(graph_failure(action, status, &app));
        }
        Ok((str_field(&app, "id")?, str_field(&app, "appId")?))
    }

    /// The service principal of `client_id`, created if missing; retries
    /// while the application replicates.
    async fn ensure_service_principal(
        &self,
        token: &AdminToken,
        client_id: &str,
        progress: &(dyn Fn(ProvisionStep) + Send + Sync),
    ) -> Result<String, ProvisionError> {
        let filter = format!("appId eq '{}'", odata_quote(client_id));
        let path = format!("/v1.0/servicePrincipals?$filter={}", query_escape(&filter));
        let action = "find the service principal";
        if let Some(sp) = self.list(token, &path, action).await?.first() {
            return str_field(sp, "id");
        }
        let body = json!({"appId": client_id});
        let mut attempt = 0;
        loop {
            attempt += 1;
            progress(ProvisionStep::CreatingServicePrincipal { attempt });
            let (status, sp) = self
                .call(token, Method::POST, "/v1.0/servicePrincipals", Some(&body))
                .await?;
            if status == StatusCode::CREATED || status == StatusCode::OK {
                return str_field(&sp, "id");
            }
            if status == StatusCode::CONFLICT {
                // Created meanwhile (another run, or a retried call that did succeed).
                if let Some(sp) = self.list(token, &path, action).await?.first() {
                    return str_field(sp, "id");
                }
            }
            if !not_replicated(status, &sp) {
                return Err(graph_failure("create the service principal", status, &sp));
            }
            self.wait_replication("creating the service principal", attempt, status, &sp, progress)
                .await?;
        }
    }

    /// `addPassword`, retried while the application replicates.
    async fn add_secret(
        &self,
        token: &AdminToken,
        object_id: &str,
        progress: &(dyn Fn(ProvisionStep) + Send + Sync),
    ) -> Result<Value, ProvisionError> {
        let now = now_unix();
        let end = now.saturating_add(i64::try_from(self.opts.secret_lifetime.as_secs()).unwrap_or(i64::MAX));
        let body = json!({"passwordCredential": {
            "displayName": format!("entra-radius {}", &Rfc3339(now).to_string()[..10]),
            "endDateTime": Rfc3339(end).to_string(),
        }});
        let path = format!("/v1.0/applications/{object_id}/addPassword");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (status, secret) = self.call(token, Method::POST, &path, Some(&body)).await?;
            if status.is_success() {
                return Ok(secret);
            }
            if !not_replicated(status, &secret) {
                return Err(graph_failure("add a client secret", status, &secret));
            }
            self.wait_replication("adding the client secret", attempt, status, &secret, progress)
                .await?;
        }
    }

    /// Waits before the next attempt of `what`, or gives up after the last one.
    async fn wait_replication(
        &self,
        what: &str,
        attempt: u32,
        status: StatusCode,
        body: &Value,
        progress: &(dyn Fn(ProvisionStep) + Send + Sync),
    ) -> Result<(), ProvisionError> {
        if attempt >= self.opts.replication_attempts {
            let last = match parse_graph_error(body) {
                Some((code, message)) => format!("{status} {code}: {message}"),
                None => status.to_string(),
            };
            return Err(ProvisionError::Replication {
                what: what.to_owned(),
                attempts: attempt,
                last,
            });
        }
        let delay = replication_delay(&self.opts, attempt);
        info!(
            what,
            attempt,
            delay_ms = delay.as_millis() as u64,
            "waiting for directory replication"
        );
        progress(ProvisionStep::WaitingForReplication {
            what: what.to_owned(),
            attempt,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        });
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// GET of a collection's `value` (one page: filters by unique keys).
    async fn list(&self, token: &AdminToken, path: &str, action: &str) -> Result<Vec<Value>, ProvisionError> {
        let (status, body) = self.call(token, Method::GET, path, None).await?;
        if !status.is_success() {
            return Err(graph_failure(action, status, &body));
        }
        match body.get("value") {
            Some(Value::Array(items)) => Ok(items.clone()),
            _ => Err(ProvisionError::BadResponse(format!(
                "{action}: an answer without a `value` array"
            ))),
        }
    }

    /// One Graph call; 429/503/504 are retried (`Retry-After`, else backoff)
    /// up to `replication_attempts` times. Other statuses are returned.
    async fn call(
        &self,
        token: &AdminToken,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ProvisionError> {
        let url = format!("{}{path}", self.graph);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.access_token.as_str())
                .header(ACCEPT, "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = resp.text().await?;
            let json = serde_json::from_str(&text).unwrap_or(Value::Null);
            let busy = matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
            );
            if busy && attempt < self.opts.replication_attempts {
                let wait = retry_after
                    .unwrap_or_else(|| replication_delay(&self.opts, attempt))
                    .min(self.opts.replication_max_delay);
                debug!(path, status = status.as_u16(), attempt, "Graph busy; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok((status, json));
        }
    }
}

/// What a failed device-code poll means: keep polling (with this interval)
/// or stop with an error.
fn next_poll_interval(
    err: OAuthError,
    interval: Duration,
    slow_down_step: Duration,
) -> Result<Duration, ProvisionError> {
    match err.error.as_str() {
        "authorization_pending" => Ok(interval),
        // RFC 8628: this and every later poll waits `slow_down_step` longer.
        "slow_down" => Ok(interval + slow_down_step),
        "authorization_declined" | "access_denied" => Err(ProvisionError::SignInDeclined),
        "expired_token" => Err(ProvisionError::CodeExpired),
        _ => Err(aadsts(err)),
    }
}

/// [`REQUIRED_ROLES`] an application's `requiredResourceAccess` does not
/// list as Graph application permissions.
fn missing_permissions(app: &Value) -> Vec<String> {
    let granted: Vec<&str> = app["requiredResourceAccess"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["resourceAppId"].as_str() == Some(GRAPH_RESOURCE_APP_ID))
        .flat_map(|r| r["resourceAccess"].as_array().into_iter().flatten())
        .filter(|a| a["type"].as_str() == Some("Role"))
        .filter_map(|a| a["id"].as_str())
        .collect();
    REQUIRED_ROLES
        .iter()
        .filter(|role| app_role_id(role).is_none_or(|id| !granted.iter().any(|g| g.eq_ignore_ascii_case(id))))
        .map(|role| (*role).to_owned())
        .collect()
}

/// Graph's answers while a new application has not replicated to the
/// replica serving the call: 400 "does not reference a valid application
/// object" (NoBackingApplicationObject) or 404 Request_ResourceNotFound.
fn not_replicated(status: StatusCode, body: &Value) -> bool {
    let code = body["error"]["code"].as_str().unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let detail = body["error"]["details"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x["code"] == "NoBackingApplicationObject"));
    match status {
        StatusCode::NOT_FOUND => code == "Request_ResourceNotFound",
        StatusCode::BAD_REQUEST => detail || message.contains("does not reference a valid application object"),
        _ => false,
    }
}

/// `base · 2^(attempt-1)`, capped: 1, 2, 4 … s by default.
fn replication_delay(opts: &ProvisionOptions, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
    opts.replication_base_delay
        .saturating_mul(factor)
        .min(opts.replication_max_delay)
}

fn graph_failure(action: &str, status: StatusCode, body: &Value) -> ProvisionError {
    let (code, message) = parse_graph_error(body).unwrap_or_else(|| (String::new(), String::new()));
    if status == StatusCode::FORBIDDEN {
        return ProvisionError::Forbidden {
            action: action.to_owned(),
            code,
            message,
        };
    }
    let message = if status == StatusCode::UNAUTHORIZED {
        format!("{message} (the sign-in token was rejected: sign in again)")
    } else {
        message
    };
    ProvisionError::Graph {
        action: action.to_owned(),
        status: status.as_u16(),
        code,
        message,
    }
}

fn str_field(v: &Value, k: &str) -> Result<String, ProvisionError> {
    v[k].as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ProvisionError::BadResponse(format!("a Graph answer without `{k}`")))
}

/// A string literal inside an OData `$filter`: quotes are doubled.
fn odata_quote(v: &str) -> String {
    v.replace('\'', "''")
}

#[cfg(test)]
mod tests;
