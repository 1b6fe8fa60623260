//! The integration requests of the admin API: what the CLI sends and the backend answers.
//! Shared by the server side (the router turns each endpoint into one [`IntegrationRequest`])
//! and the client side (the CLI builds the same bodies), so both agree on the field names.

use serde::{Deserialize, Serialize};

/// One integration operation. Each variant is one endpoint; see the module table in `admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegrationRequest {
    /// `GET /v1/entra`: where the integration stands and the next step.
    Status,
    /// `POST /v1/entra/enable`.
    Enable,
    /// `POST /v1/entra/disable`.
    Disable(DisableBody),
    /// `POST /v1/entra/provision`: start the automatic registration (device-code sign-in).
    ProvisionStart(ProvisionBody),
    /// `GET /v1/entra/provision`: how the automatic registration is going.
    ProvisionProgress,
    /// `PUT /v1/entra/credentials`: record an application registered by hand.
    SetCredentials(CredentialsBody),
    /// `GET /v1/entra/consent?redirect_uri=…`: the admin-consent URL for this redirect.
    ConsentUrl { redirect_uri: String },
    /// `POST /v1/entra/consent`: what the consent redirect brought back; the server then checks
    /// the token's roles.
    ConsentResult(ConsentBody),
    /// `GET /v1/domains`: the tenant's domains with their flags and the selection.
    Domains,
    /// `POST /v1/domains/selection`: change the saved selection.
    SelectDomains(SelectionBody),
    /// `POST /v1/sync`: start a round now.
    SyncNow,
    /// `GET /v1/sync`: sync health and the progress of a running round.
    SyncStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisableBody {
    /// Also delete every Entra account, group and checkpoint from the replica and the store.
    pub purge: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisionBody {
    /// The tenant to sign in to (id or a verified domain); `organizations` when absent.
    pub tenant: Option<String>,
    /// The application's display name; a built-in one when absent.
    pub display_name: Option<String>,
}

/// An application registered by hand. Exactly one of `client_secret` and `certificate_pem`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialsBody {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// The certificate and its PKCS#8 private key, PEM.
    pub certificate_pem: Option<String>,
}

/// Written by hand: the secret and the key never reach a log through `{:?}`.
impl std::fmt::Debug for CredentialsBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsBody")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("certificate_pem", &self.certificate_pem.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The query parameters of the consent redirect, as the CLI received them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentBody {
    pub admin_consent: Option<String>,
    pub tenant: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A change of the domain selection: `all`, or `names`, to select or unselect; or `exact`, the
/// whole new selection (what `domains pick` saves).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectionBody {
    pub action: SelectionAction,
    pub all: bool,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionAction {
    #[default]
    Select,
    Unselect,
    /// Replace the selection with `names` (or every domain with `all`).
    Exact,
}

/// A refusal from the backend: an HTTP status and one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    /// 400: the request itself is wrong (an unknown domain, both secret and certificate).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
        }
    }
    /// 409: the integration is not in a state where this step makes sense; the message says
    /// which step comes first.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 409,
            message: message.into(),
        }
    }
    /// 502: Microsoft Graph or the token endpoint refused or failed (message explains).
    pub fn upstream(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 502,
            message: message.into(),
        }
    }
    /// 500: the server could not do its own part (the store, a file).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

/// `GET /v1/auth/log`: what `auth log` filters on. Every set field must
/// match; `after_id` turns the order to oldest first (for `--follow`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthLogQuery {
    pub identity: Option<String>,
    /// Any common MAC notation.
    pub mac: Option<String>,
    /// The NAS's name in the client table.
    pub client: Option<String>,
    /// `accept` or `reject`.
    pub result: Option<String>,
    /// Unix time in milliseconds.
    pub since_ms: Option<i64>,
    pub after_id: Option<i64>,
    pub limit: Option<usize>,
}

/// `GET /v1/sessions`: the active sessions, all or those of one identity.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionsQuery {
    /// Any identity form `accounts lookup` takes, a MAC included.
    pub user: Option<String>,
}

/// `POST /v1/sessions/disconnect`: which sessions to send a
/// Disconnect-Request; exactly one field set.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DisconnectSelection {
    /// The Acct-Session-Id.
    pub session_id: Option<String>,
    pub user: Option<String>,
    /// Any common MAC notation: the session's Calling-Station-Id.
    pub mac: Option<String>,
}
