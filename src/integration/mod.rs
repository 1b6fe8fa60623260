//! The Entra ID integration at run time. [`Integration`] owns the sync loop
//! (a round at startup, every `[entra] sync_interval`, and on demand), the
//! integration's state in the store (switch, application, consent, domain
//! selection), and the operations the admin API offers on it (`control`).
//! PAP checks for Entra users and the list of federated domains are kept
//! current from here. The sync worker and the RADIUS path share only the
//! Entra directory and the password checks, handed over by the composition
//! root (`app`).

mod control;
mod errors;
mod metrics;
mod provisioning;
mod status;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::EntraPasswords;
use crate::auth::entra_password::{PasswordChecker, PasswordVerdict};
use crate::clock::now_unix;
use crate::config::EntraConfig;
use crate::directory::EntraDirectory;
use crate::graph::{
    CertificateCredential, Credential, DEVICE_SELECT, GROUP_SELECT, GraphClient, GraphConfig, GraphError,
    MANAGED_DEVICE_SELECT, PasswordError, USER_SELECT, devices_delta_url, groups_delta_url, managed_devices_url,
    users_delta_url,
};
use crate::store::Store;
use crate::store::integration::keys;
use crate::sync::worker::{FetchError, ObjectType, PageData, PageSource, RoundReport, Syncer, load_groups};

pub use errors::IntegrationError;
pub use metrics::render_sync_metrics;
pub use status::{ConsentRecord, ObjectStatus, SyncStatus};

/// The client secret's file in the state directory (mode 0600).
pub const CLIENT_SECRET_FILE: &str = "entra-client-secret";

/// The certificate credential's file in the state directory (mode 0600): the
/// certificate and its PKCS#8 private key, PEM. Preferred over a secret
/// when both are present.
pub const CLIENT_CERT_FILE: &str = "entra-client-cert.pem";

/// After a failed round, the next one starts after this (or the interval,
/// if shorter) rather than a whole interval later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// The integration settings as stored.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub enabled: bool,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub selected_domains: Vec<String>,
    pub rescope_pending: bool,
    pub app_object_id: Option<String>,
    pub provisioned_at: Option<i64>,
    pub provisioned_by: Option<String>,
    pub consent: Option<ConsentRecord>,
}

impl Settings {
    pub fn read(store: &crate::store::Store) -> Result<Settings, IntegrationError> {
        let conn = store.conn()?;
        let get = |k| conn.setting(k);
        let domains = get(keys::SELECTED_DOMAINS)?
            .map(|j| serde_json::from_str::<Vec<String>>(&j).map_err(IntegrationError::SelectedDomains))
            .transpose()?
            .unwrap_or_default();
        let consent = get(keys::CONSENT)?.and_then(|j| serde_json::from_str::<ConsentRecord>(&j).ok());
        Ok(Settings {
            enabled: get(keys::ENABLED)?.as_deref() == Some("true"),
            tenant_id: get(keys::TENANT_ID)?,
            client_id: get(keys::CLIENT_ID)?,
            selected_domains: domains,
            rescope_pending: get(keys::RESCOPE_PENDING)?.is_some(),
            app_object_id: get(keys::APP_OBJECT_ID)?,
            provisioned_at: get(keys::PROVISIONED_AT)?.and_then(|v| v.parse().ok()),
            provisioned_by: get(keys::PROVISIONED_BY)?,
            consent,
        })
    }

    /// Both the tenant and the application are known.
    pub fn provisioned(&self) -> bool {
        self.tenant_id.is_some() && self.client_id.is_some()
    }

    /// Why a sync round cannot run now, as the step that fixes it; `None`
    /// when it can.
    pub fn sync_blocker(&self) -> Option<&'static str> {
        if !self.enabled {
            Some("the integration is disabled: run `entra-radius entra enable`")
        } else if !self.provisioned() {
            Some("no application is registered: run `entra-radius entra provision`")
        } else if self.selected_domains.is_empty() {
            Some("no domain is selected: run `entra-radius domains pick` or `entra-radius domains select --all`")
        } else {
            None
        }
    }
}

