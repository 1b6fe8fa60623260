//! One Access-Request in, one decision out. This module works out the
//! method (PAP, CHAP, MAB, EAP) and the identity, finds the account through
//! the directory precedence chain, checks the credentials the owning
//! directory can check, and picks the reply policy; it knows nothing about
//! sockets. The server calls
//! [`Authenticator::decide`] and turns the [`Decision`] into a reply.

mod argon2_mem;
pub mod eap;
pub mod entra_password;
pub mod pool;

use std::borrow::Cow;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::directory::ad::AdDirectory;
use crate::directory::policy::{self, PolicyRule, ReplyPlan};
use crate::directory::{
    Account, Directory, DirectoryKind, EntraDirectory, Explanation, Identity, LocalDirectory, MacAddr, Resolution,
    Resolver, UserCredential, WarmKey, WarmName,
};
use crate::proto::attr::service_type;
use entra_password::{PasswordChecker, PasswordVerdict};
use pool::CpuPool;

use crate::proto::attr::tunnel;
use crate::proto::crypto::{Password, chap_challenge, chap_matches, unhide_password};
use crate::proto::{AttrType, Builder, ClientSecret, EncodeError, Packet};
use crate::server::handler::{Outcome, Reply, Slow, SlowKind};

/// How the request asked to be authenticated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    Pap,
    Chap,
    /// MAC Authentication Bypass, with how the NAS signalled it.
    Mab(MabVia),
    /// An EAP round before the method has concluded.
    Eap,
    EapTls,
    EapTtls,
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
            Method::EapTls => "eap-tls",
            Method::EapTtls => "eap-ttls",
            Method::None => "none",
        }
    }
}

/// The outcome of one Access-Request, with what the log line and the reply
/// need.
#[derive(Debug)]
pub struct Decision {
    pub accept: bool,
    pub method: Method,
    /// The identity as looked up: the User-Name, or the normalised MAC.
    pub identity: String,
    /// The directory that decided, if any knew the identity.
    pub directory: Option<DirectoryKind>,
    pub reason: Cow<'static, str>,
    /// Reply attributes from the first matching `[[policy]]` rule (accepts
    /// only), shared with the rule: a decision copies no text.
    pub reply: Option<Arc<ReplyPlan>>,
    /// The account the identity resolved to, when one did; for the
    /// history (its object id, see `account_id`).
    pub account: Option<Arc<Account>>,
    /// Which `[[policy]]` rule gave the reply, counted from 1 in the order
    /// of the configuration (accepts only).
    pub policy_rule: Option<usize>,
    /// EAP-Message, State and keys, for EAP requests.
    pub eap: Option<eap::EapReply>,
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
            reply: None,
            account: None,
            policy_rule: None,
            eap: None,
        }
    }

    /// The same decision, about `account`.
    fn about(mut self, account: &Arc<Account>) -> Decision {
        self.account = Some(account.clone());
        self
    }

    /// The object id, in its directory, of the account decided about.
    pub fn account_id(&self) -> Option<&str> {
        self.account.as_deref().map(Account::object_id)
    }
}

/// What `Authenticator::warm` takes for one request: where its lookups
/// start, in each directory loaded ahead.
#[derive(Clone, Copy)]
pub struct Warm {
    local: u64,
    entra: Option<WarmKey>,
}

/// The parts of a decision that a reload replaces together.
struct State {
    /// The Entra directory, for lookups outside the chain (an Intune
    /// managed-device id in a certificate).
    entra: Option<Arc<EntraDirectory>>,
    /// Active Directory, when `[ad]` is configured and in the order: for
    /// password checks by a bind.
    ad: Option<Arc<AdDirectory>>,
    /// Wrong AD passwords per account, as for Entra ID (lives as long as
    /// the server).
    ad_failures: Arc<entra_password::FailureLimiter>,
    local: Arc<LocalDirectory>,
    resolver: Resolver,
    policy: Vec<PolicyRule>,
    /// `policy[i].plan()`, made once.
    plans: Vec<Arc<ReplyPlan>>,
}

/// Decides Access-Requests: finds the account through the precedence chain,
/// checks the credentials the owning directory can check, and picks the
/// reply policy. The chain, local accounts and policy are swapped whole on
/// reload; a decision in progress keeps the ones it started with.
pub struct Authenticator {
    entra: Option<Arc<EntraDirectory>>,
    state: ArcSwap<State>,
    /// PAP against Entra ID. Lives as long as the server, so that its cache
    /// and failure limit outlast sync rounds, reloads and re-scopes; the
    /// integration only switches its checker on and off.
    entra_passwords: Arc<EntraPasswords>,
    /// Where argon2 runs (local `password_hash` users, the Entra cache).
    argon2: Arc<CpuPool>,
    /// EAP-TLS and EAP-TTLS, when `[eap]` is configured; swapped on reload.
    eap: ArcSwap<Option<Arc<eap::EapServer>>>,
    /// Wrong AD passwords per account: beyond the limit AD is not asked,
    /// so that guesses through RADIUS do not lock the account out in AD.
    /// Outlives reloads, like the Entra ID limiter.
    ad_failures: Arc<entra_password::FailureLimiter>,
}

/// How PAP is checked for Entra ID users: the live check, its cache, the
/// local failure limit, and the domains whose passwords Entra ID does not
/// hold (federated).
pub struct EntraPasswords {
    /// The live check; `None` while the integration is not provisioned or
    /// disabled (PAP for Entra users is then refused with that reason).
    checker: std::sync::RwLock<Option<Arc<dyn PasswordChecker>>>,
    pub cache: entra_password::PasswordCache,
    pub limiter: entra_password::FailureLimiter,
    federated_domains: ArcSwap<Vec<String>>,
}

impl Default for EntraPasswords {
    fn default() -> Self {
        Self::new()
    }
}

