//! Accounts and the directories that own them. For now the one directory is
//! the local one from the config file; Entra ID and Active Directory join it
//! with lookup-time precedence in later work.

pub mod local;
pub mod mac;

pub use local::{LocalDirectory, LocalMac, LocalUser, UserCredential};
pub use mac::MacAddr;

/// The directory an account belongs to. An account belongs to exactly one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DirectoryKind {
    Entra,
    ActiveDirectory,
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
