//! Local accounts from the config file: users with a password and MAC
//! addresses for MAC Authentication Bypass. Built once per (re)load, shared
//! read-only, and consulted last in the precedence chain.

use std::collections::HashMap;
use std::sync::Arc;

use super::identity::Identity;
use super::resolver::{Directory, Lookup};
use super::{Account, AccountData, AccountKind, DirectoryKind, MacAddr};
use crate::proto::crypto::Password;

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

/// Hashing for the local tables: fast on short keys, seeded per process.
type Fast = foldhash::fast::RandomState;

/// Local users are matched case-insensitively, by the same case folding as
/// every other directory (`Identity::parse`), so that `Alice`, `alice` and
/// `ALICE` are one account here as they are in Entra ID.
///
/// A request costs one lookup by name (no allocation for the usual forms)
/// and one by the account's address for its credential: `credential` takes
/// the account `lookup` returned, whose `Arc` this directory owns.
#[derive(Default)]
pub struct LocalDirectory {
    users: HashMap<UserKey, Arc<Account>, Fast>,
    credentials: HashMap<usize, UserCredential, Fast>,
    macs: HashMap<MacAddr, Arc<Account>, Fast>,
}

/// A folded user name as the table keeps it: inline when it fits (nearly
/// every name), so that neither memory nor a lookup pays for a separate
/// allocation and the pointer chase to it.
#[derive(Clone)]
enum UserKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<str>),
}

const INLINE_KEY: usize = 22;

impl UserKey {
    fn new(s: &str) -> UserKey {
        if s.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            UserKey::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            UserKey::Heap(s.into())
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Built from a `&str` cut at its own length: always UTF-8.
            UserKey::Inline { len, bytes } => std::str::from_utf8(&bytes[..*len as usize]).unwrap_or_default(),
            UserKey::Heap(s) => s,
        }
    }
}

impl PartialEq for UserKey {
    fn eq(&self, other: &UserKey) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for UserKey {}

/// Hashes as the `str` it holds, so that lookups by `&str` find it.
impl std::hash::Hash for UserKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for UserKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for LocalDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDirectory")
            .field("users", &self.users.len())
            .field("macs", &self.macs.len())
            .finish()
    }
}

/// Calls `f` with the key a local user name is stored and found under: the
/// identity's own folded text, whatever its form (`alice`, `alice@corp`,
/// `corp\\alice`). Only `DOMAIN\\user` needs to build it.
fn with_user_key<R>(id: &Identity, f: impl FnOnce(&str) -> R) -> Option<R> {
    match id {
        Identity::Mac(_) => None,
        Identity::Upn(s) | Identity::Guid(s) | Identity::Name(s) => Some(f(s)),
        sam @ Identity::Sam { .. } => Some(f(&sam.to_string())),
    }
}

impl LocalDirectory {
    /// The config validator refuses duplicate names and MACs before this is
    /// reached; if any slip through, the later entry wins.
    pub fn new(users: Vec<LocalUser>, macs: Vec<LocalMac>) -> LocalDirectory {
        let mut d = LocalDirectory {
            users: HashMap::with_capacity_and_hasher(users.len(), Fast::default()),
            credentials: HashMap::with_capacity_and_hasher(users.len(), Fast::default()),
            macs: HashMap::with_capacity_and_hasher(macs.len(), Fast::default()),
        };
        for u in users {
            let id = Identity::parse(&u.name);
            let Some(key) = with_user_key(&id, UserKey::new) else {
                // A user named like a MAC would be unreachable: MAB looks up
                // MACs. The validator refuses it; ignore it here.
                continue;
            };
            // The name as written is the object id; a display name would repeat it.
            let mut data = AccountData::new(DirectoryKind::Local, AccountKind::User, u.name);
            data.enabled = true;
            let account = Arc::new(Account::from(data));
            if let Some(old) = d.users.insert(key, account.clone()) {
                d.credentials.remove(&address(&old));
            }
            d.credentials.insert(address(&account), u.credential);
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
        self.credentials.get(&(account as *const Account as usize))
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn mac_count(&self) -> usize {
        self.macs.len()
    }
}

/// Where an account lives: the key of its credential.
fn address(account: &Arc<Account>) -> usize {
    Arc::as_ptr(account) as usize
}

impl Directory for LocalDirectory {
    fn kind(&self) -> DirectoryKind {
        DirectoryKind::Local
    }

    fn lookup(&self, id: &Identity) -> Lookup {
        let found = match id {
            Identity::Mac(m) => self.macs.get(m).cloned(),
            other => with_user_key(other, |k| self.users.get(k).cloned()).flatten(),
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

    fn a_copy_of(a: &Account) -> AccountData {
        a.to_data()
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
        // An equal account that this directory did not hand out has no credential here.
        let stranger = Account::from(a_copy_of(&found(&d, "alice").unwrap()));
        assert!(d.credential(&stranger).is_none());
    }

    #[test]
    fn long_names_are_found_like_short_ones() {
        let long = "a-very-long-user-name-that-does-not-fit@contoso.example";
        let d = LocalDirectory::new(
            vec![LocalUser {
                name: long.to_uppercase(),
                credential: UserCredential::Argon2("$argon2id$x".into()),
            }],
            vec![],
        );
        let a = found(&d, long).unwrap();
        assert!(matches!(d.credential(&a), Some(UserCredential::Argon2(_))));
        assert!(found(&d, &long[..22]).is_none());
        assert_eq!(
            UserKey::new("exactly-twenty-two-ch!").as_str(),
            "exactly-twenty-two-ch!"
        );
        assert!(matches!(UserKey::new("exactly-twenty-two-ch!"), UserKey::Inline { .. }));
        assert!(matches!(UserKey::new("twenty-three-characters"), UserKey::Heap(_)));
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
