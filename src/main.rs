//! The `entra-radius` command line: `serve`, `check-config`, `test-auth`, the admin commands, `certs`.
//! Exit codes: 0 success, 1 operation failed, 2 usage or config error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args, Parser, Subcommand};
use tracing::error;

use entra_radius::admin;
use entra_radius::admin::commands::{self, freshness_line};
use entra_radius::app;
use entra_radius::certs;
use entra_radius::config::{self, Config};
#[cfg(feature = "demo")]
use entra_radius::demo;
use entra_radius::directory::MacAddr;
#[cfg(feature = "demo")]
use entra_radius::integration::Integration;
use entra_radius::proto::crypto::MessageAuth;
use entra_radius::proto::dictionary::{Dictionary, describe};
use entra_radius::proto::{ClientSecret, Code};
use entra_radius::store::StateLock;
use entra_radius::test_auth::{self, Credentials};

#[derive(Parser)]
#[command(
    name = "entra-radius",
    version,
    about = "A RADIUS server for network access control with Microsoft Entra ID"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (without --config: loopback, client 127.0.0.1 with secret testing123, state in ./state).
    Serve {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Add demonstration accounts and print commands to try.
        #[arg(long)]
        demo: bool,
    },
    /// Parse and validate a config file; on error name the file, line and key.
    CheckConfig {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Send one Access-Request (PAP, CHAP or MAB) and print the reply, like radtest.
    TestAuth(Box<TestAuthArgs>),
    /// Accounts as the running server sees them.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// The Entra ID integration: status, switch, application, consent.
    Entra {
        #[command(subcommand)]
        command: EntraCommand,
    },
    /// The tenant's domains and which of them may sign in.
    Domains {
        #[command(subcommand)]
        command: DomainsCommand,
    },
    /// Sync with Entra ID now, or see how it went.
    Sync {
        #[command(subcommand)]
        command: SyncCommand,
    },
    /// A private CA with server and client certificates for EAP.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// The authentication history: who was accepted or rejected, when, where, why.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Active sessions from accounting, and Disconnect-Requests (RFC 5176).
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// Active sessions: NAS, port, user or device, MAC, start, VLAN.
    List {
        /// Only the sessions of this identity (any form `accounts lookup` takes, a MAC included).
        #[arg(long, value_name = "IDENTITY")]
        user: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Send a Disconnect-Request for each matching session; exit 0 only when every one was ACKed.
    #[command(group = clap::ArgGroup::new("which").required(true).args(["session_id", "user", "mac"]))]
    Disconnect {
        /// The session's Acct-Session-Id.
        #[arg(value_name = "SESSION_ID")]
        session_id: Option<String>,
        /// Every active session of this identity.
        #[arg(long, value_name = "IDENTITY")]
        user: Option<String>,
        /// Every active session of this station MAC (any notation).
        #[arg(long, value_name = "MAC")]
        mac: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Decisions, newest first, one line each with the reason.
    Log {
        /// Only this identity (user name, UPN, DOMAIN\user; no case).
        #[arg(long, value_name = "IDENTITY")]
        user: Option<String>,
        /// Only requests about this MAC (any notation): MAB, or the station's.
        #[arg(long, value_name = "MAC")]
        mac: Option<String>,
        /// Only from this RADIUS client (its name in the config).
        #[arg(long, value_name = "NAME")]
        client: Option<String>,
        #[arg(long, value_parser = ["accept", "reject"])]
        result: Option<String>,
        /// Only the last DURATION (30s, 15m, 1h, 2d).
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// At most N decisions (default 50, at most 10000).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
        /// Keep printing new decisions as they are made (Ctrl-C to stop).
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make a private CA and the EAP server certificate: ca.pem, ca.key, server.pem, server.key.
    Init {
        #[arg(long, value_name = "DIR", default_value = "certs")]
        dir: PathBuf,
        /// DNS name in the server certificate's SAN and CN (default: this machine's hostname,
        /// or radius.example if it has none).
        #[arg(long, value_name = "NAME")]
        server_name: Option<String>,
    },
    /// Issue a client certificate for EAP-TLS from the CA in DIR: DIR/NAME.pem and DIR/NAME.key.
    #[command(group(ArgGroup::new("identity").required(true).multiple(false)))]
    Issue {
        /// A user: SAN otherName UPN and CN.
        #[arg(long, value_name = "UPN", group = "identity")]
        upn: Option<String>,
        /// An Entra device id: CN and SAN URI urn:uuid:GUID.
        #[arg(long, value_name = "GUID", group = "identity")]
        device_id: Option<String>,
        /// Only a common name (e.g. host/NAME).
        #[arg(long, value_name = "NAME", group = "identity")]
        cn: Option<String>,
        #[arg(long, value_name = "DIR", default_value = "certs")]
        dir: PathBuf,
        /// File name without extension (default: the identity, made a safe file name).
        #[arg(long, value_name = "NAME")]
        out: Option<String>,
    },
}

/// `--config` of the admin commands: the same file as `serve` (the API address and the token's
/// state directory come from it).
#[derive(Args)]
struct AdminArgs {
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum EntraCommand {
    /// Where the integration stands and the next step to take.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Turn the integration on (Entra accounts decide; the sync runs).
    Enable {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Turn the integration off: Entra accounts no longer decide and the sync stops.
    Disable {
        /// Also delete the Entra replica (accounts, devices, groups, checkpoints).
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Register the application in the tenant (device-code sign-in), or record one made by hand.
    Provision {
        /// Tenant id or verified domain (required with --client-id).
        #[arg(long)]
        tenant: Option<String>,
        /// Record an application registered by hand: its application (client) id.
        #[arg(long, requires = "tenant")]
        client_id: Option<String>,
        /// With --client-id: a file holding the client secret.
        #[arg(long, value_name = "FILE", requires = "client_id", conflicts_with = "certificate")]
        client_secret_file: Option<PathBuf>,
        /// With --client-id: a PEM file with the certificate and its PKCS#8 private key.
        #[arg(long, value_name = "FILE", requires = "client_id")]
        certificate: Option<PathBuf>,
        /// The application's display name (automatic registration).
        #[arg(long, conflicts_with = "client_id")]
        name: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Grant admin consent through the browser, then check the token's permissions.
    Consent {
        /// Only check the permissions (consent granted elsewhere, e.g. in the Entra admin center).
        #[arg(long)]
        check: bool,
        /// Loopback port for the redirect (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Seconds to wait for the browser's answer.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum DomainsCommand {
    /// The tenant's domains with their flags and the saved selection.
    List {
        /// Only domains whose name contains TEXT.
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Add domains to the selection.
    Select {
        #[arg(long, conflicts_with = "domains")]
        all: bool,
        #[arg(required_unless_present = "all")]
        domains: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove domains from the selection.
    Unselect {
        #[arg(long, conflicts_with = "domains")]
        all: bool,
        #[arg(required_unless_present = "all")]
        domains: Vec<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Interactive: type to filter, toggle, select all / unselect all, save.
    Pick {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum SyncCommand {
    /// Start a sync round now.
    Now {
        /// Show progress until the round ends; exit 1 if it failed.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Sync health per object type.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Which directory decides for a user name, UPN, DOMAIN\user, MAC (any
    /// notation) or device id, what it knows, and which lower directories it
    /// shadows.
    Lookup {
        /// A user name, UPN, DOMAIN\user, MAC, device id or
        /// IntuneDeviceId://ID.
        #[arg(required_unless_present = "cert", conflicts_with = "cert")]
        identity: Option<String>,
        /// A client certificate (PEM or DER): which account its name maps
        /// to, by which rule, and what the precedence decides.
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the server's JSON answer instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TestAuthArgs {
    /// Server address.
    #[arg(long, default_value = config::DEFAULT_AUTH_LISTEN)]
    server: SocketAddr,
    /// Shared secret (visible in the process list: prefer --secret-file).
    #[arg(long, default_value = "testing123", conflicts_with = "secret_file")]
    secret: String,
    /// File holding the shared secret.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// User-Name for PAP or CHAP; with --eap-tls the EAP identity (default
    /// "anonymous": the server goes by the certificate).
    #[arg(long, required_unless_present_any = ["mab", "eap_tls"], conflicts_with = "mab")]
    user: Option<String>,
    #[arg(long, requires = "user")]
    password: Option<String>,
    /// Use CHAP instead of PAP (with --mab: CHAP with the MAC as password).
    #[arg(long)]
    chap: bool,
    /// MAC Authentication Bypass for this MAC (any notation): User-Name,
    /// password and Calling-Station-Id as a switch sends them.
    #[arg(long, value_name = "MAC")]
    mab: Option<String>,
    /// With --mab: Service-Type = Call-Check and no password (Cisco style).
    #[arg(long, requires = "mab", conflicts_with = "chap")]
    call_check: bool,
    #[arg(long)]
    calling_station_id: Option<String>,
    #[arg(long)]
    nas_identifier: Option<String>,
    /// Leave out Message-Authenticator (to test BlastRADIUS defences).
    #[arg(long)]
    no_message_authenticator: bool,
    /// Seconds to wait for each attempt.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Dictionary directory (its `dictionary` file) instead of the built-in one.
    #[arg(long, value_name = "DIR")]
    dictionary_dir: Option<PathBuf>,
    /// 802.1X: a whole EAP-TLS exchange with this client certificate, as a
    /// supplicant would hold it (needs --cert and --key).
    #[arg(long, requires_all = ["cert", "key"], conflicts_with_all = ["mab", "chap", "password"])]
    eap_tls: bool,
    /// With --eap-tls: the client certificate (PEM, chain allowed).
    #[arg(long, value_name = "FILE", requires = "eap_tls")]
    cert: Option<PathBuf>,
    /// With --eap-tls: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "eap_tls")]
    key: Option<PathBuf>,
    /// With --eap-tls: the CA of the server's certificate. Without it the
    /// server's certificate is not verified (a warning says so).
    #[arg(long, value_name = "FILE", requires = "eap_tls")]
    ca: Option<PathBuf>,
    /// With --ca: also check that the server certificate carries this name
    /// (what supplicant profiles pin).
    #[arg(long, value_name = "NAME", requires = "ca")]
    server_name: Option<String>,
    /// With --eap-tls: TLS data per EAP packet.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(100..=4000))]
    fragment_size: u16,
    /// With --eap-tls: only this TLS version (default: 1.3 or 1.2, as the server picks).
    #[arg(long, value_parser = ["1.2", "1.3"], requires = "eap_tls")]
    tls_version: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, demo } => serve(config.as_deref(), demo),
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::Accounts {
            command:
                AccountsCommand::Lookup {
                    identity,
                    cert,
                    config,
                    json,
                },
        } => match (identity, cert) {
            (Some(identity), _) => accounts_lookup(config.as_deref(), &identity, None, json),
            (None, Some(cert)) => match cert_lookup_identity(&cert) {
                Ok((identity, header)) => accounts_lookup(config.as_deref(), &identity, Some(header), json),
                Err(e) => {
                    eprintln!("entra-radius: {e}");
                    ExitCode::from(1)
                }
            },
            (None, None) => ExitCode::from(2),
        },
        Command::Entra { command } => entra_cmd(command),
        Command::Domains { command } => domains_cmd(command),
        Command::Sync { command } => sync_cmd(command),
        Command::Certs { command } => certs_cmd(command),
        Command::Auth { command } => auth_cmd(command),
        Command::Sessions { command } => sessions_cmd(command),
        Command::TestAuth(args) => match test_auth_cmd(*args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("entra-radius: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn certs_cmd(command: CertsCommand) -> ExitCode {
    let result = match command {
        CertsCommand::Init { dir, server_name } => {
            let name = server_name.unwrap_or_else(certs::default_server_name);
            certs::init(&dir, &name).inspect(|_| println!("server name: {name}"))
        }
        CertsCommand::Issue {
            upn,
            device_id,
            cn,
            dir,
            out,
        } => {
            let identity = match (upn, device_id, cn) {
                (Some(u), _, _) => certs::ClientIdentity::Upn(u),
                (_, Some(d), _) => certs::ClientIdentity::DeviceId(d),
                (_, _, Some(c)) => certs::ClientIdentity::Cn(c),
                (None, None, None) => unreachable!("clap requires one identity"),
            };
            certs::issue(&dir, identity, out.as_deref()).map(|(cert, key)| vec![cert, key])
        }
    };
    match result {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("entra-radius: {e}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    match path {
        Some(p) => config::read_config(p).map_err(|e| {
            eprintln!("entra-radius: {e}");
            ExitCode::from(2)
        }),
        None => Ok(config::defaults()),
    }
}

fn load_dictionary(dir: Option<&Path>) -> anyhow::Result<Dictionary> {
    Ok(match dir {
        Some(d) => Dictionary::load(&d.join("dictionary"))?,
        None => Dictionary::builtin()?,
    })
}

fn check_config(path: Option<&Path>) -> ExitCode {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = load_dictionary(cfg.server.dictionary_dir.as_deref()) {
        eprintln!("entra-radius: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = app::check_eap(&cfg) {
        eprintln!("entra-radius: {e}");
        return ExitCode::from(2);
    }
    let name = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "built-in defaults".into());
    println!(
        "{name}: OK: {} clients, {} local users, {} local MACs; auth on {}, accounting on {}",
        cfg.clients.len(),
        cfg.local_users.len(),
        cfg.local_macs.len(),
        list(&cfg.server.auth_listen),
        list(&cfg.server.acct_listen),
    );
    if let Some(ad) = &cfg.ad {
        println!(
            "{name}: [ad]: {} (not contacted; base {})",
            ad.urls.join(", "),
            ad.base_dn
        );
    }
    ExitCode::SUCCESS
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
}

/// `[log]`: text or JSON lines on stderr (the journal under systemd), at
/// the configured level unless `RUST_LOG` says otherwise. Read once: a
/// change to `[log]` takes a restart.
fn init_logging(log: &config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        config::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        config::LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

fn serve(path: Option<&Path>, demo: bool) -> ExitCode {
    if demo && !cfg!(feature = "demo") {
        eprintln!("entra-radius: this build has no demo (built without the `demo` feature)");
        return ExitCode::from(2);
    }
    #[cfg_attr(not(feature = "demo"), allow(unused_mut))]
    let mut cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&cfg.log);
    #[cfg(feature = "demo")]
    if demo && let Err(e) = demo::add_accounts(&mut cfg) {
        error!("{e}");
        return ExitCode::from(1);
    }
    // Before anything writes to the state directory (`--demo` resets it):
    // a second server on it must change nothing.
    let lock = match StateLock::acquire(&cfg.server.state_dir) {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            eprintln!("entra-radius: {e}");
            return ExitCode::from(1);
        }
    };
    let dictionary = match load_dictionary(cfg.server.dictionary_dir.as_deref()) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("entra-radius: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cfg.server.threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("entra-radius: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        #[cfg(feature = "demo")]
        let emulator = if demo {
            match demo::start(&mut cfg).await {
                Ok(e) => Some(e),
                Err(e) => {
                    error!("{e}");
                    eprintln!("entra-radius: {e}");
                    return ExitCode::from(1);
                }
            }
        } else {
            None
        };
        #[cfg(feature = "demo")]
        let eap_dir = if emulator.is_some() {
            match demo::add_eap(&mut cfg, &graph_emulator::Tenant::demo()) {
                Ok(d) => d,
                Err(e) => {
                    error!("{e}");
                    eprintln!("entra-radius: {e}");
                    return ExitCode::from(1);
                }
            }
        } else {
            None
        };
        #[cfg(feature = "demo")]
        let on_ready: Option<app::OnReady> = emulator.as_ref().map(|_| {
            Box::new(move |integration: Arc<Integration>, auth: SocketAddr| {
                let tenant = graph_emulator::Tenant::demo();
                match demo::setup(&integration, &tenant) {
                    Ok(()) => {
                        println!("{}", demo::commands_text(auth, &tenant));
                        if let Some(dir) = &eap_dir {
                            println!("{}", demo::eap_commands_text(auth, dir));
                        }
                        println!("entra-radius demo ready");
                    }
                    Err(e) => {
                        error!("{e}");
                        println!("entra-radius demo failed: {e} (local accounts still work)");
                    }
                }
            }) as app::OnReady
        });
        #[cfg(not(feature = "demo"))]
        let on_ready: Option<app::OnReady> = None;
        let result = app::serve(cfg, dictionary, lock, on_ready).await;
        #[cfg(feature = "demo")]
        if let Some(e) = emulator {
            e.shutdown().await;
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // Each error message already carries its cause.
                error!("{e}");
                eprintln!("entra-radius: {e}");
                ExitCode::from(1)
            }
        }
    })
}

/// Where the admin API of the server using this config listens: the
/// configured address, or the one the server recorded when it asked for
/// port 0.
fn admin_address(cfg: &Config) -> SocketAddr {
    if cfg.admin_listen.port() == 0
        && let Ok(text) = std::fs::read_to_string(cfg.server.state_dir.join(app::ADMIN_ADDR_FILE))
        && let Ok(addr) = text.trim().parse()
    {
        return addr;
    }
    cfg.admin_listen
}

/// What `accounts lookup --cert` looks up: the certificate's name by the
/// first rule that applies (as EAP-TLS does), and a header saying which
/// names it carries.
fn cert_lookup_identity(path: &Path) -> anyhow::Result<(String, String)> {
    use entra_radius::eap::cert_name::{CertRule, all_names};
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let der = match CertificateDer::pem_slice_iter(&bytes).next() {
        Some(Ok(c)) => c.to_vec(),
        Some(Err(e)) => anyhow::bail!("{}: {e}", path.display()),
        None => bytes,
    };
    let names = all_names(&der).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let Some(first) = names.first() else {
        anyhow::bail!(
            "{}: {}",
            path.display(),
            entra_radius::eap::cert_name::CertNameError::NoIdentity
        );
    };
    let mut header = format!("certificate {}:\n", path.display());
    for (i, n) in names.iter().enumerate() {
        let mark = if i == 0 {
            "used"
        } else {
            "not used (an earlier rule applies)"
        };
        header.push_str(&format!("  {:<24} {:<40} {mark}\n", n.rule.as_str(), n.value));
    }
    let identity = match first.rule {
        CertRule::IntuneDeviceId => format!("IntuneDeviceId://{}", first.value),
        _ => first.value.clone(),
    };
    header.push_str(&format!("looked up as {identity}\n\n"));
    Ok((identity, header))
}

fn accounts_lookup(path: Option<&Path>, identity: &str, header: Option<String>, json: bool) -> ExitCode {
    let cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let run = async {
        let client = admin::AdminClient::from_state_dir(admin_address(&cfg), &cfg.server.state_dir)?;
        client.lookup(identity).await
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run).map_err(anyhow::Error::from));
    match result {
        Ok(v) if json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(v) => {
            if let Some(h) = &header {
                print!("{h}");
            }
            print!("{}", v["text"].as_str().unwrap_or("(the server sent no text)\n"));
            println!("{}", freshness_line(&v["entra"]));
            if let Some(recent) = v["recent"].as_array() {
                if recent.is_empty() {
                    println!("Recent decisions: none in the history");
                } else {
                    println!("Recent decisions (newest first):");
                    for row in recent {
                        println!("  {}", commands::history_line(row));
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("entra-radius: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs one admin command: loads the config for the API address and the
/// token, then runs `f` with a client on a small runtime.
fn admin_command<F, Fut>(config: Option<&Path>, f: F) -> ExitCode
where
    F: FnOnce(admin::AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<u8, admin::AdminError>>,
{
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let client = match admin::AdminClient::from_state_dir(admin_address(&cfg), &cfg.server.state_dir) {
        Ok(c) => c,
        Err(e) => return ExitCode::from(commands::report(&e)),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("entra-radius: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(f(client)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(commands::report(&e)),
    }
}

fn entra_cmd(command: EntraCommand) -> ExitCode {
    match command {
        EntraCommand::Status { json, admin } => admin_command(admin.config.as_deref(), |c| async move {
            commands::entra_status(&c, json).await
        }),
        EntraCommand::Enable { admin } => {
            admin_command(
                admin.config.as_deref(),
                |c| async move { commands::entra_enable(&c).await },
            )
        }
        EntraCommand::Disable { purge, admin } => admin_command(admin.config.as_deref(), |c| async move {
            commands::entra_disable(&c, purge).await
        }),
        EntraCommand::Provision {
            tenant,
            client_id,
            client_secret_file,
            certificate,
            name,
            admin,
        } => {
            let args = match client_id {
                Some(client_id) => {
                    if client_secret_file.is_none() && certificate.is_none() {
                        eprintln!("entra-radius: --client-id needs --client-secret-file FILE or --certificate FILE");
                        return ExitCode::from(2);
                    }
                    commands::ProvisionArgs::Manual {
                        tenant: tenant.unwrap_or_default(),
                        client_id,
                        secret_file: client_secret_file,
                        certificate,
                    }
                }
                None => commands::ProvisionArgs::Automatic {
                    tenant,
                    display_name: name,
                },
            };
            admin_command(admin.config.as_deref(), |c| async move {
                commands::entra_provision(&c, args).await
            })
        }
        EntraCommand::Consent {
            check,
            port,
            timeout,
            admin,
        } => admin_command(admin.config.as_deref(), |c| async move {
            commands::entra_consent(&c, check, port, Duration::from_secs(timeout)).await
        }),
    }
}

fn domains_cmd(command: DomainsCommand) -> ExitCode {
    use entra_radius::admin::api::SelectionAction;
    match command {
        DomainsCommand::List { search, json, admin } => admin_command(admin.config.as_deref(), |c| async move {
            commands::domains_list(&c, search.as_deref(), json).await
        }),
        DomainsCommand::Select { all, domains, admin } => admin_command(admin.config.as_deref(), |c| async move {
            commands::domains_change(&c, SelectionAction::Select, all, &domains).await
        }),
        DomainsCommand::Unselect { all, domains, admin } => admin_command(admin.config.as_deref(), |c| async move {
            commands::domains_change(&c, SelectionAction::Unselect, all, &domains).await
        }),
        DomainsCommand::Pick { admin } => {
            admin_command(
                admin.config.as_deref(),
                |c| async move { commands::domains_pick(&c).await },
            )
        }
    }
}

fn sessions_cmd(command: SessionsCommand) -> ExitCode {
    match command {
        SessionsCommand::List { user, json, admin } => admin_command(admin.config.as_deref(), |c| async move {
            commands::sessions_list(&c, user.as_deref(), json).await
        }),
        SessionsCommand::Disconnect {
            session_id,
            user,
            mac,
            admin,
        } => {
            let selection = admin::DisconnectSelection { session_id, user, mac };
            admin_command(admin.config.as_deref(), |c| async move {
                commands::sessions_disconnect(&c, &selection).await
            })
        }
    }
}

fn auth_cmd(command: AuthCommand) -> ExitCode {
    let AuthCommand::Log {
        user,
        mac,
        client,
        result,
        since,
        limit,
        json,
        follow,
        admin,
    } = command;
    let since_ms = match since.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(entra_radius::clock::now_unix_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        Some(Err(e)) => {
            eprintln!("entra-radius: --since: {e} (for example 30s, 15m, 1h, 2d)");
            return ExitCode::from(2);
        }
    };
    let query = admin::AuthLogQuery {
        identity: user,
        mac,
        client,
        result,
        since_ms,
        after_id: None,
        limit,
    };
    admin_command(admin.config.as_deref(), |c| async move {
        commands::auth_log(&c, query, json, follow).await
    })
}

fn sync_cmd(command: SyncCommand) -> ExitCode {
    match command {
        SyncCommand::Now { wait, admin } => admin_command(admin.config.as_deref(), |c| async move {
            commands::sync_now(&c, wait).await
        }),
        SyncCommand::Status { json, admin } => admin_command(admin.config.as_deref(), |c| async move {
            commands::sync_status(&c, json).await
        }),
    }
}
fn test_auth_cmd(a: TestAuthArgs) -> anyhow::Result<ExitCode> {
    let secret = match &a.secret_file {
        Some(f) => {
            let mut s = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            while matches!(s.last(), Some(b'\n' | b'\r')) {
                s.pop();
            }
            s
        }
        None => a.secret.clone().into_bytes(),
    };
    let secret = ClientSecret::new(&secret);
    let dictionary = load_dictionary(a.dictionary_dir.as_deref())?;
    let mut req = match &a.mab {
        Some(m) => {
            let mac = MacAddr::parse(m).with_context(|| format!("--mab {m:?}"))?;
            let via = if a.call_check {
                Credentials::CallCheck
            } else if a.chap {
                Credentials::Chap
            } else {
                Credentials::Pap
            };
            test_auth::Request::mab(a.server, mac, via)
        }
        None => test_auth::Request {
            password: a.password.clone(),
            ..test_auth::Request::new(
                a.server,
                a.user.clone().unwrap_or_default(),
                if a.chap { Credentials::Chap } else { Credentials::Pap },
            )
        },
    };
    if a.calling_station_id.is_some() {
        req.calling_station_id = a.calling_station_id.clone();
    }
    req.nas_identifier = a.nas_identifier.clone();
    req.message_authenticator = !a.no_message_authenticator;
    req.timeout = Duration::try_from_secs_f64(a.timeout).context("--timeout")?;
    req.attempts = a.attempts;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if a.eap_tls {
        return test_auth_eap_tls(&a, &req, &secret, &dictionary, &runtime);
    }
    let method = match req.credentials {
        Credentials::Pap => "PAP",
        Credentials::Chap => "CHAP",
        Credentials::CallCheck => "Call-Check",
        Credentials::Eap => "EAP",
    };
    println!(
        "Sending Access-Request to {} ({method}, User-Name {:?})",
        req.server, req.user
    );
    let reply = runtime.block_on(test_auth::send(&req, &secret))?;
    print_reply(&dictionary, &reply);
    Ok(if reply.packet().code() == Code::ACCESS_ACCEPT {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The reply as `test-auth` shows it, with its warnings.
fn print_reply(dictionary: &Dictionary, reply: &test_auth::Reply) {
    let p = reply.packet();
    println!(
        "Received {} Id {} from {} in {:.1} ms",
        p.code(),
        p.identifier(),
        reply.from,
        reply.elapsed.as_secs_f64() * 1000.0
    );
    for line in describe(dictionary, &p) {
        println!("\t{line}");
    }
    if reply.message_auth == MessageAuth::Absent {
        println!(
            "warning: the reply has no Message-Authenticator; the server is exposed to BlastRADIUS (CVE-2024-3596)"
        );
    }
    if reply.ignored_invalid > 0 {
        println!(
            "warning: ignored {} replies that did not authenticate (wrong secret?)",
            reply.ignored_invalid
        );
    }
}

/// `test-auth --eap-tls`: success only for an Access-Accept with EAP-Success
/// whose MS-MPPE keys match this side's MSK.
fn test_auth_eap_tls(
    a: &TestAuthArgs,
    base: &test_auth::Request,
    secret: &ClientSecret,
    dictionary: &Dictionary,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    use entra_radius::eap::EapCode;
    use entra_radius::eap::tls::Version;
    let opts = test_auth::eap_tls::Options {
        identity: a.user.clone().unwrap_or_else(|| "anonymous".into()),
        cert: a.cert.clone().context("--eap-tls needs --cert")?,
        key: a.key.clone().context("--eap-tls needs --key")?,
        ca: a.ca.clone(),
        server_name: a.server_name.clone(),
        fragment_size: usize::from(a.fragment_size),
        tls_version: match a.tls_version.as_deref() {
            Some("1.2") => Some(Version::Tls12),
            Some("1.3") => Some(Version::Tls13),
            _ => None,
        },
    };
    if opts.ca.is_none() {
        println!("warning: no --ca: the server's certificate is not verified");
    }
    println!(
        "Sending EAP-TLS to {} (identity {:?}, certificate {})",
        base.server,
        opts.identity,
        opts.cert.display()
    );
    let o = runtime.block_on(test_auth::eap_tls::run(base, secret, &opts))?;
    let version = o.version.map_or("none", Version::as_str);
    println!("EAP-TLS: {} round trips, TLS version {version}", o.rounds);
    if let Some(e) = &o.tls_error {
        println!("TLS error on this side: {e}");
    }
    print_reply(dictionary, &o.reply);
    let eap = match o.eap_code {
        Some(EapCode::SUCCESS) => "EAP-Success",
        Some(EapCode::FAILURE) => "EAP-Failure",
        _ => "no EAP-Success or EAP-Failure",
    };
    println!("EAP result: {eap}");
    let accepted = o.reply.packet().code() == Code::ACCESS_ACCEPT && o.eap_code == Some(EapCode::SUCCESS);
    match o.keys_match {
        Some(true) => println!("MS-MPPE-Recv-Key and MS-MPPE-Send-Key match the TLS session's MSK"),
        Some(false) => println!("error: the MS-MPPE keys do not match the TLS session's MSK"),
        None if accepted => println!("error: no TLS session keys to check the MS-MPPE keys against"),
        None => {}
    }
    Ok(if accepted && o.keys_match == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
