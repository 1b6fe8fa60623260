//! A small RADIUS client for `entra-radius test-auth`: builds one
//! Access-Request (PAP, CHAP or MAB), sends it with retries, and checks the
//! reply's Response Authenticator and Message-Authenticator before
//! trusting a word of it. [`eap_tls`] holds a whole EAP-TLS conversation
//! over it, as a supplicant would.

pub mod eap_tls;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngExt;
use tokio::net::UdpSocket;

use crate::directory::MacAddr;
use crate::eap::message::push_eap_message;
use crate::proto::attr::service_type;
use crate::proto::crypto::{MessageAuth, chap_response, check_message_authenticator, hide_password, verify_response};
use crate::proto::{AttrType, Builder, ClientSecret, Code, Packet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    Pap,
    Chap,
    /// MAB with Service-Type = Call-Check and no password (Cisco style).
    CallCheck,
    /// An EAP-Message ([`Request::eap_message`]) and no password.
    Eap,
}

#[derive(Debug)]
pub struct Request {
    pub server: SocketAddr,
    pub user: String,
    pub password: Option<String>,
    pub credentials: Credentials,
    pub calling_station_id: Option<String>,
    pub nas_identifier: Option<String>,
    pub message_authenticator: bool,
    pub timeout: Duration,
    pub attempts: u32,
    /// With [`Credentials::Eap`]: the EAP packet to carry.
    pub eap_message: Option<Vec<u8>>,
    /// The State of the last Access-Challenge, echoed.
    pub state: Option<Vec<u8>>,
}

impl Request {
    /// An MAB request as a switch sends it: the MAC as User-Name, password
    /// (for PAP and CHAP) and Calling-Station-Id.
    pub fn mab(server: SocketAddr, mac: MacAddr, credentials: Credentials) -> Request {
        let name = format!(
            "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            mac.0[0], mac.0[1], mac.0[2], mac.0[3], mac.0[4], mac.0[5]
        );
        Request {
            password: (credentials != Credentials::CallCheck).then(|| name.clone()),
            calling_station_id: Some(mac.to_string()),
            ..Request::new(server, name, credentials)
        }
    }

    /// A request for `user` with the defaults: no password, no
    /// Calling-Station-Id, Message-Authenticator, 3 attempts of 3 s.
    pub fn new(server: SocketAddr, user: String, credentials: Credentials) -> Request {
        Request {
            server,
            user,
            password: None,
            credentials,
            calling_station_id: None,
            nas_identifier: None,
            message_authenticator: true,
            timeout: Duration::from_secs(3),
            attempts: 3,
            eap_message: None,
            state: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestAuthError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode the request: {0}")]
    Encode(#[from] crate::proto::EncodeError),
    #[error("EAP: {0}")]
    Eap(#[from] crate::eap::EapError),
    #[error("{path}: {reason}")]
    File { path: std::path::PathBuf, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("the server broke the EAP conversation: {0}")]
    Protocol(String),
    #[error(
        "no reply from {server} after {attempts} attempts of {timeout:?} (wrong secret, unknown client, or server down?)"
    )]
    Timeout {
        server: SocketAddr,
        attempts: u32,
        timeout: Duration,
    },
}

#[derive(Debug)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub elapsed: Duration,
    pub from: SocketAddr,
    /// Message-Authenticator of the reply.
    pub message_auth: MessageAuth,
    /// The request's authenticator (MS-MPPE keys are encrypted with it).
    pub request_authenticator: [u8; 16],
    pub ignored_invalid: u32,
}

impl Reply {
    pub fn packet(&self) -> Packet<'_> {
        Packet::decode(&self.bytes).expect("checked on receipt")
    }
}

/// Builds the Access-Request bytes.
pub fn build(
    req: &Request,
    secret: &ClientSecret,
    identifier: u8,
    authenticator: [u8; 16],
) -> Result<Vec<u8>, TestAuthError> {
    let mut b = if req.message_authenticator {
        Builder::request_with_ma(Code::ACCESS_REQUEST, identifier, authenticator)
    } else {
        Builder::new(Code::ACCESS_REQUEST, identifier, authenticator)
    };
    b.push(AttrType::USER_NAME, req.user.as_bytes())?;
    let password = req.password.as_deref().unwrap_or("");
    match req.credentials {
        Credentials::Pap => {
            b.push(
                AttrType::USER_PASSWORD,
                &hide_password(password.as_bytes(), secret, &authenticator)?,
            )?;
        }
        Credentials::Chap => {
            let chap_id = authenticator[0];
            let mut v = vec![chap_id];
            v.extend_from_slice(&chap_response(chap_id, password.as_bytes(), &authenticator));
            b.push(AttrType::CHAP_PASSWORD, &v)?;
        }
        Credentials::CallCheck => {
            b.push_u32(AttrType::SERVICE_TYPE, service_type::CALL_CHECK)?;
        }
        Credentials::Eap => {
            push_eap_message(&mut b, req.eap_message.as_deref().unwrap_or_default())?;
            // What an Ethernet switch says: EAP packets of up to 1400 bytes.
            b.push_u32(AttrType::FRAMED_MTU, 1400)?;
        }
    }
    if let Some(state) = &req.state {
        b.push(AttrType::STATE, state)?;
    }
    if let Some(c) = &req.calling_station_id {
        b.push(AttrType::CALLING_STATION_ID, c.as_bytes())?;
    }
    b.push(
        AttrType::NAS_IDENTIFIER,
        req.nas_identifier
            .as_deref()
            .unwrap_or("entra-radius-test-auth")
            .as_bytes(),
    )?;
    b.push_u32(AttrType::NAS_PORT_TYPE, 15)?; // Ethernet
    Ok(b.finish_request(secret))
}

/// Sends the request and waits for a reply that authenticates; replies that
/// do not (wrong id, wrong authenticator) are ignored and counted.
pub async fn send(req: &Request, secret: &ClientSecret) -> Result<Reply, TestAuthError> {
    let bind: SocketAddr = if req.server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .expect("constant");
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(req.server).await?;
    let mut rng = rand::rng();
    let identifier: u8 = rng.random();
    let authenticator: [u8; 16] = rng.random();
    let bytes = build(req, secret, identifier, authenticator)?;
    let mut buf = vec![0u8; 65536];
    let mut ignored = 0;
    let start = Instant::now();
    for _ in 0..req.attempts.max(1) {
        socket.send(&bytes).await?;
        let deadline = tokio::time::Instant::now() + req.timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: connection refused (nothing listening there?)", req.server),
                    )
                    .into());
                }
                Ok(r) => r?,
            };
            let Ok(p) = Packet::decode(&buf[..n]) else {
                ignored += 1;
                continue;
            };
            if p.identifier() != identifier || !verify_response(&p, &authenticator, secret) {
                ignored += 1;
                continue;
            }
            let message_auth = check_message_authenticator(&p, secret, Some(&authenticator));
            if message_auth == MessageAuth::Invalid {
                ignored += 1;
                continue;
            }
            return Ok(Reply {
                bytes: p.bytes().to_vec(),
                elapsed: start.elapsed(),
                from: req.server,
                message_auth,
                request_authenticator: authenticator,
                ignored_invalid: ignored,
            });
        }
    }
    Err(TestAuthError::Timeout {
        server: req.server,
        attempts: req.attempts.max(1),
        timeout: req.timeout,
    })
}
