//! entra-radius: a RADIUS server for network access control whose identities
//! live in Microsoft Entra ID.
//!
//! # Layout
//!
//! - [`proto`]: the RADIUS wire format (packets, attributes, authenticators,
//!   dictionaries). No sockets, no clock, no tokio.
//! - [`config`]: the TOML configuration, parsed and validated.
//! - [`directory`]: accounts and the directories that own them (local for now).
//! - [`auth`]: one Access-Request in, one decision out (PAP, CHAP, MAB).
//! - [`server`]: UDP transport, client table, duplicate cache, accounting,
//!   counters and shutdown.
//! - [`store`]: SQLite persistence under the state directory.
//! - [`test_auth`]: the small RADIUS client behind `entra-radius test-auth`.

pub mod auth;
pub mod config;
pub mod directory;
pub mod proto;
pub mod server;
pub mod store;
pub mod test_auth;
