//! `test-auth --eap-tls`: one EAP-TLS conversation held the way a supplicant
//! holds it (RFC 5216, RFC 9190), over the RADIUS client of this module's
//! parent, with rustls as the peer's TLS. An administrator can try 802.1X
//! with a certificate without a switch or `eapol_test`.
//!
//! The peer's side of the framing reuses the server's pieces
//! ([`Fragmenter::for_peer`], [`Reassembler`]); the MSK comes from the same
//! exporter labels ([`msk_label`]), so the MS-MPPE keys of the Access-Accept
//! are checked against a key this side derived on its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConnection, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::{Credentials, Reply, Request, TestAuthError, send};
use crate::eap::message::eap_message;
use crate::eap::tls::{Version, msk_label};
use crate::eap::tls_frame::{Fragmenter, Reassembled, Reassembler, TlsData};
use crate::eap::{EapCode, EapPacket, EapType};
use crate::proto::crypto::{MS_MPPE_RECV_KEY, MS_MPPE_SEND_KEY, VENDOR_MICROSOFT, mppe_decrypt_key};
use crate::proto::{AttrType, ClientSecret, Code};

/// A conversation that needs more round trips than this is going nowhere
/// (a full handshake with 300-byte fragments takes about 20).
const MAX_ROUNDS: u32 = 200;

/// What the supplicant is given.
#[derive(Debug, Clone)]
pub struct Options {
    /// EAP identity (the outer one; the server goes by the certificate).
    pub identity: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA of the server's certificate; `None`: the server is not verified.
    pub ca: Option<PathBuf>,
    /// Checked against the server certificate's names when set; with a CA
    /// only, any certificate of that CA is taken (as `eapol_test` does
    /// without `domain_suffix_match`).
    pub server_name: Option<String>,
    /// TLS data per EAP packet, as the server's `fragment_size` counts it.
    pub fragment_size: usize,
    /// `None`: 1.2 or 1.3, whichever the server picks.
    pub tls_version: Option<Version>,
}

/// How the conversation ended.
#[derive(Debug)]
pub struct Outcome {
    /// The final Access-Accept or Access-Reject.
    pub reply: Reply,
    /// RADIUS round trips, the last one included.
    pub rounds: u32,
    /// The TLS version, once negotiated.
    pub version: Option<Version>,
    /// This side's TLS error (untrusted server certificate and the like).
    pub tls_error: Option<String>,
    /// EAP-Success or EAP-Failure in the final reply, if any.
    pub eap_code: Option<EapCode>,
    /// Whether MS-MPPE-Recv-Key and -Send-Key decrypt to this side's MSK;
    /// `None` when there is nothing to compare (a reject, no handshake).
    pub keys_match: Option<bool>,
}

/// Runs one EAP-TLS conversation against `base.server`; `base` gives the
/// timeouts, NAS-Identifier and Calling-Station-Id.
pub async fn run(base: &Request, secret: &ClientSecret, opts: &Options) -> Result<Outcome, TestAuthError> {
    let config = client_config(opts)?;
    let server_name = match &opts.server_name {
        Some(n) => {
            ServerName::try_from(n.clone()).map_err(|e| TestAuthError::Tls(format!("--server-name {n:?}: {e}")))?
        }
        // Not checked without --server-name (see `Options::server_name`).
        None => ServerName::try_from("entra-radius.invalid").expect("constant"),
    };
    let mut req = Request {
        calling_station_id: base.calling_station_id.clone(),
        nas_identifier: base.nas_identifier.clone(),
        message_authenticator: base.message_authenticator,
        timeout: base.timeout,
        attempts: base.attempts,
        ..Request::new(base.server, opts.identity.clone(), Credentials::Eap)
    };
    let mut conn: Option<ClientConnection> = None;
    let mut outgoing: Option<Fragmenter> = None;
    let mut incoming = Reassembler::default();
    let mut tls_error = None;
    let mut response = EapPacket::response(0, EapType::IDENTITY, opts.identity.as_bytes()).encode()?;
    for round in 1..=MAX_ROUNDS {
        req.eap_message = Some(response);
        let reply = send(&req, secret).await?;
        let p = reply.packet();
        if p.code() != Code::ACCESS_CHALLENGE {
            let eap_code = eap_message(&p)
                .and_then(|m| EapPacket::decode(&m).ok().map(|e| e.code))
                .filter(|c| *c == EapCode::SUCCESS || *c == EapCode::FAILURE);
            let version = conn.as_ref().and_then(version_of);
            let keys_match = match (&conn, p.code()) {
                (Some(c), Code::ACCESS_ACCEPT) if !c.is_handshaking() => {
                    keys_match(c, &p, secret, &reply.request_authenticator)
                }
                _ => None,
            };
            return Ok(Outcome {
                reply,
                rounds: round,
                version,
                tls_error,
                eap_code,
                keys_match,
            });
        }
        req.state = p.get(AttrType::STATE).map(<[u8]>::to_vec);
        let bytes =
            eap_message(&p).ok_or_else(|| TestAuthError::Protocol("Access-Challenge without EAP-Message".into()))?;
        let eap = EapPacket::decode(&bytes)?;
        if eap.code != EapCode::REQUEST {
            return Err(TestAuthError::Protocol(format!(
                "EAP Code {} in an Access-Challenge",
                eap.code.0
            )));
        }
        let id = eap.identifier;
        if eap.typ != Some(EapType::TLS) {
            // Offered another method first (TTLS, say): ask for EAP-TLS.
            response = EapPacket::response(id, EapType::NAK, &[EapType::TLS.0]).encode()?;
            continue;
        }
        let frame = TlsData::decode(eap.data)?;
        // The server's ACK of one of our fragments: send the next one.
        if let Some(f) = outgoing.as_mut().filter(|f| !f.is_done()) {
            f.ack(&eap)?;
            response = f.next_response(id)?;
            continue;
        }
        let flight = if frame.flags.start() {
            let mut c = ClientConnection::new(config.clone(), server_name.clone())
                .map_err(|e| TestAuthError::Tls(e.to_string()))?;
            let hello = drain(&mut c);
            conn = Some(c);
            hello
        } else {
            match incoming.push(&frame)? {
                Reassembled::SendAck => {
                    response = EapPacket::response(id, EapType::TLS, &[0]).encode()?;
                    continue;
                }
                Reassembled::Complete(message) => {
                    let c = conn
                        .as_mut()
                        .ok_or_else(|| TestAuthError::Protocol("TLS data before EAP-TLS Start".into()))?;
                    feed(c, &message, &mut tls_error);
                    drain(c)
                }
            }
        };
        // An empty flight is the flags-only Response that lets the server
        // go on (after its last handshake flight or the TLS 1.3
        // commitment message).
        let mut f = Fragmenter::for_peer(EapType::TLS, 0, flight, opts.fragment_size);
        response = f.next_response(id)?;
        outgoing = Some(f);
    }
    Err(TestAuthError::Protocol(format!(
        "no Access-Accept or Access-Reject after {MAX_ROUNDS} round trips"
    )))
}

