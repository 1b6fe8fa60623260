//! Active Directory over LDAP (issue 13), in progress. What is here so far
//! is the pure part, with no I/O: [`wire`] (the LDAP filter for each
//! identity form, RFC 4515 filter escaping, the `data XXX` codes of AD
//! bind errors, FILETIME, SID and GUID decoding, and the account state
//! `userAccountControl`, `lockoutTime` and `accountExpires` make, and the
//! account model built from a search entry). No directory answers for "ad" in the
//! precedence chain yet: `[directory] order` may list it, and it knows
//! nobody.

pub mod wire;
