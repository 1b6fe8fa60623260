//! The integration's errors, in words an administrator acts on.

use std::path::PathBuf;

use crate::graph::GraphError;
use crate::graph::provision::ProvisionError;
use crate::private_file::PrivateFileError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("selected domains: {0}")]
    SelectedDomains(serde_json::Error),
    #[error("{path}: {source}")]
    Certificate { path: PathBuf, source: GraphError },
    #[error("the application's certificate: {0}")]
    CertificateFile(PrivateFileError),
    #[error(
        "cannot read the client secret {0}: the file is missing; run `entra-radius entra provision` again to store one"
    )]
    SecretMissing(PathBuf),
    #[error("the client secret: {0}")]
    SecretFile(PrivateFileError),
    #[error("{0} is not UTF-8 text")]
    SecretNotText(PathBuf),
    #[error("{0} is empty")]
    SecretEmpty(PathBuf),
    #[error("no application is registered: run `entra-radius entra provision`")]
    NotProvisioned,
    #[error("cannot build the Graph client: {0}")]
    GraphClient(GraphError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error("recording the application failed: {0}")]
    RecordTask(tokio::task::JoinError),
    /// Refused by the same checks as a registration by hand, in their words.
    #[error("{0}")]
    Record(String),
}
