//! The TOML configuration: parsed with `deny_unknown_fields`, then validated,
//! with every error naming the file, line and key at fault.
//!
//! `from_toml(&str)` is what tests call; `read_config(path)` reads the file
//! and resolves `secret_file` paths relative to it. A `secret_file` that
//! group or others may read is refused (see [`crate::private_file`]).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::directory::policy::{self, PolicyRule};
use crate::directory::{DirectoryKind, LocalMac, LocalUser, MacAddr, UserCredential};
use crate::private_file::read_private_file;
use crate::proto::crypto::Password;

/// Where the default configuration listens and keeps its state.
pub const DEFAULT_AUTH_LISTEN: &str = "127.0.0.1:1812";
pub const DEFAULT_ACCT_LISTEN: &str = "127.0.0.1:1813";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:1818";
pub const DEFAULT_STATE_DIR: &str = "./state";

/// Hashing for the duplicate checks of local accounts: fast on short keys.
type Fast = foldhash::fast::RandomState;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: {key}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

/// `require_message_authenticator` and `limit_proxy_state`, with FreeRADIUS
/// 3.2.5's three settings.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tristate {
    #[default]
    Yes,
    Auto,
    No,
}

#[derive(Debug)]
pub struct Config {
    /// The file this came from (`None` for the built-in defaults).
    pub path: Option<PathBuf>,
    pub server: ServerConfig,
    pub admin_listen: SocketAddr,
    pub clients: Vec<ClientConfig>,
    pub local_users: Vec<LocalUser>,
    pub local_macs: Vec<LocalMac>,
    /// Directory precedence, highest first.
    pub directory_order: Vec<DirectoryKind>,
    pub entra: EntraConfig,
    pub policy: Vec<PolicyRule>,
    /// `[eap]`: absent means EAP is rejected.
    pub eap: Option<EapConfig>,
    /// `[ad]`: absent means no Active Directory.
    pub ad: Option<AdConfig>,
    pub log: LogConfig,
    pub history: HistoryConfig,
}

/// `[ad]`: Active Directory over LDAP, checked without connecting (the
/// bind password read from its private file, the CA file parsed).
pub struct AdConfig {
    /// `ldaps://…` or `ldap://…` (the latter only with `start_tls`, or to
    /// a loopback address), tried in order.
    pub urls: Vec<String>,
    pub start_tls: bool,
    /// The CAs of the domain controllers; empty: the system's roots.
    pub ca_certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub ca_path: Option<PathBuf>,
    pub bind_dn: String,
    pub bind_password: Password,
    pub bind_password_path: PathBuf,
    pub base_dn: String,
    /// NetBIOS name of the domain; `None`: read from the directory.
    pub domain: Option<String>,
    /// Per LDAP operation.
    pub timeout: Duration,
    pub cache_ttl: Duration,
}

impl std::fmt::Debug for AdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdConfig")
            .field("urls", &self.urls)
            .field("start_tls", &self.start_tls)
            .field("ca_file", &self.ca_path)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password_file", &self.bind_password_path)
            .field("base_dn", &self.base_dn)
            .field("domain", &self.domain)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
}

/// `[history]`: the authentication history in the store (`auth log`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// On by default; off, no decision is recorded.
    pub enabled: bool,
    /// Decisions older than this are pruned (a writer's batch at a time).
    pub keep: Duration,
    /// And beyond this many, the oldest (a writer's batch at a time).
    pub max_rows: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            enabled: true,
            keep: Duration::from_secs(30 * 24 * 3600),
            max_rows: 10_000_000,
        }
    }
}

/// `[log] format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: time, level, target, the event's fields.
    Json,
}

/// `[log]`: how `serve` logs (to stderr, which systemd puts in the journal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive ("info", "warn,entra_radius::sync=debug");
    /// `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The EAP methods `[eap] methods` may list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EapMethodName {
    Tls,
    Ttls,
}

/// `[eap] tls_min_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum TlsMinVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// `[eap]`, with its PEM files read and parsed (a bad file is a config
/// error naming the key).
pub struct EapConfig {
    pub chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
    pub client_cas: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub crls: Vec<rustls_pki_types::CertificateRevocationListDer<'static>>,
    pub methods: Vec<EapMethodName>,
    /// TLS data per EAP packet, before Framed-MTU lowers it.
    pub fragment_size: usize,
    pub tls_min_version: TlsMinVersion,
    /// Where the files came from, for messages.
    pub certificate_path: PathBuf,
    pub ca_path: PathBuf,
}

impl std::fmt::Debug for EapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EapConfig")
            .field("certificate", &self.certificate_path)
            .field("private_key", &"<redacted>")
            .field("ca_file", &self.ca_path)
            .field("methods", &self.methods)
            .field("fragment_size", &self.fragment_size)
            .field("tls_min_version", &self.tls_min_version)
            .finish()
    }
}

/// Where Microsoft's endpoints are (national clouds and tests change them)
/// and how often to sync. Tenant, application and domains are integration
/// state, kept in the state directory.
#[derive(Debug, Clone)]
pub struct EntraConfig {
    pub authority_host: String,
    pub graph_endpoint: String,
    pub sync_interval: Duration,
}

impl Default for EntraConfig {
    fn default() -> Self {
        EntraConfig {
            authority_host: "https://login.microsoftonline.com".into(),
            graph_endpoint: "https://graph.microsoft.com".into(),
            sync_interval: Duration::from_secs(15 * 60),
        }
    }
}

/// Entra ID first, then Active Directory, then local accounts.
pub const DEFAULT_DIRECTORY_ORDER: [DirectoryKind; 3] = [
    DirectoryKind::Entra,
    DirectoryKind::ActiveDirectory,
    DirectoryKind::Local,
];

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub auth_listen: Vec<SocketAddr>,
    pub acct_listen: Vec<SocketAddr>,
    pub state_dir: PathBuf,
    /// Dictionary files to load instead of the built-in ones.
    pub dictionary_dir: Option<PathBuf>,
    /// How long an answered request's reply is kept for retransmissions
    /// (RFC 5080 §2.2.2 asks for 5 to 30 seconds).
    pub response_cache_ttl: Duration,
    /// Requests being worked on at once; beyond this, new ones are shed.
    pub max_in_flight: usize,
    /// Runtime worker threads, and reader threads (each reads every
    /// listening socket);
    /// `None` is one per CPU the process may run on.
    pub threads: Option<usize>,
}

pub struct ClientConfig {
    pub name: String,
    pub network: IpNet,
    pub secret: Vec<u8>,
    pub require_message_authenticator: Tristate,
    pub limit_proxy_state: Tristate,
    /// Dynamic Authorization (RFC 5176): set, this NAS is sent
    /// Disconnect-Requests; `None`, never.
    pub coa: Option<CoaConfig>,
}

