//! The `entra-radius` command line: `serve`, `check-config`, `test-auth`.
//! Exit codes: 0 success, 1 operation failed, 2 usage or config error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use entra_radius::admin;
use entra_radius::config::{self, Config};
use entra_radius::directory::{LocalMac, LocalUser, MacAddr, UserCredential};
use entra_radius::integration;
use entra_radius::proto::auth::{MessageAuth, Password};
use entra_radius::proto::dictionary::{Dictionary, describe};
use entra_radius::proto::{ClientSecret, Code};
use entra_radius::server::admin_backend::{Backend, freshness_line};
use entra_radius::server::{Port, Server};
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
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Which directory decides for a user name, UPN, DOMAIN\user, MAC (any
    /// notation) or device id, what it knows, and which lower directories it
    /// shadows.
    Lookup {
        identity: String,
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
    /// User-Name for PAP or CHAP.
    #[arg(long, required_unless_present = "mab", conflicts_with = "mab")]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, demo } => serve(config.as_deref(), demo),
        Command::CheckConfig { config } => check_config(config.as_deref()),
        Command::Accounts {
            command: AccountsCommand::Lookup { identity, config, json },
        } => accounts_lookup(config.as_deref(), &identity, json),
        Command::TestAuth(args) => match test_auth_cmd(*args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("entra-radius: {e:#}");
                ExitCode::from(1)
            }
        },
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
    ExitCode::SUCCESS
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
}

/// Accounts that `serve --demo` adds: a PAP/CHAP user, a PAP-only user kept
/// as an argon2 hash, and two MACs.
fn add_demo_accounts(cfg: &mut Config) -> anyhow::Result<()> {
    use argon2::password_hash::PasswordHasher;
    let hash = argon2::Argon2::default()
        .hash_password(b"correct horse")
        .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?
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

fn print_demo(auth: SocketAddr) {
    println!(
        "\nDemo accounts (local directory; the Entra ID part of the demo arrives with the admin CLI):\n\
         \x20 users: alice / wonderland (PAP, CHAP), bob / 'correct horse' (PAP, argon2 hash)\n\
         \x20 MACs:  02-00-00-00-00-01, 02-00-00-00-00-02\n\
         Try, in another terminal:\n\
         \x20 cargo run --release -- test-auth --server {auth} --user alice --password wonderland          # Access-Accept\n\
         \x20 cargo run --release -- test-auth --server {auth} --user alice --password wonderland --chap   # Access-Accept (CHAP)\n\
         \x20 cargo run --release -- test-auth --server {auth} --user alice --password wrong               # Access-Reject\n\
         \x20 cargo run --release -- test-auth --server {auth} --mab 02:00:00:00:00:01                    # MAB accept\n\
         \x20 cargo run --release -- test-auth --server {auth} --mab 0200.0000.0009                       # MAB reject\n\
         \x20 echo 'User-Name = \"bob\", User-Password = \"correct horse\", Message-Authenticator = 0x00' | radclient -x {auth} auth testing123\n"
    );
}

fn serve(path: Option<&Path>, demo: bool) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut cfg = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if demo && let Err(e) = add_demo_accounts(&mut cfg) {
        error!("{e:#}");
        return ExitCode::from(1);
    }
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
        let server = match Server::bind(&cfg, dictionary) {
            Ok(s) => s,
            Err(e) => {
                error!("{e}");
                eprintln!("entra-radius: {e}");
                return ExitCode::from(1);
            }
        };
        let auth = server.local_addrs(Port::Auth);
        let acct = server.local_addrs(Port::Acct);
        let shutdown = CancellationToken::new();
        let sync_status = integration::StatusHandle::default();
        let admin = match start_admin(&cfg, &server, &sync_status, shutdown.clone()).await {
            Ok(a) => a,
            Err(e) => {
                // Each error message already carries its cause.
                error!("{e}");
                eprintln!("entra-radius: {e}");
                return ExitCode::from(1);
            }
        };
        info!(
            clients = cfg.clients.len(),
            users = cfg.local_users.len(),
            macs = cfg.local_macs.len(),
            state_dir = %cfg.server.state_dir.display(),
            "entra-radius {} starting",
            env!("CARGO_PKG_VERSION")
        );
        // Scripts and tests wait for this line; it carries the real ports
        // when the config asked for port 0.
        println!(
            "entra-radius ready: auth {} acct {} admin {}",
            list(&auth),
            list(&acct),
            admin.0
        );
        if demo && let Some(a) = auth.first() {
            print_demo(*a);
        }
        tokio::spawn(signals(shutdown.clone(), server.handle()));
        let sync = tokio::spawn(integration::run(
            cfg.entra.clone(),
            cfg.server.state_dir.clone(),
            server.handle(),
            sync_status,
            shutdown.clone(),
        ));
        server.run(shutdown, Duration::from_secs(10)).await;
        // A round in progress is abandoned: its pages are checkpointed, and
        // the next start resumes it.
        sync.abort();
        match admin.1.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("admin API: {e}"),
            Err(e) => warn!("admin API task: {e}"),
        }
        ExitCode::SUCCESS
    })
}