impl EntraPasswords {
    /// Defaults: successful checks cached 8 hours, at most 5 failures per
    /// user per 15 minutes (Entra ID's smart lockout starts at 10). Off
    /// until a checker is set.
    pub fn new() -> EntraPasswords {
        EntraPasswords {
            checker: std::sync::RwLock::new(None),
            cache: entra_password::PasswordCache::new(std::time::Duration::from_secs(8 * 3600), 1_000_000),
            limiter: entra_password::FailureLimiter::new(5, std::time::Duration::from_secs(15 * 60)),
            federated_domains: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Switches the live check on (a new Graph client each round) or off.
    /// The cache and the failure counts stay as they are.
    pub fn set_checker(&self, checker: Option<Arc<dyn PasswordChecker>>) {
        *self.checker.write().unwrap_or_else(|p| p.into_inner()) = checker;
    }

    fn checker(&self) -> Option<Arc<dyn PasswordChecker>> {
        self.checker.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_federated_domains(&self, domains: Vec<String>) {
        self.federated_domains.store(Arc::new(domains));
    }

    /// Drops what is remembered of accounts that `keep` refuses (disabled
    /// or deleted since): their next password is checked by Entra ID.
    pub fn forget_unless(&self, keep: impl Fn(&str) -> bool) -> usize {
        self.cache.forget_unless(&keep)
    }

    fn is_federated(&self, upn: &str) -> bool {
        upn.rsplit_once('@')
            .is_some_and(|(_, d)| self.federated_domains.load().iter().any(|f| f.eq_ignore_ascii_case(d)))
    }
}

/// The kinds of slow work a decision can wait on. Each has its own bound in
/// the server, so one cannot starve another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkKind {
    /// argon2 verification of a local `password_hash`.
    Argon2,
    /// The password grant against Entra ID (with its argon2 cache).
    EntraPassword,
    /// A TLS round of EAP-TLS or EAP-TTLS (and the inner PAP check).
    EapTls,
    /// Active Directory: an LDAP search on a cache miss, a bind as the
    /// user for PAP.
    Ad,
}

impl WorkKind {
    /// Every kind, in the order of their index ([`WorkKind::index`]).
    pub const ALL: [WorkKind; 4] = [
        WorkKind::Argon2,
        WorkKind::EntraPassword,
        WorkKind::EapTls,
        WorkKind::Ad,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkKind::Argon2 => "argon2",
            WorkKind::EntraPassword => "entra_password",
            WorkKind::EapTls => "eap_tls",
            WorkKind::Ad => "ad",
        }
    }

    /// The index of this kind in [`Authenticator::slow_kinds`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An argon2 verification takes tens of milliseconds: sixteen waiting per
/// pool thread is a wait of well under a second, far inside a NAS's timeout.
const ARGON2_QUEUE_PER_THREAD: usize = 16;

/// Entra ID password grants in progress at once. Each is a network round
/// trip of tens of milliseconds to a few seconds.
const ENTRA_PASSWORD_CHECKS: usize = 64;

/// Wrong passwords per AD account within the window before AD is no
/// longer asked for it (as for Entra ID; AD's lockout threshold is often
/// 5 to 10).
const AD_FAILURES: u32 = 5;
const AD_FAILURE_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// AD searches and binds in progress at once; each is one or a few LDAP
/// round trips, bounded by `[ad] timeout` each.
const AD_OPERATIONS: usize = 64;

/// How Intune writes a managed-device id into a certificate's SAN URI.
const INTUNE_URI: &str = "IntuneDeviceId://";

/// What a reload can change.
pub struct AuthConfig {
    pub order: Vec<DirectoryKind>,
    pub local: LocalDirectory,
    pub policy: Vec<PolicyRule>,
    /// Active Directory (`[ad]`); long-lived, so that a reload keeps its
    /// cache and connections. Takes part only where `order` lists "ad".
    pub ad: Option<Arc<AdDirectory>>,
}

impl Authenticator {
    /// `entra` is the long-lived Entra directory (the sync worker keeps it
    /// current); `None` leaves Entra ID out of the chain.
    pub fn new(entra: Option<Arc<EntraDirectory>>, cfg: AuthConfig) -> Authenticator {
        Authenticator::with_pool(
            entra,
            cfg,
            Arc::new(CpuPool::new("argon2", pool::default_argon2_threads())),
        )
    }

    /// `new` with the pool argon2 runs on.
    pub fn with_pool(entra: Option<Arc<EntraDirectory>>, cfg: AuthConfig, argon2: Arc<CpuPool>) -> Authenticator {
        let ad_failures = Arc::new(entra_password::FailureLimiter::new(AD_FAILURES, AD_FAILURE_WINDOW));
        let state = ArcSwap::from_pointee(build_state(entra.as_ref(), cfg, &ad_failures));
        Authenticator {
            entra,
            state,
            ad_failures,
            entra_passwords: Arc::new(EntraPasswords::new()),
            argon2,
            eap: ArcSwap::from_pointee(None),
        }
    }

    /// Switches EAP on (with this server) or off.
    pub fn set_eap(&self, eap: Option<Arc<eap::EapServer>>) {
        self.eap.store(Arc::new(eap));
    }

    pub fn eap(&self) -> Option<Arc<eap::EapServer>> {
        self.eap.load().as_ref().clone()
    }

    /// PAP for Entra ID users: its switch, cache and failure limit.
    pub fn entra_passwords(&self) -> &Arc<EntraPasswords> {
        &self.entra_passwords
    }

    /// The bound of each kind of slow work, by [`WorkKind::index`].
    pub fn slow_kinds(&self) -> Vec<SlowKind> {
        WorkKind::ALL
            .iter()
            .map(|k| match k {
                WorkKind::Argon2 => SlowKind {
                    reason: "argon2_busy",
                    capacity: self.argon2.threads() * ARGON2_QUEUE_PER_THREAD,
                },
                WorkKind::EntraPassword => SlowKind {
                    reason: "entra_password_busy",
                    capacity: ENTRA_PASSWORD_CHECKS,
                },
                WorkKind::EapTls => SlowKind {
                    reason: "eap_tls_busy",
                    capacity: self.eap().map_or(1, |e| e.pool().threads()) * eap::EAP_QUEUE_PER_THREAD,
                },
                WorkKind::Ad => SlowKind {
                    reason: "ad_busy",
                    capacity: AD_OPERATIONS,
                },
            })
            .collect()
    }

    pub fn reload(&self, cfg: AuthConfig) {
        self.state
            .store(Arc::new(build_state(self.entra.as_ref(), cfg, &self.ad_failures)));
    }

    /// Why `identity` would be decided the way it is (`accounts lookup`),
    /// from memory (AD's cache).
    pub fn explain(&self, identity: &Identity) -> Explanation {
        self.state.load().resolver.explain(identity)
    }

    /// Active Directory, when configured.
    pub fn ad(&self) -> Option<Arc<AdDirectory>> {
        self.state.load().ad.clone()
    }

    /// `explain` for what an administrator types: an identity, or
    /// `IntuneDeviceId://ID` as Intune writes it into certificates, which
    /// is looked up as the Entra device Intune manages as `ID`.
    pub async fn explain_str(&self, s: &str) -> Explanation {
        let state = self.state.load_full();
        let intune = s
            .get(..INTUNE_URI.len())
            .filter(|h| h.eq_ignore_ascii_case(INTUNE_URI))
            .map(|_| crate::eap::cert_name::CertName {
                rule: crate::eap::cert_name::CertRule::IntuneDeviceId,
                value: s[INTUNE_URI.len()..].trim_end_matches('/').to_ascii_lowercase(),
            });
        let identity = match intune {
            Some(name) => eap::identity_of(&state, &name).unwrap_or_else(|| Identity::parse(s)),
            None => Identity::parse(s),
        };
        // A directory that answers only over the network (AD on a cache
        // miss) is asked: the administrator wants its answer.
        state.resolver.explain_slow(&identity).await
    }

    pub fn local(&self) -> Arc<LocalDirectory> {
        self.state.load().local.clone()
    }

    /// The account a session's User-Name resolves to now (memory only), for
    /// the session table; `None` when no directory decides it.
    pub fn resolve_session_user(&self, user_name: &str) -> Option<(DirectoryKind, Arc<Account>)> {
        match self.state.load().resolver.resolve(&Identity::parse(user_name)) {
            Resolution::Found { directory, account } => Some((directory, account)),
            _ => None,
        }
    }

    /// The `[[policy]]` rule `account` gets now: its index and its VLAN.
    pub fn policy_rule_of(&self, account: &Account) -> Option<(usize, Option<String>)> {
        let state = self.state.load();
        let rule = policy::select(&state.policy, account)?;
        let index = state.policy.iter().position(|r| std::ptr::eq(r, rule))?;
        Some((index, rule.vlan.clone()))
    }

    /// The keys that `warm` loads the accounts `packet`'s User-Name may
    /// name by, in the local directory and the Entra replica (the first
    /// link of each lookup already loading); `None` for EAP and requests
    /// without a User-Name. Active Directory's cache is looked up as before.
    pub fn warm_key(&self, packet: &Packet<'_>) -> Option<Warm> {
        if packet.has(AttrType::EAP_MESSAGE) {
            return None;
        }
        let name = WarmName::of(packet.get(AttrType::USER_NAME)?)?;
        let entra = self
            .entra
            .as_ref()
            .filter(|e| e.is_enabled())
            .map(|e| e.replica().warm_key(name));
        Some(Warm {
            local: self.state.load().local.warm_key(name),
            entra,
        })
    }

    /// Loads what deciding a receive batch will read, given its requests'
    /// `warm_key`s (see `LocalDirectory::warm` and `EntraReplica::warm`).
    pub fn warm(&self, keys: &[Warm]) {
        if keys.is_empty() {
            return;
        }
        if let Some(e) = &self.entra
            && keys.iter().any(|k| k.entra.is_some())
        {
            e.replica().warm(keys.iter().filter_map(|k| k.entra));
        }
        self.state.load().local.warm(keys.iter().map(|k| k.local));
    }

    /// Decides one Access-Request whose authenticators the server has
    /// already verified.
    pub async fn decide(&self, packet: &Packet<'_>, secret: &ClientSecret, nas: &str) -> Decision {
        match self.decide_or_defer(packet, secret, nas) {
            Ok(d) => d,
            Err(deferred) => deferred.finish().await,
        }
    }

    /// Decides from memory when it can, which is every method except PAP
    /// checked by argon2 or by Entra ID; those come back as a [`Deferred`]
    /// to be finished in a task. The server answers the first kind in the
    /// task that read the packet, without spawning.
    pub fn decide_or_defer(&self, packet: &Packet<'_>, secret: &ClientSecret, nas: &str) -> Result<Decision, Deferred> {
        let state = self.state.load();
        match self.step(&state, packet, secret, nas) {
            Step::Done(d) => Ok(d),
            Step::Wait(work) => Err(Deferred {
                state: arc_swap::Guard::into_inner(state),
                work,
                argon2: self.argon2.clone(),
            }),
        }
    }

    fn step(&self, state: &State, packet: &Packet<'_>, secret: &ClientSecret, nas: &str) -> Step {
        let Some(raw_name) = packet.get(AttrType::USER_NAME) else {
            if packet.has(AttrType::EAP_MESSAGE)
                && let Some(eap) = self.eap.load().as_ref()
            {
                return eap.step(&self.entra_passwords, packet, secret, nas);
            }
            return Step::Done(Decision::reject(Method::None, "", None, "no User-Name"));
        };
        let name = String::from_utf8_lossy(raw_name);
        let pap = packet.get(AttrType::USER_PASSWORD);
        let chap = packet.get(AttrType::CHAP_PASSWORD);
        let call_check = packet.get_u32(AttrType::SERVICE_TYPE) == Some(service_type::CALL_CHECK);

        if packet.has(AttrType::EAP_MESSAGE) {
            return match self.eap.load().as_ref() {
                Some(eap) => eap.step(&self.entra_passwords, packet, secret, nas),
                None => Step::Done(Decision::reject(
                    Method::Eap,
                    name,
                    None,
                    "EAP is not configured on this server (no [eap] section)",
                )),
            };
        }
        if pap.is_some() && chap.is_some() {
            return Step::Done(Decision::reject(
                Method::None,
                name,
                None,
                "both User-Password and CHAP-Password present",
            ));
        }

        let password = match pap {
            Some(hidden) => match unhide_password(hidden, secret, packet.authenticator()) {
                Some(p) => Some(p),
                None => return Step::Done(Decision::reject(Method::Pap, name, None, "malformed User-Password")),
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
                return Step::Done(mab(state, packet, mac, via));
            }
        } else if call_check {
            return Step::Done(Decision::reject(
                Method::Mab(MabVia::CallCheck),
                name,
                None,
                "Service-Type Call-Check without a MAC address in User-Name",
            ));
        }

        let method = match (&password, chap) {
            (Some(_), _) => Method::Pap,
            (None, Some(_)) => Method::Chap,
            (None, None) => {
                return Step::Done(Decision::reject(
                    Method::None,
                    name,
                    None,
                    "no credentials (no User-Password, CHAP-Password or Service-Type Call-Check)",
                ));
            }
        };
        let credential = match (password, chap) {
            (Some(pw), _) => Credential::Pap(pw),
            (None, Some(response)) => Credential::Chap {
                response,
                challenge: chap_challenge(packet),
            },
            (None, None) => unreachable!("method chosen above"),
        };
        check_credentials(state, &self.entra_passwords, &name, method, credential)
    }
}

/// What a user offered to prove who it is.
enum Credential<'a> {
    Pap(Password),
    Chap { response: &'a [u8], challenge: &'a [u8] },
}

/// A [`Credential`] kept while the account is looked up off the loop.
enum OwnedCredential {
    Pap(Password),
    Chap { response: Vec<u8>, challenge: Vec<u8> },
}

impl From<Credential<'_>> for OwnedCredential {
    fn from(c: Credential<'_>) -> Self {
        match c {
            Credential::Pap(p) => OwnedCredential::Pap(p),
            Credential::Chap { response, challenge } => OwnedCredential::Chap {
                response: response.to_vec(),
                challenge: challenge.to_vec(),
            },
        }
    }
}