/// Where and with which secret a NAS takes Disconnect-Requests.
pub struct CoaConfig {
    pub port: u16,
    /// `coa_secret` / `coa_secret_file`, else the client's secret.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for CoaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoaConfig")
            .field("port", &self.port)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("name", &self.name)
            .field("network", &self.network)
            .field("secret", &"<redacted>")
            .field("require_message_authenticator", &self.require_message_authenticator)
            .field("limit_proxy_state", &self.limit_proxy_state)
            .field("coa", &self.coa)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    clients: Vec<RawClient>,
    #[serde(default)]
    local: RawLocal,
    #[serde(default)]
    directory: RawDirectory,
    #[serde(default)]
    entra: RawEntra,
    #[serde(default)]
    policy: Vec<Spanned<PolicyRule>>,
    eap: Option<RawEap>,
    ad: Option<RawAd>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    history: RawHistory,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    enabled: Option<bool>,
    keep: Option<Spanned<String>>,
    max_rows: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<LogFormat>,
    level: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEap {
    certificate: Spanned<PathBuf>,
    private_key: Spanned<PathBuf>,
    ca_file: Spanned<PathBuf>,
    crl_file: Option<Spanned<PathBuf>>,
    methods: Option<Spanned<Vec<EapMethodName>>>,
    fragment_size: Option<Spanned<usize>>,
    tls_min_version: Option<TlsMinVersion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAd {
    urls: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    start_tls: bool,
    ca_file: Option<Spanned<PathBuf>>,
    bind_dn: Spanned<String>,
    bind_password_file: Spanned<PathBuf>,
    base_dn: Spanned<String>,
    domain: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    cache_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEntra {
    authority_host: Option<Spanned<String>>,
    graph_endpoint: Option<Spanned<String>>,
    sync_interval: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    order: Option<Spanned<Vec<DirectoryKind>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    auth_listen: Option<Spanned<Vec<SocketAddr>>>,
    acct_listen: Option<Vec<SocketAddr>>,
    state_dir: Option<PathBuf>,
    dictionary_dir: Option<PathBuf>,
    response_cache_ttl: Option<Spanned<String>>,
    max_in_flight: Option<Spanned<usize>>,
    threads: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<Spanned<SocketAddr>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: Spanned<String>,
    address: Spanned<String>,
    secret: Option<Spanned<String>>,
    secret_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    require_message_authenticator: Tristate,
    #[serde(default)]
    limit_proxy_state: Tristate,
    coa_port: Option<Spanned<u16>>,
    coa_secret: Option<Spanned<String>>,
    coa_secret_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    macs: Vec<RawMac>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password: Option<String>,
    password_hash: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMac {
    mac: Spanned<String>,
    description: Option<String>,
}

/// Reads and validates a config file.
pub fn read_config(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut cfg = parse(&text, path)?;
    cfg.path = Some(path.to_path_buf());
    Ok(cfg)
}

/// Parses config text; `secret_file` paths are taken relative to the
/// current directory.
pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("<config>"))
}

/// The configuration `serve` uses without `--config`: loopback only, one
/// client 127.0.0.1 with secret `testing123` (like FreeRADIUS's localhost
/// client), state in ./state.
pub fn defaults() -> Config {
    Config {
        path: None,
        server: ServerConfig {
            auth_listen: vec![DEFAULT_AUTH_LISTEN.parse().expect("constant")],
            acct_listen: vec![DEFAULT_ACCT_LISTEN.parse().expect("constant")],
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            dictionary_dir: None,
            response_cache_ttl: Duration::from_secs(10),
            max_in_flight: 4096,
            threads: None,
        },
        admin_listen: DEFAULT_ADMIN_LISTEN.parse().expect("constant"),
        clients: vec![ClientConfig {
            name: "localhost".into(),
            network: IpNet::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            secret: b"testing123".to_vec(),
            require_message_authenticator: Tristate::Yes,
            limit_proxy_state: Tristate::Yes,
            coa: None,
        }],
        local_users: Vec::new(),
        local_macs: Vec::new(),
        directory_order: DEFAULT_DIRECTORY_ORDER.to_vec(),
        entra: EntraConfig::default(),
        policy: Vec::new(),
        eap: None,
        ad: None,
        log: LogConfig::default(),
        history: HistoryConfig::default(),
    }
}

/// Reads a secret from a file that only its owner may read; `key` names the
/// setting in errors.
fn read_secret_file(ctx: &Ctx<'_>, f: &Spanned<PathBuf>, key: String) -> Result<Vec<u8>, ConfigError> {
    let p = ctx.resolve(f.get_ref());
    let mut bytes = read_private_file(&p).map_err(|e| ctx.err(Some(f.span()), key.clone(), e.to_string()))?;
    // Editors and `echo` leave a trailing newline that is not part of the
    // secret.
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(ctx.err(Some(f.span()), key, format!("{} is empty", p.display())));
    }
    Ok(bytes)
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Option<Range<usize>>, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let (line, column) = match span {
            Some(s) => line_col(self.text, s.start),
            None => (0, 0),
        };
        ConfigError::Invalid {
            path: self.path.display().to_string(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) if self.path.exists() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// The key a TOML syntax or type error points at: the `key =` on the error's
/// line, or the `[table]` header.
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text[offset..].find('\n').map(|i| offset + i).unwrap_or(text.len());
    let line = text[start..end].trim();
    if let Some((k, _)) = line.split_once('=') {
        return k.trim().to_string();
    }
    line.trim_matches(|c| c == '[' || c == ']').trim().to_string()
}

fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    // Most of a large config is `[[local.users]]` and `[[local.macs]]` in
    // their plainest form, which the TOML parser takes about 2 µs a table to
    // read (a map, spans and keys per table). Read them here and give the
    // parser the rest; anything this reader does not take, or any error,
    // goes the whole way through the parser, which then says where the
    // error is.
    if let Some((rest, local)) = plain_local::split(text)
        && let Ok(cfg) = parse_with(&rest, path, Some(local))
    {
        return Ok(cfg);
    }
    parse_with(text, path, None)
}

/// `local`: the local accounts read by `plain_local`, which `text` no
/// longer holds.
fn parse_with(text: &str, path: &Path, local: Option<RawLocal>) -> Result<Config, ConfigError> {
    let ctx = Ctx { path, text };
    let mut raw: RawConfig = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let key = span.clone().map(|s| key_at(text, s.start)).unwrap_or_default();
        ctx.err(span, key, e.message().trim().to_string())
    })?;
    if let Some(local) = local {
        // `split` leaves no `local` key in the rest; this holds it to that.
        if !raw.local.users.is_empty() || !raw.local.macs.is_empty() {
            return Err(ctx.err(None, "local", "defined twice"));
        }
        raw.local = local;
    }
    let d = defaults();

    let auth_listen = match raw.server.auth_listen {
        Some(l) if l.get_ref().is_empty() => {
            return Err(ctx.err(Some(l.span()), "server.auth_listen", "needs at least one address"));
        }
        Some(l) => l.into_inner(),
        None => d.server.auth_listen,
    };
    let response_cache_ttl = match raw.server.response_cache_ttl {
        None => d.server.response_cache_ttl,
        Some(s) => {
            let ttl = humantime::parse_duration(s.get_ref())
                .map_err(|e| ctx.err(Some(s.span()), "server.response_cache_ttl", e.to_string()))?;
            if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl) {
                return Err(ctx.err(
                    Some(s.span()),
                    "server.response_cache_ttl",
                    "must be between 1s and 60s (RFC 5080 suggests 5s to 30s)",
                ));
            }
            ttl
        }
    };
    let max_in_flight = match raw.server.max_in_flight {
        None => d.server.max_in_flight,
        Some(n) if *n.get_ref() == 0 => {
            return Err(ctx.err(Some(n.span()), "server.max_in_flight", "must be at least 1"));
        }
        Some(n) => n.into_inner(),
    };
    let threads = match raw.server.threads {
        None => None,
        Some(n) if !(1..=256).contains(n.get_ref()) => {
            return Err(ctx.err(Some(n.span()), "server.threads", "must be between 1 and 256"));
        }
        Some(n) => Some(n.into_inner()),
    };
    let admin_listen = match raw.admin.listen {
        None => d.admin_listen,
        Some(a) if !a.get_ref().ip().is_loopback() => {
            return Err(ctx.err(
                Some(a.span()),
                "admin.listen",
                "the admin API must listen on a loopback address (127.0.0.0/8 or ::1)",
            ));
        }
        Some(a) => a.into_inner(),
    };

    let mut clients: Vec<ClientConfig> = Vec::new();
    for (i, c) in raw.clients.into_iter().enumerate() {
        let key = |k: &str| format!("clients[{i}].{k}");
        let name = c.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(ctx.err(Some(c.name.span()), key("name"), "must not be empty"));
        }
        if clients.iter().any(|o| o.name == name) {
            return Err(ctx.err(
                Some(c.name.span()),
                key("name"),
                format!("client name {name:?} is used twice"),
            ));
        }
        let addr = c.address.get_ref().trim();
        let network = match addr.parse::<IpNet>() {
            Ok(n) => n.trunc(),
            Err(_) => match addr.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    return Err(ctx.err(
                        Some(c.address.span()),
                        key("address"),
                        format!("{addr:?} is neither an IP address nor a CIDR prefix"),
                    ));
                }
            },
        };
        if let Some(o) = clients.iter().find(|o| o.network == network) {
            return Err(ctx.err(
                Some(c.address.span()),
                key("address"),
                format!("{network} is already the address of client {:?}", o.name),
            ));
        }
        let secret = match (c.secret, c.secret_file) {
            (Some(s), None) => {
                if s.get_ref().is_empty() {
                    return Err(ctx.err(Some(s.span()), key("secret"), "must not be empty"));
                }
                s.into_inner().into_bytes()
            }
            (None, Some(f)) => read_secret_file(&ctx, &f, key("secret_file"))?,
            (Some(s), Some(_)) => {
                return Err(ctx.err(Some(s.span()), key("secret"), "give secret or secret_file, not both"));
            }
            (None, None) => {
                return Err(ctx.err(
                    Some(c.name.span()),
                    key("secret"),
                    format!("client {name:?} has no secret or secret_file"),
                ));
            }
        };
        let coa_secret = match (c.coa_secret, c.coa_secret_file) {
            (Some(s), None) if s.get_ref().is_empty() => {
                return Err(ctx.err(Some(s.span()), key("coa_secret"), "must not be empty"));
            }
            (Some(s), None) => Some((s.span(), s.into_inner().into_bytes())),
            (None, Some(f)) => Some((f.span(), read_secret_file(&ctx, &f, key("coa_secret_file"))?)),
            (Some(s), Some(_)) => {
                return Err(ctx.err(
                    Some(s.span()),
                    key("coa_secret"),
                    "give coa_secret or coa_secret_file, not both",
                ));
            }
            (None, None) => None,
        };
        let coa = match (c.coa_port, coa_secret) {
            (Some(p), _) if *p.get_ref() == 0 => {
                return Err(ctx.err(Some(p.span()), key("coa_port"), "must be a port, 1 to 65535"));
            }
            (Some(p), s) => Some(CoaConfig {
                port: p.into_inner(),
                secret: s.map_or_else(|| secret.clone(), |(_, s)| s),
            }),
            (None, Some((span, _))) => {
                return Err(ctx.err(
                    Some(span),
                    key("coa_port"),
                    format!("client {name:?} has a CoA secret but no coa_port: without one it is never sent anything"),
                ));
            }
            (None, None) => None,
        };
        clients.push(ClientConfig {
            name,
            network,
            secret,
            require_message_authenticator: c.require_message_authenticator,
            limit_proxy_state: c.limit_proxy_state,
            coa,
        });
    }

    // Sets, not scans of the entries so far: configs with 100k users exist.
    let mut local_users: Vec<LocalUser> = Vec::with_capacity(raw.local.users.len());
    let mut user_names: HashSet<String, Fast> =
        HashSet::with_capacity_and_hasher(raw.local.users.len(), Fast::default());
    for (i, u) in raw.local.users.into_iter().enumerate() {
        let key = |k: &str| format!("local.users[{i}].{k}");
        let name_span = u.name.span();
        let name = u.name.into_inner();
        if name.is_empty() {
            return Err(ctx.err(Some(name_span), key("name"), "must not be empty"));
        }
        if MacAddr::parse(&name).is_ok() {
            return Err(ctx.err(
                Some(name_span.clone()),
                key("name"),
                format!("{name:?} is a MAC address: list devices under [[local.macs]], MAB finds them there"),
            ));
        }
        if !user_names.insert(name.to_lowercase()) {
            return Err(ctx.err(
                Some(name_span),
                key("name"),
                format!("user {name:?} is defined twice (names are case-insensitive)"),
            ));
        }
        let credential = match (u.password, u.password_hash) {
            (Some(p), None) => UserCredential::Cleartext(Password::new(p.into_bytes())),
            (None, Some(h)) => {
                if let Err(e) = argon2::password_hash::phc::PasswordHash::new(h.get_ref()) {
                    return Err(ctx.err(
                        Some(h.span()),
                        key("password_hash"),
                        format!("not an argon2 PHC string ($argon2id$v=19$...): {e}"),
                    ));
                }
                if !h.get_ref().starts_with("$argon2") {
                    return Err(ctx.err(Some(h.span()), key("password_hash"), "only argon2 hashes are supported"));
                }
                UserCredential::Argon2(h.into_inner())
            }
            (Some(_), Some(h)) => {
                return Err(ctx.err(
                    Some(h.span()),
                    key("password"),
                    "give password or password_hash, not both",
                ));
            }
            (None, None) => {
                return Err(ctx.err(
                    Some(name_span),
                    key("password"),
                    format!("user {name:?} has no password or password_hash"),
                ));
            }
        };
        local_users.push(LocalUser { name, credential });
    }

    let mut local_macs: Vec<LocalMac> = Vec::with_capacity(raw.local.macs.len());
    let mut macs_seen: HashSet<MacAddr, Fast> =
        HashSet::with_capacity_and_hasher(raw.local.macs.len(), Fast::default());
    for (i, m) in raw.local.macs.into_iter().enumerate() {
        let key = format!("local.macs[{i}].mac");
        let mac =
            MacAddr::parse(m.mac.get_ref().trim()).map_err(|e| ctx.err(Some(m.mac.span()), &key, e.to_string()))?;
        if !macs_seen.insert(mac) {
            return Err(ctx.err(Some(m.mac.span()), key, format!("MAC {mac} is listed twice")));
        }
        local_macs.push(LocalMac {
            mac,
            description: m.description,
        });
    }

    let directory_order = match raw.directory.order {
        None => d.directory_order,
        Some(o) => {
            let list = o.get_ref();
            if list.is_empty() {
                return Err(ctx.err(Some(o.span()), "directory.order", "needs at least one directory"));
            }
            if let Some(dup) = list
                .iter()
                .enumerate()
                .find(|(i, k)| list[..*i].contains(k))
                .map(|(_, k)| k)
            {
                return Err(ctx.err(Some(o.span()), "directory.order", format!("{dup} is listed twice")));
            }
            o.into_inner()
        }
    };
    let mut entra = EntraConfig::default();
    for (field, key, target) in [
        (
            raw.entra.authority_host,
            "entra.authority_host",
            &mut entra.authority_host,
        ),
        (
            raw.entra.graph_endpoint,
            "entra.graph_endpoint",
            &mut entra.graph_endpoint,
        ),
    ] {
        if let Some(v) = field {
            let url = v.get_ref().trim_end_matches('/').to_string();
            crate::graph::validate_endpoint(&url).map_err(|e| ctx.err(Some(v.span()), key, e.to_string()))?;
            *target = url;
        }
    }
    if let Some(v) = raw.entra.sync_interval {
        let d = humantime::parse_duration(v.get_ref())
            .map_err(|e| ctx.err(Some(v.span()), "entra.sync_interval", e.to_string()))?;
        if d < Duration::from_secs(1) {
            return Err(ctx.err(Some(v.span()), "entra.sync_interval", "must be at least 1s"));
        }
        entra.sync_interval = d;
    }
    let spans: Vec<_> = raw.policy.iter().map(|p| p.span()).collect();
    let policy: Vec<PolicyRule> = raw.policy.into_iter().map(|p| p.into_inner()).collect();
    if let Err((i, message)) = policy::validate(&policy) {
        return Err(ctx.err(spans.get(i).cloned(), format!("policy[{i}]"), message.to_string()));
    }

    let eap = match raw.eap {
        None => None,
        Some(e) => Some(eap_config(&ctx, e)?),
    };
    let ad = match raw.ad {
        None => None,
        Some(a) => Some(ad_config(&ctx, a)?),
    };
    let mut log = LogConfig::default();
    if let Some(f) = raw.log.format {
        log.format = f;
    }
    if let Some(level) = raw.log.level {
        tracing_subscriber::EnvFilter::try_new(level.get_ref()).map_err(|e| {
            ctx.err(
                Some(level.span()),
                "log.level",
                format!("not a log level or filter: {e}"),
            )
        })?;
        log.level = level.into_inner();
    }
    let mut history = HistoryConfig::default();
    if let Some(e) = raw.history.enabled {
        history.enabled = e;
    }
    if let Some(v) = raw.history.keep {
        let d = humantime::parse_duration(v.get_ref())
            .map_err(|e| ctx.err(Some(v.span()), "history.keep", e.to_string()))?;
        if d < Duration::from_secs(60) {
            return Err(ctx.err(Some(v.span()), "history.keep", "must be at least 1m"));
        }
        history.keep = d;
    }
    if let Some(v) = raw.history.max_rows {
        history.max_rows = u64::try_from(*v.get_ref())
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ctx.err(Some(v.span()), "history.max_rows", "must be at least 1"))?;
    }

    Ok(Config {
        path: None,
        server: ServerConfig {
            auth_listen,
            acct_listen: raw.server.acct_listen.unwrap_or(d.server.acct_listen),
            state_dir: raw.server.state_dir.unwrap_or(d.server.state_dir),
            dictionary_dir: raw.server.dictionary_dir.map(|p| ctx.resolve(&p)),
            response_cache_ttl,
            max_in_flight,
            threads,
        },
        admin_listen,
        clients,
        local_users,
        local_macs,
        directory_order,
        entra,
        policy,
        eap,
        ad,
        log,
        history,
    })
}

