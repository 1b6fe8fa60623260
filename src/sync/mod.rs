//! Keeping the Entra replica in step with Microsoft Entra ID: the Microsoft
//! Graph client (tokens, paging, delta links, throttling, error
//! explanations), what Graph items mean for the replica (`mapping`), and sync rounds with per-page checkpoints and
//! sweeping full resyncs (`worker`); `provision` registers the application itself for an administrator
//! who signs in with the device-code flow.

mod errors;
mod graph;
pub mod mapping;
pub mod provision;
mod token;
pub mod worker;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use errors::{GraphError, PasswordError, PasswordFailure, explain_aadsts};
pub use graph::{
    DEVICE_SELECT, DomainInfo, GROUP_SELECT, GraphClient, GraphConfig, GraphOptions, MANAGED_DEVICE_SELECT, Page,
    REQUIRED_ROLES, USER_SELECT, devices_delta_url, groups_delta_url, managed_devices_url, query_escape,
    users_delta_url, validate_endpoint,
};
pub use token::{CLIENT_ASSERTION_TYPE, CertificateCredential, Credential, Token};
