//! The TLS engine under EAP-TLS and EAP-TTLS: rustls driven by bytes, not
//! sockets (EAP-NOTES §5). A [`TlsSession`] takes one reassembled TLS
//! message from the peer and gives back the flight to send, whether the
//! handshake has just finished, and any application data.
//!
//! rustls reads the wall clock for certificate validity and draws its own
//! randomness; apart from that nothing here does I/O.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{HandshakeKind, ProtocolVersion, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::EapType;
use super::tls_frame::MAX_TLS_MESSAGE;

/// Sessions kept for TLS 1.2 session-id resumption and TLS 1.3 tickets.
const SESSION_CACHE: usize = 4096;

/// The TLS versions a server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// What the server is configured with, already read from files.
pub struct TlsMaterial {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub client_cas: Vec<CertificateDer<'static>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    pub min_version: MinVersion,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("the CA file holds no usable certificate: {0}")]
    Roots(String),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("server certificate or key refused: {0}")]
    ServerCert(String),
}

/// The two rustls server configurations, built once (and again on reload).
pub struct TlsConfigs {
    /// EAP-TLS: client certificates required, resumption on.
    pub tls: Arc<ServerConfig>,
    /// EAP-TTLS: no client certificate, resumption off (the inner identity
    /// cannot ride in the ticket, EAP-NOTES §5).
    pub ttls: Arc<ServerConfig>,
}

impl TlsConfigs {
    pub fn new(m: TlsMaterial) -> Result<TlsConfigs, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match m.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut roots = RootCertStore::empty();
        for ca in &m.client_cas {
            roots.add(ca.clone()).map_err(|e| TlsSetupError::Roots(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsSetupError::Roots("no certificates".into()));
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .with_crls(m.crls.clone())
            .build()
            .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
        let builder = |p: &Arc<CryptoProvider>| {
            ServerConfig::builder_with_provider(p.clone())
                .with_protocol_versions(versions)
                .map_err(|e| TlsSetupError::ServerCert(e.to_string()))
        };
        let mut tls = builder(&provider)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(m.chain.clone(), m.key.clone_key())
            .map_err(|e| TlsSetupError::ServerCert(e.to_string()))?;
        tls.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        tls.max_fragment_size = None;
        let mut ttls = builder(&provider)?
            .with_no_client_auth()
            .with_single_cert(m.chain, m.key)
            .map_err(|e| TlsSetupError::ServerCert(e.to_string()))?;
        ttls.session_storage = Arc::new(NoServerSessionStorage {});
        ttls.send_tls13_tickets = 0;
        Ok(TlsConfigs {
            tls: Arc::new(tls),
            ttls: Arc::new(ttls),
        })
    }

    pub fn for_method(&self, method: EapType) -> Arc<ServerConfig> {
        if method == EapType::TTLS {
            self.ttls.clone()
        } else {
            self.tls.clone()
        }
    }
}

/// The TLS version a handshake settled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Tls12 => "1.2",
            Version::Tls13 => "1.3",
        }
    }
}

/// What one message from the peer produced.
#[derive(Debug, Default)]
pub struct Fed {
    /// TLS records to send back (possibly empty).
    pub flight: Vec<u8>,
    /// The handshake finished while processing this message.
    pub just_finished: bool,
    /// Application data the peer sent (TTLS inner AVPs).
    pub plaintext: Vec<u8>,
}

/// The handshake failed; `flight` holds the alert to send (in an EAP
/// Request, before the reject; RFC 5216 §2.1.4).
#[derive(Debug)]
pub struct TlsFailure {
    pub reason: String,
    pub flight: Vec<u8>,
}

