//! One Access-Request in, one decision out. This module works out the
//! method (PAP, CHAP, MAB, EAP), the identity, and checks the credentials
//! against the directory; it knows nothing about sockets. The server calls
//! [`Authenticator::decide`] and turns the [`Decision`] into a reply.

use std::borrow::Cow;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::directory::{DirectoryKind, LocalDirectory, MacAddr, UserCredential};
use crate::proto::attr::service_type;
use crate::proto::auth::{Password, chap_challenge, chap_matches, unhide_password};
use crate::proto::{AttrType, ClientSecret, Packet};

/// How the request asked to be authenticated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    Pap,
    Chap,
    /// MAC Authentication Bypass, with how the NAS signalled it.
    Mab(MabVia),
    Eap,
    /// No credentials at all.
    None,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MabVia {
    Pap,
    Chap,
    CallCheck,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Pap => "pap",
            Method::Chap => "chap",
            Method::Mab(MabVia::Pap) => "mab-pap",
            Method::Mab(MabVia::Chap) => "mab-chap",
            Method::Mab(MabVia::CallCheck) => "mab-call-check",
            Method::Eap => "eap",
            Method::None => "none",
        }
    }
}

/// The outcome of one Access-Request, with what the log line needs.
#[derive(Debug)]
pub struct Decision {
    pub accept: bool,
    pub method: Method,
    /// The identity as looked up: the User-Name, or the normalised MAC.
    pub identity: String,
    /// The directory that decided, if any knew the identity.
    pub directory: Option<DirectoryKind>,
    pub reason: Cow<'static, str>,
}

impl Decision {
    fn reject(
        method: Method,
        identity: impl Into<String>,
        directory: Option<DirectoryKind>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Decision {
        Decision {
            accept: false,
            method,
            identity: identity.into(),
            directory,
            reason: reason.into(),
        }
    }

    fn accept(
        method: Method,
        identity: impl Into<String>,
        directory: DirectoryKind,
        reason: impl Into<Cow<'static, str>>,
    ) -> Decision {
        Decision {
            accept: true,
            method,
            identity: identity.into(),
            directory: Some(directory),
            reason: reason.into(),
        }
    }
}

/// Decides Access-Requests against the local directory. The directory is
/// swapped whole on reload; a decision in progress keeps the one it started
/// with.
pub struct Authenticator {
    local: ArcSwap<LocalDirectory>,
}

impl Authenticator {
    pub fn new(local: LocalDirectory) -> Authenticator {
        Authenticator {
            local: ArcSwap::from_pointee(local),
        }
    }

    pub fn replace_local(&self, local: LocalDirectory) {
        self.local.store(Arc::new(local));
    }

    pub fn local(&self) -> Arc<LocalDirectory> {
        self.local.load_full()
    }

