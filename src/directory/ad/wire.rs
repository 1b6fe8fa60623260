//! Pure helpers for what goes to and comes from an AD domain controller:
//! filter escaping (RFC 4515), the `data XXX` codes of AD bind errors,
//! FILETIME and SID decoding, and the account state they make. No I/O.

use std::fmt::Write as _;

/// Escapes a value for an LDAP filter (RFC 4515 §3): `*`, `(`, `)`, `\`
/// and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`; a name such as
/// `*)(sAMAccountName=*` then matches only an account of that literal name.
pub fn escape_filter_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// Every byte escaped, for binary values such as an `objectSid`.
pub fn escape_filter_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 3);
    for byte in b {
        let _ = write!(out, "\\{byte:02x}");
    }
    out
}

/// What a failed simple bind as a user means, from the `data XXX` code AD
/// puts in the diagnostic text (never the DSID, which differs between
/// Windows versions and Samba).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindRefusal {
    WrongPassword,
    Disabled,
    Locked,
    PasswordExpired,
    MustChangePassword,
    AccountExpired,
    /// Another AD code or none.
    Other,
}

impl BindRefusal {
    pub fn from_text(text: &str) -> BindRefusal {
        let lower = text.to_ascii_lowercase();
        let code = lower
            .split("data ")
            .nth(1)
            .map(|rest| rest.split(|c: char| !c.is_ascii_hexdigit()).next().unwrap_or(""));
        match code {
            Some("52e") => BindRefusal::WrongPassword,
            Some("533") => BindRefusal::Disabled,
            Some("775") => BindRefusal::Locked,
            Some("532") => BindRefusal::PasswordExpired,
            Some("773") => BindRefusal::MustChangePassword,
            Some("701") => BindRefusal::AccountExpired,
            _ => BindRefusal::Other,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            BindRefusal::WrongPassword => "wrong password (AD: 52e)",
            BindRefusal::Disabled => "account disabled in AD (533)",
            BindRefusal::Locked => "account locked out in AD (775)",
            BindRefusal::PasswordExpired => "password expired in AD (532)",
            BindRefusal::MustChangePassword => "the user must change the password in AD first (773)",
            BindRefusal::AccountExpired => "account expired in AD (701)",
            BindRefusal::Other => "AD refused the bind",
        }
    }

    pub fn as_label(self) -> &'static str {
        match self {
            BindRefusal::WrongPassword => "wrong_password",
            BindRefusal::Disabled => "disabled",
            BindRefusal::Locked => "locked",
            BindRefusal::PasswordExpired | BindRefusal::MustChangePassword => "password_expired",
            BindRefusal::AccountExpired => "account_expired",
            BindRefusal::Other => "refused",
        }
    }
}

/// 100 ns intervals between 1601-01-01 and 1970-01-01.
const FILETIME_UNIX_EPOCH: i64 = 116_444_736_000_000_000;

/// A FILETIME as Unix seconds.
pub fn filetime_to_unix(ft: i64) -> i64 {
    (ft - FILETIME_UNIX_EPOCH) / 10_000_000
}

/// Unix seconds as a FILETIME.
pub fn unix_to_filetime(t: i64) -> i64 {
    t.saturating_mul(10_000_000).saturating_add(FILETIME_UNIX_EPOCH)
}

/// `S-1-5-21-…` from a binary SID (MS-DTYP §2.4.2.2).
pub fn sid_to_string(b: &[u8]) -> Option<String> {
    if b.len() < 8 {
        return None;
    }
    let count = b[1] as usize;
    if b.len() != 8 + 4 * count {
        return None;
    }
    let authority = b[2..8].iter().fold(0u64, |a, &x| (a << 8) | u64::from(x));
    let mut s = format!("S-{}-{authority}", b[0]);
    for i in 0..count {
        let o = 8 + 4 * i;
        let sub = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let _ = write!(s, "-{sub}");
    }
    Some(s)
}

/// The binary SID with its last sub-authority (the RID) replaced: the
/// primary group's SID from the user's SID and `primaryGroupID`.
pub fn sid_with_rid(b: &[u8], rid: u32) -> Option<Vec<u8>> {
    sid_to_string(b)?;
    if b[1] == 0 {
        return None;
    }
    let mut out = b.to_vec();
    let n = out.len();
    out[n - 4..].copy_from_slice(&rid.to_le_bytes());
    Some(out)
}

/// An `objectGUID` in the usual text form (the first three fields are
/// little-endian on the wire).
pub fn guid_to_string(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    Some(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    ))
}

/// `userAccountControl` ACCOUNTDISABLE.
pub const UAC_DISABLED: u32 = 0x2;

