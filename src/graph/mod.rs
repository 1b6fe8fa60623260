//! The Microsoft Graph and Entra ID token-endpoint client: application
//! credentials and cached tokens, GETs with throttling-aware retries, paging
//! and delta links, domains, errors explained in plain words (AADSTS codes,
//! Graph error codes), the resource-owner password grant the PAP check for
//! Entra users relies on, and `provision`, which registers the application
//! for an administrator who signs in with the device-code flow.
//!
//! It uses nothing else of the crate: the sync worker reads pages through its
//! own `PageSource` trait, and `integration` adapts this client to it.

mod client;
mod errors;
pub mod provision;
mod token;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use client::{
    DEVICE_SELECT, DomainInfo, GROUP_SELECT, GraphClient, GraphConfig, GraphOptions, MANAGED_DEVICE_SELECT, Page,
    REQUIRED_ROLES, USER_SELECT, devices_delta_url, groups_delta_url, managed_devices_url, missing_roles, query_escape,
    users_delta_url, validate_endpoint,
};
pub use errors::{GraphError, PasswordError, PasswordFailure, explain_aadsts};
pub use token::{CLIENT_ASSERTION_TYPE, CertificateCredential, Credential, Token};