/// `[[local.users]]` and `[[local.macs]]` in their plainest form, read
/// without the TOML parser (see `parse`): one `key = "string"` a line,
/// keys the tables know, strings without escapes.
mod plain_local {
    use std::ops::Range;

    use toml::Spanned;

    use super::{RawLocal, RawMac, RawUser};

    #[derive(Clone, Copy)]
    enum Kind {
        Users,
        Macs,
    }

    /// One table being read: its values, in the order of `keys(kind)`.
    #[derive(Default)]
    struct Table {
        values: [Option<(Range<usize>, String)>; 3],
    }

    /// The text without its plain `[[local.users]]` and `[[local.macs]]`
    /// tables, and those tables. `None` when there are none, or when
    /// taking them out might change what the text means: a multi-line
    /// string, `local` defined elsewhere, a table of theirs in another form.
    pub(super) fn split(text: &str) -> Option<(String, RawLocal)> {
        if text.contains("\"\"\"") || text.contains("'''") {
            return None;
        }
        let mut rest = String::new();
        let mut local = RawLocal::default();
        // `[` and `{` still open in the rest: a header is only a header at 0.
        let mut depth = 0usize;
        let mut in_root = true;
        let mut current: Option<(Kind, Table)> = None;
        let mut offset = 0;
        for raw_line in text.split_inclusive('\n') {
            let start = offset;
            offset += raw_line.len();
            // A CR is part of the line end only before an LF.
            let line = match raw_line.strip_suffix('\n') {
                Some(l) => l.strip_suffix('\r').unwrap_or(l),
                None => raw_line,
            };
            let trimmed = line.trim_matches([' ', '\t']);
            if depth == 0 && trimmed.starts_with('[') {
                if let Some((kind, table)) = current.take() {
                    finish(kind, table, &mut local)?;
                }
                in_root = false;
                match trimmed {
                    "[[local.users]]" => current = Some((Kind::Users, Table::default())),
                    "[[local.macs]]" => current = Some((Kind::Macs, Table::default())),
                    header if names_local(header.trim_start_matches(['[', ' ', '\t'])) => return None,
                    _ => {
                        depth = depth_after(line, depth);
                        rest.push_str(raw_line);
                    }
                }
                continue;
            }
            if let Some((kind, table)) = &mut current {
                let at = start + (trimmed.as_ptr() as usize - line.as_ptr() as usize);
                body_line(trimmed, at, *kind, table)?;
                continue;
            }
            if depth == 0 && in_root && names_local(trimmed) {
                return None;
            }
            depth = depth_after(line, depth);
            rest.push_str(raw_line);
        }
        if let Some((kind, table)) = current.take() {
            finish(kind, table, &mut local)?;
        }
        if local.users.is_empty() && local.macs.is_empty() {
            return None;
        }
        Some((rest, local))
    }

