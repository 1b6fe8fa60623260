//! The composition root of `serve`: opens the store, loads the replica,
//! reads the integration's switch, starts the accounting writer, builds the
//! authenticator, binds the sockets and hands them to the server, then
//! starts the admin API, the sync loop and the signal handler. It owns every
//! task it starts and stops them in order: RADIUS is drained first, then the
//! sync round is abandoned (its pages are checkpointed), the admin API
//! closes, and the accounting writer is joined last, after its final commit.
//! Nothing else constructs what another part owns.

pub mod admin_backend;
mod history;

use crate::auth::eap::EapServer;
use crate::auth::pool::CpuPool;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::admin::{self, AdminError};
use crate::auth::{AuthConfig, Authenticator};
use crate::config::{Config, ConfigError};
use crate::directory::ad::AdDirectory;
use crate::directory::persist::{self, LoadReport};
use crate::directory::{EntraDirectory, EntraReplica, LocalDirectory};
use crate::integration::{Integration, IntegrationParts, Settings};
use crate::proto::dictionary::Dictionary;
use crate::proto::{ClientSecret, Packet};
use crate::server::handler::{AccountingFailed, Handler, SlowKind};
use crate::server::{self, Port, Server, ServerError, ServerHandle, ServerParts};
use crate::sessions::disconnect::Disconnector;
use crate::sessions::{AccountNow, Accounts, CoaClients, Sessions};
use crate::store::{AcctStatus, AcctWriter, HistoryWriter, Retention, SessionAccount, StateLock, Store, StoreError};

/// File in the state directory holding the admin API's bound address, so
/// that admin commands find a server whose config asked for port 0.
pub const ADMIN_ADDR_FILE: &str = "admin.addr";

/// How long requests in progress may take to finish after SIGTERM.
const DRAIN: Duration = Duration::from_secs(10);

/// Accounting records queued for the writer thread, at least: never fewer
/// than `max_in_flight`, which bounds the records waiting for it, so that
/// the readers (which queue without waiting) never find the queue full.
const ACCT_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("binding the Disconnect (RFC 5176) socket: {0}")]
    DisconnectSocket(std::io::Error),
    #[error("writing {path}: {source}")]
    AdminAddress { path: PathBuf, source: std::io::Error },
    /// A reload was asked for, but the server runs on built-in defaults.
    #[error("running on built-in defaults: there is no config file to reload")]
    NoConfigFile,
    /// A reload found the config file unreadable or invalid; the running
    /// configuration stays.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `[ad]` could not be set up (its TLS settings).
    #[error("[ad]: {0}")]
    Ad(String),
    /// `[eap]` names files that rustls refuses together.
    #[error("{path}: [eap]: {source}")]
    Eap {
        path: String,
        source: crate::eap::tls::TlsSetupError,
    },
}

/// What the RADIUS server hands its verified requests to: Access-Requests
/// to the authenticator, accounting to the store's writer (through
/// `sessions`).
pub struct RadiusHandler {
    authenticator: Arc<Authenticator>,
    acct: AcctWriter,
    /// `None` with `[history] enabled = false`.
    history: Option<HistoryWriter>,
    sessions: Arc<Sessions>,
}

impl Handler for RadiusHandler {
    type Outcome = crate::auth::Decision;
    type Slow = crate::auth::Deferred;
    type Warm = crate::auth::Warm;

    fn slow_kinds(&self) -> Vec<SlowKind> {
        self.authenticator.slow_kinds()
    }

    fn access_request(
        &self,
        packet: &Packet<'_>,
        secret: &ClientSecret,
        client: &str,
    ) -> Result<Self::Outcome, Self::Slow> {
        self.authenticator.decide_or_defer(packet, secret, client)
    }

    fn warm_key(&self, packet: &Packet<'_>) -> Option<Self::Warm> {
        self.authenticator.warm_key(packet)
    }

    fn warm(&self, keys: &[Self::Warm]) {
        self.authenticator.warm(keys);
    }

    fn decided(&self, d: &Self::Outcome, packet: &Packet<'_>, client: &str, source: std::net::IpAddr) {
        // EAP's intermediate rounds are not decisions.
        if let Some(h) = &self.history
            && crate::server::handler::Outcome::reply(d) != crate::server::handler::Reply::Challenge
        {
            h.record_with(|| history::record_of(d, packet, client, source, crate::clock::now_unix_ms()));
        }
    }