/// One TLS server connection inside an EAP conversation.
pub struct TlsSession {
    conn: ServerConnection,
    method: EapType,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("method", &self.method)
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl TlsSession {
    pub fn new(config: Arc<ServerConfig>, method: EapType) -> Result<TlsSession, TlsFailure> {
        let conn = ServerConnection::new(config).map_err(|e| TlsFailure {
            reason: format!("TLS setup: {e}"),
            flight: Vec::new(),
        })?;
        Ok(TlsSession { conn, method })
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Feeds one whole TLS message from the peer (never the same bytes
    /// twice: retransmissions are answered from the response cache).
    pub fn feed(&mut self, mut input: &[u8]) -> Result<Fed, TlsFailure> {
        let was_handshaking = self.conn.is_handshaking();
        while !input.is_empty() {
            match self.conn.read_tls(&mut input) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(self.fail(format!("TLS input refused: {e}"))),
            }
            if let Err(e) = self.conn.process_new_packets() {
                return Err(self.fail(describe(&e)));
            }
        }
        let mut fed = Fed {
            just_finished: was_handshaking && !self.conn.is_handshaking(),
            ..Fed::default()
        };
        let mut buf = [0u8; 4096];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if fed.plaintext.len() + n > MAX_TLS_MESSAGE {
                        return Err(self.fail("application data over 64 KiB".into()));
                    }
                    fed.plaintext.extend_from_slice(&buf[..n]);
                }
                Err(_) => break,
            }
        }
        fed.flight = self.drain();
        Ok(fed)
    }

    /// Adds the TLS 1.3 commitment message (RFC 9190 §2.5: one byte 0x00 of
    /// application data) to the pending flight and returns the flight.
    pub fn commit(&mut self) -> Vec<u8> {
        // Writing to rustls' own buffer does not fail once the handshake is
        // done; if it ever did, the peer would miss the commitment and fail
        // the exchange on its side, which is safe.
        let _ = self.conn.writer().write_all(&[0]);
        self.drain()
    }

    fn drain(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        out
    }

    fn fail(&mut self, reason: String) -> TlsFailure {
        TlsFailure {
            reason,
            flight: self.drain(),
        }
    }

    pub fn version(&self) -> Option<Version> {
        match self.conn.protocol_version()? {
            ProtocolVersion::TLSv1_3 => Some(Version::Tls13),
            ProtocolVersion::TLSv1_2 => Some(Version::Tls12),
            _ => None,
        }
    }

    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// The peer's end-entity certificate (restored on resumption too).
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.conn.peer_certificates()?.first()
    }

    /// The 64-byte MSK (RFC 5216 §2.3, RFC 9190 §2.3, RFC 5281 §8, RFC 9427
    /// §2.2), taken from the 128 bytes of key material.
    pub fn msk(&self) -> Option<[u8; 64]> {
        let (label, context) = msk_label(self.version()?, self.method);
        // HKDF mixes the length into the output: always ask for 128.
        let km = self.conn.export_keying_material([0u8; 128], label, context).ok()?;
        let mut msk = [0u8; 64];
        msk.copy_from_slice(&km[..64]);
        Some(msk)
    }
}

/// The exporter label and context that give the MSK (RFC 5216 §2.3, RFC 9190
/// §2.3, RFC 5281 §8, RFC 9427 §2.2); the peer's side (`test-auth`) uses the
/// same.
pub fn msk_label(version: Version, method: EapType) -> (&'static [u8], Option<&'static [u8]>) {
    match (version, method) {
        (Version::Tls12, EapType::TTLS) => (b"ttls keying material", None),
        (Version::Tls12, _) => (b"client EAP encryption", None),
        (Version::Tls13, EapType::TTLS) => (b"EXPORTER_EAP_TLS_Key_Material", Some(&[0x15])),
        (Version::Tls13, _) => (b"EXPORTER_EAP_TLS_Key_Material", Some(&[0x0d])),
    }
}

/// A rustls error in words an administrator can act on.
fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    match e {
        Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "client certificate expired".into()
        }
        Error::InvalidCertificate(CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }) => {
            "client certificate not valid yet".into()
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "client certificate not issued by a CA in ca_file".into()
        }
        Error::InvalidCertificate(CertificateError::BadSignature) => {
            "client certificate not issued by a CA in ca_file (its signature does not verify)".into()
        }
        Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
        ) => "client certificate not for client authentication (extended key usage)".into(),
        Error::InvalidCertificate(CertificateError::Revoked) => "client certificate revoked (CRL)".into(),
        Error::InvalidCertificate(c) => format!("client certificate refused: {c:?}"),
        Error::NoCertificatesPresented => "the peer sent no client certificate".into(),
        Error::AlertReceived(a) => format!("the peer sent TLS alert {a:?}"),
        other => format!("TLS handshake failed: {other}"),
    }
}