    fn keys(kind: Kind) -> [&'static str; 3] {
        match kind {
            Kind::Users => ["name", "password", "password_hash"],
            Kind::Macs => ["mac", "description", ""],
        }
    }

    fn finish(kind: Kind, table: Table, local: &mut RawLocal) -> Option<()> {
        let [first, second, third] = table.values;
        let (span, first) = first?;
        match kind {
            Kind::Users => local.users.push(RawUser {
                name: Spanned::new(span, first),
                password: second.map(|(_, v)| v),
                password_hash: third.map(|(r, v)| Spanned::new(r, v)),
            }),
            Kind::Macs => local.macs.push(RawMac {
                mac: Spanned::new(span, first),
                description: second.map(|(_, v)| v),
            }),
        }
        Some(())
    }

    /// A line of a plain table (`at`: its offset in the text), trimmed:
    /// blank, a comment, or `key = "string"` with an optional comment.
    fn body_line(line: &str, at: usize, kind: Kind, table: &mut Table) -> Option<()> {
        if line.is_empty() {
            return Some(());
        }
        if let Some(comment) = line.strip_prefix('#') {
            return plain(comment).then_some(());
        }
        let key_len = line
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
            .unwrap_or(line.len());
        let (key, after) = line.split_at(key_len);
        let value = after.trim_start_matches([' ', '\t']).strip_prefix('=')?;
        let value = value.trim_start_matches([' ', '\t']);
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let len = value[1..].find(quote)?;
        let content = &value[1..1 + len];
        if !plain(content) || (quote == '"' && content.contains('\\')) {
            return None;
        }
        let tail = value[2 + len..].trim_start_matches([' ', '\t']);
        if !tail.is_empty() && !tail.strip_prefix('#').is_some_and(plain) {
            return None;
        }
        let slot = keys(kind).iter().position(|k| !k.is_empty() && *k == key)?;
        if table.values[slot].is_some() {
            return None;
        }
        // The span of a string value covers its quotes, as the parser's does.
        let from = at + (value.as_ptr() as usize - line.as_ptr() as usize);
        table.values[slot] = Some((from..from + len + 2, content.to_string()));
        Some(())
    }

    /// No control character but tab: what a comment or a one-line string
    /// may hold.
    fn plain(s: &str) -> bool {
        !s.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
    }

    /// Whether the key that starts `s` (bare or quoted) may be `local`.
    fn names_local(s: &str) -> bool {
        let s = s.trim_start_matches([' ', '\t']);
        for quote in ['"', '\''] {
            if let Some(r) = s.strip_prefix(quote) {
                return match r.find(quote) {
                    Some(end) => &r[..end] == "local" || (quote == '"' && r[..end].contains('\\')),
                    None => true,
                };
            }
        }
        s.starts_with("local")
    }