    fn accounting_request(
        &self,
        packet: &Packet<'_>,
        source: std::net::IpAddr,
        client: &str,
        now: i64,
        stored: crate::server::handler::Stored,
    ) {
        let mut record = crate::sessions::record_from_packet(packet, source, client, now);
        if matches!(record.status, AcctStatus::Start | AcctStatus::InterimUpdate) {
            record.account = record
                .user_name
                .as_deref()
                .and_then(|u| session_account(&self.authenticator, u));
        }
        // Straight to the writer thread, which calls back once the record
        // is committed: no task, so no runtime worker is woken twice per
        // record (in a soak with 1 % accounting that cost about 3 % of the
        // mix's throughput).
        let sessions = self.sessions.clone();
        self.acct.record_then(record, move |r| match r {
            Ok(applied) => {
                sessions.table.apply(&applied);
                stored(Ok(()));
            }
            Err(e) => stored(Err(AccountingFailed(e.to_string()))),
        });
    }
}

/// The account a User-Name resolves to now and the `[[policy]]` rule it
/// gets: a session's baseline (memory only).
fn session_account(authenticator: &Authenticator, user_name: &str) -> Option<SessionAccount> {
    let (directory, account) = authenticator.resolve_session_user(user_name)?;
    let rule = authenticator.policy_rule_of(&account);
    Some(SessionAccount {
        directory: directory.as_str().to_string(),
        kind: account.kind().as_str().to_string(),
        object_id: account.object_id().to_string(),
        enabled: account.enabled() && !account.soft_deleted(),
        policy_rule: rule.as_ref().and_then(|(i, _)| u32::try_from(*i).ok()),
        vlan: rule.and_then(|(_, v)| v),
    })
}

/// What the sessions see of the directories: Entra accounts, by object id,
/// in the live replica, with the rule the current `[[policy]]` gives them.
struct EntraAccounts {
    entra: Arc<EntraDirectory>,
    authenticator: Arc<Authenticator>,
    store: Store,
}

impl Accounts for EntraAccounts {
    fn entra_enabled(&self) -> bool {
        self.entra.is_enabled()
    }

    fn settled(&self) -> bool {
        let Ok(conn) = self.store.conn() else { return false };
        // The groups' delta link is stored with their last page, before the
        // accounts get their groups: wait for the memberships as well, or
        // a resync after a purge sees every account in no group (and moved
        // off its `[[policy]]` rule) for a moment.
        [
            "users.delta",
            "devices.delta",
            "groups.delta",
            crate::sync::worker::GROUPS_APPLIED,
        ]
        .iter()
        .all(|name| matches!(conn.checkpoint(name), Ok(Some(link)) if !link.is_empty()))
    }

    fn now(&self, was: &SessionAccount) -> AccountNow {
        if was.directory != crate::directory::DirectoryKind::Entra.as_str() {
            return AccountNow::Untracked;
        }
        match self.entra.replica().get(&was.object_id) {
            None => AccountNow::Gone,
            Some(a) if a.soft_deleted() => AccountNow::Gone,
            Some(a) => {
                let rule = self.authenticator.policy_rule_of(&a);
                AccountNow::Is(SessionAccount {
                    enabled: a.enabled(),
                    policy_rule: rule.as_ref().and_then(|(i, _)| u32::try_from(*i).ok()),
                    vlan: rule.and_then(|(_, v)| v),
                    ..was.clone()
                })
            }
        }
    }
}

/// Each client's Disconnect port and secret, by name.
pub fn coa_clients(clients: &[crate::config::ClientConfig]) -> CoaClients {
    clients
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.coa.as_ref().map(|coa| (coa.port, ClientSecret::new(&coa.secret))),
            )
        })
        .collect()
}

/// The running parts that the admin API and the signal handler act on.
pub struct Running {
    pub server: ServerHandle<RadiusHandler>,
    pub authenticator: Arc<Authenticator>,
    pub entra: Arc<EntraDirectory>,
    pub sessions: Arc<Sessions>,
    /// Active Directory (`[ad]`), built once at startup.
    pub ad: Option<Arc<AdDirectory>>,
    pub store: Store,
    /// The authentication history's writer (its counters); `None` when off.
    pub history: Option<HistoryWriter>,
    /// What loading the replica at startup found.
    pub replica_load: LoadReport,
    /// The file `serve` was started with; `None` on built-in defaults.
    pub config_path: Option<PathBuf>,
}

impl Running {
    /// Local users and MACs in force.
    pub fn local_counts(&self) -> (usize, usize) {
        let l = self.authenticator.local();
        (l.user_count(), l.mac_count())
    }

