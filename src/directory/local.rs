//! Local accounts from the config file: users with a password and MAC
//! addresses for MAC Authentication Bypass. Built once per (re)load, shared
//! read-only, and consulted last in the precedence chain.

use std::collections::HashMap;
use std::sync::Arc;

use super::identity::Identity;
use super::resolver::{Directory, Lookup};
use super::{Account, AccountData, AccountKind, DirectoryKind, MacAddr};
use crate::proto::auth::Password;

/// How a local user's password is kept.
pub enum UserCredential {
    /// Needed for CHAP, which hashes the cleartext with the challenge.
    Cleartext(Password),
    /// An argon2 PHC string: PAP only.
    Argon2(String),
}

impl Clone for UserCredential {
    fn clone(&self) -> Self {
        match self {
            UserCredential::Cleartext(p) => UserCredential::Cleartext(Password::new(p.as_bytes().to_vec())),
            UserCredential::Argon2(h) => UserCredential::Argon2(h.clone()),
        }
    }
}

impl std::fmt::Debug for UserCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserCredential::Cleartext(_) => f.write_str("Cleartext(<redacted>)"),
            UserCredential::Argon2(_) => f.write_str("Argon2(<redacted>)"),
        }
    }
}

#[derive(Debug, Clone)]
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

struct UserEntry {
    account: Arc<Account>,
    credential: UserCredential,
}

/// Local users are matched case-insensitively, by the same case folding as
/// every other directory (`Identity::parse`), so that `Alice`, `alice` and
/// `ALICE` are one account here as they are in Entra ID.
#[derive(Default)]
pub struct LocalDirectory {
    users: HashMap<String, UserEntry>,
    macs: HashMap<MacAddr, Arc<Account>>,
}

impl std::fmt::Debug for LocalDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDirectory")
            .field("users", &self.users.len())
            .field("macs", &self.macs.len())
            .finish()
    }
}

/// The key a local user name is stored and found under: the identity's own
/// folded text, whatever its form (`alice`, `alice@corp`, `corp\alice`).
fn user_key(id: &Identity) -> Option<String> {
    match id {
        Identity::Mac(_) => None,
        other => Some(other.to_string()),
    }
}

impl LocalDirectory {
    /// The config validator refuses duplicate names and MACs before this is
    /// reached; if any slip through, the later entry wins.
    pub fn new(users: Vec<LocalUser>, macs: Vec<LocalMac>) -> LocalDirectory {
        let mut d = LocalDirectory::default();
        for u in users {
            let id = Identity::parse(&u.name);
            let Some(key) = user_key(&id) else {
                // A user named like a MAC would be unreachable: MAB looks up
                // MACs. The validator refuses it; ignore it here.
                continue;
            };
            let mut data = AccountData::new(DirectoryKind::Local, AccountKind::User, u.name.clone());
            data.display_name = Some(u.name.clone());
            data.enabled = true;
            d.users.insert(
                key,
                UserEntry {
                    account: Arc::new(Account::from(data)),
                    credential: u.credential,
                },
            );
        }
        for m in macs {
            let mut data = AccountData::new(DirectoryKind::Local, AccountKind::Device, m.mac.to_string());
            data.display_name = m.description.clone();
            data.macs = vec![m.mac];
            data.enabled = true;
            d.macs.insert(m.mac, Arc::new(Account::from(data)));
        }
        d
    }

    /// The credential of the local user behind `account` (found through
    /// this directory's `lookup`).
    pub fn credential(&self, account: &Account) -> Option<&UserCredential> {
        let key = user_key(&Identity::parse(account.object_id()))?;
        self.users.get(&key).map(|e| &e.credential)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn mac_count(&self) -> usize {
        self.macs.len()
    }
}

impl Directory for LocalDirectory {
    fn kind(&self) -> DirectoryKind {
        DirectoryKind::Local
    }

    fn lookup(&self, id: &Identity) -> Lookup {
        let found = match id {
            Identity::Mac(m) => self.macs.get(m).cloned(),
            other => user_key(other)
                .and_then(|k| self.users.get(&k))
                .map(|e| e.account.clone()),
        };
        match found {
            Some(a) => Lookup::Found(a),
            None => Lookup::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> LocalDirectory {
        LocalDirectory::new(
            vec![
                LocalUser {
                    name: "Alice".into(),
                    credential: UserCredential::Cleartext(Password::new(b"pw".to_vec())),
                },
                LocalUser {
                    name: "CORP\\bob".into(),
                    credential: UserCredential::Argon2("$argon2id$x".into()),
                },
            ],
            vec![LocalMac {
                mac: MacAddr::parse("00-11-22-33-44-55").unwrap(),
                description: Some("printer".into()),
            }],
        )
    }

    fn found(d: &LocalDirectory, s: &str) -> Option<Arc<Account>> {
        match d.lookup(&Identity::parse(s)) {
            Lookup::Found(a) => Some(a),
            _ => None,
        }
    }

    #[test]
    fn users_are_case_insensitive_in_every_form() {
        let d = dir();
        for s in ["alice", "ALICE", "Alice"] {
            let a = found(&d, s).unwrap();
            assert_eq!(a.object_id(), "Alice");
            assert!(a.enabled());
            assert!(matches!(d.credential(&a), Some(UserCredential::Cleartext(_))));
        }
        let b = found(&d, "corp\\BOB").unwrap();
        assert!(matches!(d.credential(&b), Some(UserCredential::Argon2(_))));
        assert!(found(&d, "bob").is_none());
        assert!(found(&d, "mallory").is_none());
    }

    #[test]
    fn macs_match_in_any_notation() {
        let d = dir();
        for s in ["001122334455", "0011.2233.4455", "00:11:22:33:44:55"] {
            let a = found(&d, s).unwrap();
            assert_eq!(a.kind(), AccountKind::Device);
            assert_eq!(a.display_name(), Some("printer"));
        }
        assert!(found(&d, "00:11:22:33:44:56").is_none());
    }
}
