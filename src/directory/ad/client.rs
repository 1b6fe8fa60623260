//! An async LDAP client for Active Directory (`ldap3` on tokio, rustls):
//! the domain controllers of `[ad] urls` tried in order (one that failed is
//! set aside for a while), StartTLS or LDAPS verified against `ca_file`,
//! a small pool of connections bound as the service account, `timeout` per
//! operation. [`AdClient::find`] finds the account an identity names, with
//! its transitive groups and its primary group; [`AdClient::check_password`]
//! binds as the user on connections kept for user binds only (they never
//! search), never with an empty password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use tokio::sync::OnceCell;

use super::wire::{
    ACCOUNT_ATTRIBUTES, BindRefusal, RawAttributes, account_filter, account_from_entry, dns_domain_of,
    escape_filter_bytes, escape_filter_value, sid_with_rid,
};
use crate::config::AdConfig;
use crate::directory::{AccountData, GroupRef, Identity};
use crate::proto::crypto::Password;

/// How long a domain controller that failed is tried only when every
/// other one has failed too.
pub const SET_ASIDE: Duration = Duration::from_secs(30);

/// How long a refused service bind is answered without binding again.
pub const SERVICE_RETRY: Duration = Duration::from_secs(30);

/// Idle bound connections kept for searches.
const POOL_MAX: usize = 8;

/// The in-chain matching rule (`LDAP_MATCHING_RULE_IN_CHAIN`).
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdError {
    /// No domain controller could be reached (each URL's error).
    #[error("no domain controller answered: {0}")]
    Unavailable(String),
    /// A DC answered but refused the service account's bind.
    #[error("the service account's bind to {url} was refused: {text}")]
    ServiceBind { url: String, text: String },
    /// An operation failed or timed out on a connected DC.
    #[error("LDAP {0}")]
    Operation(String),
}

/// What a user's bind said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordVerdict {
    Accepted,
    /// Rejected before any bind: AD takes an empty password as an
    /// anonymous bind that succeeds.
    Empty,
    Refused(BindRefusal),
}

impl PasswordVerdict {
    pub fn reason(self) -> &'static str {
        match self {
            PasswordVerdict::Accepted => "accepted by AD",
            PasswordVerdict::Empty => "empty password (never sent to AD)",
            PasswordVerdict::Refused(r) => r.reason(),
        }
    }
}

/// What the directory says about its own domain, read once.
#[derive(Clone, Debug)]
pub struct DomainInfo {
    /// `defaultNamingContext` of the rootDSE.
    pub naming_context: String,
    /// NetBIOS name, uppercase (configured, or the crossRef's `nETBIOSName`).
    pub netbios: String,
    /// DNS name, lowercase.
    pub dns: String,
    /// The domain's `lockoutDuration`, positive 100 ns units (0: until
    /// unlocked).
    pub lockout_duration: i64,
}

pub struct AdClient {
    urls: Vec<String>,
    start_tls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    bind_dn: String,
    bind_password: Password,
    base_dn: String,
    domain: Option<String>,
    timeout: Duration,
    set_aside: Mutex<HashMap<usize, Instant>>,
    pool: Mutex<Vec<(Ldap, usize)>>,
    /// Idle connections for binds as users, apart from `pool`: after a
    /// bind they carry that user's identity, so they never search.
    bind_pool: Mutex<Vec<(Ldap, usize)>>,
    info: OnceCell<DomainInfo>,
    /// The last failure to read `info`, and when.
    info_failed: Mutex<Option<(Instant, AdError)>>,
    last_dc: Mutex<Option<String>>,
    /// The last refusal of the service account's bind, until when it
    /// stands, and where: no bind is tried again before then.
    service_refused: Mutex<Option<(Instant, String, String)>>,
    /// Refused service binds, for `/metrics`.
    service_refusals: std::sync::atomic::AtomicU64,
    /// DCs set aside after a failure, for `/metrics`.
    failovers: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdClient")
            .field("urls", &self.urls)
            .field("bind_dn", &self.bind_dn)
            .field("base_dn", &self.base_dn)
            .finish_non_exhaustive()
    }
}