/// Microsoft Graph as the sync worker's page source.
pub struct GraphPages(pub GraphClient);

impl PageSource for GraphPages {
    async fn fetch(&self, url: &str) -> Result<PageData, FetchError> {
        match self.0.get_page(url).await {
            Ok(p) => Ok(PageData {
                items: p.items,
                next_link: p.next_link,
                delta_link: p.delta_link,
            }),
            Err(GraphError::DeltaExpired { .. }) => Err(FetchError::DeltaExpired),
            Err(e) => Err(FetchError::Other(e.to_string())),
        }
    }
}

struct GraphPasswords(GraphClient);

impl PasswordChecker for GraphPasswords {
    fn check<'a>(
        &'a self,
        upn: &'a str,
        password: &'a [u8],
    ) -> Pin<Box<dyn std::future::Future<Output = PasswordVerdict> + Send + 'a>> {
        Box::pin(async move {
            let Ok(pw) = std::str::from_utf8(password) else {
                return PasswordVerdict::Rejected("the password is not valid UTF-8".into());
            };
            match self.0.check_password(upn, pw).await {
                Ok(()) => PasswordVerdict::Accepted,
                Err(e @ PasswordError::PasswordCheck { .. }) => PasswordVerdict::Rejected(e.to_string()),
                Err(e) => PasswordVerdict::Unavailable(e.to_string()),
            }
        })
    }
}

/// The application's credential: the certificate if there is one, else
/// the client secret. Either file is refused when group or others may read
/// it. Public so that `serve` can report a missing or unusable credential
/// once at startup.
pub fn read_credential(state_dir: &Path) -> Result<Credential, IntegrationError> {
    let cert = state_dir.join(CLIENT_CERT_FILE);
    match crate::private_file::read_private_file(&cert) {
        Ok(pem) => CertificateCredential::from_pem(&pem)
            .map(|c| Credential::Certificate(Arc::new(c)))
            .map_err(|source| IntegrationError::Certificate { path: cert, source }),
        Err(e) if e.is_not_found() => read_secret(state_dir).map(Credential::Secret),
        Err(e) => Err(IntegrationError::CertificateFile(e)),
    }
}

fn read_secret(state_dir: &Path) -> Result<String, IntegrationError> {
    let path: PathBuf = state_dir.join(CLIENT_SECRET_FILE);
    let bytes = crate::private_file::read_private_file(&path).map_err(|e| {
        if e.is_not_found() {
            IntegrationError::SecretMissing(path.clone())
        } else {
            IntegrationError::SecretFile(e)
        }
    })?;
    let s = String::from_utf8(bytes).map_err(|_| IntegrationError::SecretNotText(path.clone()))?;
    let s = s.trim().to_string();
    if s.is_empty() {
        return Err(IntegrationError::SecretEmpty(path));
    }
    Ok(s)
}

/// What the integration works on, built by the composition root: the
/// store, the Entra directory the RADIUS path reads, and PAP for Entra
/// users.
pub struct IntegrationParts {
    pub store: Store,
    pub entra: Arc<EntraDirectory>,
    pub passwords: Arc<EntraPasswords>,
}

/// The Entra ID integration of one server.
pub struct Integration {
    cfg: EntraConfig,
    state_dir: PathBuf,
    parts: IntegrationParts,
    status: Mutex<SyncStatus>,
    /// Wakes the loop for a round now (`sync now`, `entra enable`).
    wake: tokio::sync::Notify,
    /// Held by a running round, and by a purge so that none runs meanwhile.
    round_lock: tokio::sync::Mutex<()>,
    /// Cancels the running round (`entra disable`).
    round_cancel: Mutex<CancellationToken>,
    /// Rounds asked for through `sync now`, answered by round numbers.
    requested: AtomicU64,
    /// The runtime, for the admin API's calls, which arrive on blocking threads.
    pub(crate) runtime: tokio::runtime::Handle,
    provisioning: Mutex<provisioning::Progress>,
    /// The `state` of the last consent URL handed out (checked on the way back).
    consent_state: Mutex<Option<String>>,
    /// Bumped after every committed page and round: the sessions' Disconnect
    /// task watches it (a watch channel never makes the sync wait).
    commits: tokio::sync::watch::Sender<u64>,
}

