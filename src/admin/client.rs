//! The admin API client the CLI uses: loopback only, bearer token, errors an operator can act on.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;

use super::{AdminError, TOKEN_FILE, read_token};

/// Loopback answers a connect at once; two seconds only covers a machine under heavy load.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest any admin call may take: a config reload, or an integration step that waits on
/// Microsoft Graph (its retries, or consent reaching the tokens).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of a non-JSON error body is worth showing on the operator's one line.
const MAX_ERROR_TEXT: usize = 200;

/// A client for one server's admin API.
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
    addr: SocketAddr,
    /// Named in the Unauthorized error so the operator knows which token was refused.
    token_path: PathBuf,
}

/// Written by hand so that the token never reaches a log through `{:?}`.
impl fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("token_path", &self.token_path)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client for the API on `addr`, which must be loopback: the API is plain HTTP and the
    /// token must not cross a network.
    pub fn new(addr: SocketAddr, token: String) -> Result<AdminClient, AdminError> {
        if !addr.ip().is_loopback() {
            return Err(AdminError::NotLoopback(addr));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A proxy from the environment (HTTP_PROXY) would route loopback traffic, and the
            // token, through someone else.
            .no_proxy()
            .user_agent(concat!("entra-radius-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(AdminError::Http)?;
        Ok(AdminClient {
            base: format!("http://{addr}"),
            token,
            http,
            addr,
            // Without a known path, the conventional file name still tells the operator where
            // to look.
            token_path: PathBuf::from(TOKEN_FILE),
        })
    }

    /// A client with the token read from `state_dir/admin.token`, which a refusal then names.
    pub fn from_state_dir(addr: SocketAddr, state_dir: &Path) -> Result<AdminClient, AdminError> {
        let token = read_token(state_dir)?;
        let mut client = AdminClient::new(addr, token)?;
        client.token_path = state_dir.join(TOKEN_FILE);
        Ok(client)
    }

    /// GET `path` (e.g. `/v1/status`) and parse the JSON answer.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, AdminError> {
        let response = self.send(self.http.get(self.url(path))).await?;
        response.json().await.map_err(|e| self.map_error(e))
    }

    /// POST `body` as JSON to `path` and parse the JSON answer.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, AdminError> {
        let response = self.send(self.http.post(self.url(path)).json(body)).await?;
        response.json().await.map_err(|e| self.map_error(e))
    }

    /// PUT `body` as JSON to `path` and parse the JSON answer.
    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, AdminError> {
        let response = self.send(self.http.put(self.url(path)).json(body)).await?;
        response.json().await.map_err(|e| self.map_error(e))
    }

    /// How the server decides `identity` (a user name, `DOMAIN\user`, UPN, MAC or device id).
    pub async fn lookup(&self, identity: &str) -> Result<serde_json::Value, AdminError> {
        self.get_json(&format!("/v1/accounts/{}", encode_path_segment(identity)))
            .await
    }

    fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("{}{slash}{path}", self.base)
    }

    /// Sends with the token and turns refusals and error statuses into [`AdminError`]s.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, AdminError> {
        // bearer_auth marks the header sensitive, so reqwest's own Debug output hides it.
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.map_error(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(AdminError::Unauthorized {
                path: self.token_path.clone(),
            });
        }
        // The body only explains the status; if it cannot be read the status still stands.
        let text = response.text().await.unwrap_or_default();
        Err(AdminError::Api {
            status: status.as_u16(),
            message: error_message(status, &text),
        })
    }

    fn map_error(&self, error: reqwest::Error) -> AdminError {
        if error.is_connect() {
            AdminError::ServerNotRunning { addr: self.addr }
        } else if error.is_timeout() {
            AdminError::Timeout {
                addr: self.addr,
                secs: REQUEST_TIMEOUT.as_secs(),
            }
        } else {
            AdminError::Http(error)
        }
    }
}

/// The `error` field of the API's JSON errors; for anything else (another program on the
/// port), the start of its body or the status's reason.
fn error_message(status: StatusCode, body: &str) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(body)
        && let Some(serde_json::Value::String(message)) = map.get("error")
    {
        return message.clone();
    }
    let first_line = body.lines().next().unwrap_or("").trim();
    if first_line.is_empty() {
        return status.canonical_reason().unwrap_or("no explanation given").to_owned();
    }
    let mut end = first_line.len().min(MAX_ERROR_TEXT);
    while !first_line.is_char_boundary(end) {
        end -= 1;
    }
    first_line[..end].to_owned()
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so that `\`, `:`, `@`,
/// `/`, `%`, spaces and non-ASCII all reach the server as one path segment and come back out
/// unchanged.
pub fn encode_path_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