/// Why an account may not sign in, from what AD stores; `None`: it may.
/// `lockout_duration` is the domain's (positive 100 ns units; 0 = until
/// an administrator unlocks).
pub fn account_state(
    uac: u32,
    lockout_time: i64,
    account_expires: i64,
    lockout_duration: i64,
    now: i64,
) -> Option<&'static str> {
    if uac & UAC_DISABLED != 0 {
        return Some("account disabled in AD (userAccountControl)");
    }
    let now_ft = unix_to_filetime(now);
    if lockout_time > 0 && (lockout_duration <= 0 || lockout_time.saturating_add(lockout_duration) > now_ft) {
        return Some("account locked out in AD (lockoutTime)");
    }
    if account_expires != 0 && account_expires != i64::MAX && account_expires < now_ft {
        return Some("account expired in AD (accountExpires)");
    }
    None
}

/// `DC=corp,DC=example` → `corp.example`.
pub fn dns_domain_of(base_dn: &str) -> Option<String> {
    let parts: Vec<&str> = base_dn
        .split(',')
        .filter_map(|rdn| {
            let (k, v) = rdn.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case("dc").then_some(v.trim())
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(".").to_ascii_lowercase())
}

/// The LDAP filter that finds the account an identity names, or `None`
/// when AD cannot know it (a MAC, a GUID, another domain). `netbios` and
/// `dns` are the domain's names, lowercase. Every value is escaped.
///
/// - `name`: `sAMAccountName`; `NAME$` is a computer's.
/// - `DOMAIN\name`: the same, when DOMAIN is this domain (NetBIOS or DNS).
/// - `user@realm`: `userPrincipalName`, or `sAMAccountName` when the realm
///   is the domain's DNS name (AD's implicit UPN).
/// - `host/NAME`: the computer `NAME$`; `host/fqdn`: `dNSHostName` or the
///   SPN `host/fqdn` (machine certificates and machine PEAP).
pub fn account_filter(id: &crate::directory::Identity, netbios: &str, dns: &str) -> Option<String> {
    use crate::directory::Identity;
    let sam = |n: &str| format!("(sAMAccountName={})", escape_filter_value(n));
    let inner = match id {
        Identity::Mac(_) | Identity::Guid(_) => return None,
        Identity::Name(n) if n.is_empty() => return None,
        Identity::Name(n) => match n.strip_prefix("host/") {
            Some("") => return None,
            Some(h) if h.contains('.') => {
                let h = escape_filter_value(h);
                format!("(|(dNSHostName={h})(servicePrincipalName=host/{h}))")
            }
            Some(h) => sam(&format!("{h}$")),
            None => sam(n),
        },
        Identity::Sam { domain, name } => {
            if domain.as_deref().is_some_and(|d| d != netbios && d != dns) {
                return None;
            }
            sam(name)
        }
        Identity::Upn(upn) => {
            let (user, realm) = upn.rsplit_once('@')?;
            let by_upn = format!("(userPrincipalName={})", escape_filter_value(upn));
            if realm == dns {
                format!("(|{by_upn}{})", sam(user))
            } else {
                by_upn
            }
        }
    };
    Some(format!("(&(objectClass=user){inner})"))
}

/// The attributes an account search asks for.
pub const ACCOUNT_ATTRIBUTES: [&str; 11] = [
    "sAMAccountName",
    "userPrincipalName",
    "userAccountControl",
    "lockoutTime",
    "accountExpires",
    "pwdLastSet",
    "primaryGroupID",
    "objectSid",
    "objectGUID",
    "displayName",
    "objectClass",
];

/// An entry's attributes, every value as bytes, names as the DC spelled
/// them (looked up case-insensitively).
pub type RawAttributes = std::collections::HashMap<String, Vec<Vec<u8>>>;

fn first<'a>(attrs: &'a RawAttributes, name: &str) -> Option<&'a [u8]> {
    attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(Vec::as_slice)
}

fn first_str<'a>(attrs: &'a RawAttributes, name: &str) -> Option<&'a str> {
    first(attrs, name).and_then(|v| std::str::from_utf8(v).ok())
}

fn first_i64(attrs: &RawAttributes, name: &str) -> Option<i64> {
    first_str(attrs, name).and_then(|v| v.trim().parse().ok())
}