    /// The number of `[` and `{` open after `line`, outside strings and
    /// comments (a value may span lines).
    fn depth_after(line: &str, mut depth: usize) -> usize {
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '#' => break,
                '"' => {
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                chars.next();
                            }
                            '"' => break,
                            _ => {}
                        }
                    }
                }
                '\'' => {
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                }
                '[' | '{' => depth += 1,
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        depth
    }
}

/// The host of an `ldap://` or `ldaps://` URL and whether it is TLS from
/// the start; an error says what is wrong with it.
pub fn ldap_url_host(url: &str) -> Result<(String, bool), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("ldaps://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("ldap://") {
        (false, r)
    } else {
        return Err(format!("{url}: must start with ldaps:// or ldap://"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '@', '#']) {
        return Err(format!("{url}: only a host and a port (no DN, no user)"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| format!("{url}: unclosed ["))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!("{url}: bad port {p:?}"));
    }
    Ok((host.to_string(), tls))
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn ad_config(ctx: &Ctx<'_>, a: RawAd) -> Result<AdConfig, ConfigError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    if a.urls.get_ref().is_empty() {
        return Err(ctx.err(Some(a.urls.span()), "ad.urls", "needs at least one URL"));
    }
    let mut urls = Vec::new();
    for u in a.urls.get_ref() {
        let url = u.get_ref().trim().trim_end_matches('/').to_string();
        let (host, tls) = ldap_url_host(&url).map_err(|e| ctx.err(Some(u.span()), "ad.urls", e))?;
        if tls && a.start_tls {
            return Err(ctx.err(
                Some(u.span()),
                "ad.urls",
                format!("{url}: ldaps:// is TLS already; start_tls = true is for ldap:// URLs"),
            ));
        }
        if !tls && !a.start_tls && !is_loopback_host(&host) {
            return Err(ctx.err(
                Some(u.span()),
                "ad.urls",
                format!(
                    "{url}: plain LDAP would send passwords in the clear; use ldaps:// or set start_tls = true \
                     (plain ldap:// only to a loopback address)"
                ),
            ));
        }
        if urls.contains(&url) {
            return Err(ctx.err(Some(u.span()), "ad.urls", format!("{url} is listed twice")));
        }
        urls.push(url);
    }
    let (ca_path, ca_certs) = match &a.ca_file {
        None => (None, Vec::new()),
        Some(f) => {
            let p = ctx.resolve(f.get_ref());
            let pem = std::fs::read(&p)
                .map_err(|e| ctx.err(Some(f.span()), "ad.ca_file", format!("{}: {e}", p.display())))?;
            let list: Result<Vec<CertificateDer<'static>>, _> = CertificateDer::pem_slice_iter(&pem).collect();
            match list {
                Ok(l) if !l.is_empty() => (Some(p), l),
                Ok(_) => {
                    return Err(ctx.err(
                        Some(f.span()),
                        "ad.ca_file",
                        format!("{}: no PEM certificate in it", p.display()),
                    ));
                }
                Err(e) => return Err(ctx.err(Some(f.span()), "ad.ca_file", format!("{}: {e}", p.display()))),
            }
        }
    };
    let bind_dn = a.bind_dn.get_ref().trim().to_string();
    if bind_dn.is_empty() {
        return Err(ctx.err(Some(a.bind_dn.span()), "ad.bind_dn", "must not be empty"));
    }
    let f = &a.bind_password_file;
    let bind_password_path = ctx.resolve(f.get_ref());
    let mut bytes = read_private_file(&bind_password_path)
        .map_err(|e| ctx.err(Some(f.span()), "ad.bind_password_file", e.to_string()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(ctx.err(
            Some(f.span()),
            "ad.bind_password_file",
            format!(
                "{} is empty (an empty password is an anonymous bind to AD)",
                bind_password_path.display()
            ),
        ));
    }
    let bind_password = Password::new(bytes);
    let base_dn = a.base_dn.get_ref().trim().to_string();
    if crate::directory::ad::wire::dns_domain_of(&base_dn).is_none() {
        return Err(ctx.err(
            Some(a.base_dn.span()),
            "ad.base_dn",
            "must name the domain by its DC= parts, such as \"DC=corp,DC=example\"",
        ));
    }
    let domain = match &a.domain {
        None => None,
        Some(d) => {
            let v = d.get_ref().trim();
            if v.is_empty() || v.len() > 15 || v.contains(['\\', '.', '/', ' ', '@']) {
                return Err(ctx.err(
                    Some(d.span()),
                    "ad.domain",
                    "the NetBIOS name of the domain (1 to 15 characters, no dot), such as \"CORP\"",
                ));
            }
            Some(v.to_ascii_uppercase())
        }
    };
    let duration = |v: &Option<Spanned<String>>, key: &str, default: Duration| -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let d = humantime::parse_duration(v.get_ref()).map_err(|e| ctx.err(Some(v.span()), key, e.to_string()))?;
        if d < Duration::from_millis(100) {
            return Err(ctx.err(Some(v.span()), key, "must be at least 100ms"));
        }
        Ok(d)
    };
    Ok(AdConfig {
        urls,
        start_tls: a.start_tls,
        ca_certs,
        ca_path,
        bind_dn,
        bind_password,
        bind_password_path,
        base_dn,
        domain,
        timeout: duration(&a.timeout, "ad.timeout", Duration::from_secs(3))?,
        cache_ttl: duration(&a.cache_ttl, "ad.cache_ttl", Duration::from_secs(300))?,
    })
}

