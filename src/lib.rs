//! entra-radius: a RADIUS server for network access control whose identities
//! live in Microsoft Entra ID.
//!
//! # Layout
//!
//! - [`app`]: the composition root of `serve`: builds every part, owns
//!   every task, stops them in order; the admin API's backend.
//! - [`admin`]: the admin HTTP API (loopback, bearer token) and the client
//!   the CLI uses.
//! - [`graph`]: the Microsoft Graph and Entra ID token-endpoint client
//!   (tokens, paging, delta, throttling, AADSTS explanations, the password
//!   grant), and `entra provision`'s registration of the application after a
//!   device-code sign-in. Uses nothing else of the crate.
//! - [`integration`]: the Entra ID integration at run time (sync rounds on an
//!   interval, PAP checks for Entra users, status).
//! - [`proto`]: the RADIUS wire format (packets, attributes, authenticators,
//!   dictionaries). No sockets, no clock, no tokio.
//! - [`config`]: the TOML configuration, parsed and validated.
//! - [`clock`]: the one wall-clock reading (`now_unix`) and RFC 3339 dates;
//!   uses nothing of the crate, so every layer may use it.
//! - [`prometheus`]: the one renderer of the Prometheus text format that
//!   every `/metrics` family goes through; uses nothing of the crate.
//! - [`certs`]: `certs init` / `certs issue`: a private CA, the EAP server
//!   certificate and client certificates as PEM files.
//! - [`private_file`]: reading files that hold a secret, refused when group
//!   or others may read them.
//! - [`directory`]: accounts and the directories that own them (the Entra
//!   ID replica, Active Directory over LDAP with its cache, local accounts)
//!   and the precedence chain across them.
//! - [`eap`]: the EAP core (packets, EAP-Message carriage, EAP-TLS/TTLS
//!   fragmentation, conversations keyed by State). No I/O, no clock.
//!   Groundwork: not yet used by auth.
//! - [`auth`]: one Access-Request in, one decision out (PAP, CHAP, MAB).
//! - [`server`]: UDP transport on sockets it is given: client table,
//!   BlastRADIUS rules, duplicate cache, bounds on slow work, accounting
//!   hand-off, counters and draining on shutdown.
//! - [`sessions`]: sessions from accounting (the record an
//!   Accounting-Request becomes, the in-memory index of open sessions) and
//!   Disconnect-Requests (RFC 5176), sent after a sync commit that disables,
//!   deletes or moves an account, or by hand.
//! - [`store`]: SQLite persistence under the state directory.
//! - [`sync`]: the sync worker, from pages of Graph items to the Entra
//!   replica (replica changes, nested group expansion, per-page checkpoints).
//! - [`sys`]: process-level helpers (returning freed memory).
//! - [`test_auth`]: the small RADIUS client behind `entra-radius test-auth`.
//!
//! The Microsoft Graph / Entra ID emulator used by tests, benchmarks and
//! `serve --demo` (no tenant is reachable from CI) is the workspace crate
//! `graph-emulator` in `crates/graph-emulator/`.
//!
//! # Example
//!
//! Building an Access-Request as a NAS would, and reading it back:
//!
//! ```
//! use entra_radius::proto::crypto::{MessageAuth, check_message_authenticator, hide_password, unhide_password};
//! use entra_radius::proto::{AttrType, Builder, ClientSecret, Code, Packet};
//!
//! let secret = ClientSecret::new(b"testing123");
//! let authenticator = [7u8; 16];
//! let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, 1, authenticator);
//! b.push(AttrType::USER_NAME, b"alice").unwrap();
//! b.push(AttrType::USER_PASSWORD, &hide_password(b"wonderland", &secret, &authenticator).unwrap()).unwrap();
//! let bytes = b.finish_request(&secret);
//!
//! let p = Packet::decode(&bytes).unwrap();
//! assert_eq!(check_message_authenticator(&p, &secret, None), MessageAuth::Valid);
//! let pw = unhide_password(p.get(AttrType::USER_PASSWORD).unwrap(), &secret, p.authenticator()).unwrap();
//! assert_eq!(pw.as_bytes(), b"wonderland");
//! ```

pub mod admin;
pub mod app;
pub mod auth;
pub mod certs;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod directory;
pub mod eap;
pub mod graph;
pub mod integration;
pub mod private_file;
pub mod prometheus;
pub mod proto;
pub mod server;
pub mod sessions;
pub mod store;
pub mod sync;
pub mod sys;
pub mod test_auth;
