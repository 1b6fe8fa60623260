//! Local accounts from the config file: users with a password and MAC
//! addresses for MAC Authentication Bypass. Built once per (re)load and
//! shared read-only.

use std::collections::HashMap;

use super::MacAddr;
use crate::proto::auth::Password;

/// How a local user's password is kept.
pub enum UserCredential {
    /// Needed for CHAP, which hashes the cleartext with the challenge.
    Cleartext(Password),
    /// An argon2 PHC string: PAP only.
    Argon2(String),
}

impl std::fmt::Debug for UserCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserCredential::Cleartext(_) => f.write_str("Cleartext(<redacted>)"),
            UserCredential::Argon2(_) => f.write_str("Argon2(<redacted>)"),
        }
    }
}

#[derive(Debug)]
pub struct LocalUser {
    /// As written in the config (logs show this form).
    pub name: String,
    pub credential: UserCredential,
}

#[derive(Debug, Clone)]
pub struct LocalMac {
    pub mac: MacAddr,
    pub description: Option<String>,
}

/// Local users are matched case-insensitively, like every identity the
/// server handles (UPNs are case-insensitive in Entra ID too).
#[derive(Debug, Default)]
pub struct LocalDirectory {
    users: HashMap<String, LocalUser>,
    macs: HashMap<MacAddr, LocalMac>,
}

impl LocalDirectory {
    /// Later entries with the same name or MAC replace earlier ones; the
    /// config validator refuses such duplicates before this is reached.
    pub fn new(users: Vec<LocalUser>, macs: Vec<LocalMac>) -> LocalDirectory {
        LocalDirectory {
            users: users
                .into_iter()
                .map(|u| (u.name.to_lowercase(), u))
                .collect(),
            macs: macs.into_iter().map(|m| (m.mac, m)).collect(),
        }
    }

    pub fn user(&self, name: &str) -> Option<&LocalUser> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) || !name.is_ascii() {
            self.users.get(&name.to_lowercase())
        } else {
            self.users.get(name)
        }
    }

    pub fn mac(&self, mac: &MacAddr) -> Option<&LocalMac> {
        self.macs.get(mac)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn mac_count(&self) -> usize {
        self.macs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_case_insensitive() {
        let d = LocalDirectory::new(
            vec![LocalUser {
                name: "Alice".into(),
                credential: UserCredential::Cleartext(Password::new(b"pw".to_vec())),
            }],
            vec![],
        );
        assert!(d.user("alice").is_some());
        assert!(d.user("ALICE").is_some());
        assert_eq!(d.user("alice").unwrap().name, "Alice");
        assert!(d.user("bob").is_none());
    }

    #[test]
    fn macs_match_in_any_notation() {
        let mac = MacAddr::parse("00-11-22-33-44-55").unwrap();
        let d = LocalDirectory::new(
            vec![],
            vec![LocalMac {
                mac,
                description: None,
            }],
        );
        assert!(d.mac(&MacAddr::parse("001122334455").unwrap()).is_some());
        assert!(d.mac(&MacAddr::parse("0011.2233.4455").unwrap()).is_some());
        assert!(
            d.mac(&MacAddr::parse("00:11:22:33:44:56").unwrap())
                .is_none()
        );
    }
}