    /// Replaces the client table, local accounts, policy and directory
    /// order. Listen addresses and the state directory need a restart.
    pub fn reload(&self, cfg: &Config) -> Result<(), AppError> {
        // Built first: a bad [eap] leaves everything as it was.
        let eap = eap_server(cfg, self.authenticator.eap().map(|e| e.pool().clone()))?;
        if cfg.ad.is_some() != self.ad.is_some() {
            warn!("[ad] was added or removed: that takes a restart; AD stays as the server started");
        }
        self.server.reload_clients(&cfg.clients);
        self.sessions.set_coa_clients(coa_clients(&cfg.clients));
        let local = LocalDirectory::new(cfg.local_users.clone(), cfg.local_macs.clone());
        self.authenticator.reload(auth_config(cfg, local, self.ad.clone()));
        self.authenticator.set_eap(eap);
        self.sessions.rebaseline_after_reload();
        info!(
            clients = cfg.clients.len(),
            users = cfg.local_users.len(),
            macs = cfg.local_macs.len(),
            policy_rules = cfg.policy.len(),
            eap = cfg.eap.is_some(),
            "reloaded clients, local accounts, policy and directory order, and [eap]"
        );
        Ok(())
    }

    /// Re-reads the config file the server was started with and applies it;
    /// the error names the file, line and key. SIGHUP and the admin API both
    /// come here.
    pub fn reload_from_file(&self) -> Result<String, AppError> {
        let Some(path) = &self.config_path else {
            return Err(AppError::NoConfigFile);
        };
        let cfg = crate::config::read_config(path)?;
        self.reload(&cfg)?;
        Ok(format!(
            "reloaded {}: {} clients, {} local users, {} local MACs, {} policy rules",
            path.display(),
            cfg.clients.len(),
            cfg.local_users.len(),
            cfg.local_macs.len(),
            cfg.policy.len()
        ))
    }
}

/// What a reload of the authenticator takes from the config, with `local`
/// built from its local accounts. `ad` is the AD directory built at startup
/// (a change of `[ad]` takes a restart).
pub fn auth_config(cfg: &Config, local: LocalDirectory, ad: Option<Arc<AdDirectory>>) -> AuthConfig {
    AuthConfig {
        order: cfg.directory_order.clone(),
        local,
        policy: cfg.policy.clone(),
        ad,
    }
}

/// The AD directory `[ad]` asks for; `None` without `[ad]`.
fn ad_directory(cfg: &Config) -> Result<Option<Arc<AdDirectory>>, AppError> {
    let Some(a) = &cfg.ad else {
        return Ok(None);
    };
    let ad = AdDirectory::new(a).map_err(|e| AppError::Ad(e.to_string()))?;
    Ok(Some(Arc::new(ad)))
}

/// The EAP server `[eap]` asks for, on `pool` (a new one if `None`);
/// `None` without `[eap]`. A reload builds a new one: conversations in
/// progress end in a reject, which the supplicant retries.
fn eap_server(cfg: &Config, pool: Option<Arc<CpuPool>>) -> Result<Option<Arc<EapServer>>, AppError> {
    let Some(e) = &cfg.eap else {
        return Ok(None);
    };
    let pool = pool.unwrap_or_else(|| Arc::new(CpuPool::new("eap-tls", crate::auth::pool::default_argon2_threads())));
    let server = EapServer::new(e, pool).map_err(|source| AppError::Eap {
        path: cfg
            .path
            .as_ref()
            .map_or_else(|| "<config>".to_string(), |p| p.display().to_string()),
        source,
    })?;
    Ok(Some(Arc::new(server)))
}

/// Checks `[eap]` as `serve` would (`check-config`).
pub fn check_eap(cfg: &Config) -> Result<(), AppError> {
    if let Some(e) = &cfg.eap {
        crate::auth::eap::tls_configs(e).map_err(|source| AppError::Eap {
            path: cfg
                .path
                .as_ref()
                .map_or_else(|| "<config>".to_string(), |p| p.display().to_string()),
            source,
        })?;
    }
    Ok(())
}

/// Work to run once the server is ready (the demo's setup), on a blocking
/// thread: it is given the integration and the first authentication address.
pub type OnReady = Box<dyn FnOnce(Arc<Integration>, SocketAddr) + Send>;