fn tls_config(cas: &[rustls_pki_types::CertificateDer<'static>]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).map_err(|e| format!("ca_file: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Every value of every attribute as bytes (ldap3 splits them into text
/// and binary by whether they are UTF-8).
fn raw_attributes(e: SearchEntry) -> RawAttributes {
    let mut out = RawAttributes::new();
    for (k, vs) in e.attrs {
        out.entry(k).or_default().extend(vs.into_iter().map(String::into_bytes));
    }
    for (k, vs) in e.bin_attrs {
        out.entry(k).or_default().extend(vs);
    }
    out
}

fn first_text<'a>(e: &'a SearchEntry, name: &str) -> Option<&'a str> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl AdClient {
    /// Checks nothing over the network: the first operation connects.
    pub fn new(cfg: &AdConfig) -> Result<AdClient, AdError> {
        let tls = if cfg.ca_certs.is_empty() {
            None
        } else {
            Some(tls_config(&cfg.ca_certs).map_err(AdError::Operation)?)
        };
        Ok(AdClient {
            urls: cfg.urls.clone(),
            start_tls: cfg.start_tls,
            tls,
            bind_dn: cfg.bind_dn.clone(),
            bind_password: Password::new(cfg.bind_password.as_bytes().to_vec()),
            base_dn: cfg.base_dn.clone(),
            domain: cfg.domain.clone(),
            timeout: cfg.timeout,
            set_aside: Mutex::new(HashMap::new()),
            pool: Mutex::new(Vec::new()),
            bind_pool: Mutex::new(Vec::new()),
            info: OnceCell::new(),
            info_failed: Mutex::new(None),
            last_dc: Mutex::new(None),
            failovers: std::sync::atomic::AtomicU64::new(0),
            service_refused: Mutex::new(None),
            service_refusals: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The URL of the DC that answered last.
    pub fn last_dc(&self) -> Option<String> {
        self.last_dc.lock().expect("poisoned").clone()
    }

    fn settings(&self) -> LdapConnSettings {
        let mut s = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.start_tls);
        if let Some(tls) = &self.tls {
            s = s.set_config(tls.clone());
        }
        s
    }

    /// URL indexes in the order to try them: those not set aside first,
    /// in configured order, then the set-aside ones (a DC down is better
    /// tried again than no answer at all).
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let mut aside = self.set_aside.lock().expect("poisoned");
        aside.retain(|_, until| *until > now);
        let (mut fresh, held): (Vec<usize>, Vec<usize>) = (0..self.urls.len()).partition(|i| !aside.contains_key(i));
        fresh.extend(held);
        fresh
    }

    /// How many times a DC refused the service account's bind.
    pub fn service_refusals(&self) -> u64 {
        self.service_refusals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many times a DC was set aside after a failure.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn put_aside(&self, i: usize) {
        self.failovers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.set_aside
            .lock()
            .expect("poisoned")
            .insert(i, Instant::now() + SET_ASIDE);
    }

    async fn connect_one(&self, url: &str) -> Result<Ldap, String> {
        let settings = self.settings();
        let (conn, ldap) = tokio::time::timeout(self.timeout, LdapConnAsync::with_settings(settings, url))
            .await
            .map_err(|_| format!("{url}: no answer within {:?}", self.timeout))?
            .map_err(|e| format!("{url}: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "AD connection ended");
            }
        });
        Ok(ldap)
    }

    /// A connection to the first DC that answers (not bound).
    async fn connect(&self) -> Result<(Ldap, usize), AdError> {
        let mut errors = Vec::new();
        for i in self.order() {
            match self.connect_one(&self.urls[i]).await {
                Ok(l) => {
                    self.set_aside.lock().expect("poisoned").remove(&i);
                    *self.last_dc.lock().expect("poisoned") = Some(self.urls[i].clone());
                    return Ok((l, i));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AD domain controller unreachable, set aside");
                    self.put_aside(i);
                    errors.push(e);
                }
            }
        }
        Err(AdError::Unavailable(errors.join("; ")))
    }

    /// A simple bind with `timeout`; `Ok(None)` on success, else the
    /// result code and diagnostic text.
    async fn bind(&self, ldap: &mut Ldap, dn: &str, password: &str) -> Result<Option<(u32, String)>, AdError> {
        let r = ldap
            .with_timeout(self.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| AdError::Operation(format!("bind: {e}")))?;
        Ok((r.rc != 0).then_some((r.rc, r.text)))
    }

    /// A new connection bound as the service account.
    async fn service_connection(&self) -> Result<(Ldap, usize), AdError> {
        let password = std::str::from_utf8(self.bind_password.as_bytes())
            .map_err(|_| AdError::Operation("the bind password is not UTF-8".into()))?;
        // A refused service bind is not tried again for a while: a burst
        // of requests must not become a burst of wrong-password binds that
        // lock the service account out.
        if let Some((until, url, text)) = &*self.service_refused.lock().expect("poisoned")
            && Instant::now() < *until
        {
            return Err(AdError::ServiceBind {
                url: url.clone(),
                text: text.clone(),
            });
        }
        let (mut ldap, i) = self.connect().await?;
        match self.bind(&mut ldap, &self.bind_dn, password).await {
            Ok(None) => {
                *self.service_refused.lock().expect("poisoned") = None;
                Ok((ldap, i))
            }
            Ok(Some((rc, text))) => {
                self.service_refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (url, text) = (self.urls[i].clone(), format!("result {rc}: {text}"));
                *self.service_refused.lock().expect("poisoned") =
                    Some((Instant::now() + SERVICE_RETRY, url.clone(), text.clone()));
                Err(AdError::ServiceBind { url, text })
            }
            Err(e) => {
                self.put_aside(i);
                Err(e)
            }
        }
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, AdError> {
        let r = ldap
            .with_timeout(self.timeout)
            .search(base, scope, filter, attrs)
            .await
            .map_err(|e| AdError::Operation(format!("search: {e}")))?;
        // Continuation references (referrals to other partitions) are
        // left out by `search` and not chased.
        let (entries, _) = r
            .success()
            .map_err(|e| AdError::Operation(format!("search {filter}: {e}")))?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect())
    }

    async fn read_info(&self, ldap: &mut Ldap) -> Result<DomainInfo, AdError> {
        let root = self
            .search(
                ldap,
                "",
                Scope::Base,
                "(objectClass=*)",
                &["defaultNamingContext", "configurationNamingContext"],
            )
            .await?;
        let root = root
            .first()
            .ok_or_else(|| AdError::Operation("the rootDSE is empty".into()))?;
        let naming_context = first_text(root, "defaultNamingContext")
            .ok_or_else(|| AdError::Operation("the rootDSE has no defaultNamingContext".into()))?
            .to_string();
        let config_nc = first_text(root, "configurationNamingContext").map(str::to_owned);
        let dns = dns_domain_of(&naming_context)
            .ok_or_else(|| AdError::Operation(format!("{naming_context}: not a domain naming context")))?;
        let netbios = match (&self.domain, config_nc) {
            (Some(d), _) => d.clone(),
            (None, None) => {
                return Err(AdError::Operation(
                    "the rootDSE has no configurationNamingContext".into(),
                ));
            }
            (None, Some(cfg_nc)) => {
                let filter = format!(
                    "(&(objectClass=crossRef)(nCName={})(nETBIOSName=*))",
                    escape_filter_value(&naming_context)
                );
                let refs = self
                    .search(
                        ldap,
                        &format!("CN=Partitions,{cfg_nc}"),
                        Scope::OneLevel,
                        &filter,
                        &["nETBIOSName"],
                    )
                    .await?;
                refs.iter()
                    .find_map(|e| first_text(e, "nETBIOSName"))
                    .ok_or_else(|| AdError::Operation(format!("no crossRef with a nETBIOSName for {naming_context}")))?
                    .to_ascii_uppercase()
            }
        };
        let domain = self
            .search(
                ldap,
                &naming_context,
                Scope::Base,
                "(objectClass=*)",
                &["lockoutDuration"],
            )
            .await?;
        let lockout_duration = domain
            .first()
            .and_then(|e| first_text(e, "lockoutDuration"))
            .and_then(|v| v.parse::<i64>().ok())
            .map(i64::saturating_abs)
            .unwrap_or(0);
        tracing::info!(
            naming_context = %naming_context,
            netbios = %netbios,
            dc = self.last_dc().unwrap_or_default(),
            "AD: bound as the service account"
        );
        Ok(DomainInfo {
            naming_context,
            netbios,
            dns,
            lockout_duration,
        })
    }

    /// A bound connection: an idle one from the pool, else a new one.
    /// The boolean says it came from the pool (it may have died since).
    async fn take(&self) -> Result<(Ldap, usize, bool), AdError> {
        let pooled = self.pool.lock().expect("poisoned").pop();
        if let Some((mut l, i)) = pooled
            && !l.is_closed()
        {
            return Ok((l, i, true));
        }
        let (l, i) = self.service_connection().await?;
        Ok((l, i, false))
    }

    fn give_back(&self, ldap: Ldap, i: usize) {
        let mut pool = self.pool.lock().expect("poisoned");
        if pool.len() < POOL_MAX {
            pool.push((ldap, i));
        }
    }

    /// The domain's names and lockout duration, read on first use.
    /// Concurrent first callers wait for one reading (logged once).
    ///
    /// Callers queue for the first reading; when it fails, those queued
    /// (and any caller within `timeout` of the failure) get the same error
    /// at once rather than each trying in turn (a DC that hangs would make
    /// the n-th caller wait n timeouts).
    pub async fn domain_info(&self) -> Result<DomainInfo, AdError> {
        let info = self
            .info
            .get_or_try_init(|| async {
                if let Some((at, e)) = &*self.info_failed.lock().expect("poisoned")
                    && at.elapsed() < self.timeout
                {
                    return Err(e.clone());
                }
                let read = async {
                    let (mut l, i, _) = self.take().await?;
                    let info = self.read_info(&mut l).await?;
                    self.give_back(l, i);
                    Ok::<_, AdError>(info)
                };
                let r = read.await;
                if let Err(e) = &r {
                    *self.info_failed.lock().expect("poisoned") = Some((Instant::now(), e.clone()));
                }
                r
            })
            .await?;
        Ok(info.clone())
    }

    /// The account `identity` names, with its groups; `Ok(None)` when AD
    /// knows no such account (or cannot know it: a MAC, another domain).
    pub async fn find(&self, identity: &Identity) -> Result<Option<AccountData>, AdError> {
        let info = self.domain_info().await?;
        let Some(filter) = account_filter(identity, &info.netbios.to_ascii_lowercase(), &info.dns) else {
            return Ok(None);
        };
        let (mut l, i, pooled) = self.take().await?;
        let r = self.find_on(&mut l, &filter, &info).await;
        match r {
            Ok(v) => {
                self.give_back(l, i);
                Ok(v)
            }
            // A pooled connection may have died with its DC: once more
            // on a new one.
            Err(_) if pooled => {
                let (mut l, i) = self.service_connection().await?;
                let v = self.find_on(&mut l, &filter, &info).await?;
                self.give_back(l, i);
                Ok(v)
            }
            Err(e) => Err(e),
        }
    }

    async fn find_on(&self, ldap: &mut Ldap, filter: &str, info: &DomainInfo) -> Result<Option<AccountData>, AdError> {
        let mut attrs: Vec<&str> = ACCOUNT_ATTRIBUTES.to_vec();
        attrs.push("dNSHostName");
        let mut found = self.search(ldap, &self.base_dn, Scope::Subtree, filter, &attrs).await?;
        if found.len() > 1 {
            return Err(AdError::Operation(format!(
                "{} accounts match {filter}; refusing to choose",
                found.len()
            )));
        }
        let Some(entry) = found.pop() else {
            return Ok(None);
        };
        let dn = entry.dn.clone();
        let raw = raw_attributes(entry);
        let groups = self.groups_of(ldap, &dn, &raw, info).await?;
        Ok(account_from_entry(
            &dn,
            &raw,
            groups,
            &info.netbios,
            &info.dns,
            info.lockout_duration,
            now_unix(),
        ))
    }

    /// Every group `dn` is a member of, through nesting (the in-chain
    /// rule), and its primary group (never in `member`).
    async fn groups_of(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        raw: &RawAttributes,
        info: &DomainInfo,
    ) -> Result<Vec<GroupRef>, AdError> {
        let filter = format!("(&(objectClass=group)(member:{IN_CHAIN}:={}))", escape_filter_value(dn));
        let mut entries = self
            .search(ldap, &info.naming_context, Scope::Subtree, &filter, &["cn"])
            .await?;
        let get = |name: &str| {
            raw.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first())
        };
        let primary_rid = get("primaryGroupID")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u32>().ok());
        if let (Some(rid), Some(sid)) = (primary_rid, get("objectSid"))
            && let Some(group_sid) = sid_with_rid(sid, rid)
        {
            let filter = format!("(&(objectClass=group)(objectSid={}))", escape_filter_bytes(&group_sid));
            entries.extend(
                self.search(ldap, &info.naming_context, Scope::Subtree, &filter, &["cn"])
                    .await?,
            );
        }
        let mut groups: Vec<GroupRef> = entries
            .into_iter()
            .map(|e| GroupRef {
                name: first_text(&e, "cn").unwrap_or_default().to_string(),
                id: e.dn,
            })
            .collect();
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        groups.dedup();
        Ok(groups)
    }

    /// A simple bind as `dn` on a connection used only for such binds
    /// (kept in a pool of its own, and reused by the next user's bind).
    /// An empty password is refused before anything is sent.
    pub async fn check_password(&self, dn: &str, password: &[u8]) -> Result<PasswordVerdict, AdError> {
        if password.is_empty() || dn.is_empty() {
            return Ok(PasswordVerdict::Empty);
        }
        let Ok(password) = std::str::from_utf8(password) else {
            return Ok(PasswordVerdict::Refused(BindRefusal::WrongPassword));
        };
        let pooled = self.bind_pool.lock().expect("poisoned").pop();
        let (mut ldap, mut i, was_pooled) = if let Some((mut l, i)) = pooled
            && !l.is_closed()
        {
            (l, i, true)
        } else {
            let (l, i) = self.connect().await?;
            (l, i, false)
        };
        let mut r = self.bind(&mut ldap, dn, password).await;
        // A pooled connection may have died with its DC since: once more
        // on a new one.
        if r.is_err() && was_pooled {
            (ldap, i) = self.connect().await?;
            r = self.bind(&mut ldap, dn, password).await;
        }
        let verdict = match r? {
            None => PasswordVerdict::Accepted,
            Some((49, text)) => PasswordVerdict::Refused(BindRefusal::from_text(&text)),
            Some((rc, text)) => return Err(AdError::Operation(format!("bind as the user: result {rc}: {text}"))),
        };
        // Kept for the next user's bind (a bind replaces the identity);
        // never used for searches.
        let mut pool = self.bind_pool.lock().expect("poisoned");
        if pool.len() < POOL_MAX {
            pool.push((ldap, i));
        }
        Ok(verdict)
    }
}