/// An account found by [`account_filter`] as the account model holds it:
/// the object id is the `objectGUID`, a computer (objectClass `computer`)
/// is a device, and an account that may not sign in (disabled, locked,
/// expired) is not enabled, its reason kept in the attribute
/// `ad_state`. The DN is kept in the attribute `dn` (a password is
/// checked by a bind as that DN). `None` without an `objectGUID`.
pub fn account_from_entry(
    dn: &str,
    attrs: &RawAttributes,
    groups: Vec<crate::directory::GroupRef>,
    netbios: &str,
    dns: &str,
    lockout_duration: i64,
    now: i64,
) -> Option<crate::directory::AccountData> {
    use crate::directory::{AccountData, AccountKind, DirectoryKind};
    let guid = guid_to_string(first(attrs, "objectGUID")?)?;
    let computer = attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("objectClass"))
        .flat_map(|(_, v)| v.iter())
        .any(|c| c.eq_ignore_ascii_case(b"computer"));
    let kind = if computer {
        AccountKind::Device
    } else {
        AccountKind::User
    };
    let mut a = AccountData::new(DirectoryKind::ActiveDirectory, kind, guid);
    a.sam_account_name = first_str(attrs, "sAMAccountName").map(str::to_owned);
    a.upn = first_str(attrs, "userPrincipalName").map(str::to_ascii_lowercase);
    a.display_name = first_str(attrs, "displayName").map(str::to_owned);
    a.netbios_domain = Some(netbios.to_ascii_uppercase());
    a.dns_domain = Some(dns.to_owned());
    a.last_password_change = first_str(attrs, "pwdLastSet").map(str::to_owned);
    let uac = first_i64(attrs, "userAccountControl").unwrap_or(0) as u32;
    let state = account_state(
        uac,
        first_i64(attrs, "lockoutTime").unwrap_or(0),
        first_i64(attrs, "accountExpires").unwrap_or(0),
        lockout_duration,
        now,
    );
    a.enabled = state.is_none();
    if let Some(why) = state {
        a.attributes.insert("ad_state".into(), why.into());
    }
    a.attributes.insert("dn".into(), dn.to_owned());
    a.groups = groups;
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(
            escape_filter_value("*)(sAMAccountName=*"),
            "\\2a\\29\\28sAMAccountName=\\2a"
        );
        assert_eq!(escape_filter_value("a\\b\0c"), "a\\5cb\\00c");
        assert_eq!(escape_filter_value("älice"), "älice");
        assert_eq!(escape_filter_bytes(&[0x01, 0xff]), "\\01\\ff");
    }

    #[test]
    fn bind_codes() {
        let t = |c: &str| {
            BindRefusal::from_text(&format!(
                "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data {c}, v4563"
            ))
        };
        assert_eq!(t("52e"), BindRefusal::WrongPassword);
        assert_eq!(t("533"), BindRefusal::Disabled);
        assert_eq!(t("775"), BindRefusal::Locked);
        assert_eq!(t("532"), BindRefusal::PasswordExpired);
        assert_eq!(t("773"), BindRefusal::MustChangePassword);
        assert_eq!(t("701"), BindRefusal::AccountExpired);
        assert_eq!(t("999"), BindRefusal::Other);
        assert_eq!(BindRefusal::from_text("Invalid credentials"), BindRefusal::Other);
    }

    #[test]
    fn sids_guids_and_times() {
        // S-1-5-21-1-2-3-1104
        let mut sid = vec![1, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 1, 2, 3, 1104] {
            sid.extend_from_slice(&sub.to_le_bytes());
        }
        assert_eq!(sid_to_string(&sid).unwrap(), "S-1-5-21-1-2-3-1104");
        let primary = sid_with_rid(&sid, 513).unwrap();
        assert_eq!(sid_to_string(&primary).unwrap(), "S-1-5-21-1-2-3-513");
        assert_eq!(sid_to_string(&sid[..9]), None);
        let g: Vec<u8> = (0u8..16).collect();
        assert_eq!(guid_to_string(&g).unwrap(), "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(filetime_to_unix(unix_to_filetime(1_700_000_000)), 1_700_000_000);
        assert_eq!(
            dns_domain_of("DC=Corp,DC=Example,DC=test").unwrap(),
            "corp.example.test"
        );
        assert_eq!(dns_domain_of("O=x"), None);
    }

    #[test]
    fn account_states() {
        let now = 1_700_000_000;
        let ft = unix_to_filetime(now);
        assert_eq!(account_state(512, 0, 0, 0, now), None);
        assert_eq!(account_state(512, 0, i64::MAX, 0, now), None);
        assert!(account_state(514, 0, 0, 0, now).unwrap().contains("disabled"));
        // Locked 10 minutes ago, for 30 minutes: locked; for 5: no longer.
        let ten_min = 600 * 10_000_000;
        assert!(
            account_state(512, ft - ten_min, 0, 3 * ten_min, now)
                .unwrap()
                .contains("locked")
        );
        assert_eq!(account_state(512, ft - ten_min, 0, ten_min / 2, now), None);
        assert!(account_state(512, ft - ten_min, 0, 0, now).unwrap().contains("locked"));
        assert!(account_state(512, 0, ft - 1, 0, now).unwrap().contains("expired"));
        assert_eq!(account_state(512, 0, ft + ten_min, 0, now), None);
    }

    #[test]
    fn identity_forms_become_escaped_filters() {
        use crate::directory::Identity;
        let f = |s: &str| account_filter(&Identity::parse(s), "corp", "corp.example.test");
        assert_eq!(f("Alice").unwrap(), "(&(objectClass=user)(sAMAccountName=alice))");
        assert_eq!(f("CORP\\alice").unwrap(), "(&(objectClass=user)(sAMAccountName=alice))");
        assert_eq!(
            f("corp.example.test\\alice").unwrap(),
            "(&(objectClass=user)(sAMAccountName=alice))"
        );
        assert_eq!(f("OTHER\\alice"), None);
        assert_eq!(
            f("alice@corp.example.test").unwrap(),
            "(&(objectClass=user)(|(userPrincipalName=alice@corp.example.test)(sAMAccountName=alice)))"
        );
        assert_eq!(
            f("alice@elsewhere.test").unwrap(),
            "(&(objectClass=user)(userPrincipalName=alice@elsewhere.test))"
        );
        assert_eq!(f("PC1$").unwrap(), "(&(objectClass=user)(sAMAccountName=pc1$))");
        assert_eq!(f("host/PC1").unwrap(), "(&(objectClass=user)(sAMAccountName=pc1$))");
        assert_eq!(
            f("host/pc1.corp.example.test").unwrap(),
            "(&(objectClass=user)(|(dNSHostName=pc1.corp.example.test)(servicePrincipalName=host/pc1.corp.example.test)))"
        );
        // The injection attempt is one literal (and non-existent) name.
        assert_eq!(
            f("*)(sAMAccountName=*").unwrap(),
            "(&(objectClass=user)(sAMAccountName=\\2a\\29\\28samaccountname=\\2a))"
        );
        assert_eq!(f("02:00:00:00:00:01"), None);
        assert_eq!(f("6f9619ff-8b86-d011-b42d-00c04fc964ff"), None);
        assert_eq!(f("host/"), None);
        assert_eq!(f(""), None);
    }

    #[test]
    fn entries_become_accounts() {
        use crate::directory::{AccountKind, DirectoryKind, GroupRef};
        let now = 1_700_000_000;
        let attrs = |pairs: &[(&str, &[u8])]| -> RawAttributes {
            let mut m = RawAttributes::new();
            for (k, v) in pairs {
                m.entry((*k).to_owned()).or_default().push(v.to_vec());
            }
            m
        };
        let guid: Vec<u8> = (0u8..16).collect();
        let alice = attrs(&[
            ("objectGUID", &guid),
            ("sAMAccountName", b"alice"),
            ("userPrincipalName", b"Alice@corp.example.test"),
            ("userAccountControl", b"512"),
            ("objectClass", b"top"),
            ("objectClass", b"user"),
            ("pwdLastSet", b"133000000000000000"),
        ]);
        let staff = GroupRef {
            id: "CN=Staff,CN=Users,DC=corp,DC=example,DC=test".into(),
            name: "Staff".into(),
        };
        let a = account_from_entry(
            "CN=Alice Example,CN=Users,DC=corp,DC=example,DC=test",
            &alice,
            vec![staff],
            "corp",
            "corp.example.test",
            0,
            now,
        )
        .unwrap();
        assert_eq!(
            (a.directory, a.kind),
            (DirectoryKind::ActiveDirectory, AccountKind::User)
        );
        assert_eq!(a.object_id, "03020100-0504-0706-0809-0a0b0c0d0e0f");
        assert_eq!(a.upn.as_deref(), Some("alice@corp.example.test"));
        assert_eq!(a.netbios_domain.as_deref(), Some("CORP"));
        assert!(a.enabled);
        assert_eq!(
            a.attributes.get("dn").map(String::as_str),
            Some("CN=Alice Example,CN=Users,DC=corp,DC=example,DC=test")
        );
        let account: crate::directory::Account = a.into();
        assert!(account.in_group("staff"));
        assert!(account.in_group("cn=staff,cn=users,dc=corp,dc=example,dc=test"));

        let pc = attrs(&[
            ("objectguid", &guid),
            ("sAMAccountName", b"PC1$"),
            ("userAccountControl", b"4098"),
            ("objectClass", b"user"),
            ("objectClass", b"computer"),
        ]);
        let d = account_from_entry(
            "CN=PC1,CN=Computers,DC=x",
            &pc,
            vec![],
            "corp",
            "corp.example.test",
            0,
            now,
        )
        .unwrap();
        assert_eq!(d.kind, AccountKind::Device);
        assert!(!d.enabled);
        assert!(d.attributes["ad_state"].contains("disabled"));
        assert!(account_from_entry("CN=x", &attrs(&[("sAMAccountName", b"x")]), vec![], "c", "c", 0, now).is_none());
    }
}