fn eap_config(ctx: &Ctx<'_>, e: RawEap) -> Result<EapConfig, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

    let read = |f: &Spanned<PathBuf>, key: &str, private: bool| -> Result<(PathBuf, Vec<u8>), ConfigError> {
        let p = ctx.resolve(f.get_ref());
        let bytes = if private {
            read_private_file(&p).map_err(|e| ctx.err(Some(f.span()), key, e.to_string()))?
        } else {
            std::fs::read(&p).map_err(|e| ctx.err(Some(f.span()), key, format!("{}: {e}", p.display())))?
        };
        Ok((p, bytes))
    };
    let certs = |f: &Spanned<PathBuf>, key: &str| -> Result<(PathBuf, Vec<CertificateDer<'static>>), ConfigError> {
        let (p, pem) = read(f, key, false)?;
        let list: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        match list {
            Ok(l) if !l.is_empty() => Ok((p, l)),
            Ok(_) => Err(ctx.err(
                Some(f.span()),
                key,
                format!("{}: no PEM certificate in it", p.display()),
            )),
            Err(e) => Err(ctx.err(Some(f.span()), key, format!("{}: {e}", p.display()))),
        }
    };
    let (certificate_path, chain) = certs(&e.certificate, "eap.certificate")?;
    let (ca_path, client_cas) = certs(&e.ca_file, "eap.ca_file")?;
    let (key_path, key_pem) = read(&e.private_key, "eap.private_key", true)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| {
        ctx.err(
            Some(e.private_key.span()),
            "eap.private_key",
            format!("{}: no usable PEM private key ({err})", key_path.display()),
        )
    })?;
    let crls = match &e.crl_file {
        None => Vec::new(),
        Some(f) => {
            let (p, pem) = read(f, "eap.crl_file", false)?;
            CertificateRevocationListDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| ctx.err(Some(f.span()), "eap.crl_file", format!("{}: {err}", p.display())))?
        }
    };
    let methods = match e.methods {
        None => vec![EapMethodName::Tls, EapMethodName::Ttls],
        Some(m) => {
            let list = m.get_ref();
            if list.is_empty() {
                return Err(ctx.err(Some(m.span()), "eap.methods", "needs at least one method (tls, ttls)"));
            }
            if list.iter().enumerate().any(|(i, k)| list[..i].contains(k)) {
                return Err(ctx.err(Some(m.span()), "eap.methods", "a method is listed twice"));
            }
            m.into_inner()
        }
    };
    let fragment_size = match e.fragment_size {
        None => 1024,
        Some(f) if !(100..=4000).contains(f.get_ref()) => {
            return Err(ctx.err(
                Some(f.span()),
                "eap.fragment_size",
                "must be between 100 and 4000 (RADIUS packets are at most 4096 bytes; 1024 suits access points)",
            ));
        }
        Some(f) => f.into_inner(),
    };
    Ok(EapConfig {
        chain,
        key,
        client_cas,
        crls,
        methods,
        fragment_size,
        tls_min_version: e.tls_min_version.unwrap_or(TlsMinVersion::Tls12),
        certificate_path,
        ca_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        from_toml(text).unwrap_err().to_string()
    }

    const FULL: &str = r#"
[server]
auth_listen = ["127.0.0.1:11812", "[::1]:11812"]
acct_listen = ["127.0.0.1:11813"]
state_dir = "/tmp/x"
response_cache_ttl = "20s"

[admin]
listen = "127.0.0.1:11818"

[[clients]]
name = "core"
address = "10.0.0.0/24"
secret = "s3cret"
require_message_authenticator = "auto"
limit_proxy_state = "no"

[[clients]]
name = "one"
address = "10.0.0.7"
secret = "other"

[[local.users]]
name = "alice"
password = "pw"

[[local.macs]]
mac = "00-11-22-33-44-55"
description = "printer"
"#;

    #[test]
    fn threads() {
        assert_eq!(from_toml("").unwrap().server.threads, None);
        assert_eq!(from_toml("[server]\nthreads = 3\n").unwrap().server.threads, Some(3));
        assert!(err("[server]\nthreads = 0\n").contains("server.threads: must be between 1 and 256"));
    }

    #[test]
    fn full_example_parses() {
        let c = from_toml(FULL).unwrap();
        assert_eq!(c.server.auth_listen.len(), 2);
        assert_eq!(c.server.response_cache_ttl, Duration::from_secs(20));
        assert_eq!(c.admin_listen.port(), 11818);
        assert_eq!(c.clients.len(), 2);
        assert_eq!(c.clients[0].network.to_string(), "10.0.0.0/24");
        assert_eq!(c.clients[0].require_message_authenticator, Tristate::Auto);
        assert_eq!(c.clients[0].limit_proxy_state, Tristate::No);
        assert_eq!(c.clients[1].network.to_string(), "10.0.0.7/32");
        assert_eq!(c.clients[1].require_message_authenticator, Tristate::Yes);
        assert_eq!(c.local_users[0].name, "alice");
        assert_eq!(c.local_macs[0].mac.to_string(), "00-11-22-33-44-55");
        assert!(!format!("{:?}", c.clients[0]).contains("s3cret"));
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = from_toml("").unwrap();
        assert_eq!(
            c.server.auth_listen,
            vec!["127.0.0.1:1812".parse::<SocketAddr>().unwrap()]
        );
        assert!(c.clients.is_empty());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err("[server]\nstate_dir = \"x\"\nauth_listn = []\n");
        assert!(
            e.starts_with("<config>:3:1: auth_listn: unknown field `auth_listn`"),
            "{e}"
        );
    }

    #[test]
    fn bad_enum_value_names_line_and_key() {
        let e = err(
            "[[clients]]\nname = \"a\"\naddress = \"1.2.3.4\"\nsecret = \"s\"\nrequire_message_authenticator = \"maybe\"\n",
        );
        assert!(e.starts_with("<config>:5:"), "{e}");
        assert!(e.contains("require_message_authenticator"), "{e}");
        assert!(e.contains("maybe"), "{e}");
    }

    #[test]
    fn semantic_errors_name_line_and_key() {
        let e = err("[[clients]]\nname = \"a\"\naddress = \"10.0.0.300\"\nsecret = \"s\"\n");
        assert!(e.starts_with("<config>:3:11: clients[0].address:"), "{e}");
        let e = err("[[clients]]\nname = \"a\"\naddress = \"10.0.0.1\"\n");
        assert!(e.contains("clients[0].secret: client \"a\" has no secret"), "{e}");
        let e = err(
            "[[clients]]\nname = \"a\"\naddress = \"10.0.0.1\"\nsecret=\"x\"\n[[clients]]\nname = \"b\"\naddress = \"10.0.0.1/32\"\nsecret=\"y\"\n",
        );
        assert!(
            e.starts_with("<config>:7:11: clients[1].address: 10.0.0.1/32 is already the address of client \"a\""),
            "{e}"
        );
        let e = err("[[local.macs]]\nmac = \"00-11-22\"\n");
        assert!(
            e.starts_with("<config>:2:7: local.macs[0].mac: not a MAC address"),
            "{e}"
        );
        let e =
            err("[[local.users]]\nname = \"a\"\npassword = \"x\"\n[[local.users]]\nname = \"A\"\npassword = \"y\"\n");
        assert!(e.starts_with("<config>:5:8: local.users[1].name"), "{e}");
        let e = err("[[local.users]]\nname = \"a\"\npassword_hash = \"plain\"\n");
        assert!(e.contains("local.users[0].password_hash"), "{e}");
        let e = err("[admin]\nlisten = \"0.0.0.0:1818\"\n");
        assert!(
            e.starts_with("<config>:2:10: admin.listen: the admin API must listen on a loopback"),
            "{e}"
        );
        let e = err("[server]\nresponse_cache_ttl = \"2h\"\n");
        assert!(e.contains("server.response_cache_ttl"), "{e}");
        let e = err("[server]\nauth_listen = [\"nonsense\"]\n");
        assert!(e.starts_with("<config>:2:"), "{e}");
    }

    #[test]
    fn policy_and_directory_order() {
        let c = from_toml("[directory]\norder = [\"local\", \"entra\"]\n\n[[policy]]\ngroup = \"Engineering\"\nvlan = \"20\"\n\n[[policy]]\nkind = \"device\"\nvlan = \"30\"\nfilter_id = \"iot\"\n").unwrap();
        assert_eq!(c.directory_order, vec![DirectoryKind::Local, DirectoryKind::Entra]);
        assert_eq!(c.policy.len(), 2);
        assert_eq!(c.policy[0].vlan.as_deref(), Some("20"));
        assert_eq!(from_toml("").unwrap().directory_order, DEFAULT_DIRECTORY_ORDER.to_vec());
        let e = err("[[policy]]\ngroup = \"x\"\nvlan = \"20\"\n\n[[policy]]\ngroup = \"y\"\nvlan = \"99999\"\n");
        assert!(e.starts_with("<config>:5:"), "{e}");
        assert!(e.contains("policy[1]"), "{e}");
        let e = err("[[policy]]\ngroup = \"x\"\nvlan = \"20\"\ncolour = \"red\"\n");
        assert!(e.starts_with("<config>:4:1: colour: unknown field"), "{e}");
        let e = err("[directory]\norder = [\"entra\", \"entra\"]\n");
        assert!(e.contains("directory.order: entra is listed twice"), "{e}");
        let e = err("[directory]\norder = [\"ldap\"]\n");
        assert!(e.starts_with("<config>:2:"), "{e}");
    }

    #[test]
    fn entra_section() {
        let c = from_toml("[entra]\nauthority_host = \"http://127.0.0.1:9999/\"\ngraph_endpoint = \"https://graph.microsoft.us\"\nsync_interval = \"5m\"\n").unwrap();
        assert_eq!(c.entra.authority_host, "http://127.0.0.1:9999");
        assert_eq!(c.entra.graph_endpoint, "https://graph.microsoft.us");
        assert_eq!(c.entra.sync_interval, Duration::from_secs(300));
        assert_eq!(
            from_toml("").unwrap().entra.graph_endpoint,
            "https://graph.microsoft.com"
        );
        let e = err("[entra]\ngraph_endpoint = \"http://graph.example.com\"\n");
        assert!(e.starts_with("<config>:2:18: entra.graph_endpoint:"), "{e}");
        let e = err("[entra]\nsync_interval = \"soon\"\n");
        assert!(e.contains("entra.sync_interval"), "{e}");
    }

    fn write_secret(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, "from-file\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn secret_file_is_read_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        write_secret(&dir.path().join("nas.secret"), 0o600);
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "[[clients]]\nname = \"a\"\naddress = \"::1\"\nsecret_file = \"nas.secret\"\n",
        )
        .unwrap();
        let c = read_config(&cfg).unwrap();
        assert_eq!(c.clients[0].secret, b"from-file");
        std::fs::write(
            &cfg,
            "[[clients]]\nname = \"a\"\naddress = \"::1\"\nsecret_file = \"missing\"\n",
        )
        .unwrap();
        let e = read_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("c.toml:4:15: clients[0].secret_file: cannot read"), "{e}");
    }

    #[test]
    fn coa_port_and_secret() {
        let client = "[[clients]]\nname = \"a\"\naddress = \"::1\"\nsecret = \"s\"\n";
        let c = from_toml(client).unwrap();
        assert!(c.clients[0].coa.is_none());
        let c = from_toml(&format!("{client}coa_port = 3799\n")).unwrap();
        let coa = c.clients[0].coa.as_ref().unwrap();
        assert_eq!((coa.port, coa.secret.as_slice()), (3799, &b"s"[..]));
        let c = from_toml(&format!("{client}coa_port = 1700\ncoa_secret = \"other\"\n")).unwrap();
        let coa = c.clients[0].coa.as_ref().unwrap();
        assert_eq!((coa.port, coa.secret.as_slice()), (1700, &b"other"[..]));
        assert!(!format!("{c:?}").contains("other"), "the CoA secret is redacted");
        let e = err(&format!("{client}coa_port = 0\n"));
        assert!(e.contains("clients[0].coa_port: must be a port"), "{e}");
        let e = err(&format!("{client}coa_secret = \"x\"\n"));
        assert!(e.contains("clients[0].coa_port") && e.contains("no coa_port"), "{e}");
        let e = err(&format!("{client}coa_port = 3799\ncoa_secret = \"\"\n"));
        assert!(e.contains("clients[0].coa_secret: must not be empty"), "{e}");
    }

    #[test]
    fn secret_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("nas.secret");
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "[[clients]]\nname = \"a\"\naddress = \"::1\"\nsecret_file = \"nas.secret\"\n",
        )
        .unwrap();
        for mode in [0o644, 0o640] {
            write_secret(&secret, mode);
            let e = read_config(&cfg).unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "c.toml:4:15: clients[0].secret_file: {} has mode {mode:04o}",
                    secret.display()
                )),
                "{e}"
            );
            assert!(e.contains(&format!("chmod 600 {}", secret.display())), "{e}");
        }
        write_secret(&secret, 0o400);
        assert_eq!(read_config(&cfg).unwrap().clients[0].secret, b"from-file");
    }

    fn ad_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_secret(&dir.path().join("ad.secret"), 0o600);
        dir
    }

    fn ad_read(dir: &Path, body: &str) -> Result<Config, String> {
        let cfg = dir.join("c.toml");
        std::fs::write(&cfg, format!("[ad]\n{body}")).unwrap();
        read_config(&cfg).map_err(|e| e.to_string())
    }

    const AD_KEYS: &str = "bind_dn = \"CN=svc,CN=Users,DC=corp,DC=example\"\n\
        bind_password_file = \"ad.secret\"\nbase_dn = \"DC=corp,DC=example\"\n";

    #[test]
    fn ad_section() {
        let dir = ad_dir();
        assert!(from_toml("").unwrap().ad.is_none());
        let c = ad_read(
            dir.path(),
            &format!("urls = [\"ldaps://dc1.corp.example\", \"ldap://127.0.0.1:389/\"]\n{AD_KEYS}"),
        )
        .unwrap();
        let ad = c.ad.unwrap();
        assert_eq!(ad.urls, ["ldaps://dc1.corp.example", "ldap://127.0.0.1:389"]);
        assert_eq!(ad.bind_password.as_bytes(), b"from-file");
        assert_eq!(ad.bind_dn, "CN=svc,CN=Users,DC=corp,DC=example");
        assert_eq!(ad.base_dn, "DC=corp,DC=example");
        assert_eq!(ad.domain, None);
        assert_eq!(ad.timeout, Duration::from_secs(3));
        assert_eq!(ad.cache_ttl, Duration::from_secs(300));
        assert!(!ad.start_tls && ad.ca_certs.is_empty());
        assert!(!format!("{ad:?}").contains("from-file"));

        let c = ad_read(
            dir.path(),
            &format!(
                "urls = [\"ldap://dc1.corp.example\"]\nstart_tls = true\ndomain = \"corp\"\ntimeout = \"500ms\"\n\
                 cache_ttl = \"1m\"\n{AD_KEYS}"
            ),
        )
        .unwrap();
        let ad = c.ad.unwrap();
        assert!(ad.start_tls);
        assert_eq!(ad.domain.as_deref(), Some("CORP"));
        assert_eq!(ad.timeout, Duration::from_millis(500));
        assert_eq!(ad.cache_ttl, Duration::from_secs(60));
    }

    #[test]
    fn ad_errors_name_file_line_and_key() {
        let dir = ad_dir();
        let e = ad_read(dir.path(), &format!("urls = [\"ldap://dc1.corp.example\"]\n{AD_KEYS}")).unwrap_err();
        assert!(
            e.contains("c.toml:2:9: ad.urls: ldap://dc1.corp.example: plain LDAP"),
            "{e}"
        );
        let e = ad_read(
            dir.path(),
            &format!("urls = [\"ldaps://dc1.corp.example\"]\nstart_tls = true\n{AD_KEYS}"),
        )
        .unwrap_err();
        assert!(e.contains("c.toml:2:9: ad.urls:"), "{e}");
        let e = ad_read(dir.path(), &format!("urls = [\"http://dc1\"]\n{AD_KEYS}")).unwrap_err();
        assert!(e.contains("ad.urls: http://dc1: must start with ldaps://"), "{e}");
        let e = ad_read(dir.path(), &format!("urls = []\n{AD_KEYS}")).unwrap_err();
        assert!(e.contains("c.toml:2:8: ad.urls: needs at least one URL"), "{e}");
        let e = ad_read(dir.path(), &format!("urls = [\"ldaps://dc1:0\"]\n{AD_KEYS}")).unwrap_err();
        assert!(e.contains("bad port"), "{e}");
        let e = ad_read(
            dir.path(),
            &format!("urls = [\"ldaps://dc1\"]\ntimeout = \"soon\"\n{AD_KEYS}"),
        )
        .unwrap_err();
        assert!(e.contains("c.toml:3:11: ad.timeout:"), "{e}");
        let e = ad_read(
            dir.path(),
            &format!("urls = [\"ldaps://dc1\"]\ndomain = \"corp.example\"\n{AD_KEYS}"),
        )
        .unwrap_err();
        assert!(e.contains("c.toml:3:10: ad.domain:"), "{e}");
        let e = ad_read(
            dir.path(),
            &format!("urls = [\"ldaps://dc1\"]\nca_file = \"none.pem\"\n{AD_KEYS}"),
        )
        .unwrap_err();
        assert!(e.contains("c.toml:3:11: ad.ca_file:") && e.contains("none.pem"), "{e}");
        let e = ad_read(
            dir.path(),
            "urls = [\"ldaps://dc1\"]\nbind_dn = \"x\"\nbind_password_file = \"ad.secret\"\nbase_dn = \"O=x\"\n",
        )
        .unwrap_err();
        assert!(e.contains("c.toml:5:11: ad.base_dn:"), "{e}");
        let e = ad_read(dir.path(), "urls = [\"ldaps://dc1\"]\n").unwrap_err();
        assert!(e.contains("missing field"), "{e}");
    }

    #[test]
    fn ad_bind_password_file_must_be_private_and_present() {
        let dir = ad_dir();
        let secret = dir.path().join("ad.secret");
        let body = format!("urls = [\"ldaps://dc1\"]\n{AD_KEYS}");
        write_secret(&secret, 0o640);
        let e = ad_read(dir.path(), &body).unwrap_err();
        assert!(
            e.contains(&format!(
                "c.toml:4:22: ad.bind_password_file: {} has mode 0640",
                secret.display()
            )),
            "{e}"
        );
        write_secret(&secret, 0o604);
        assert!(ad_read(dir.path(), &body).unwrap_err().contains("has mode 0604"));
        std::fs::remove_file(&secret).unwrap();
        let e = ad_read(dir.path(), &body).unwrap_err();
        assert!(
            e.contains(&format!("ad.bind_password_file: cannot read {}", secret.display())),
            "{e}"
        );
        write_secret(&secret, 0o600);
        std::fs::write(&secret, "\n").unwrap();
        assert!(ad_read(dir.path(), &body).unwrap_err().contains("is empty"));
    }

    #[test]
    fn missing_file_is_named() {
        let e = read_config(Path::new("/nonexistent/x.toml")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/x.toml: cannot read"), "{e}");
    }

    #[test]
    fn log_format_and_level() {
        assert_eq!(from_toml("").unwrap().log, LogConfig::default());
        let c = from_toml("[log]\nformat = \"json\"\nlevel = \"warn,entra_radius::sync=debug\"\n").unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "warn,entra_radius::sync=debug");
        let e = from_toml("[log]\nformat = \"xml\"\n").unwrap_err().to_string();
        assert!(e.contains("xml") && e.contains("text") && e.contains("json"), "{e}");
        let e = from_toml("[log]\nlevel = \"loud[\"\n").unwrap_err().to_string();
        assert!(e.contains("log.level") && e.contains("not a log level"), "{e}");
    }

    #[test]
    fn history_retention() {
        assert_eq!(from_toml("").unwrap().history, HistoryConfig::default());
        let c = from_toml("[history]\nkeep = \"7d\"\nmax_rows = 1000\nenabled = false\n").unwrap();
        assert_eq!(
            c.history,
            HistoryConfig {
                enabled: false,
                keep: Duration::from_secs(7 * 86400),
                max_rows: 1000
            }
        );
        let e = from_toml("[history]\nkeep = \"10s\"\n").unwrap_err().to_string();
        assert!(e.contains("history.keep: must be at least 1m"), "{e}");
        let e = from_toml("[history]\nmax_rows = 0\n").unwrap_err().to_string();
        assert!(e.contains("history.max_rows"), "{e}");
    }

    /// What a config means, with the local users' credentials (which
    /// `Debug` leaves out).
    fn meaning(c: &Config) -> String {
        let creds: Vec<String> = c
            .local_users
            .iter()
            .map(|u| match &u.credential {
                UserCredential::Cleartext(p) => format!("{}={:?}", u.name, p.as_bytes()),
                UserCredential::Argon2(h) => format!("{}~{h}", u.name),
            })
            .collect();
        format!("{c:?} {creds:?}")
    }

    /// `from_toml` and the TOML parser alone say the same of `text`.
    fn same_as_the_parser(text: &str) {
        let slow = parse_with(text, Path::new("<config>"), None);
        match (from_toml(text), slow) {
            (Ok(a), Ok(b)) => assert_eq!(meaning(&a), meaning(&b), "{text}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
            (a, b) => panic!("{text}: {a:?} but the parser alone: {b:?}"),
        }
    }

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$Zm9vYmFyYmF6cXV4cXV1eA";

    #[test]
    fn plain_local_tables_are_read_as_the_parser_reads_them() {
        let interleaved = format!(
            "[[local.users]]\nname = \"Alice\"\npassword = \"pw # not a comment\"\n\n\
             [[local.macs]]\nmac = \"00:11:22:33:44:55\"  # a comment\ndescription = 'printer \"2nd\" floor \\ east'\n\
             [server]\nstate_dir = \"/tmp/[x\"\nauth_listen = [\n  \"127.0.0.1:1812\", # [\n]\n\
             [[local.users]]\n\t# indented comment\n\tpassword_hash = \"{HASH}\"\n\tname='CORP\\bob'\n\
             [[clients]]\nname = \"c\"\naddress = \"10.0.0.1\"\nsecret = \"s\"\n\
             [[local.users]]\nname=\"zoë\"\npassword=\"\t\"\n"
        );
        let crlf = interleaved.replace('\n', "\r\n");
        for text in [FULL, interleaved.as_str(), crlf.as_str()] {
            assert!(plain_local::split(text).is_some(), "{text}");
            same_as_the_parser(text);
        }
        let c = from_toml(&interleaved).unwrap();
        let names: Vec<&str> = c.local_users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["Alice", "CORP\\bob", "zoë"]);
        assert_eq!(
            c.local_macs[0].description.as_deref(),
            Some("printer \"2nd\" floor \\ east")
        );
        assert_eq!(c.server.state_dir, PathBuf::from("/tmp/[x"));
    }

    #[test]
    fn anything_else_goes_through_the_parser() {
        let user = "[[local.users]]\nname = \"a\"\npassword = \"p\"\n";
        let declined = [
            // A multi-line string could hold what looks like a table.
            format!("[server]\nstate_dir = '''\n{user}'''\n{user}"),
            format!("[server]\nstate_dir = \"\"\"/x\"\"\"\n{user}"),
            // `local` defined another way too.
            format!("[local]\nusers = []\n{user}"),
            format!("local.macs = []\n{user}"),
            format!("{user}[\"local\".users]\n"),
            format!("{user}[[ local.users ]]\nname = \"b\"\npassword = \"p\"\n"),
            // A table of theirs in another form.
            "[[local.users]]\nname = \"a\\u0062\"\npassword = \"p\"\n".into(),
            "[[local.users]]\nname = \"a\"\nnmae = \"b\"\n".into(),
            "[[local.users]]\nname = \"a\"\nname = \"b\"\npassword = \"p\"\n".into(),
            "[[local.users]]\nname = 5\n".into(),
            "[[local.users]]\npassword = \"p\"\n".into(),
            "[[local.users]]\nname = \"a\" password = \"p\"\n".into(),
            "[[local.users]]\nname = \"a\"\npassword = { x = 1 }\n".into(),
            "[[local.macs]]\nmac = \"00-11-22-33-44-55\"\ndescription = \"x\u{7}\"\n".into(),
            // Inside a value that spans lines, a header is no header.
            format!("x = [\n{user}]\n"),
        ];
        for text in &declined {
            assert!(plain_local::split(text).is_none(), "{text}");
            same_as_the_parser(text);
        }
        // Read by the plain reader, refused by validation: the error comes
        // from the parser's spans, as before.
        for text in [
            format!("{user}[[local.users]]\nname = \"A\"\npassword = \"q\"\n"),
            format!("{user}[[local.users]]\nname = \"00:11:22:33:44:55\"\npassword = \"q\"\n"),
            "[[local.macs]]\nmac = \"00-11-22\"\n".into(),
            format!("{user}[server]\nthreads = 0\n"),
        ] {
            assert!(plain_local::split(&text).is_some(), "{text}");
            same_as_the_parser(&text);
        }
        let e = err("[[local.users]]\nname = \"a\"\npassword = \"p\"\n\n[[local.users]]\nname = \"b\"\nnmae = \"c\"\n");
        assert!(e.starts_with("<config>:7:1: nmae: unknown field `nmae`"), "{e}");
    }
}
