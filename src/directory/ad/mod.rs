//! Active Directory over LDAP (issue 13), in progress. [`wire`] is the pure
//! part, with no I/O (the LDAP filter for each identity form, RFC 4515
//! filter escaping, the `data XXX` codes of AD bind errors, FILETIME, SID
//! and GUID decoding, the account state `userAccountControl`,
//! `lockoutTime` and `accountExpires` make, and the account model built
//! from a search entry). [`client`] talks to the domain controllers
//! (`[ad]` in the config): finds accounts with their transitive groups and
//! checks passwords by a bind. Nothing in the RADIUS path uses it yet: no
//! directory answers for "ad" in the precedence chain; `[directory] order`
//! may list it, and it knows nobody.

pub mod client;
pub mod wire;