/// File in the state directory holding the admin API's bound address, so
/// that admin commands find a server whose config asked for port 0.
const ADMIN_ADDR_FILE: &str = "admin.addr";

/// Starts the admin API on its loopback address with the token from the
/// state directory (created on first start, mode 0600).
async fn start_admin(
    cfg: &Config,
    server: &Server,
    sync_status: &integration::StatusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<Result<(), admin::AdminError>>)> {
    let token = admin::ensure_token(&cfg.server.state_dir)?;
    let status = sync_status.clone();
    let backend = Arc::new(Backend::new(
        server.handle(),
        Box::new(move || serde_json::to_value(&*status.lock().unwrap_or_else(|p| p.into_inner())).unwrap_or_default()),
    ));
    let api = admin::AdminServer::bind(cfg.admin_listen, token, backend).await?;
    let addr = api.local_addr();
    let path = cfg.server.state_dir.join(ADMIN_ADDR_FILE);
    // The cause goes into the message itself, like the admin module's own
    // errors, so that the one-line report below names it exactly once.
    write_private(&path, format!("{addr}\n").as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    info!(address = %addr, "admin API listening");
    Ok((addr, tokio::spawn(api.run(shutdown))))
}

/// Writes a file readable by the owner only (created 0600, never wider).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

/// Where the admin API of the server using this config listens: the
/// configured address, or the one the server recorded when it asked for
/// port 0.
fn admin_address(cfg: &Config) -> SocketAddr {
    if cfg.admin_listen.port() == 0
        && let Ok(text) = std::fs::read_to_string(cfg.server.state_dir.join(ADMIN_ADDR_FILE))
        && let Ok(addr) = text.trim().parse()
    {
        return addr;
    }
    cfg.admin_listen
}

fn accounts_lookup(path: Option<&Path>, identity: &str, json: bool) -> ExitCode {
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
            print!("{}", v["text"].as_str().unwrap_or("(the server sent no text)\n"));
            println!("{}", freshness_line(&v["entra"]));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("entra-radius: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM and SIGINT stop the server; SIGHUP reloads clients, local
/// accounts and policy from the config file.
async fn signals(shutdown: CancellationToken, handle: entra_radius::server::ServerHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers; stop the server with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                if let Err(e) = handle.reload_from_file() {
                    error!("SIGHUP: keeping the running configuration: {e}");
                }
            }
        }
    }
    shutdown.cancel();
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
            server: a.server,
            user: a.user.clone().unwrap_or_default(),
            password: a.password.clone(),
            credentials: if a.chap { Credentials::Chap } else { Credentials::Pap },
            calling_station_id: None,
            nas_identifier: None,
            message_authenticator: true,
            timeout: Duration::from_secs(3),
            attempts: 3,
        },
    };
    if a.calling_station_id.is_some() {
        req.calling_station_id = a.calling_station_id.clone();
    }
    req.nas_identifier = a.nas_identifier.clone();
    req.message_authenticator = !a.no_message_authenticator;
    req.timeout = Duration::try_from_secs_f64(a.timeout).context("--timeout")?;
    req.attempts = a.attempts;
    let method = match req.credentials {
        Credentials::Pap => "PAP",
        Credentials::Chap => "CHAP",
        Credentials::CallCheck => "Call-Check",
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    println!(
        "Sending Access-Request to {} ({method}, User-Name {:?})",
        req.server, req.user
    );
    let reply = runtime.block_on(test_auth::send(&req, &secret))?;
    let p = reply.packet();
    println!(
        "Received {} Id {} from {} in {:.1} ms",
        p.code(),
        p.identifier(),
        reply.from,
        reply.elapsed.as_secs_f64() * 1000.0
    );
    for line in describe(&dictionary, &p) {
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
    Ok(if p.code() == Code::ACCESS_ACCEPT {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