/// Hands one reassembled TLS message to rustls; an error is kept (rustls
/// then has an alert to send, which goes out as the next flight).
fn feed(c: &mut ClientConnection, message: &[u8], error: &mut Option<String>) {
    let mut rest = message;
    while !rest.is_empty() {
        match c.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                error.get_or_insert_with(|| e.to_string());
                return;
            }
        }
        if let Err(e) = c.process_new_packets() {
            error.get_or_insert_with(|| e.to_string());
            return;
        }
    }
    // TLS 1.3: the server's commitment message (one 0x00 byte of
    // application data, RFC 9190 §2.5) is read and dropped.
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c.reader(), &mut sink);
}

/// Everything rustls has to send.
fn drain(c: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while c.wants_write() {
        if c.write_tls(&mut out).is_err() {
            break;
        }
    }
    out
}

fn version_of(c: &ClientConnection) -> Option<Version> {
    match c.protocol_version()? {
        ProtocolVersion::TLSv1_2 => Some(Version::Tls12),
        ProtocolVersion::TLSv1_3 => Some(Version::Tls13),
        _ => None,
    }
}

/// The Accept's MS-MPPE keys against this side's MSK: Recv-Key is
/// MSK[0..32], Send-Key MSK[32..64] (RFC 5216 §2.3, as the server sends
/// them to the NAS).
fn keys_match(
    c: &ClientConnection,
    p: &crate::proto::Packet<'_>,
    secret: &ClientSecret,
    auth: &[u8; 16],
) -> Option<bool> {
    let (label, context) = msk_label(version_of(c)?, EapType::TLS);
    let km = c.export_keying_material([0u8; 128], label, context).ok()?;
    let key = |typ: u8| {
        p.vsas()
            .find(|v| v.vendor == VENDOR_MICROSOFT && v.typ == typ)
            .and_then(|v| mppe_decrypt_key(v.value, secret, auth))
    };
    Some(key(MS_MPPE_RECV_KEY).as_deref() == Some(&km[..32]) && key(MS_MPPE_SEND_KEY).as_deref() == Some(&km[32..64]))
}

fn read_file(path: &Path) -> Result<Vec<u8>, TestAuthError> {
    std::fs::read(path).map_err(|e| TestAuthError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TestAuthError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TestAuthError::File {
            path: path.to_path_buf(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TestAuthError::File {
            path: path.to_path_buf(),
            reason: "holds no certificate".into(),
        });
    }
    Ok(certs)
}

/// The rustls client: our certificate, the server verified as `opts` says.
fn client_config(opts: &Options) -> Result<Arc<ClientConfig>, TestAuthError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates(&opts.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read_file(&opts.key)?).map_err(|e| TestAuthError::File {
        path: opts.key.clone(),
        reason: format!("not a PEM private key: {e}"),
    })?;
    let verifier: Arc<dyn ServerCertVerifier> = match &opts.ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(|e| TestAuthError::File {
                    path: ca.clone(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TestAuthError::Tls(e.to_string()))?;
            Arc::new(ServerVerifier {
                ca: Some(webpki),
                check_name: opts.server_name.is_some(),
                provider: provider.clone(),
            })
        }
        None => Arc::new(ServerVerifier {
            ca: None,
            check_name: false,
            provider: provider.clone(),
        }),
    };
    let versions: &[&rustls::SupportedProtocolVersion] = match opts.tls_version {
        Some(Version::Tls12) => &[&rustls::version::TLS12],
        Some(Version::Tls13) => &[&rustls::version::TLS13],
        None => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TestAuthError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TestAuthError::File {
            path: opts.key.clone(),
            reason: format!("does not go with {}: {e}", opts.cert.display()),
        })?;
    Ok(Arc::new(config))
}

/// The server's certificate: chain to `ca` when one is given, its names
/// only when asked; the handshake signatures are always verified.
#[derive(Debug)]
struct ServerVerifier {
    ca: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = &self.ca else {
            return Ok(ServerCertVerified::assertion());
        };
        match ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
