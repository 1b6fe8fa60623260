//! Integration tests: the real `entra-radius` binary on free loopback ports,
//! driven by real clients (radclient from freeradius-utils, the `radius`
//! crate) and by raw UDP for what no client will send.

mod ad;
mod blastradius;
mod certs;
mod cli;
mod crash;
mod directory;
mod eap;
mod entra_pap;
mod harness;
mod history;
mod interop;
mod overload;
mod radclient;
mod robustness;
mod samba;
mod service;
mod sessions;
mod state;
mod sync;
mod workflow;
