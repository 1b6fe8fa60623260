//! admin: the admin HTTP API on loopback, behind a bearer token, and the client the CLI uses.
//!
//! The server side ([`AdminServer`], [`router`]) serves these endpoints, every one of them
//! behind `Authorization: Bearer <token>` (the token lives in `state_dir/admin.token`):
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/v1/status` | [`AdminBackend::status`] as JSON |
//! | GET | `/v1/accounts/{identity}` | [`AdminBackend::lookup`] as JSON; the identity is one percent-encoded path segment |
//! | POST | `/v1/reload` | 200 with [`AdminBackend::reload`]'s summary, or 422 `{"error": msg}` |
//! | GET | `/metrics` | Prometheus text exposition (`text/plain; version=0.0.4`) |
//! | GET | `/v1/entra` | the integration's state and the next step |
//! | POST | `/v1/entra/enable`, `/v1/entra/disable` | the integration switch; disable takes `{"purge": bool}` |
//! | POST, GET | `/v1/entra/provision` | start the automatic registration (`{"tenant", "display_name"}`), then its progress |
//! | PUT | `/v1/entra/credentials` | record an application registered by hand |
//! | GET, POST | `/v1/entra/consent` | the consent URL for `?redirect_uri=`, then the redirect's answer |
//! | GET | `/v1/domains` | the tenant's domains, flags and selection |
//! | POST | `/v1/domains/selection` | `{"action": "select"\|"unselect"\|"exact", "all": bool, "names": [...]}` |
//! | POST, GET | `/v1/sync` | start a sync round now; sync health and progress |
//!
//! `/metrics` is behind the token too: configure the scraper with the token, e.g. Prometheus'
//! `authorization: { type: Bearer, credentials_file: /var/lib/entra-radius/admin.token }`.
//!
//! Errors are JSON `{"error": "..."}`: 401 (missing or wrong token, with `WWW-Authenticate:
//! Bearer`), 403 (a `Host` header that is not a loopback name or address: this stops a page on
//! another site that rebinds its DNS name to 127.0.0.1 from driving the API through a browser),
//! 404, 405, 409 (an integration step asked for before the one it needs; the message names it), 413
//! (body over 64 KiB), 500 (the backend panicked), 502 (Microsoft Graph or the token endpoint refused).
//!
//! The client side ([`AdminClient`]) is what the CLI's admin commands use; it turns "connection
//! refused" and 401 into errors that tell the operator what to do.
//!
//! This module uses nothing else of the crate: the rest of the server is reached through the
//! [`AdminBackend`] trait, so the module compiles and is tested on its own.

pub mod api;
mod client;
pub mod commands;
pub mod pick;
mod server;
mod token;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use api::{ApiError, AuthLogQuery, DisconnectSelection, IntegrationRequest, SessionsQuery};
pub use client::AdminClient;
pub use server::{AdminBackend, AdminServer, BoxError, MAX_BODY_BYTES, host_is_loopback, router};
pub use token::{TOKEN_FILE, ensure_token, read_token};

/// Everything that can go wrong in the admin API or its client. Every message is one line that
/// says what to do where there is something to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The server could not create, read or secure its token file.
    #[error("admin token {}: {source}", path.display())]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CLI found no token file: no server has run with this state directory.
    #[error(
        "no admin token at {}: start the server with `entra-radius serve --config FILE` (it creates the token), and pass the same --config here",
        path.display()
    )]
    TokenMissing { path: PathBuf },
    /// The CLI may not read the token file (usually: another user runs the server).
    #[error(
        "cannot read the admin token {}: {source} (run as the user that runs the server)",
        path.display()
    )]
    TokenUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The admin listen address is not a loopback address.
    #[error("the admin API listens on loopback only (127.0.0.0/8 or ::1), not {0}: change [admin] listen")]
    NotLoopback(SocketAddr),
    /// The admin listen address could not be bound.
    #[error("cannot listen for the admin API on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The admin API server stopped on an I/O error.
    #[error("the admin API server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// Nothing listens on the admin address.
    #[error("no entra-radius server answers on {addr}: start one with `entra-radius serve --config FILE`")]
    ServerNotRunning { addr: SocketAddr },
    /// A file named on the command line could not be read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The command line asks for something it cannot have.
    #[error("{0}")]
    Usage(&'static str),
    /// The server answered 401.
    #[error(
        "the server refused the token in {}: is it the server started with this config?",
        path.display()
    )]
    Unauthorized { path: PathBuf },
    /// The server took longer than the client's request timeout.
    #[error("the server on {addr} did not answer within {secs} s")]
    Timeout { addr: SocketAddr, secs: u64 },
    /// The server answered with an error status; `message` is its `{"error": ...}` text.
    #[error("the admin API answered {status}: {message}")]
    Api { status: u16, message: String },
    /// Any other HTTP failure (including an answer that is not the JSON expected).
    #[error("admin API request failed: {}", error_chain(.0))]
    Http(#[source] reqwest::Error),
}

/// reqwest's own Display hides the cause ("error sending request for url ..."), so the one line
/// shown to the operator carries the whole chain of causes.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some layers repeat their cause's text; showing it twice helps nobody.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
