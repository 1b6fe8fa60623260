//! Local accounts from the config file: users with a password and MAC
//! addresses for MAC Authentication Bypass. Built once per (re)load, shared
//! read-only, and consulted last in the precedence chain.

use std::hash::BuildHasher;
use std::sync::Arc;

use super::account::prefetch_arc;
use super::flat::{FlatIndex, prefetch};
use super::identity::{Identity, WarmName};
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
/// A request costs one lookup by name (no allocation for the usual forms);
/// `credential` repeats it, from the cache by then, and takes the
/// credential only if the entry holds the very account `lookup` returned.
///
/// The tables are flat (`flat::FlatIndex` over a `Vec`), so that a receive
/// batch can load what its lookups will read before deciding any of them:
/// `warm_key` and `warm`.
#[derive(Default)]
pub struct LocalDirectory {
    hasher: Fast,
    users: Vec<UserEntry>,
    by_name: FlatIndex,
    macs: Vec<(MacAddr, Arc<Account>)>,
    by_mac: FlatIndex,
}

/// A local user as the table keeps it: name, account and credential side
/// by side (56 bytes).
struct UserEntry {
    key: UserKey,
    account: Arc<Account>,
    credential: UserCredential,
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
            hasher: Fast::default(),
            users: Vec::with_capacity(users.len()),
            by_name: FlatIndex::with_capacity(users.len()),
            macs: Vec::with_capacity(macs.len()),
            by_mac: FlatIndex::with_capacity(macs.len()),
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
            let entry = UserEntry {
                account: Arc::new(Account::from(data)),
                key,
                credential: u.credential,
            };
            let hash = d.user_hash(entry.key.as_str());
            d.by_name.upsert(&mut d.users, hash, entry, |a, b| a.key == b.key);
        }
        for m in macs {
            let mut data = AccountData::new(DirectoryKind::Local, AccountKind::Device, m.mac.to_string());
            data.display_name = m.description.clone();
            data.macs = vec![m.mac];
            data.enabled = true;
            let hash = d.mac_hash(&m.mac);
            let entry = (m.mac, Arc::new(Account::from(data)));
            d.by_mac.upsert(&mut d.macs, hash, entry, |a, b| a.0 == b.0);
        }
        d
    }

    /// User names hash with the lowest bit clear, MACs with it set: a
    /// `warm_key` says which table it is for.
    fn user_hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key) & !1
    }

    fn mac_hash(&self, mac: &MacAddr) -> u64 {
        self.hasher.hash_one(mac) | 1
    }

    /// The entry `id` names, if any.
    fn user(&self, id: &Identity) -> Option<&UserEntry> {
        with_user_key(id, |k| {
            self.by_name
                .find(self.user_hash(k), |q| self.users[q].key.as_str() == k)
                .map(|q| &self.users[q])
        })
        .flatten()
    }

    /// The credential of the local user `id` names, if `account` is the
    /// one this directory's `lookup` returned for it.
    pub fn credential(&self, id: &Identity, account: &Account) -> Option<&UserCredential> {
        let e = self.user(id)?;
        std::ptr::eq(Arc::as_ptr(&e.account), account).then_some(&e.credential)
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn mac_count(&self) -> usize {
        self.macs.len()
    }

    /// The key `warm` takes for a request naming `name`, the slot its
    /// lookup starts at already loading. 0 (nothing to warm) for a name
    /// longer than 64 bytes or not ASCII: rare, and only not loaded ahead.
    /// The user key of an ASCII name is the name in lower case, whatever
    /// its form (see `with_user_key`); a braced GUID is the exception, and
    /// only loads a slot in vain.
    pub fn warm_key(&self, name: WarmName<'_>) -> u64 {
        let hash = match name {
            WarmName::Mac(mac) => {
                let hash = self.mac_hash(&mac);
                self.by_mac.prefetch(hash);
                return hash;
            }
            WarmName::Text(s) if s.is_ascii() && s.len() <= 64 => {
                let mut folded = [0u8; 64];
                let folded = &mut folded[..s.len()];
                folded.copy_from_slice(s.as_bytes());
                folded.make_ascii_lowercase();
                // ASCII in, ASCII out.
                self.user_hash(std::str::from_utf8(folded).unwrap_or_default())
            }
            WarmName::Text(_) => return 0,
        };
        self.by_name.prefetch(hash);
        hash
    }

    /// Loads what the lookups of a receive batch will read, given their
    /// `warm_key`s, one step of the pointer chain at a time across the
    /// whole batch so that the misses of different requests overlap: the
    /// entries behind the slots, then the accounts and passwords, then the
    /// accounts' text. Keys from another directory (a reload in between)
    /// only load lines in vain: every read here is bounds-checked, and
    /// what it finds is never trusted.
    pub fn warm(&self, keys: impl Iterator<Item = u64> + Clone) {
        for k in keys.clone() {
            match self.candidate(k) {
                Some(Candidate::User(e)) => {
                    // 56 bytes: on one cache line or across two.
                    prefetch(e);
                    prefetch((e as *const UserEntry).cast::<u8>().wrapping_add(55));
                }
                Some(Candidate::Mac(e)) => prefetch(e),
                None => {}
            }
        }
        for k in keys.clone() {
            if let Some(c) = self.candidate(k) {
                prefetch_arc(c.account());
                if let Candidate::User(UserEntry {
                    credential: UserCredential::Cleartext(pw),
                    ..
                }) = c
                {
                    prefetch(pw.as_bytes().as_ptr());
                }
            }
        }
        for k in keys {
            if let Some(c) = self.candidate(k) {
                c.account().prefetch_fields();
            }
        }
    }

    /// The entry a `warm_key` leads to first (not checked against a key:
    /// for loading only).
    fn candidate(&self, k: u64) -> Option<Candidate<'_>> {
        match k {
            0 => None,
            k if k & 1 == 1 => self.by_mac.first(k).and_then(|q| self.macs.get(q)).map(Candidate::Mac),
            k => self
                .by_name
                .first(k)
                .and_then(|q| self.users.get(q))
                .map(Candidate::User),
        }
    }
}