impl OwnedCredential {
    fn borrow(&self) -> Credential<'_> {
        match self {
            OwnedCredential::Pap(p) => Credential::Pap(Password::new(p.as_bytes().to_vec())),
            OwnedCredential::Chap { response, challenge } => Credential::Chap { response, challenge },
        }
    }
}

/// Finds `name` through the precedence chain and checks the credential
/// against the directory that owns it: PAP and CHAP, and the inner PAP of
/// EAP-TTLS.
fn check_credentials(
    state: &State,
    entra_passwords: &Arc<EntraPasswords>,
    name: &str,
    method: Method,
    credential: Credential<'_>,
) -> Step {
    let identity = Identity::parse(name);
    let resolution = state.resolver.resolve(&identity);
    if let Resolution::Pending { .. } = resolution {
        return Step::Wait(Work::AdLookup(Box::new(AdLookup {
            passwords: entra_passwords.clone(),
            identity,
            name: name.to_owned(),
            method,
            credential: credential.into(),
        })));
    }
    let asked = Asked {
        identity: &identity,
        name,
        method,
        credential,
    };
    check_resolved(state, entra_passwords, asked, resolution)
}

/// What a request asks `check_resolved` to check: the identity its
/// User-Name parsed to, the name as sent, the method and credential.
struct Asked<'a> {
    identity: &'a Identity,
    name: &'a str,
    method: Method,
    credential: Credential<'a>,
}

