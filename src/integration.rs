//! The Entra ID integration at run time: reads the integration state from
//! the store, builds the Graph client, runs sync rounds at startup and on
//! `[entra] sync_interval`, keeps PAP checks for Entra users and the list of
//! federated domains current, and reports status. The sync worker and the
//! RADIUS path share only the directory handle (through the authenticator).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::EntraPasswords;
use crate::auth::entra_password::{PasswordChecker, PasswordVerdict};
use crate::config::EntraConfig;
use crate::server::ServerHandle;
use crate::store::integration::{self as state, keys};
use crate::sync::worker::{FetchError, ObjectType, PageData, PageSource, Syncer, load_groups};
use crate::sync::{
    CertificateCredential, Credential, DEVICE_SELECT, GROUP_SELECT, GraphClient, GraphConfig, GraphError,
    MANAGED_DEVICE_SELECT, PasswordError, USER_SELECT, devices_delta_url, groups_delta_url, managed_devices_url,
    users_delta_url,
};

/// The client secret's file in the state directory (mode 0600).
pub const CLIENT_SECRET_FILE: &str = "entra-client-secret";

/// The certificate credential's file in the state directory (mode 0600): the
/// certificate and its PKCS#8 private key, PEM. Preferred over a secret
/// when both are present.
pub const CLIENT_CERT_FILE: &str = "entra-client-cert.pem";

/// The integration settings as stored.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub enabled: bool,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub selected_domains: Vec<String>,
}

impl Settings {
    pub fn read(handle: &ServerHandle) -> Result<Settings, String> {
        let conn = handle.store().connect().map_err(|e| e.to_string())?;
        let get = |k| state::get(&conn, k).map_err(|e| e.to_string());
        let domains = get(keys::SELECTED_DOMAINS)?
            .map(|j| serde_json::from_str::<Vec<String>>(&j).map_err(|e| format!("selected domains: {e}")))
            .transpose()?
            .unwrap_or_default();
        Ok(Settings {
            enabled: get(keys::ENABLED)?.as_deref() == Some("true"),
            tenant_id: get(keys::TENANT_ID)?,
            client_id: get(keys::CLIENT_ID)?,
            selected_domains: domains,
        })
    }
}

/// One object type's last round, for `sync status` and the admin API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ObjectStatus {
    pub last_success: Option<i64>,
    pub last_duration_ms: u64,
    pub pages: u64,
    pub items: u64,
    pub full: bool,
    pub last_error: Option<String>,
}

/// The sync's state as data.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    /// What stops the sync, or what it is doing.
    pub state: String,
    pub rounds: u64,
    pub users: ObjectStatus,
    pub devices: ObjectStatus,
    pub groups: ObjectStatus,
    /// Intune managed devices (MAC addresses for MAB).
    pub intune: ObjectStatus,
    pub federated_domains: Vec<String>,
}