/// An entry `warm` loads: a user's or a MAC's.
#[derive(Clone, Copy)]
enum Candidate<'a> {
    User(&'a UserEntry),
    Mac(&'a (MacAddr, Arc<Account>)),
}

impl<'a> Candidate<'a> {
    fn account(self) -> &'a Arc<Account> {
        match self {
            Candidate::User(e) => &e.account,
            Candidate::Mac(e) => &e.1,
        }
    }
}

impl Directory for LocalDirectory {
    fn kind(&self) -> DirectoryKind {
        DirectoryKind::Local
    }

    fn lookup(&self, id: &Identity) -> Lookup {
        let found = match id {
            Identity::Mac(m) => self
                .by_mac
                .find(self.mac_hash(m), |q| self.macs[q].0 == *m)
                .map(|q| self.macs[q].1.clone()),
            other => self.user(other).map(|e| e.account.clone()),
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
            assert!(matches!(
                d.credential(&Identity::parse(s), &a),
                Some(UserCredential::Cleartext(_))
            ));
        }
        let b = found(&d, "corp\\BOB").unwrap();
        assert!(matches!(
            d.credential(&Identity::parse("corp\\BOB"), &b),
            Some(UserCredential::Argon2(_))
        ));
        assert!(found(&d, "bob").is_none());
        assert!(found(&d, "mallory").is_none());
        // An equal account that this directory did not hand out has no credential here.
        let stranger = Account::from(a_copy_of(&found(&d, "alice").unwrap()));
        assert!(d.credential(&Identity::parse("alice"), &stranger).is_none());
        // Another user's account does not unlock this user's credential.
        assert!(
            d.credential(&Identity::parse("corp\\bob"), &found(&d, "alice").unwrap())
                .is_none()
        );
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
        assert!(matches!(
            d.credential(&Identity::parse(long), &a),
            Some(UserCredential::Argon2(_))
        ));
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

    #[test]
    fn warm_keys_are_the_keys_lookups_hash() {
        let d = dir();
        let key = |s: &[u8]| d.warm_key(WarmName::of(s).unwrap());
        let warm_account = |k: u64| d.candidate(k).map(Candidate::account);
        // Any case, any form: the key the lookup of the folded name uses.
        assert_eq!(key(b"ALICE"), d.user_hash("alice"));
        assert_eq!(key(b"Corp\\Bob"), d.user_hash("corp\\bob"));
        let alice = found(&d, "alice").unwrap();
        assert!(Arc::ptr_eq(warm_account(key(b"Alice")).unwrap(), &alice));
        let mac = key(b"00:11:22:33:44:55");
        assert_eq!(mac, d.mac_hash(&MacAddr::parse("001122334455").unwrap()));
        assert_eq!(mac & 1, 1);
        assert_eq!(warm_account(mac).unwrap().display_name(), Some("printer"));
        // Names not loaded ahead, and keys of another directory (a reload
        // between `warm_key` and `warm`): nothing found, nothing broken.
        assert_eq!(key("ålice".as_bytes()), 0);
        assert_eq!(key(&[b'a'; 65]), 0);
        assert_eq!(WarmName::of(&[0xff, 0xfe]), None);
        let other = LocalDirectory::new(vec![], vec![]);
        let stale = [key(b"alice"), mac, 0, u64::MAX, 2];
        other.warm(stale.iter().copied());
        d.warm(stale.iter().copied());
        assert!(other.candidate(stale[0]).is_none());
        assert!(found(&d, "alice").is_some());
    }

    #[test]
    fn an_entry_is_the_size_the_docs_say() {
        assert_eq!(std::mem::size_of::<UserEntry>(), 56);
    }

    #[test]
    fn a_duplicate_that_slips_through_replaces_the_earlier_entry() {
        let mac = MacAddr::parse("00-11-22-33-44-55").unwrap();
        let d = LocalDirectory::new(
            vec![
                LocalUser {
                    name: "Alice".into(),
                    credential: UserCredential::Argon2("$argon2id$x".into()),
                },
                LocalUser {
                    name: "ALICE".into(),
                    credential: UserCredential::Cleartext(Password::new(b"pw".to_vec())),
                },
            ],
            vec![
                LocalMac {
                    mac,
                    description: Some("first".into()),
                },
                LocalMac {
                    mac,
                    description: Some("second".into()),
                },
            ],
        );
        assert_eq!((d.user_count(), d.mac_count()), (1, 1));
        let a = found(&d, "alice").unwrap();
        assert_eq!(a.object_id(), "ALICE");
        assert!(matches!(
            d.credential(&Identity::parse("alice"), &a),
            Some(UserCredential::Cleartext(_))
        ));
        assert_eq!(found(&d, "001122334455").unwrap().display_name(), Some("second"));
    }
}