/// `check_credentials` once the account is known.
fn check_resolved(
    state: &State,
    entra_passwords: &Arc<EntraPasswords>,
    asked: Asked<'_>,
    resolution: Resolution,
) -> Step {
    let Asked {
        identity,
        name,
        method,
        credential,
    } = asked;
    let (directory, account) = match resolution {
        Resolution::Found { directory, account } => (directory, account),
        Resolution::NotFound => return Step::Done(Decision::reject(method, name, None, "unknown user")),
        Resolution::Pending { directory, .. } => {
            return Step::Done(Decision::reject(
                method,
                name,
                Some(directory),
                format!("{directory} gave no answer"),
            ));
        }
        Resolution::Unavailable { directory, reason } => {
            return Step::Done(Decision::reject(
                method,
                name,
                Some(directory),
                format!("{directory} is unavailable ({reason}); lower directories are not consulted"),
            ));
        }
    };
    let label = account.label();
    if !account.enabled() {
        return Step::Done(Decision::reject(method, label, Some(directory), disabled_reason(&account)).about(&account));
    }
    if directory == DirectoryKind::Entra
        && let Some(checker) = entra_passwords.checker()
        && let Credential::Pap(password) = credential
    {
        return Step::Wait(Work::EntraPap {
            passwords: entra_passwords.clone(),
            checker,
            account,
            label,
            password,
            method,
        });
    }
    if directory == DirectoryKind::ActiveDirectory
        && let Some(ad) = &state.ad
        && let Credential::Pap(password) = credential
    {
        // AD takes a bind with an empty password as an anonymous bind
        // that succeeds: never sent.
        if password.as_bytes().is_empty() {
            return Step::Done(Decision::reject(
                method,
                label,
                Some(directory),
                "empty password (never sent to AD)",
            ));
        }
        return Step::Wait(Work::AdPap {
            ad: ad.clone(),
            account,
            label,
            password,
            method,
        });
    }
    if directory != DirectoryKind::Local {
        let why = match credential {
            Credential::Chap { .. } => format!("CHAP cannot be checked against {directory}: it exposes no passwords"),
            Credential::Pap(_) => format!(
                "password checks against {directory} are not available (for Entra ID: the integration is not provisioned)"
            ),
        };
        return Step::Done(Decision::reject(method, label, Some(directory), why));
    }
    let Some(stored) = state.local.credential(identity, &account) else {
        return Step::Done(Decision::reject(
            method,
            label,
            Some(directory),
            "local account without a credential",
        ));
    };
    let ok = match (credential, stored) {
        (Credential::Pap(pw), UserCredential::Cleartext(expected)) => pw.ct_eq(expected.as_bytes()),
        (Credential::Pap(password), UserCredential::Argon2(hash)) => {
            return Step::Wait(Work::Argon2 {
                hash: hash.clone(),
                password,
                method,
                label,
                directory,
                account,
            });
        }
        (Credential::Chap { response, challenge }, UserCredential::Cleartext(pw)) => {
            chap_matches(response, challenge, pw.as_bytes())
        }
        (Credential::Chap { .. }, UserCredential::Argon2(_)) => {
            return Step::Done(Decision::reject(
                method,
                label,
                Some(directory),
                "CHAP needs a cleartext password; this user has only password_hash",
            ));
        }
    };
    Step::Done(if ok {
        accept(state, method, label, directory, &account, "password matches")
    } else {
        Decision::reject(method, label, Some(directory), "wrong password")
    })
}

enum Step {
    Done(Decision),
    Wait(Work),
}

/// The slow part of a decision, owning what it needs.
enum Work {
    Argon2 {
        hash: String,
        password: Password,
        method: Method,
        label: String,
        directory: DirectoryKind,
        account: Arc<Account>,
    },
    EntraPap {
        passwords: Arc<EntraPasswords>,
        checker: Arc<dyn PasswordChecker>,
        account: Arc<Account>,
        label: String,
        password: Password,
        method: Method,
    },
    Eap(Box<eap::EapWork>),
    /// The account is not in AD's cache: search, then decide.
    AdLookup(Box<AdLookup>),
    /// PAP for an enabled AD account: a bind as its DN.
    AdPap {
        ad: Arc<AdDirectory>,
        account: Arc<Account>,
        label: String,
        password: Password,
        method: Method,
    },
}

/// A request whose account only AD can tell, over the network.
struct AdLookup {
    passwords: Arc<EntraPasswords>,
    identity: Identity,
    name: String,
    method: Method,
    credential: OwnedCredential,
}

/// A decision that has to wait for a password check: argon2 (slow on
/// purpose) or Entra ID (over the network). It keeps the state the decision
/// began with.
pub struct Deferred {
    state: Arc<State>,
    work: Work,
    argon2: Arc<CpuPool>,
}

impl Deferred {
    /// Which bound the server admits this work under.
    pub fn kind(&self) -> WorkKind {
        match self.work {
            Work::Argon2 { .. } => WorkKind::Argon2,
            Work::EntraPap { .. } => WorkKind::EntraPassword,
            Work::Eap(_) => WorkKind::EapTls,
            Work::AdLookup(_) | Work::AdPap { .. } => WorkKind::Ad,
        }
    }

    pub async fn finish(self) -> Decision {
        let state = &self.state;
        match self.work {
            Work::Argon2 {
                hash,
                password,
                method,
                label,
                directory,
                account,
            } => {
                // Argon2 is deliberately slow and large; it runs on its own
                // few threads, never on those that receive packets.
                let ok = self
                    .argon2
                    .run(move || verify_argon2(&hash, password.as_bytes()))
                    .await
                    .unwrap_or(false);
                if ok {
                    accept(state, method, label, directory, &account, "password matches")
                } else {
                    Decision::reject(method, label, Some(directory), "wrong password")
                }
            }
            Work::EntraPap {
                passwords,
                checker,
                account,
                label,
                password,
                method,
            } => {
                let check = EntraCheck {
                    passwords: &passwords,
                    checker: checker.as_ref(),
                    argon2: &self.argon2,
                };
                entra_pap(state, check, &account, label, &password, method).await
            }
            Work::Eap(work) => Box::pin(work.finish(self.state.clone(), &self.argon2)).await,
            Work::AdLookup(w) => {
                let AdLookup {
                    passwords,
                    identity,
                    name,
                    method,
                    credential,
                } = *w;
                let resolution = state.resolver.resolve_slow(&identity).await;
                let asked = Asked {
                    identity: &identity,
                    name: &name,
                    method,
                    credential: credential.borrow(),
                };
                match check_resolved(state, &passwords, asked, resolution) {
                    Step::Done(d) => d,
                    // The password check (the AD bind, argon2, Entra ID)
                    // runs in this same task: it holds its place already.
                    Step::Wait(work) => {
                        Box::pin(
                            Deferred {
                                state: self.state.clone(),
                                work,
                                argon2: self.argon2.clone(),
                            }
                            .finish(),
                        )
                        .await
                    }
                }
            }
            Work::AdPap {
                ad,
                account,
                label,
                password,
                method,
            } => ad_pap(state, &ad, &account, label, &password, method).await,
        }
    }
}