impl Integration {
    /// Must be called inside the tokio runtime that will run [`Integration::run`].
    pub fn new(cfg: EntraConfig, state_dir: PathBuf, parts: IntegrationParts) -> Arc<Integration> {
        Arc::new(Integration {
            cfg,
            state_dir,
            parts,
            status: Mutex::new(SyncStatus::default()),
            wake: tokio::sync::Notify::new(),
            round_lock: tokio::sync::Mutex::new(()),
            round_cancel: Mutex::new(CancellationToken::new()),
            requested: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::current(),
            provisioning: Mutex::new(provisioning::Progress::default()),
            consent_state: Mutex::new(None),
            commits: tokio::sync::watch::Sender::new(0),
        })
    }

    /// A receiver that sees a new value after each sync commit.
    pub fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }

    fn note_commit(&self) {
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn status(&self) -> MutexGuard<'_, SyncStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sync's state as data.
    pub fn sync_status(&self) -> SyncStatus {
        self.status().clone()
    }

    fn settings(&self) -> Result<Settings, IntegrationError> {
        Settings::read(&self.parts.store)
    }

    /// Runs the integration until `shutdown`: a round at once, then one
    /// every `sync_interval` or when woken. Each round re-reads the
    /// settings, so a change takes effect at the next round.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        self.last_successes_from_store();
        loop {
            let cancel = shutdown.child_token();
            *self.round_cancel.lock().unwrap_or_else(|p| p.into_inner()) = cancel.clone();
            let next = tokio::select! {
                n = self.round() => n,
                () = cancel.cancelled() => {
                    let mut st = self.status();
                    st.running = false;
                    st.current = None;
                    st.rounds_finished = st.rounds_started;
                    st.last_round_ok = Some(false);
                    st.last_round_error = Some("the round was stopped (integration disabled or server stopping)".into());
                    st.state = "stopped".into();
                    None
                }
            };
            let wait = next.unwrap_or(self.cfg.sync_interval);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// After a restart, "last success" comes from the stored delta links:
    /// each is written when a round of its object type completes.
    fn last_successes_from_store(&self) {
        let Ok(list) = self.parts.store.checkpoints() else {
            return;
        };
        let mut st = self.status();
        for (name, value, updated) in list {
            let slot = match name.as_str() {
                "users.delta" => &mut st.users,
                "devices.delta" => &mut st.devices,
                "groups.delta" => &mut st.groups,
                crate::sync::worker::INTUNE_DONE => {
                    // Its value is the number of managed devices read.
                    st.intune.items = value.parse().unwrap_or(0);
                    &mut st.intune
                }
                _ => continue,
            };
            slot.last_success = Some(updated);
        }
    }

    /// Asks for a round now; returns the number of the round that will
    /// answer (rounds are numbered from 1 since the server started).
    fn request_round(&self) -> u64 {
        let target = {
            let st = self.status();
            st.rounds_started + 1
        };
        self.requested.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        target
    }

    fn cancel_round(&self) {
        self.round_cancel.lock().unwrap_or_else(|p| p.into_inner()).cancel();
    }

    fn set_state(&self, s: impl Into<String>) {
        self.status().state = s.into();
    }

    /// One round of everything. Returns how long to wait before the next one
    /// when that differs from the interval. A round that cannot run (disabled,
    /// not provisioned, no domain) is not counted: the status says why, and
    /// `sync now` refuses. Once counted, a round ends as a success or a
    /// failure with its reason, so `sync now --wait` always gets an answer.
    async fn round(&self) -> Option<Duration> {
        let _running = self.round_lock.lock().await;
        let settings = match self.settings() {
            Ok(s) => s,
            Err(e) => {
                self.set_state(format!("cannot read the integration state: {e}"));
                return None;
            }
        };
        self.parts.entra.set_enabled(settings.enabled);
        if let Some(blocker) = settings.sync_blocker() {
            let mut st = self.status();
            st.state = blocker.into();
            st.blocked = true;
            drop(st);
            if !settings.enabled || !settings.provisioned() {
                self.parts.passwords.set_checker(None);
            }
            return None;
        }
        let round_no = {
            let mut st = self.status();
            st.rounds_started += 1;
            st.running = true;
            st.blocked = false;
            st.state = "syncing".into();
            st.round_started_at = Some(now_unix());
            for o in st.objects_mut() {
                o.running_pages = 0;
                o.running_items = 0;
            }
            st.rounds_started
        };
        let failure = match self.client_for(&settings) {
            Ok(client) => self.sync_all(client, &settings).await,
            Err(e) => Some(e.to_string()),
        };
        // A round's pages and JSON peak well above what the replica keeps.
        crate::sys::release_freed_memory();
        let mut st = self.status();
        st.running = false;
        st.current = None;
        st.rounds_finished = round_no;
        st.last_round_ok = Some(failure.is_none());
        st.last_round_error = failure.clone();
        st.state = match &failure {
            Some(_) => "last round failed (see errors)".into(),
            None => "idle".into(),
        };
        failure.map(|_| RETRY_AFTER_FAILURE.min(self.cfg.sync_interval))
    }

    /// The Graph client of a round, from the stored application.
    fn client_for(&self, settings: &Settings) -> Result<GraphClient, IntegrationError> {
        let (Some(tenant), Some(client_id)) = (settings.tenant_id.clone(), settings.client_id.clone()) else {
            return Err(IntegrationError::NotProvisioned);
        };
        let credential = read_credential(&self.state_dir)?;
        GraphClient::new(GraphConfig {
            authority_host: self.cfg.authority_host.clone(),
            graph_endpoint: self.cfg.graph_endpoint.clone(),
            tenant_id: tenant,
            client_id,
            credential,
        })
        .map_err(IntegrationError::GraphClient)
    }

    /// Users, devices, groups and Intune MACs; returns the first failure.
    async fn sync_all(&self, client: GraphClient, settings: &Settings) -> Option<String> {
        // PAP for Entra users, with the federated domains Entra cannot check.
        // Only the checker is new: the cache and the failure counts live as
        // long as the server.
        let passwords = &self.parts.passwords;
        match client.domains().await {
            Ok(domains) => {
                let federated: Vec<String> = domains.iter().filter(|d| d.federated).map(|d| d.name.clone()).collect();
                passwords.set_federated_domains(federated.clone());
                self.status().federated_domains = federated;
            }
            Err(e) => warn!(error = %e, "listing the tenant's domains failed"),
        }
        passwords.set_checker(Some(Arc::new(GraphPasswords(client.clone()))));

        if settings.rescope_pending
            && let Err(e) = self.start_rescope()
        {
            return Some(format!("cannot re-scope to the new domain selection: {e}"));
        }
        let groups = match load_groups(&self.parts.store) {
            Ok(g) => g,
            Err(e) => return Some(format!("cannot read stored groups: {e}")),
        };
        let ep = &self.cfg.graph_endpoint;
        let syncer = Syncer {
            source: GraphPages(client),
            replica: self.parts.entra.replica().clone(),
            store: self.parts.store.clone(),
            selected_domains: settings.selected_domains.clone(),
            initial_urls: vec![
                (ObjectType::Users, users_delta_url(ep, USER_SELECT)),
                (ObjectType::Devices, devices_delta_url(ep, DEVICE_SELECT)),
                (ObjectType::Groups, groups_delta_url(ep, GROUP_SELECT)),
            ],
            groups: Mutex::new(groups),
        };
        let mut failure = None;
        for object in [ObjectType::Users, ObjectType::Devices, ObjectType::Groups] {
            self.status().current = Some(object.as_str().to_string());
            let started = Instant::now();
            let observe = |r: &RoundReport| {
                let mut st = self.status();
                let slot = st.object_mut(object);
                slot.running_pages = r.pages;
                slot.running_items = r.items;
                drop(st);
                self.note_commit();
            };
            let result = syncer.round_observed(object, &observe).await;
            self.note_commit();
            let mut st = self.status();
            let slot = st.object_mut(object);
            slot.last_duration_ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(r) => {
                    info!(
                        object = object.as_str(),
                        pages = r.pages,
                        items = r.items,
                        full = r.full,
                        resumed = r.resumed,
                        swept = r.swept,
                        "sync round done"
                    );
                    slot.succeeded(r.pages, r.items, r.full);
                    slot.note_restart(r.restarted.as_deref());
                }
                Err(e) => {
                    warn!(object = object.as_str(), error = %e, "sync round failed; the next round resumes where this one stopped");
                    let text = e.to_string();
                    slot.failed(text.clone());
                    failure.get_or_insert(text);
                }
            }
        }
        // Passwords remembered for accounts disabled or deleted since are
        // forgotten: if such an account comes back, Entra ID checks again.
        let replica = self.parts.entra.replica();
        let forgotten = passwords.forget_unless(|id| replica.get(id).is_some_and(|a| a.enabled() && !a.soft_deleted()));
        if forgotten > 0 {
            info!(
                accounts = forgotten,
                "forgot cached passwords of accounts disabled or deleted"
            );
        }
        self.status().current = Some("intune".into());
        let started = Instant::now();
        let observe = |r: &crate::sync::worker::IntuneReport| {
            let mut st = self.status();
            st.intune.running_pages = r.pages;
            st.intune.running_items = r.managed_devices;
        };
        let intune = syncer
            .intune_round_observed(&managed_devices_url(ep, MANAGED_DEVICE_SELECT), &observe)
            .await;
        let mut st = self.status();
        st.intune.last_duration_ms = started.elapsed().as_millis() as u64;
        match intune {
            Ok(r) => {
                info!(
                    pages = r.pages,
                    managed_devices = r.managed_devices,
                    updated = r.updated,
                    "intune MAC addresses synced"
                );
                st.intune.succeeded(r.pages, r.managed_devices, true);
            }
            Err(e) => {
                // Without DeviceManagementManagedDevices.Read.All the rest still
                // works; only MAB for Intune devices does not.
                warn!(error = %e, "reading Intune managed devices failed; MAB for Entra devices uses the MACs already known");
                let text = e.to_string();
                st.intune.failed(text.clone());
                failure.get_or_insert(text);
            }
        }
        failure
    }

    /// The domain selection changed: the users round re-enumerates from
    /// scratch (its sweep removes users now out of scope; users newly in
    /// scope arrive). Clears the flag in the same transaction.
    fn start_rescope(&self) -> Result<(), IntegrationError> {
        let mut conn = self.parts.store.conn()?;
        let now = now_unix();
        conn.apply(
            &[],
            &[("users.delta", ""), ("users.next", ""), ("users.resync_since", "")],
            now,
        )?;
        conn.set_setting(keys::RESCOPE_PENDING, None, now)?;
        info!("domain selection changed: re-enumerating users");
        Ok(())
    }

    /// The Graph client for the stored application, for admin operations.
    fn graph_client(&self, settings: &Settings) -> Result<GraphClient, crate::admin::ApiError> {
        use crate::admin::ApiError;
        if !settings.provisioned() {
            return Err(ApiError::conflict(
                "no application is registered yet: run `entra-radius entra provision` first",
            ));
        }
        self.client_for(settings).map_err(|e| ApiError::internal(e.to_string()))
    }
}
