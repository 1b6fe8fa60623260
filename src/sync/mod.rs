//! Keeping the Entra replica in step with Microsoft Graph. So far: what Graph
//! items mean for the replica (`mapping`) and the expansion of nested group
//! memberships (`groups`).

pub mod groups;
pub mod mapping;