/// PAP for an enabled AD account, by a bind as its DN. Never cached: AD
/// keeps its own lockout count.
async fn ad_pap(
    state: &State,
    ad: &AdDirectory,
    account: &Arc<Account>,
    label: String,
    pw: &Password,
    method: Method,
) -> Decision {
    let dir = Some(DirectoryKind::ActiveDirectory);
    let id = account.object_id();
    if !state.ad_failures.allowed(id) {
        return Decision::reject(
            method,
            label,
            dir,
            "too many wrong passwords for this user recently; AD was not asked (protects the account from AD's lockout)",
        );
    }
    let verdict = ad.check_password(account, pw.as_bytes()).await;
    match &verdict {
        Ok(crate::directory::ad::client::PasswordVerdict::Accepted) => state.ad_failures.clear(id),
        Ok(crate::directory::ad::client::PasswordVerdict::Refused(
            crate::directory::ad::wire::BindRefusal::WrongPassword,
        )) => state.ad_failures.record_failure(id),
        _ => {}
    }
    match verdict {
        Ok(crate::directory::ad::client::PasswordVerdict::Accepted) => accept(
            state,
            method,
            label,
            DirectoryKind::ActiveDirectory,
            account,
            "password accepted by AD (bind)",
        ),
        Ok(v) => Decision::reject(method, label, dir, format!("AD refused the password: {}", v.reason())),
        Err(e) => Decision::reject(method, label, dir, format!("AD could not check the password: {e}")),
    }
}

/// What checking an Entra ID password uses.
struct EntraCheck<'a> {
    passwords: &'a EntraPasswords,
    checker: &'a dyn PasswordChecker,
    argon2: &'a CpuPool,
}

/// PAP for an enabled Entra ID account.
async fn entra_pap(
    state: &State,
    c: EntraCheck<'_>,
    account: &Arc<Account>,
    label: String,
    pw: &Password,
    method: Method,
) -> Decision {
    let p = c.passwords;
    let dir = Some(DirectoryKind::Entra);
    let Some(upn) = account.upn() else {
        return Decision::reject(method, label, dir, "Entra ID account without a user principal name");
    };
    if p.is_federated(upn) {
        return Decision::reject(
            method,
            label,
            dir,
            "the user's domain is federated: Entra ID does not hold its passwords, so PAP cannot be checked",
        );
    }
    let id = account.object_id();
    if !p.limiter.allowed(id) {
        return Decision::reject(
            method,
            label,
            dir,
            "too many failed password checks for this user recently; Entra ID was not asked (protects the account from smart lockout)",
        );
    }
    if p.cache
        .matches(c.argon2, id, account.last_password_change(), pw.as_bytes())
        .await
    {
        return accept(
            state,
            method,
            label,
            DirectoryKind::Entra,
            account,
            "password matches a recent check by Entra ID",
        );
    }
    match c.checker.check(upn, pw.as_bytes()).await {
        PasswordVerdict::Accepted => {
            p.limiter.clear(id);
            p.cache
                .remember(c.argon2, id, account.last_password_change(), pw.as_bytes())
                .await;
            accept(
                state,
                method,
                label,
                DirectoryKind::Entra,
                account,
                "password accepted by Entra ID",
            )
        }
        PasswordVerdict::Rejected(reason) => {
            p.limiter.record_failure(id);
            Decision::reject(method, label, dir, format!("Entra ID refused the password: {reason}"))
        }
        PasswordVerdict::Unavailable(reason) => Decision::reject(
            method,
            label,
            dir,
            format!("Entra ID could not check the password: {reason}"),
        ),
    }
}

impl Outcome for Decision {
    fn reply(&self) -> Reply {
        match &self.eap {
            Some(e) if e.state.is_some() => Reply::Challenge,
            _ if self.accept => Reply::Accept,
            _ => Reply::Reject,
        }
    }

    /// The policy rule's attributes: the VLAN as the three RFC 3580 tunnel
    /// attributes sharing tag 1, Filter-Id, Session-Timeout and
    /// Reply-Message.
    fn write_attributes(&self, b: &mut Builder) -> Result<(), EncodeError> {
        if let Some(e) = &self.eap {
            e.write(b)?;
        }
        let Some(p) = &self.reply else {
            return Ok(());
        };
        if let Some(vlan) = &p.vlan {
            b.push_tagged_u32(AttrType::TUNNEL_TYPE, 1, tunnel::TYPE_VLAN)?;
            b.push_tagged_u32(AttrType::TUNNEL_MEDIUM_TYPE, 1, tunnel::MEDIUM_IEEE_802)?;
            b.push_tagged(AttrType::TUNNEL_PRIVATE_GROUP_ID, 1, vlan.as_bytes())?;
        }
        if let Some(f) = &p.filter_id {
            b.push(AttrType::FILTER_ID, f.as_bytes())?;
        }
        if let Some(t) = p.session_timeout {
            b.push_u32(AttrType::SESSION_TIMEOUT, t)?;
        }
        if let Some(m) = &p.reply_message {
            b.push(AttrType::REPLY_MESSAGE, m.as_bytes())?;
        }
        Ok(())
    }

    fn log(&self, client: &str) {
        if self.eap.as_ref().is_some_and(|e| e.state.is_some()) {
            tracing::debug!(client = %client, identity = self.identity.as_str(), "EAP round");
            return;
        }
        let directory = self.directory.map(|k| k.as_str()).unwrap_or("-");
        let result = if self.accept { "accept" } else { "reject" };
        tracing::info!(client = %client, identity = self.identity.as_str(), method = self.method.as_str(), directory, result, reason = %self.reason, "access decision");
    }
}

impl Slow for Deferred {
    type Outcome = Decision;

    fn kind(&self) -> usize {
        Deferred::kind(self).index()
    }

    fn finish(self) -> impl std::future::Future<Output = Decision> + Send {
        Deferred::finish(self)
    }
}

