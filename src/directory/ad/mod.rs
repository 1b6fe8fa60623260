//! Active Directory over LDAP (issue 13). [`wire`] is the pure part, with
//! no I/O (the LDAP filter for each identity form, RFC 4515 filter
//! escaping, the `data XXX` codes of AD bind errors, FILETIME, SID and GUID
//! decoding, the account state `userAccountControl`, `lockoutTime` and
//! `accountExpires` make, and the account model built from a search
//! entry). [`client`] talks to the domain controllers (`[ad]` in the
//! config): finds accounts with their transitive groups and checks
//! passwords by a bind. [`directory`] is AD in the precedence chain: a
//! cache answered from memory, and `Pending` (slow work) on a miss.

pub mod client;
pub mod directory;
pub mod wire;

pub use directory::AdDirectory;