/// Shared status handle.
pub type StatusHandle = Arc<Mutex<SyncStatus>>;

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

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The application's credential: the certificate if there is one, else
/// the client secret.
fn read_credential(state_dir: &Path) -> Result<Credential, String> {
    let cert = state_dir.join(CLIENT_CERT_FILE);
    match std::fs::read(&cert) {
        Ok(pem) => CertificateCredential::from_pem(&pem)
            .map(|c| Credential::Certificate(Arc::new(c)))
            .map_err(|e| format!("{}: {e}", cert.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => read_secret(state_dir).map(Credential::Secret),
        Err(e) => Err(format!("cannot read the certificate {}: {e}", cert.display())),
    }
}

fn read_secret(state_dir: &Path) -> Result<String, String> {
    let path: PathBuf = state_dir.join(CLIENT_SECRET_FILE);
    let s =
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read the client secret {}: {e}", path.display()))?;
    let s = s.trim().to_string();
    if s.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(s)
}

/// Runs the integration until `shutdown`: a round at once, then one every
/// `sync_interval`. Each round re-reads the settings, so enabling or
/// changing the integration takes effect at the next round.
pub async fn run(
    cfg: EntraConfig,
    state_dir: PathBuf,
    handle: ServerHandle,
    status: StatusHandle,
    shutdown: CancellationToken,
) {
    loop {
        let next = round(&cfg, &state_dir, &handle, &status).await;
        let wait = next.unwrap_or(cfg.sync_interval);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

fn set_state(status: &StatusHandle, s: impl Into<String>) {
    status.lock().unwrap_or_else(|p| p.into_inner()).state = s.into();
}

/// One round of everything. Returns how long to wait before the next one
/// when that differs from the interval.
async fn round(cfg: &EntraConfig, state_dir: &Path, handle: &ServerHandle, status: &StatusHandle) -> Option<Duration> {
    let settings = match Settings::read(handle) {
        Ok(s) => s,
        Err(e) => {
            set_state(status, format!("cannot read the integration state: {e}"));
            return None;
        }
    };
    handle.entra().set_enabled(settings.enabled);
    let (Some(tenant), Some(client_id)) = (settings.tenant_id.clone(), settings.client_id.clone()) else {
        set_state(status, "not provisioned: run `entra-radius entra provision`");
        handle.authenticator().set_entra_passwords(None);
        return None;
    };
    if !settings.enabled {
        set_state(status, "disabled: run `entra-radius entra enable`");
        handle.authenticator().set_entra_passwords(None);
        return None;
    }
    let credential = match read_credential(state_dir) {
        Ok(c) => c,
        Err(e) => {
            set_state(status, e);
            return None;
        }
    };
    let client = match GraphClient::new(GraphConfig {
        authority_host: cfg.authority_host.clone(),
        graph_endpoint: cfg.graph_endpoint.clone(),
        tenant_id: tenant,
        client_id,
        credential,
    }) {
        Ok(c) => c,
        Err(e) => {
            set_state(status, format!("cannot build the Graph client: {e}"));
            return None;
        }
    };
    set_state(status, "syncing");
    // PAP for Entra users, with the federated domains Entra cannot check.
    let passwords = Arc::new(EntraPasswords::new(Arc::new(GraphPasswords(client.clone()))));
    match client.domains().await {
        Ok(domains) => {
            let federated: Vec<String> = domains.iter().filter(|d| d.federated).map(|d| d.name.clone()).collect();
            passwords.federated_domains.store(Arc::new(federated.clone()));
            status.lock().unwrap_or_else(|p| p.into_inner()).federated_domains = federated;
        }
        Err(e) => warn!(error = %e, "listing the tenant's domains failed"),
    }
    handle.authenticator().set_entra_passwords(Some(passwords));

    let groups = match load_groups(handle.store()) {
        Ok(g) => g,
        Err(e) => {
            set_state(status, format!("cannot read stored groups: {e}"));
            return None;
        }
    };
    let ep = &cfg.graph_endpoint;
    let syncer = Syncer {
        source: GraphPages(client),
        replica: handle.entra().replica().clone(),
        store: handle.store().clone(),
        selected_domains: settings.selected_domains.clone(),
        initial_urls: vec![
            (ObjectType::Users, users_delta_url(ep, USER_SELECT)),
            (ObjectType::Devices, devices_delta_url(ep, DEVICE_SELECT)),
            (ObjectType::Groups, groups_delta_url(ep, GROUP_SELECT)),
        ],
        groups: Mutex::new(groups),
    };
    let mut failed = false;
    for object in [ObjectType::Users, ObjectType::Devices, ObjectType::Groups] {
        let started = Instant::now();
        let result = syncer.round(object).await;
        let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
        let slot = match object {
            ObjectType::Users => &mut st.users,
            ObjectType::Devices => &mut st.devices,
            ObjectType::Groups => &mut st.groups,
        };
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
                *slot = ObjectStatus {
                    last_success: Some(now_unix()),
                    last_duration_ms: slot.last_duration_ms,
                    pages: r.pages,
                    items: r.items,
                    full: r.full,
                    last_error: None,
                };
            }
            Err(e) => {
                warn!(object = object.as_str(), error = %e, "sync round failed; the next round resumes where this one stopped");
                slot.last_error = Some(e.to_string());
                failed = true;
            }
        }
    }
    let started = Instant::now();
    let intune = syncer
        .intune_round(&managed_devices_url(ep, MANAGED_DEVICE_SELECT))
        .await;
    let mut st = status.lock().unwrap_or_else(|p| p.into_inner());
    let elapsed = started.elapsed().as_millis() as u64;
    match intune {
        Ok(r) => {
            info!(
                pages = r.pages,
                managed_devices = r.managed_devices,
                updated = r.updated,
                "intune MAC addresses synced"
            );
            st.intune = ObjectStatus {
                last_success: Some(now_unix()),
                last_duration_ms: elapsed,
                pages: r.pages,
                items: r.managed_devices,
                full: true,
                last_error: None,
            };
        }
        Err(e) => {
            // Without DeviceManagementManagedDevices.Read.All the rest still
            // works; only MAB for Intune devices does not.
            warn!(error = %e, "reading Intune managed devices failed; MAB for Entra devices uses the MACs already known");
            st.intune.last_error = Some(e.to_string());
            st.intune.last_duration_ms = elapsed;
            failed = true;
        }
    }
    st.rounds += 1;
    st.state = if failed {
        "last round failed (see errors)".into()
    } else {
        "idle".into()
    };
    // After a failure, try again sooner than a whole interval.
    failed.then_some(Duration::from_secs(30).min(cfg.sync_interval))
}