fn build_state(
    entra: Option<&Arc<EntraDirectory>>,
    cfg: AuthConfig,
    ad_failures: &Arc<entra_password::FailureLimiter>,
) -> State {
    let local = Arc::new(cfg.local);
    let mut chain: Vec<Arc<dyn Directory>> = Vec::new();
    for kind in cfg.order.iter().copied() {
        match kind {
            DirectoryKind::Entra => {
                if let Some(e) = entra {
                    chain.push(e.clone());
                }
            }
            DirectoryKind::ActiveDirectory => {
                if let Some(a) = &cfg.ad {
                    chain.push(a.clone());
                }
            }
            DirectoryKind::Local => chain.push(local.clone()),
        }
    }
    let ad = cfg.ad.filter(|_| cfg.order.contains(&DirectoryKind::ActiveDirectory));
    State {
        entra: entra.cloned(),
        ad,
        ad_failures: ad_failures.clone(),
        local,
        resolver: Resolver::new(chain),
        plans: cfg.policy.iter().map(|r| Arc::new(r.plan())).collect(),
        policy: cfg.policy,
    }
}

/// Why a found account may not sign in: "account disabled in DIR", and
/// for AD what made it so (disabled, locked out, expired).
fn disabled_reason(account: &Account) -> String {
    let directory = account.directory();
    match account.attributes().get("ad_state") {
        Some(why) if directory == DirectoryKind::ActiveDirectory => format!("account disabled in {directory}: {why}"),
        _ => format!("account disabled in {directory}"),
    }
}

fn accept(
    state: &State,
    method: Method,
    identity: String,
    directory: DirectoryKind,
    account: &Arc<Account>,
    reason: &'static str,
) -> Decision {
    let rule = state.policy.iter().position(|r| r.matches(account));
    Decision {
        accept: true,
        method,
        identity,
        directory: Some(directory),
        reason: reason.into(),
        reply: rule.map(|i| state.plans[i].clone()),
        account: Some(account.clone()),
        policy_rule: rule.map(|i| i + 1),
        eap: None,
    }
}

fn verify_argon2(hash: &str, password: &[u8]) -> bool {
    argon2_mem::verify(hash, password)
}

