//! `serve --demo`: the server with the built-in Graph emulator and a small
//! tenant, set up the way an administrator would — enable, provision
//! (device-code sign-in, answered here as the tenant's admin would in a
//! browser), admin consent (its URL followed like a browser), all domains
//! selected, a first sync — through the same code as the admin API, then a
//! list of commands to try.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use graph_emulator::{Emulator, EmulatorError, Tenant};
use serde_json::Value;

use crate::admin::api::{ConsentBody, ProvisionBody, SelectionAction, SelectionBody};
use crate::admin::{ApiError, IntegrationRequest};
use crate::config::Config;
use crate::directory::{LocalMac, LocalUser, MacAddr, PolicyRule, UserCredential};
use crate::integration::Integration;
use crate::proto::crypto::Password;
use crate::store::integration::keys;
use crate::store::{Store, StoreError};

/// The VLAN the demo's policy gives members of the Engineering group.
pub const DEMO_VLAN: &str = "20";
/// A local account that Entra ID shadows (its Entra twin is disabled).
pub const SHADOWED_USER: &str = "bob@contoso.example";
pub const SHADOWED_PASSWORD: &str = "local-pw";

/// How long the demo's setup may take before it gives up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// What stops `serve --demo` from starting, or its tenant from being set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    #[error("cannot start the Graph emulator: {0}")]
    Emulator(#[source] EmulatorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{} holds a real Entra ID integration; `serve --demo` would overwrite it: give the demo its own state_dir",
        .0.display()
    )]
    RealIntegration(PathBuf),
    #[error("cannot remove {}: {source}", path.display())]
    RemoveFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An administrator's step refused by the integration.
    #[error("demo setup: {what}: {}", error.message)]
    Step { what: &'static str, error: ApiError },
    #[error("demo setup: HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("demo setup: the emulator refused the sign-in ({0})")]
    SignInRefused(reqwest::StatusCode),
    #[error("demo setup: signing in: {0}")]
    SignIn(#[source] reqwest::Error),
    #[error("demo setup: provisioning failed: {0}")]
    ProvisioningFailed(String),
    #[error("demo setup: provisioning timed out")]
    ProvisioningTimedOut,
    #[error("demo setup: following the consent URL: {0}")]
    FollowConsent(#[source] reqwest::Error),
    #[error("demo setup: the consent URL did not redirect")]
    NoConsentRedirect,
    #[error("demo setup: the first sync failed: {0}")]
    FirstSyncFailed(String),
    #[error("demo setup: the first sync timed out")]
    FirstSyncTimedOut,
    #[error("hashing the demo password: {0}")]
    Hash(argon2::password_hash::Error),
    #[error("demo certificates: {0}")]
    Certs(#[from] crate::certs::CertsError),
    #[error("demo certificates: {0}")]
    EapConfig(#[from] crate::config::ConfigError),
    #[error("demo certificates: writing {path}: {source}")]
    WriteConf { path: PathBuf, source: std::io::Error },
}

/// Where `serve --demo` keeps its certificates and `eapol_test` files.
pub const DEMO_CERTS_DIR: &str = "demo-certs";

/// Unless the config has its own `[eap]`: a demo CA, server certificate and
/// client certificates in the state directory (made once, kept across
/// demos), `[eap]` pointed at them, and `eapol_test` network blocks beside
/// them. Returns the directory.
pub fn add_eap(cfg: &mut Config, tenant: &Tenant) -> Result<Option<PathBuf>, DemoError> {
    use crate::certs::{self, ClientIdentity};
    if cfg.eap.is_some() {
        return Ok(None);
    }
    let dir = cfg.server.state_dir.join(DEMO_CERTS_DIR);
    let laptop = tenant.devices.first().map(|d| d.device_id.clone()).unwrap_or_default();
    if !dir.join("ca.pem").exists() {
        certs::init(&dir, "radius.demo.test")?;
        certs::issue(&dir, ClientIdentity::Upn("alice@contoso.example".into()), Some("alice"))?;
        certs::issue(&dir, ClientIdentity::Upn("bob@contoso.example".into()), Some("bob"))?;
        certs::issue(&dir, ClientIdentity::DeviceId(laptop), Some("alice-laptop"))?;
    }
    let eap = crate::config::from_toml(&format!(
        "[eap]\ncertificate = {:?}\nprivate_key = {:?}\nca_file = {:?}\n",
        dir.join("server.pem").display().to_string(),
        dir.join("server.key").display().to_string(),
        dir.join("ca.pem").display().to_string(),
    ))?
    .eap;
    cfg.eap = eap;
    let ca = dir.join("ca.pem");
    let tls = |who: &str| {
        format!(
            "network={{\n  key_mgmt=WPA-EAP\n  eap=TLS\n  identity=\"anonymous@contoso.example\"\n  ca_cert=\"{}\"\n  client_cert=\"{}\"\n  private_key=\"{}\"\n  phase1=\"tls_disable_tlsv1_3=0\"\n}}\n",
            ca.display(),
            dir.join(format!("{who}.pem")).display(),
            dir.join(format!("{who}.key")).display()
        )
    };
    let ttls = |user: &str, pw: &str| {
        format!(
            "network={{\n  key_mgmt=WPA-EAP\n  eap=TTLS\n  identity=\"{user}\"\n  anonymous_identity=\"anonymous@contoso.example\"\n  password=\"{pw}\"\n  phase2=\"auth=PAP\"\n  ca_cert=\"{}\"\n  phase1=\"tls_disable_tlsv1_3=0\"\n}}\n",
            ca.display()
        )
    };
    for (file, text) in [
        ("alice-tls.conf", tls("alice")),
        ("bob-tls.conf", tls("bob")),
        ("laptop-tls.conf", tls("alice-laptop")),
        ("alice-ttls.conf", ttls("alice@contoso.example", "alice-pw")),
        ("local-ttls.conf", ttls("alice", "wonderland")),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|source| DemoError::WriteConf { path, source })?;
    }
    Ok(Some(dir))
}

/// The `eapol_test` commands the demo prints, each with what it should show.
pub fn eap_commands_text(auth: SocketAddr, dir: &Path) -> String {
    let run = |file: &str| {
        format!(
            "eapol_test -c {} -a {} -p {} -s testing123",
            dir.join(file).display(),
            auth.ip(),
            auth.port()
        )
    };
    format!(
        "802.1X (eapol_test from Debian's eapoltest; it prints SUCCESS or FAILURE last):\n\
         \x20 {}   # EAP-TLS Accept: alice by the UPN in her certificate, VLAN {DEMO_VLAN}\n\
         \x20 {}   # EAP-TLS Access-Reject: bob is disabled in Entra ID\n\
         \x20 {}   # EAP-TLS Accept: the Entra device ALICE-LAPTOP, by its device id\n\
         \x20 {}   # EAP-TTLS/PAP Accept: alice's password checked by Entra ID\n\
         \x20 {}   # EAP-TTLS/PAP Accept: the local user alice\n",
        run("alice-tls.conf"),
        run("bob-tls.conf"),
        run("laptop-tls.conf"),
        run("alice-ttls.conf"),
        run("local-ttls.conf"),
    )
}

/// Accounts that `serve --demo` adds: a PAP/CHAP user, a PAP-only user kept
/// as an argon2 hash, and two MACs.
pub fn add_accounts(cfg: &mut Config) -> Result<(), DemoError> {
    use argon2::password_hash::PasswordHasher;
    let hash = argon2::Argon2::default()
        .hash_password(b"correct horse")
        .map_err(DemoError::Hash)?
        .to_string();
    cfg.local_users.push(LocalUser {
        name: "alice".into(),
        credential: UserCredential::Cleartext(Password::new(b"wonderland".to_vec())),
    });
    cfg.local_users.push(LocalUser {
        name: "bob".into(),
        credential: UserCredential::Argon2(hash),
    });
    for (mac, what) in [
        ("02-00-00-00-00-01", "demo printer"),
        ("02-00-00-00-00-02", "demo camera"),
    ] {
        cfg.local_macs.push(LocalMac {
            mac: MacAddr::parse(mac).expect("constant"),
            description: Some(what.into()),
        });
    }
    Ok(())
}

/// The Graph emulator with the demo tenant, the config pointed at it, and
/// the state directory made ready for a demo.
pub async fn start(cfg: &mut Config) -> Result<Emulator, DemoError> {
    let emulator = start_emulator().await?;
    configure(cfg, &emulator.base_url());
    prepare_state(&cfg.server.state_dir)?;
    tracing::info!(url = %emulator.base_url(), "demo: Graph emulator listening");
    Ok(emulator)
}

/// Starts the emulator with the demo tenant on a free loopback port.
pub async fn start_emulator() -> Result<Emulator, DemoError> {
    Emulator::start(([127, 0, 0, 1], 0).into(), Tenant::demo())
        .await
        .map_err(DemoError::Emulator)
}

/// Points the config at the emulator and adds the demo's policy and the
/// local account that shows precedence.
pub fn configure(cfg: &mut Config, emulator_url: &str) {
    cfg.entra.authority_host = emulator_url.to_string();
    cfg.entra.graph_endpoint = emulator_url.to_string();
    cfg.policy.push(PolicyRule {
        group: Some("Engineering".into()),
        kind: None,
        vlan: Some(DEMO_VLAN.into()),
        filter_id: None,
        session_timeout: None,
        reply_message: None,
    });
    cfg.local_users.push(LocalUser {
        name: SHADOWED_USER.into(),
        credential: UserCredential::Cleartext(Password::new(SHADOWED_PASSWORD.as_bytes().to_vec())),
    });
}

/// Makes the state directory ready for a demo: a new one, or one a demo
/// used before (its Entra state is reset: each demo has a fresh emulator).
/// A state directory with a real integration is refused.
pub fn prepare_state(state_dir: &Path) -> Result<(), DemoError> {
    let store = Store::open(state_dir)?;
    let mut conn = store.conn()?;
    let is_demo = conn.setting(keys::DEMO)?.is_some();
    let has_integration = conn.setting(keys::TENANT_ID)?.is_some();
    if has_integration && !is_demo {
        return Err(DemoError::RealIntegration(state_dir.to_path_buf()));
    }
    conn.purge()?;
    let now = crate::clock::now_unix();
    for key in [
        keys::ENABLED,
        keys::TENANT_ID,
        keys::CLIENT_ID,
        keys::SELECTED_DOMAINS,
        keys::RESCOPE_PENDING,
        keys::APP_OBJECT_ID,
        keys::PROVISIONED_AT,
        keys::PROVISIONED_BY,
        keys::CONSENT,
    ] {
        conn.set_setting(key, None, now)?;
    }
    conn.set_setting(keys::DEMO, Some("1"), now)?;
    for file in [
        crate::integration::CLIENT_SECRET_FILE,
        crate::integration::CLIENT_CERT_FILE,
    ] {
        match std::fs::remove_file(state_dir.join(file)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DemoError::RemoveFile {
                    path: state_dir.join(file),
                    source,
                });
            }
        }
    }
    Ok(())
}

fn step(what: &'static str, r: Result<Value, ApiError>) -> Result<Value, DemoError> {
    r.map_err(|error| DemoError::Step { what, error })
}

/// The administrator's steps, in order. Blocking: call it on a blocking
/// thread (the integration's operations wait on the runtime).
pub fn setup(integration: &Arc<Integration>, tenant: &Tenant) -> Result<(), DemoError> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    step("enable", integration.handle(IntegrationRequest::Enable))?;
    let started = step(
        "provision",
        integration.handle(IntegrationRequest::ProvisionStart(ProvisionBody {
            tenant: Some(tenant.id.clone()),
            display_name: Some("entra-radius (demo)".into()),
        })),
    )?;
    // The administrator signs in at the verification page with the code.
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(DemoError::HttpClient)?;
    let uri = started["verification_uri"].as_str().unwrap_or_default().to_string();
    let code = started["user_code"].as_str().unwrap_or_default().to_string();
    let form = [
        ("user_code", code.as_str()),
        ("username", tenant.admin.user_principal_name.as_str()),
        ("password", tenant.admin.password.as_str()),
    ];
    let signed_in = integration_runtime(integration).block_on(async { http.post(&uri).form(&form).send().await });
    match signed_in {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => return Err(DemoError::SignInRefused(r.status())),
        Err(e) => return Err(DemoError::SignIn(e)),
    }
    loop {
        let p = step("provision", integration.handle(IntegrationRequest::ProvisionProgress))?;
        match p["phase"].as_str() {
            Some("done") => break,
            Some("failed") => {
                return Err(DemoError::ProvisioningFailed(
                    p["error"].as_str().unwrap_or("?").to_owned(),
                ));
            }
            _ if Instant::now() > deadline => return Err(DemoError::ProvisioningTimedOut),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    // Admin consent: follow the URL as the browser would, read the redirect.
    let consent = step(
        "consent",
        integration.handle(IntegrationRequest::ConsentUrl {
            redirect_uri: "http://localhost:9/consent".into(),
        }),
    )?;
    let url = consent["url"].as_str().unwrap_or_default().to_string();
    let location = integration_runtime(integration)
        .block_on(async { http.get(&url).send().await })
        .map_err(DemoError::FollowConsent)?
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(str::to_string)
        .ok_or(DemoError::NoConsentRedirect)?;
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    let p = crate::admin::commands::parse_query(query);
    step(
        "consent",
        integration.handle(IntegrationRequest::ConsentResult(ConsentBody {
            admin_consent: p.get("admin_consent").cloned(),
            tenant: p.get("tenant").cloned(),
            state: p.get("state").cloned(),
            error: p.get("error").cloned(),
            error_description: p.get("error_description").cloned(),
        })),
    )?;
    step(
        "domains",
        integration.handle(IntegrationRequest::SelectDomains(SelectionBody {
            action: SelectionAction::Exact,
            all: true,
            names: vec![],
        })),
    )?;
    let round = step("sync", integration.handle(IntegrationRequest::SyncNow))?["round"]
        .as_u64()
        .unwrap_or(1);
    loop {
        let st = integration.sync_status();
        if st.rounds_finished >= round {
            return match st.last_round_ok {
                Some(true) => Ok(()),
                _ => Err(DemoError::FirstSyncFailed(st.last_round_error.unwrap_or_default())),
            };
        }
        if Instant::now() > deadline {
            return Err(DemoError::FirstSyncTimedOut);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The commands the demo prints: accept, rejects with their reasons, MAB,
/// precedence.
pub fn commands_text(auth: SocketAddr, tenant: &Tenant) -> String {
    let mac = tenant
        .managed_devices
        .first()
        .and_then(|m| crate::directory::MacAddr::parse(m.wi_fi_mac_address.as_deref()?).ok())
        // Shown in a notation other than the tenant's, as switches vary.
        .map(|m| m.to_string().to_lowercase().replace('-', ":"))
        .unwrap_or_default();
    let t = "cargo run --release -- test-auth";
    format!(
        "\nDemo tenant synced from the built-in Graph emulator: contoso.example (managed), fabrikam.example (federated).\n\
         Engineering members get VLAN {DEMO_VLAN}. Try, in another terminal:\n\
         \x20 {t} --server {auth} --user alice@contoso.example --password alice-pw   # Accept, VLAN {DEMO_VLAN} (Entra, password checked by Entra ID)\n\
         \x20 {t} --server {auth} --user alice@contoso.example --password wrong      # Reject: wrong password\n\
         \x20 {t} --server {auth} --user bob@contoso.example --password bob-pw       # Reject: account disabled in Entra ID\n\
         \x20 {t} --server {auth} --user carol@contoso.example --password carol-pw   # Reject: MFA required\n\
         \x20 {t} --server {auth} --user dave@fabrikam.example --password dave-pw    # Reject: federated domain, PAP cannot be checked\n\
         \x20 {t} --server {auth} --mab {mac}                          # MAB Accept: Intune MAC of ALICE-LAPTOP, VLAN {DEMO_VLAN}\n\
         \x20 {t} --server {auth} --user {SHADOWED_USER} --password {SHADOWED_PASSWORD}     # Reject: Entra's disabled bob shadows the local account\n\
         \x20 {t} --server {auth} --user alice --password wonderland                 # Accept: local account\n\
         \x20 cargo run --release -- accounts lookup {SHADOWED_USER}                # why: which directory answers, what it shadows\n\
         \x20 cargo run --release -- entra status                                     # the integration, step by step\n\
         \x20 echo 'User-Name = \"alice@contoso.example\", User-Password = \"alice-pw\", Message-Authenticator = 0x00' | radclient -x {auth} auth testing123\n"
    )
}

fn integration_runtime(integration: &Arc<Integration>) -> tokio::runtime::Handle {
    integration.runtime.clone()
}