    /// Decides one Access-Request whose authenticators the server has
    /// already verified.
    pub async fn decide(&self, packet: &Packet<'_>, secret: &ClientSecret) -> Decision {
        let local = self.local.load_full();
        let Some(raw_name) = packet.get(AttrType::USER_NAME) else {
            return Decision::reject(Method::None, "", None, "no User-Name");
        };
        let name = String::from_utf8_lossy(raw_name);
        let pap = packet.get(AttrType::USER_PASSWORD);
        let chap = packet.get(AttrType::CHAP_PASSWORD);
        let call_check = packet.get_u32(AttrType::SERVICE_TYPE) == Some(service_type::CALL_CHECK);

        if packet.has(AttrType::EAP_MESSAGE) {
            return Decision::reject(
                Method::Eap,
                name,
                None,
                "EAP is not supported by this server yet",
            );
        }
        if pap.is_some() && chap.is_some() {
            return Decision::reject(
                Method::None,
                name,
                None,
                "both User-Password and CHAP-Password present",
            );
        }

        let password = match pap {
            Some(hidden) => match unhide_password(hidden, secret, packet.authenticator()) {
                Some(p) => Some(p),
                None => {
                    return Decision::reject(Method::Pap, name, None, "malformed User-Password");
                }
            },
            None => None,
        };

        if let Ok(mac) = MacAddr::parse(&name) {
            let via = if call_check {
                Some(MabVia::CallCheck)
            } else if let Some(p) = &password {
                // NASes differ in the notation of the password; compare MACs,
                // not strings.
                std::str::from_utf8(p.as_bytes())
                    .ok()
                    .and_then(|s| MacAddr::parse(s).ok())
                    .filter(|pm| *pm == mac)
                    .map(|_| MabVia::Pap)
            } else if let Some(c) = chap {
                chap_matches(c, chap_challenge(packet), raw_name).then_some(MabVia::Chap)
            } else {
                None
            };
            if let Some(via) = via {
                return mab(&local, packet, mac, via);
            }
        } else if call_check {
            return Decision::reject(
                Method::Mab(MabVia::CallCheck),
                name,
                None,
                "Service-Type Call-Check without a MAC address in User-Name",
            );
        }

        match (password, chap) {
            (Some(pw), _) => self.pap(&local, name.into_owned(), pw).await,
            (None, Some(c)) => chap_user(&local, name.into_owned(), c, chap_challenge(packet)),
            (None, None) => Decision::reject(
                Method::None,
                name,
                None,
                "no credentials (no User-Password, CHAP-Password or Service-Type Call-Check)",
            ),
        }
    }