fn mab(state: &State, packet: &Packet<'_>, mac: MacAddr, via: MabVia) -> Decision {
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
                return Decision::reject(method, mac.to_string(), None, "Calling-Station-Id is not a MAC address");
            }
        }
    }
    match state.resolver.resolve(&Identity::Mac(mac)) {
        Resolution::Found { directory, account } => {
            if account.enabled() {
                accept(state, method, mac.to_string(), directory, &account, "known MAC")
            } else {
                Decision::reject(
                    method,
                    mac.to_string(),
                    Some(directory),
                    format!("device disabled in {directory}"),
                )
                .about(&account)
            }
        }
        Resolution::NotFound => Decision::reject(method, mac.to_string(), None, "unknown MAC"),
        Resolution::Unavailable { directory, reason } => Decision::reject(
            method,
            mac.to_string(),
            Some(directory),
            format!("{directory} is unavailable ({reason}); lower directories are not consulted"),
        ),
        // AD answers MACs from memory (NotFound): MAB is not for AD.
        Resolution::Pending { directory, .. } => Decision::reject(
            method,
            mac.to_string(),
            Some(directory),
            format!("{directory} cannot look up MAC addresses"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{AccountData, AccountKind, Change, EntraReplica, GroupRef, LocalMac, LocalUser};
    use crate::proto::crypto::{Password, chap_response, hide_password};
    use crate::proto::{Builder, Code};

    const SECRET: &[u8] = b"testing123";
    const RA: [u8; 16] = [0x5a; 16];

    fn local() -> LocalDirectory {
        let hash = {
            use argon2::password_hash::PasswordHasher;
            argon2::Argon2::default()
                .hash_password(b"hashed-pw")
                .unwrap()
                .to_string()
        };
        LocalDirectory::new(
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
        )
    }

    fn authn() -> Authenticator {
        authn_with(
            EntraReplica::new(),
            &[
                DirectoryKind::Entra,
                DirectoryKind::ActiveDirectory,
                DirectoryKind::Local,
            ],
            vec![],
        )
    }

    fn authn_with(replica: EntraReplica, order: &[DirectoryKind], policy: Vec<PolicyRule>) -> Authenticator {
        Authenticator::new(
            Some(Arc::new(EntraDirectory::new(replica))),
            AuthConfig {
                order: order.to_vec(),
                local: local(),
                policy,
                ad: None,
            },
        )
    }

    fn request(build: impl FnOnce(&mut Builder, &ClientSecret)) -> Vec<u8> {
        let s = ClientSecret::new(SECRET);
        let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, 1, RA);
        build(&mut b, &s);
        b.finish_request(&s)
    }

    async fn decide(bytes: &[u8]) -> Decision {
        authn()
            .decide(&Packet::decode(bytes).unwrap(), &ClientSecret::new(SECRET), "nas")
            .await
    }

    fn pap(user: &str, pw: &str) -> Vec<u8> {
        request(|b, s| {
            b.push(AttrType::USER_NAME, user.as_bytes()).unwrap();
            b.push(AttrType::USER_PASSWORD, &hide_password(pw.as_bytes(), s, &RA).unwrap())
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

    /// An AD whose only DC does not answer (nothing listens there).
    fn dead_ad() -> (tempfile::TempDir, Arc<AdDirectory>) {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("ad.secret");
        std::fs::write(&secret, "pw\n").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let text = format!(
            "[ad]\nurls = [\"ldap://127.0.0.1:1\"]\nbind_dn = \"CN=svc,DC=corp,DC=example\"\n\
             bind_password_file = {:?}\nbase_dn = \"DC=corp,DC=example\"\ntimeout = \"1s\"\n",
            secret.display().to_string()
        );
        let cfg = crate::config::from_toml(&text).unwrap().ad.unwrap();
        (dir, Arc::new(AdDirectory::new(&cfg).unwrap()))
    }

    #[tokio::test]
    async fn ad_is_asked_off_the_receive_loop_and_never_for_macs_and_its_failure_is_a_reject() {
        let (_dir, ad) = dead_ad();
        let a = Authenticator::new(
            Some(Arc::new(EntraDirectory::new(EntraReplica::new()))),
            AuthConfig {
                order: vec![
                    DirectoryKind::Entra,
                    DirectoryKind::ActiveDirectory,
                    DirectoryKind::Local,
                ],
                local: local(),
                policy: vec![],
                ad: Some(ad),
            },
        );
        let secret = ClientSecret::new(SECRET);
        // alice is local, below AD: the receive loop defers her to the AD
        // kind, and AD's failure is her reject (no fall-through).
        for req in [pap("alice", "wonderland"), chap("alice", "wonderland", None)] {
            let p = Packet::decode(&req).unwrap();
            let deferred = match a.decide_or_defer(&p, &secret, "nas") {
                Err(d) => d,
                Ok(d) => panic!("decided on the receive loop: {d:?}"),
            };
            assert_eq!(deferred.kind(), WorkKind::Ad);
            let d = deferred.finish().await;
            assert!(!d.accept, "{d:?}");
            assert_eq!(d.directory, Some(DirectoryKind::ActiveDirectory));
            assert!(d.reason.contains("ad is unavailable"), "{}", d.reason);
        }
        // A MAC is never asked of AD: MAB is decided from memory.
        let mab = request(|b, _| {
            b.push(AttrType::USER_NAME, b"02-00-00-00-00-01").unwrap();
            b.push(AttrType::SERVICE_TYPE, &service_type::CALL_CHECK.to_be_bytes())
                .unwrap();
        });
        let d = a
            .decide_or_defer(&Packet::decode(&mab).unwrap(), &secret, "nas")
            .unwrap_or_else(|_| panic!("MAB deferred"));
        assert!(d.accept, "{d:?}");
        assert_eq!(d.directory, Some(DirectoryKind::Local));
    }

    #[tokio::test]
    async fn pap_users() {
        let d = decide(&pap("alice", "wonderland")).await;
        assert!(d.accept, "{d:?}");
        assert_eq!((d.method, d.directory), (Method::Pap, Some(DirectoryKind::Local)));
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
        assert!(decide(&chap("alice", "wonderland", Some(&[1; 16]))).await.accept);
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
        assert!(decide(&pap("020000000001", "02:00:00:00:00:01")).await.accept);
        let d = decide(&pap("020000000002", "020000000002")).await;
        assert_eq!((d.accept, d.reason.as_ref()), (false, "unknown MAC"));
    }

    #[tokio::test]
    async fn mab_call_check_and_calling_station_id() {
        let cc = |csi: Option<&str>| {
            request(|b, _| {
                b.push(AttrType::USER_NAME, b"020000000001").unwrap();
                b.push_u32(AttrType::SERVICE_TYPE, service_type::CALL_CHECK).unwrap();
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
            b.push_u32(AttrType::SERVICE_TYPE, service_type::CALL_CHECK).unwrap();
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

    fn entra_account(kind: AccountKind, id: &str, enabled: bool, build: impl FnOnce(&mut AccountData)) -> Change {
        let mut a = AccountData::new(DirectoryKind::Entra, kind, id);
        a.enabled = enabled;
        build(&mut a);
        Change::Upsert(a.into())
    }

    fn replica() -> EntraReplica {
        let r = EntraReplica::new();
        r.apply(vec![
            // alice exists in Entra ID too: Entra decides, local is shadowed.
            entra_account(AccountKind::User, "u-alice", true, |a| {
                a.upn = Some("alice@contoso.com".into());
                a.sam_account_name = Some("alice".into());
                a.netbios_domain = Some("CONTOSO".into());
            }),
            // The local MAC 02-..-01 is also an Entra device, disabled there.
            entra_account(AccountKind::Device, "d-1", false, |a| {
                a.macs = vec![MacAddr::parse("02-00-00-00-00-01").unwrap()];
            }),
            entra_account(AccountKind::Device, "d-2", true, |a| {
                a.macs = vec![MacAddr::parse("02-00-00-00-00-02").unwrap()];
                a.groups = vec![GroupRef {
                    id: "g-cams".into(),
                    name: "Cameras".into(),
                }];
            }),
        ]);
        r
    }

    fn rule(group: Option<&str>, kind: Option<AccountKind>, vlan: &str) -> PolicyRule {
        PolicyRule {
            group: group.map(String::from),
            kind,
            vlan: Some(vlan.into()),
            filter_id: None,
            session_timeout: None,
            reply_message: None,
        }
    }

    #[tokio::test]
    async fn entra_decides_before_local_even_when_disabled() {
        let order = [
            DirectoryKind::Entra,
            DirectoryKind::ActiveDirectory,
            DirectoryKind::Local,
        ];
        let a = authn_with(replica(), &order, vec![]);
        let s = ClientSecret::new(SECRET);
        // The Entra device is disabled: reject, although local knows the MAC.
        let d = a
            .decide(
                &Packet::decode(&pap("020000000001", "020000000001")).unwrap(),
                &s,
                "nas",
            )
            .await;
        assert!(!d.accept);
        assert_eq!(d.directory, Some(DirectoryKind::Entra));
        assert_eq!(d.reason, "device disabled in entra");
        // alice@contoso.com is Entra's: its password cannot be checked here yet.
        let d = a
            .decide(&Packet::decode(&pap("alice", "wonderland")).unwrap(), &s, "nas")
            .await;
        assert!(!d.accept);
        assert_eq!(d.directory, Some(DirectoryKind::Entra));
        assert!(d.reason.contains("not available"), "{d:?}");
        let d = a
            .decide(
                &Packet::decode(&chap("CONTOSO\\alice", "wonderland", None)).unwrap(),
                &s,
                "nas",
            )
            .await;
        assert_eq!(d.directory, Some(DirectoryKind::Entra));
        assert!(d.reason.contains("CHAP cannot be checked against entra"), "{d:?}");
        // With local first, the local account decides.
        let order = [DirectoryKind::Local, DirectoryKind::Entra];
        let a = authn_with(replica(), &order, vec![]);
        let d = a
            .decide(&Packet::decode(&pap("alice", "wonderland")).unwrap(), &s, "nas")
            .await;
        assert!(d.accept);
        assert_eq!(d.directory, Some(DirectoryKind::Local));
    }

    #[tokio::test]
    async fn an_unavailable_higher_directory_rejects() {
        let a = authn_with(replica(), &[DirectoryKind::Entra, DirectoryKind::Local], vec![]);
        a.entra
            .as_ref()
            .unwrap()
            .set_unavailable(Some("replica failed to load".into()));
        let d = a
            .decide(
                &Packet::decode(&pap("hashy", "hashed-pw")).unwrap(),
                &ClientSecret::new(SECRET),
                "nas",
            )
            .await;
        assert!(!d.accept);
        assert!(
            d.reason.contains("entra is unavailable (replica failed to load)"),
            "{d:?}"
        );
        // Disabling the integration takes Entra out of decisions instead.
        a.entra.as_ref().unwrap().set_unavailable(None);
        a.entra.as_ref().unwrap().set_enabled(false);
        let d = a
            .decide(
                &Packet::decode(&pap("020000000001", "020000000001")).unwrap(),
                &ClientSecret::new(SECRET),
                "nas",
            )
            .await;
        assert!(d.accept);
        assert_eq!(d.directory, Some(DirectoryKind::Local));
    }

    #[tokio::test]
    async fn policy_picks_the_first_matching_rule() {
        let policy = vec![
            rule(Some("cameras"), None, "40"),
            rule(None, Some(AccountKind::Device), "30"),
            rule(None, None, "10"),
        ];
        let a = authn_with(replica(), &[DirectoryKind::Entra, DirectoryKind::Local], policy);
        let s = ClientSecret::new(SECRET);
        let d = a
            .decide(
                &Packet::decode(&pap("020000000002", "020000000002")).unwrap(),
                &s,
                "nas",
            )
            .await;
        assert!(d.accept);
        assert_eq!(d.reply.unwrap().vlan.as_deref(), Some("40"));
        a.entra.as_ref().unwrap().set_enabled(false);
        // The local MAC is a device without groups: the kind rule.
        let d = a
            .decide(
                &Packet::decode(&pap("020000000001", "020000000001")).unwrap(),
                &s,
                "nas",
            )
            .await;
        assert_eq!(d.reply.unwrap().vlan.as_deref(), Some("30"));
        // A local user: the default rule.
        let d = a
            .decide(&Packet::decode(&pap("alice", "wonderland")).unwrap(), &s, "nas")
            .await;
        assert_eq!(d.reply.unwrap().vlan.as_deref(), Some("10"));
        // Rejects carry no policy.
        let d = a
            .decide(&Packet::decode(&pap("alice", "nope")).unwrap(), &s, "nas")
            .await;
        assert!(d.reply.is_none());
    }

    /// A tenant that knows one password and counts the questions.
    struct FakeTenant {
        calls: std::sync::atomic::AtomicU32,
        reachable: bool,
    }

    impl entra_password::PasswordChecker for FakeTenant {
        fn check<'a>(
            &'a self,
            upn: &'a str,
            password: &'a [u8],
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = PasswordVerdict> + Send + 'a>> {
            Box::pin(async move {
                self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if !self.reachable {
                    return PasswordVerdict::Unavailable("connection refused".into());
                }
                if upn == "alice@contoso.com" && password == b"entra-pw" {
                    PasswordVerdict::Accepted
                } else {
                    PasswordVerdict::Rejected("AADSTS50126: wrong user name or password".into())
                }
            })
        }
    }

    fn with_tenant(reachable: bool) -> (Authenticator, Arc<FakeTenant>) {
        let a = authn_with(
            replica(),
            &[DirectoryKind::Entra, DirectoryKind::Local],
            vec![rule(None, None, "10")],
        );
        let t = Arc::new(FakeTenant {
            calls: Default::default(),
            reachable,
        });
        a.entra_passwords().set_checker(Some(t.clone()));
        (a, t)
    }

    fn calls(t: &FakeTenant) -> u32 {
        t.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn entra_pap_is_checked_live_then_cached() {
        let (a, t) = with_tenant(true);
        let s = ClientSecret::new(SECRET);
        let d = a
            .decide(
                &Packet::decode(&pap("alice@contoso.com", "entra-pw")).unwrap(),
                &s,
                "nas",
            )
            .await;
        assert!(d.accept, "{d:?}");
        assert_eq!(d.reason, "password accepted by Entra ID");
        assert_eq!(d.reply.unwrap().vlan.as_deref(), Some("10"));
        let d = a
            .decide(&Packet::decode(&pap("CONTOSO\\alice", "entra-pw")).unwrap(), &s, "nas")
            .await;
        assert!(d.accept);
        assert_eq!(d.reason, "password matches a recent check by Entra ID");
        assert_eq!(calls(&t), 1, "the second check came from the cache");
        // The local alice (shadowed) is never used: her local password fails.
        let d = a
            .decide(&Packet::decode(&pap("alice", "wonderland")).unwrap(), &s, "nas")
            .await;
        assert!(!d.accept);
        assert!(d.reason.contains("AADSTS50126"), "{d:?}");
    }

    #[tokio::test]
    async fn failures_are_limited_before_entra_locks_the_account() {
        let (a, t) = with_tenant(true);
        let s = ClientSecret::new(SECRET);
        for _ in 0..5 {
            let d = a
                .decide(&Packet::decode(&pap("alice@contoso.com", "guess")).unwrap(), &s, "nas")
                .await;
            assert!(d.reason.contains("refused"), "{d:?}");
        }
        let d = a
            .decide(
                &Packet::decode(&pap("alice@contoso.com", "entra-pw")).unwrap(),
                &s,
                "nas",
            )
            .await;
        assert!(!d.accept);
        assert!(d.reason.contains("smart lockout"), "{d:?}");
        assert_eq!(calls(&t), 5);
    }

    #[tokio::test]
    async fn federated_and_unreachable_are_explained() {
        let (a, t) = with_tenant(false);
        let s = ClientSecret::new(SECRET);
        let d = a
            .decide(
                &Packet::decode(&pap("alice@contoso.com", "entra-pw")).unwrap(),
                &s,
                "nas",
            )
            .await;
        assert!(!d.accept);
        assert!(
            d.reason.contains("could not check the password: connection refused"),
            "{d:?}"
        );
        a.entra_passwords().set_federated_domains(vec!["CONTOSO.COM".into()]);
        let d = a
            .decide(
                &Packet::decode(&pap("alice@contoso.com", "entra-pw")).unwrap(),
                &s,
                "nas",
            )
            .await;
        assert!(d.reason.contains("federated"), "{d:?}");
        assert_eq!(calls(&t), 1, "federated users are not sent to Entra ID");
    }

    /// Each sync round hands over a new Graph client: the cache and the
    /// failure counts must outlive it, or a cached user is asked live again
    /// (and refused while Graph is down) and wrong guesses reach Entra ID
    /// beyond the limit.
    #[tokio::test]
    async fn a_new_checker_keeps_the_cache_and_the_failure_count() {
        let (a, t) = with_tenant(true);
        let s = ClientSecret::new(SECRET);
        let pap_alice = |pw: &str| Packet::decode(&pap("alice@contoso.com", pw)).unwrap().bytes().to_vec();
        assert!(
            a.decide(&Packet::decode(&pap_alice("entra-pw")).unwrap(), &s, "nas")
                .await
                .accept
        );
        // A round while Entra ID is down: the cached password still works.
        let down = Arc::new(FakeTenant {
            calls: Default::default(),
            reachable: false,
        });
        a.entra_passwords().set_checker(Some(down.clone()));
        let d = a
            .decide(&Packet::decode(&pap_alice("entra-pw")).unwrap(), &s, "nas")
            .await;
        assert!(d.accept, "{d:?}");
        assert_eq!(calls(&down), 0);
        // Guesses around rounds: the limit counts across them.
        let mut asked = 0;
        for round in 0..4 {
            let t2 = Arc::new(FakeTenant {
                calls: Default::default(),
                reachable: true,
            });
            a.entra_passwords().set_checker(Some(t2.clone()));
            for _ in 0..3 {
                a.decide(&Packet::decode(&pap_alice("guess")).unwrap(), &s, "nas").await;
            }
            asked += calls(&t2);
            assert!(asked <= 5, "round {round}: {asked} guesses reached Entra ID");
        }
        assert_eq!(asked, 5);
        assert_eq!(calls(&t), 1);
        // Switched off (integration disabled): Entra PAP is refused with a reason.
        a.entra_passwords().set_checker(None);
        let d = a
            .decide(&Packet::decode(&pap_alice("entra-pw")).unwrap(), &s, "nas")
            .await;
        assert!(!d.accept);
        assert!(d.reason.contains("not provisioned"), "{d:?}");
        // A disabled or deleted account is forgotten.
        assert_eq!(a.entra_passwords().forget_unless(|_| false), 1);
    }
}
