//! Accounts and the directories that own them: the account model, the
//! in-memory Entra ID replica, lookup-time precedence across directories
//! (Entra ID, then Active Directory, then local accounts) and group-based
//! reply policy.

pub mod account;
pub mod ad;
mod flat;
pub mod groups;
mod hashindex;
pub mod identity;
pub mod local;
pub mod mac;
pub mod persist;
pub mod policy;
pub mod replica;
pub mod resolver;

pub use account::{Account, AccountData, AccountKind, AccountPatch, GroupRef};
pub use identity::{Identity, WarmName};
pub use local::{LocalDirectory, LocalMac, LocalUser, UserCredential};
pub use mac::MacAddr;
pub use policy::{PolicyError, PolicyRule, ReplyPlan};
pub use replica::{Change, EntraReplica, ReplicaCounts, WarmKey};
pub use resolver::{
    AccountSummary, Answer, Decision, Directory, EntraDirectory, Explanation, Lookup, LowerAnswer, Resolution, Resolver,
};

use serde::{Deserialize, Serialize};

/// The directory an account belongs to. An account belongs to exactly one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum DirectoryKind {
    #[serde(rename = "entra")]
    Entra,
    #[serde(rename = "ad")]
    ActiveDirectory,
    #[serde(rename = "local")]
    Local,
}

impl DirectoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryKind::Entra => "entra",
            DirectoryKind::ActiveDirectory => "ad",
            DirectoryKind::Local => "local",
        }
    }
}

impl std::fmt::Display for DirectoryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