    async fn pap(&self, local: &LocalDirectory, name: String, password: Password) -> Decision {
        let Some(user) = local.user(&name) else {
            return Decision::reject(Method::Pap, name, None, "unknown user");
        };
        let ok = match &user.credential {
            UserCredential::Cleartext(expected) => password.ct_eq(expected.as_bytes()),
            UserCredential::Argon2(hash) => {
                // Argon2 is deliberately slow; keep it off the threads that
                // receive packets.
                let hash = hash.clone();
                tokio::task::spawn_blocking(move || verify_argon2(&hash, password.as_bytes()))
                    .await
                    .unwrap_or(false)
            }
        };
        if ok {
            Decision::accept(
                Method::Pap,
                user.name.clone(),
                DirectoryKind::Local,
                "password matches",
            )
        } else {
            Decision::reject(
                Method::Pap,
                user.name.clone(),
                Some(DirectoryKind::Local),
                "wrong password",
            )
        }
    }
}

fn verify_argon2(hash: &str, password: &[u8]) -> bool {
    use argon2::password_hash::PasswordVerifier;
    use argon2::password_hash::phc::PasswordHash;
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password, &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

fn chap_user(local: &LocalDirectory, name: String, chap: &[u8], challenge: &[u8]) -> Decision {
    let Some(user) = local.user(&name) else {
        return Decision::reject(Method::Chap, name, None, "unknown user");
    };
    match &user.credential {
        UserCredential::Cleartext(pw) => {
            if chap_matches(chap, challenge, pw.as_bytes()) {
                Decision::accept(
                    Method::Chap,
                    user.name.clone(),
                    DirectoryKind::Local,
                    "CHAP response matches",
                )
            } else {
                Decision::reject(
                    Method::Chap,
                    user.name.clone(),
                    Some(DirectoryKind::Local),
                    "wrong password",
                )
            }
        }
        UserCredential::Argon2(_) => Decision::reject(
            Method::Chap,
            user.name.clone(),
            Some(DirectoryKind::Local),
            "CHAP needs a cleartext password; this user has only password_hash",
        ),
    }
}

fn mab(local: &LocalDirectory, packet: &Packet<'_>, mac: MacAddr, via: MabVia) -> Decision {
    let method = Method::Mab(via);
    // The switch reports the device's MAC in Calling-Station-Id too; a
    // different one there means User-Name was forged or mangled.
    if let Some(csi) = packet.get(AttrType::CALLING_STATION_ID) {
        let csi = String::from_utf8_lossy(csi);
        match MacAddr::parse(csi.trim()) {
            Ok(c) if c == mac => {}
            Ok(c) => {
                return Decision::reject(
                    method,
                    mac.to_string(),
                    None,
                    format!("Calling-Station-Id {c} differs from the MAC in User-Name"),
                );
            }
            Err(_) => {
                return Decision::reject(
                    method,
                    mac.to_string(),
                    None,
                    "Calling-Station-Id is not a MAC address",
                );
            }
        }
    }
    match local.mac(&mac) {
        Some(_) => Decision::accept(method, mac.to_string(), DirectoryKind::Local, "known MAC"),
        None => Decision::reject(method, mac.to_string(), None, "unknown MAC"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{LocalMac, LocalUser};
    use crate::proto::auth::{chap_response, hide_password};
    use crate::proto::{Builder, Code};

    const SECRET: &[u8] = b"testing123";
    const RA: [u8; 16] = [0x5a; 16];

    fn authn() -> Authenticator {
        let hash = {
            use argon2::password_hash::PasswordHasher;
            argon2::Argon2::default()
                .hash_password(b"hashed-pw")
                .unwrap()
                .to_string()
        };
        Authenticator::new(LocalDirectory::new(
            vec![
                LocalUser {
                    name: "alice".into(),
                    credential: UserCredential::Cleartext(Password::new(b"wonderland".to_vec())),
                },
                LocalUser {
                    name: "hashy".into(),
                    credential: UserCredential::Argon2(hash),
                },
            ],
            vec![LocalMac {
                mac: MacAddr::parse("02:00:00:00:00:01").unwrap(),
                description: None,
            }],
        ))
    }

    fn request(build: impl FnOnce(&mut Builder, &ClientSecret)) -> Vec<u8> {
        let s = ClientSecret::new(SECRET);
        let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, 1, RA);
        build(&mut b, &s);
        b.finish_request(&s)
    }

    async fn decide(bytes: &[u8]) -> Decision {
        authn()
            .decide(&Packet::decode(bytes).unwrap(), &ClientSecret::new(SECRET))
            .await
    }

    fn pap(user: &str, pw: &str) -> Vec<u8> {
        request(|b, s| {
            b.push(AttrType::USER_NAME, user.as_bytes()).unwrap();
            b.push(
                AttrType::USER_PASSWORD,
                &hide_password(pw.as_bytes(), s, &RA).unwrap(),
            )
            .unwrap();
        })
    }

    fn chap(user: &str, pw: &str, challenge: Option<&[u8]>) -> Vec<u8> {
        request(|b, _| {
            b.push(AttrType::USER_NAME, user.as_bytes()).unwrap();
            let ch = challenge.unwrap_or(&RA);
            let mut v = vec![9];
            v.extend_from_slice(&chap_response(9, pw.as_bytes(), ch));
            b.push(AttrType::CHAP_PASSWORD, &v).unwrap();
            if let Some(c) = challenge {
                b.push(AttrType::CHAP_CHALLENGE, c).unwrap();
            }
        })
    }

    #[tokio::test]
    async fn pap_users() {
        let d = decide(&pap("alice", "wonderland")).await;
        assert!(d.accept, "{d:?}");
        assert_eq!(
            (d.method, d.directory),
            (Method::Pap, Some(DirectoryKind::Local))
        );
        let d = decide(&pap("ALICE", "wonderland")).await;
        assert!(d.accept);
        assert_eq!(d.identity, "alice");
        let d = decide(&pap("alice", "wonderlanD")).await;
        assert!(!d.accept);
        assert_eq!(d.reason, "wrong password");
        let d = decide(&pap("mallory", "x")).await;
        assert_eq!((d.accept, d.reason.as_ref()), (false, "unknown user"));
        assert!(decide(&pap("hashy", "hashed-pw")).await.accept);
        assert!(!decide(&pap("hashy", "hashed-px")).await.accept);
    }

    #[tokio::test]
    async fn chap_users() {
        assert!(decide(&chap("alice", "wonderland", None)).await.accept);
        assert!(
            decide(&chap("alice", "wonderland", Some(&[1; 16])))
                .await
                .accept
        );
        // The challenge in CHAP-Challenge must be the one used.
        let mut bad = chap("alice", "wonderland", Some(&[1; 16]));
        let n = bad.len();
        bad[n - 1] ^= 1;
        let s = ClientSecret::new(SECRET);
        let bad = Builder::from_packet(&Packet::decode(&bad).unwrap()).finish_request(&s);
        assert!(!decide(&bad).await.accept);
        assert!(!decide(&chap("alice", "wrong", None)).await.accept);
        let d = decide(&chap("hashy", "hashed-pw", None)).await;
        assert!(!d.accept);
        assert!(d.reason.contains("cleartext"));
    }

    #[tokio::test]
    async fn mab_in_every_format() {
        for name in [
            "020000000001",
            "02-00-00-00-00-01",
            "02:00:00:00:00:01",
            "0200.0000.0001",
            "02-00-00-00-00-01".to_uppercase().as_str(),
        ] {
            let d = decide(&pap(name, name)).await;
            assert!(d.accept, "{name}: {d:?}");
            assert_eq!(d.method, Method::Mab(MabVia::Pap));
            assert_eq!(d.identity, "02-00-00-00-00-01");
            let d = decide(&chap(name, name, None)).await;
            assert!(d.accept, "{name}: {d:?}");
            assert_eq!(d.method, Method::Mab(MabVia::Chap));
        }
        // Password in another notation than User-Name is still the same MAC.
        assert!(
            decide(&pap("020000000001", "02:00:00:00:00:01"))
                .await
                .accept
        );
        let d = decide(&pap("020000000002", "020000000002")).await;
        assert_eq!((d.accept, d.reason.as_ref()), (false, "unknown MAC"));
    }

    #[tokio::test]
    async fn mab_call_check_and_calling_station_id() {
        let cc = |csi: Option<&str>| {
            request(|b, _| {
                b.push(AttrType::USER_NAME, b"020000000001").unwrap();
                b.push_u32(AttrType::SERVICE_TYPE, service_type::CALL_CHECK)
                    .unwrap();
                if let Some(c) = csi {
                    b.push(AttrType::CALLING_STATION_ID, c.as_bytes()).unwrap();
                }
            })
        };
        let d = decide(&cc(None)).await;
        assert!(d.accept);
        assert_eq!(d.method, Method::Mab(MabVia::CallCheck));
        assert!(decide(&cc(Some("02-00-00-00-00-01"))).await.accept);
        let d = decide(&cc(Some("02-00-00-00-00-09"))).await;
        assert!(!d.accept);
        assert!(d.reason.contains("differs"), "{d:?}");
        assert!(!decide(&cc(Some("not-a-mac"))).await.accept);
        let d = decide(&request(|b, _| {
            b.push(AttrType::USER_NAME, b"alice").unwrap();
            b.push_u32(AttrType::SERVICE_TYPE, service_type::CALL_CHECK)
                .unwrap();
        }))
        .await;
        assert!(!d.accept);
    }

    #[tokio::test]
    async fn odd_requests_are_rejected_with_a_reason() {
        let d = decide(&request(|b, _| {
            b.push(AttrType::NAS_IDENTIFIER, b"x").unwrap();
        }))
        .await;
        assert_eq!(d.reason, "no User-Name");
        let d = decide(&request(|b, _| {
            b.push(AttrType::USER_NAME, b"alice").unwrap();
        }))
        .await;
        assert!(d.reason.starts_with("no credentials"));
        let d = decide(&request(|b, _| {
            b.push(AttrType::USER_NAME, b"alice").unwrap();
            b.push(AttrType::EAP_MESSAGE, &[2, 1, 0, 5, 1]).unwrap();
        }))
        .await;
        assert_eq!(d.method, Method::Eap);
        let d = decide(&request(|b, _| {
            b.push(AttrType::USER_NAME, b"alice").unwrap();
            b.push(AttrType::USER_PASSWORD, &[0; 15]).unwrap();
        }))
        .await;
        assert_eq!(d.reason, "malformed User-Password");
    }
}