/// Runs the server until SIGTERM or SIGINT. `lock` is the state directory's
/// lock, held until this returns. Must be called inside the runtime that
/// will run everything.
pub async fn serve(
    mut cfg: Config,
    dictionary: Arc<Dictionary>,
    lock: StateLock,
    on_ready: Option<OnReady>,
) -> Result<(), AppError> {
    let store = Store::open(&cfg.server.state_dir)?;
    // The last synced state is loaded before the first packet is read, so
    // a restart while Graph is unreachable answers as before the restart.
    let replica = EntraReplica::new();
    let replica_load = persist::load_replica(&store, &replica)?;
    info!(
        objects = replica_load.loaded,
        skipped = replica_load.skipped,
        ms = replica_load.elapsed.as_millis() as u64,
        "loaded the Entra ID replica from the store"
    );
    let entra = Arc::new(EntraDirectory::new(replica));
    // Disabled until the integration state says otherwise: an administrator
    // who disabled it wants Entra accounts out of decisions from the first
    // packet on, not after the first sync round.
    let enabled = store.setting(crate::store::integration::keys::ENABLED)?;
    entra.set_enabled(enabled.as_deref() == Some("true"));
    info!(enabled = entra.is_enabled(), "Entra ID integration");
    let (acct, writer_thread) = AcctWriter::spawn(&store, ACCT_QUEUE.max(cfg.server.max_in_flight))?;
    let (history, history_thread) = if cfg.history.enabled {
        let retention = Retention {
            keep: cfg.history.keep,
            max_rows: cfg.history.max_rows,
        };
        let (w, t) = HistoryWriter::spawn(&store, retention)?;
        (Some(w), Some(t))
    } else {
        (None, None)
    };
    let ad = ad_directory(&cfg)?;
    // The authenticator builds its own tables from the local accounts, and
    // a reload reads the file again: the config's copy is moved into them
    // rather than copied (it would only take memory, about 100 bytes an
    // account, for as long as the server runs).
    let (users, macs) = (cfg.local_users.len(), cfg.local_macs.len());
    let local = LocalDirectory::new(
        std::mem::take(&mut cfg.local_users),
        std::mem::take(&mut cfg.local_macs),
    );
    let authenticator = Arc::new(Authenticator::new(
        Some(entra.clone()),
        auth_config(&cfg, local, ad.clone()),
    ));
    // Before the server is built: the bound of the EAP kind follows its pool.
    authenticator.set_eap(eap_server(&cfg, None)?);
    let shutdown = CancellationToken::new();
    let disconnector = Disconnector::start(shutdown.clone())
        .await
        .map_err(AppError::DisconnectSocket)?;
    let sessions = Sessions::new(
        store.clone(),
        disconnector,
        coa_clients(&cfg.clients),
        Arc::new(EntraAccounts {
            entra: entra.clone(),
            authenticator: authenticator.clone(),
            store: store.clone(),
        }),
        crate::sessions::table::DEFAULT_CAP,
    )?;
    info!(sessions = sessions.table.len(), "loaded the open accounting sessions");
    let sockets = server::bind_sockets(&cfg.server)?;
    let server = Server::new(
        sockets,
        ServerParts {
            handler: RadiusHandler {
                authenticator: authenticator.clone(),
                acct,
                history: history.clone(),
                sessions: sessions.clone(),
            },
            clients: std::mem::take(&mut cfg.clients),
            dictionary,
            response_cache_ttl: cfg.server.response_cache_ttl,
            max_in_flight: cfg.server.max_in_flight,
            readers: cfg.server.threads,
        },
    );
    let auth_addrs = server.local_addrs(Port::Auth);
    let acct_addrs = server.local_addrs(Port::Acct);
    let clients = server.handle().client_count();
    crate::sys::release_freed_memory();

    let running = Arc::new(Running {
        server: server.handle(),
        authenticator: authenticator.clone(),
        entra: entra.clone(),
        sessions: sessions.clone(),
        ad: ad.clone(),
        store: store.clone(),
        history,
        replica_load,
        config_path: cfg.path.clone(),
    });
    let integration = Integration::new(
        cfg.entra.clone(),
        cfg.server.state_dir.clone(),
        IntegrationParts {
            store: store.clone(),
            entra,
            passwords: authenticator.entra_passwords().clone(),
        },
    );
    warn_if_credential_unusable(&cfg, &store);

    let tasks = TaskTracker::new();
    tasks.spawn(Arc::clone(&sessions).run_auto(integration.subscribe_commits(), shutdown.clone()));
    let token = admin::ensure_token(&cfg.server.state_dir)?;
    let backend = Arc::new(admin_backend::Backend::new(running.clone(), integration.clone()));
    let api = admin::AdminServer::bind(cfg.admin_listen, token, backend).await?;
    let admin_addr = api.local_addr();
    let path = cfg.server.state_dir.join(ADMIN_ADDR_FILE);
    crate::store::write_private_file(&path, format!("{admin_addr}\n").as_bytes())
        .map_err(|source| AppError::AdminAddress { path, source })?;
    let admin_done = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = api.run(admin_done).await {
            warn!("admin API: {e}");
        }
    });
    info!(
        clients,
        users,
        macs,
        state_dir = %cfg.server.state_dir.display(),
        "entra-radius {} starting",
        env!("CARGO_PKG_VERSION")
    );
    // Installed before the ready line: a SIGTERM sent as soon as a script
    // sees it must stop the server, not kill it.
    tasks.spawn(signals(shutdown.clone(), running.clone()));
    // Scripts and tests wait for this line; it carries the real ports when
    // the config asked for port 0.
    println!(
        "entra-radius ready: auth {} acct {} admin {}",
        list(&auth_addrs),
        list(&acct_addrs),
        admin_addr
    );
    // systemd's Type=notify: ready once the sockets are bound and the
    // replica loaded, which is now.
    if let Err(e) = crate::sys::notify("READY=1") {
        warn!("cannot tell systemd the server is ready: {e}");
    }
    tasks.spawn(Arc::clone(&integration).run(shutdown.clone()));
    // The first bind to AD (logged with the naming context), so that a
    // wrong `[ad]` shows at startup rather than at the first request.
    if let Some(ad) = ad {
        let done = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = ad.warm_up() => {}
                () = done.cancelled() => {}
            }
        });
    }
    if let (Some(f), Some(a)) = (on_ready, auth_addrs.first().copied()) {
        let integration = Arc::clone(&integration);
        tasks.spawn_blocking(move || f(integration, a));
    }

    server.run(shutdown.clone(), DRAIN).await;
    let _ = crate::sys::notify("STOPPING=1");
    // The server stops only once `shutdown` is cancelled, which also ends
    // the sync loop (a round in progress is abandoned: its pages are
    // checkpointed, and the next start resumes it), the admin API and the
    // signal handler.
    tasks.close();
    tasks.wait().await;
    drop(running);
    drop(integration);
    // Every handle to the accounting writer is gone with the server: the
    // thread commits what is queued and ends. Bounded, so that a handle
    // kept somewhere by mistake cannot hang the exit; records it had not
    // acknowledged are retransmitted by their NAS.
    // The history thread likewise ends once the server's handle and
    // `running`'s are gone: it writes what is queued and stops.
    if let Some(t) = history_thread {
        let join = tokio::task::spawn_blocking(move || t.join());
        if !matches!(tokio::time::timeout(DRAIN, join).await, Ok(Ok(Ok(())))) {
            error!("the authentication history writer did not stop cleanly within {DRAIN:?}");
        }
    }
    let join = tokio::task::spawn_blocking(move || writer_thread.join());
    match tokio::time::timeout(DRAIN, join).await {
        Ok(Ok(Ok(()))) => {}
        Ok(_) => error!("the accounting writer thread panicked"),
        Err(_) => error!("the accounting writer did not stop within {DRAIN:?}; exiting without it"),
    }
    drop(lock);
    Ok(())
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// A provisioned integration whose credential file is missing or refused
/// fails every sync round, with the reason in `entra status` and `sync
/// status`; the log says it once, at startup, where whoever starts the
/// server looks. RADIUS service from the replica and local accounts goes on.
fn warn_if_credential_unusable(cfg: &Config, store: &Store) {
    match Settings::read(store) {
        Ok(s) if s.provisioned() => {}
        _ => return,
    }
    if let Err(e) = crate::integration::read_credential(&cfg.server.state_dir) {
        warn!("the Entra ID sync cannot run: {e}");
    }
}

/// Installs the handlers for SIGTERM, SIGINT (stop) and SIGHUP (reload) at
/// once, so that none is missed once the ready line is out; the returned
/// future then waits for signals, or for `shutdown` from elsewhere.
fn signals(
    shutdown: CancellationToken,
    running: Arc<Running>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let installed = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = installed else {
            error!("cannot install signal handlers; stop the server with SIGKILL");
            return;
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => {
                    if let Err(e) = running.reload_from_file() {
                        error!("SIGHUP: keeping the running configuration: {e}");
                    }
                }
            }
        }
        shutdown.cancel();
    }
}
