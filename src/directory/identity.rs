//! What a request says it is (User-Name, certificate name, CLI argument),
//! classified once into the form each directory index is keyed by.

use std::fmt;

use super::MacAddr;

/// A classified, case-folded identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// `user@realm`. Also finds a synced on-prem user by
    /// `sam_account_name@dns_domain` when no UPN matches.
    Upn(String),
    /// `DOMAIN\user`; `domain` is the NetBIOS or DNS domain.
    Sam {
        domain: Option<String>,
        name: String,
    },
    Mac(MacAddr),
    /// A GUID without braces: matches a device id or an object id.
    Guid(String),
    /// Anything else, e.g. a bare user name.
    Name(String),
}

/// A User-Name as the directories' `warm_key`s take it, told apart once
/// for all of them: a MAC in any notation, or the text as sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WarmName<'a> {
    Mac(MacAddr),
    Text(&'a str),
}

impl<'a> WarmName<'a> {
    /// `None` for a name that is not UTF-8: looked up as usual, never
    /// loaded ahead.
    pub fn of(user_name: &'a [u8]) -> Option<WarmName<'a>> {
        let s = std::str::from_utf8(user_name).ok()?;
        Some(MacAddr::parse(s).map_or(WarmName::Text(s), WarmName::Mac))
    }
}

impl Identity {
    /// Never fails: what is not recognisable is a `Name`, which simply
    /// finds nothing if no directory knows it.
    pub fn parse(s: &str) -> Identity {
        if let Ok(mac) = MacAddr::parse(s) {
            return Identity::Mac(mac);
        }
        if let Some(guid) = parse_guid(s) {
            return Identity::Guid(guid);
        }
        // NTLM-style first: `DOMAIN\user@x` is a SAM name containing `@`.
        if let Some((domain, name)) = s.split_once('\\') {
            if !name.is_empty() && !name.contains('\\') {
                return Identity::Sam {
                    domain: (!domain.is_empty()).then(|| fold(domain)),
                    name: fold(name),
                };
            }
            return Identity::Name(fold(s));
        }
        // The realm is what follows the last `@` (RFC 7542 §2.2).
        if let Some((user, realm)) = s.rsplit_once('@')
            && !user.is_empty()
            && !realm.is_empty()
        {
            return Identity::Upn(fold(s));
        }
        Identity::Name(fold(s))
    }

    /// The name of the form, for logs and the CLI.
    pub fn form(&self) -> &'static str {
        match self {
            Identity::Upn(_) => "upn",
            Identity::Sam { .. } => "sam",
            Identity::Mac(_) => "mac",
            Identity::Guid(_) => "guid",
            Identity::Name(_) => "name",
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Upn(s) | Identity::Guid(s) | Identity::Name(s) => f.write_str(s),
            Identity::Sam { domain: Some(d), name } => write!(f, "{d}\\{name}"),
            Identity::Sam { domain: None, name } => write!(f, "\\{name}"),
            Identity::Mac(m) => write!(f, "{m}"),
        }
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, any case, optionally in braces.
fn parse_guid(s: &str) -> Option<String> {
    let inner = match s.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => s,
    };
    let b = inner.as_bytes();
    if b.len() != 36 {
        return None;
    }
    for (i, c) in b.iter().enumerate() {
        let ok = match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        };
        if !ok {
            return None;
        }
    }
    Some(inner.to_ascii_lowercase())
}

/// Simple case folding, one char at a time. `str::to_lowercase` is not used
/// because it lowercases a final Σ to ς depending on context, which would
/// make the same name fold two ways; ς is folded to σ for the same reason.
pub(crate) fn folded_chars(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ς' { 'σ' } else { c })
}

pub(crate) fn fold(s: &str) -> String {
    if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return s.to_owned();
    }
    folded_chars(s).collect()
}

/// Case-insensitive equality without allocating.
pub(crate) fn fold_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    folded_chars(a).eq(folded_chars(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sam(domain: Option<&str>, name: &str) -> Identity {
        Identity::Sam {
            domain: domain.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    #[test]
    fn forms() {
        let mac = MacAddr([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        let cases = [
            ("aa-bb-cc-dd-ee-ff", Identity::Mac(mac)),
            ("AABB.CCDD.EEFF", Identity::Mac(mac)),
            ("aabbccddeeff", Identity::Mac(mac)),
            ("CONTOSO\\Alice", sam(Some("contoso"), "alice")),
            ("contoso.local\\alice", sam(Some("contoso.local"), "alice")),
            ("\\user", sam(None, "user")),
            ("CONTOSO\\", Identity::Name("contoso\\".into())),
            ("a\\b\\c", Identity::Name("a\\b\\c".into())),
            ("Alice@Contoso.COM", Identity::Upn("alice@contoso.com".into())),
            ("a@b@Realm", Identity::Upn("a@b@realm".into())),
            ("@realm", Identity::Name("@realm".into())),
            ("alice@", Identity::Name("alice@".into())),
            ("", Identity::Name(String::new())),
            ("Alice", Identity::Name("alice".into())),
            (
                "{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
                Identity::Guid("6f9619ff-8b86-d011-b42d-00c04fc964ff".into()),
            ),
            (
                "6f9619ff-8b86-d011-b42d-00c04fc964ff",
                Identity::Guid("6f9619ff-8b86-d011-b42d-00c04fc964ff".into()),
            ),
            // Unbalanced braces or a bad digit: not a GUID.
            (
                "{6f9619ff-8b86-d011-b42d-00c04fc964ff",
                Identity::Name("{6f9619ff-8b86-d011-b42d-00c04fc964ff".into()),
            ),
            (
                "6f9619ff-8b86-d011-b42d-00c04fc964fg",
                Identity::Name("6f9619ff-8b86-d011-b42d-00c04fc964fg".into()),
            ),
            ("ÄLICE@BÜRO.DE", Identity::Upn("älice@büro.de".into())),
            ("ΟΔΥΣΣΕΥΣ@x.gr", Identity::Upn("οδυσσευσ@x.gr".into())),
        ];
        for (input, want) in cases {
            assert_eq!(Identity::parse(input), want, "{input:?}");
        }
    }

    #[test]
    fn folding_is_symmetric() {
        assert!(fold_eq("ΟΔΥΣΣΕΥΣ", "οδυσσευς"));
        assert!(fold_eq("Älice", "äLICE"));
        assert!(!fold_eq("alice", "alicе")); // Cyrillic е is another name
        assert_eq!(fold("ALICE"), "alice");
    }

    #[test]
    fn display_is_the_folded_form() {
        assert_eq!(Identity::parse("CONTOSO\\Bob").to_string(), "contoso\\bob");
        assert_eq!(Identity::parse("aa:bb:cc:dd:ee:ff").to_string(), "AA-BB-CC-DD-EE-FF");
    }
}
