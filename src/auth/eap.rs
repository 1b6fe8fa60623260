//! EAP in an Access-Request: the conversation table, the cheap rounds
//! answered from memory (Identity → Start, fragment ACKs, the final
//! acknowledgement), and the TLS rounds that run on their own thread pool
//! under a bound of their own ([`super::WorkKind::EapTls`]).
//!
//! Who is let in comes from the verified client certificate (EAP-TLS,
//! [`crate::eap::cert_name`]) or the inner PAP credentials (TTLS), then the
//! directory precedence and policy like any other request, on TLS
//! resumption too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rand::RngExt as _;

use super::pool::CpuPool;
use super::{Credential, Decision, EntraPasswords, Method, State, Step, accept, check_credentials};
use crate::config::{EapConfig, EapMethodName, TlsMinVersion};
use crate::directory::{Identity, Resolution};
use crate::eap::cert_name::{CertName, CertRule, cert_name};
use crate::eap::message::eap_message;
use crate::eap::session::{EapSession, Round, TlsOutcome};
use crate::eap::tls::{MinVersion, TlsConfigs, TlsMaterial, TlsSetupError, Version};
use crate::eap::tls_frame::fragment_size;
use crate::eap::{Conversations, EapCode, EapError, EapPacket, EapType, Peer, StateId};
use crate::proto::crypto::{MS_MPPE_RECV_KEY, MS_MPPE_SEND_KEY, VENDOR_MICROSOFT, mppe_encrypt_key};
use crate::proto::{AttrType, Builder, ClientSecret, EncodeError, Packet};

/// TLS rounds waiting per thread of the EAP pool. A full handshake's
/// server side is about a millisecond of CPU.
pub(super) const EAP_QUEUE_PER_THREAD: usize = 32;

/// What an EAP round puts in the reply besides the policy's attributes.
#[derive(Debug)]
pub struct EapReply {
    /// The EAP packet (Request, Success or Failure), split over EAP-Message.
    pub message: Vec<u8>,
    /// The State of a challenge; `None` on Success and Failure.
    pub state: Option<[u8; 16]>,
    /// MS-MPPE-Recv-Key and MS-MPPE-Send-Key, already encrypted for this
    /// reply (accepts only).
    pub mppe: Option<(Vec<u8>, Vec<u8>)>,
}

impl EapReply {
    pub(super) fn write(&self, b: &mut Builder) -> Result<(), EncodeError> {
        if let Some(state) = &self.state {
            b.push(AttrType::STATE, state)?;
        }
        if let Some((recv, send)) = &self.mppe {
            b.push_vsa(VENDOR_MICROSOFT, MS_MPPE_RECV_KEY, recv)?;
            b.push_vsa(VENDOR_MICROSOFT, MS_MPPE_SEND_KEY, send)?;
        }
        b.push_split(AttrType::EAP_MESSAGE, &self.message)?;
        Ok(())
    }
}

/// EAP counters for `/metrics`.
#[derive(Debug, Default)]
pub struct EapStats {
    pub started: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Conversations refused because the table was full.
    pub shed: AtomicU64,
    pub handshakes_tls12: AtomicU64,
    pub handshakes_tls13: AtomicU64,
    pub resumptions: AtomicU64,
}

impl EapStats {
    pub fn render_prometheus(&self, conversations: usize, expired: u64, out: &mut String) {
        use crate::prometheus::{Kind, family};
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        family(
            out,
            "entra_radius_eap_conversations_started_total",
            Kind::Counter,
            "EAP conversations started (Identity answered with a Start).",
        )
        .sample(&[], l(&self.started));
        family(
            out,
            "entra_radius_eap_conversations_finished_total",
            Kind::Counter,
            "EAP conversations finished, by outcome (expired: no answer for 60 s; shed: table full).",
        )
        .sample(&[("outcome", "accept")], l(&self.accepted))
        .sample(&[("outcome", "reject")], l(&self.rejected))
        .sample(&[("outcome", "expired")], expired)
        .sample(&[("outcome", "shed")], l(&self.shed));
        family(
            out,
            "entra_radius_eap_handshakes_total",
            Kind::Counter,
            "TLS handshakes completed under EAP, by TLS version.",
        )
        .sample(&[("version", "1.2")], l(&self.handshakes_tls12))
        .sample(&[("version", "1.3")], l(&self.handshakes_tls13));
        family(
            out,
            "entra_radius_eap_resumptions_total",
            Kind::Counter,
            "TLS handshakes that resumed an earlier session.",
        )
        .sample(&[], l(&self.resumptions));
        family(
            out,
            "entra_radius_eap_conversations",
            Kind::Gauge,
            "EAP conversations in progress.",
        )
        .sample(&[], conversations);
    }
}

/// One conversation in the table.
struct Conv {
    session: EapSession,
    /// EAP-TLS: the accepting decision taken at the end of the handshake,
    /// sent when the peer acknowledges the last flight.
    pending: Option<Decision>,
}

/// The EAP server: configuration, conversations, the TLS pool.
pub struct EapServer {
    configs: Arc<TlsConfigs>,
    methods: Vec<EapType>,
    fragment_size: usize,
    conversations: Conversations<Conv>,
    pool: Arc<CpuPool>,
    pub stats: EapStats,
    expired: AtomicU64,
}

impl EapServer {
    pub fn new(cfg: &EapConfig, pool: Arc<CpuPool>) -> Result<EapServer, TlsSetupError> {
        let configs = tls_configs(cfg)?;
        Ok(EapServer {
            configs: Arc::new(configs),
            methods: cfg
                .methods
                .iter()
                .map(|m| match m {
                    EapMethodName::Tls => EapType::TLS,
                    EapMethodName::Ttls => EapType::TTLS,
                })
                .collect(),
            fragment_size: cfg.fragment_size,
            conversations: Conversations::default(),
            pool,
            stats: EapStats::default(),
            expired: AtomicU64::new(0),
        })
    }

    pub fn pool(&self) -> &Arc<CpuPool> {
        &self.pool
    }

    pub fn render_prometheus(&self, out: &mut String) {
        self.purge(Instant::now());
        self.stats
            .render_prometheus(self.conversations.len(), self.expired.load(Ordering::Relaxed), out);
    }

    /// Drops conversations idle for 60 s, counting them.
    fn purge(&self, now: Instant) {
        let n = self.conversations.purge_expired(now);
        self.expired.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One EAP round from memory, or the TLS work to defer.
    pub(super) fn step(
        self: &Arc<Self>,
        passwords: &Arc<EntraPasswords>,
        packet: &Packet<'_>,
        secret: &ClientSecret,
        nas: &str,
    ) -> Step {
        let outer = packet
            .get(AttrType::USER_NAME)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let Some(bytes) = eap_message(packet) else {
            return Step::Done(Decision::reject(Method::Eap, outer, None, "no EAP-Message"));
        };
        let resp = match EapPacket::decode(&bytes) {
            Ok(p) => p,
            Err(e) => return Step::Done(self.failure(outer, 0, format!("malformed EAP-Message: {e}"))),
        };
        let peer = Peer {
            nas: nas.to_string(),
            calling_station_id: packet.get(AttrType::CALLING_STATION_ID).unwrap_or_default().to_vec(),
        };
        let now = Instant::now();
        let Some(state_attr) = packet.get(AttrType::STATE) else {
            let mtu = packet.get_u32(AttrType::FRAMED_MTU);
            return Step::Done(self.begin(&resp, outer, peer, now, mtu));
        };
        let Some(sid) = StateId::from_attr(state_attr) else {
            return Step::Done(self.failure(outer, resp.identifier, "State attribute not issued by this server"));
        };
        let mut conv = match self.conversations.take(&sid, &peer, now) {
            Ok(c) => c,
            Err(e) => {
                if e == EapError::Expired {
                    self.expired.fetch_add(1, Ordering::Relaxed);
                }
                let why = match e {
                    EapError::UnknownState => "unknown or expired EAP State".to_string(),
                    EapError::WrongPeer => "EAP State presented by another NAS or station".to_string(),
                    other => other.to_string(),
                };
                return Step::Done(self.failure(outer, resp.identifier, why));
            }
        };
        match conv.session.receive(&resp) {
            Round::Challenge(req) => self.keep(sid, conv, req, outer),
            Round::Fail(reason) => {
                self.conversations.remove(&sid);
                Step::Done(self.failed_in(&conv.session, outer, reason))
            }
            Round::Finish => {
                self.conversations.remove(&sid);
                let reply_to = ReplyTo {
                    request_auth: *packet.authenticator(),
                    secret,
                };
                match conv.pending.take() {
                    Some(d) => Step::Done(reply_to.finish(self, d, &conv.session)),
                    None => Step::Done(self.failed_in(&conv.session, outer, "nothing to conclude")),
                }
            }
            Round::Tls(input) => Step::Wait(super::Work::Eap(Box::new(EapWork {
                server: self.clone(),
                passwords: passwords.clone(),
                sid,
                conv,
                input,
                outer,
                request_auth: *packet.authenticator(),
                secret: secret.clone(),
            }))),
        }
    }

    fn begin(&self, resp: &EapPacket<'_>, outer: String, peer: Peer, now: Instant, mtu: Option<u32>) -> Decision {
        if resp.code != EapCode::RESPONSE || resp.typ != Some(EapType::IDENTITY) {
            return self.failure(
                outer,
                resp.identifier,
                "an EAP conversation must begin with an Identity Response",
            );
        }
        // `fragment_size` counts TLS data (CONTRACT); the framer counts the
        // flags octet too.
        let fs = fragment_size(self.fragment_size + 1, mtu);
        // An abandoned conversation holds a TLS session: sweep now and then,
        // not only when the table is full.
        if self.stats.started.load(Ordering::Relaxed).is_multiple_of(64) {
            self.purge(now);
        }
        let (session, req) = EapSession::start(resp, &self.methods, fs);
        let conv = Conv { session, pending: None };
        let state: [u8; 16] = rand::rng().random();
        match self.conversations.insert(state, peer, now, conv) {
            Ok(sid) => {
                self.stats.started.fetch_add(1, Ordering::Relaxed);
                challenge(outer, sid, req)
            }
            Err(e) => {
                self.stats.shed.fetch_add(1, Ordering::Relaxed);
                self.failure(outer, resp.identifier, e.to_string())
            }
        }
    }

    fn keep(&self, sid: StateId, conv: Conv, req: Vec<u8>, outer: String) -> Step {
        match self.conversations.restore(&sid, Instant::now(), conv) {
            Ok(()) => Step::Done(challenge(outer, sid, req)),
            Err(_) => Step::Done(self.failure(outer, 0, "the EAP conversation expired meanwhile")),
        }
    }

    /// A failure inside a conversation: its method names the log line.
    fn failed_in(
        &self,
        s: &EapSession,
        identity: String,
        reason: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Decision {
        let mut d = self.failure(identity, s.final_id(), reason);
        d.method = method_of(s);
        d
    }

    fn failure(&self, identity: String, id: u8, reason: impl Into<std::borrow::Cow<'static, str>>) -> Decision {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        let mut d = Decision::reject(Method::Eap, identity, None, reason);
        d.eap = Some(EapReply {
            message: EapPacket::failure(id).encode().unwrap_or_default(),
            state: None,
            mppe: None,
        });
        d
    }

    fn count_handshake(&self, s: &EapSession) {
        match s.version() {
            Some(Version::Tls12) => self.stats.handshakes_tls12.fetch_add(1, Ordering::Relaxed),
            Some(Version::Tls13) => self.stats.handshakes_tls13.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
        if s.resumed() {
            self.stats.resumptions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn method_of(s: &EapSession) -> Method {
    if s.method() == EapType::TTLS {
        Method::EapTtls
    } else {
        Method::EapTls
    }
}

/// The rustls configurations `[eap]` asks for: building them checks that
/// the key matches the certificate and the CA file is usable
/// (`check-config` does that too).
pub fn tls_configs(cfg: &EapConfig) -> Result<TlsConfigs, TlsSetupError> {
    TlsConfigs::new(TlsMaterial {
        chain: cfg.chain.clone(),
        key: cfg.key.clone_key(),
        client_cas: cfg.client_cas.clone(),
        crls: cfg.crls.clone(),
        min_version: match cfg.tls_min_version {
            TlsMinVersion::Tls12 => MinVersion::Tls12,
            TlsMinVersion::Tls13 => MinVersion::Tls13,
        },
    })
}

/// MS-MPPE-Recv-Key = MSK[0..32], MS-MPPE-Send-Key = MSK[32..64] (RFC 5216
/// §2.3, RFC 2548), each with its own salt.
pub fn mppe_attributes(msk: &[u8; 64], secret: &ClientSecret, request_auth: &[u8; 16]) -> (Vec<u8>, Vec<u8>) {
    let salt: [u8; 2] = rand::rng().random();
    let recv = mppe_encrypt_key(&msk[..32], salt, secret, request_auth);
    let send = mppe_encrypt_key(&msk[32..], [salt[0], salt[1] ^ 1], secret, request_auth);
    (recv, send)
}

fn challenge(identity: String, sid: StateId, req: Vec<u8>) -> Decision {
    let mut d = Decision::reject(Method::Eap, identity, None, "EAP round");
    d.eap = Some(EapReply {
        message: req,
        state: Some(*sid.as_bytes()),
        mppe: None,
    });
    d
}

/// A TLS round, owning everything it needs to finish in a task.
pub(super) struct EapWork {
    server: Arc<EapServer>,
    passwords: Arc<EntraPasswords>,
    sid: StateId,
    conv: Conv,
    input: Vec<u8>,
    outer: String,
    request_auth: [u8; 16],
    secret: ClientSecret,
}

impl EapWork {
    pub(super) async fn finish(self, state: Arc<State>, argon2: &Arc<CpuPool>) -> Decision {
        let EapWork {
            server,
            passwords,
            sid,
            conv,
            input,
            outer,
            request_auth,
            secret,
        } = self;
        let configs = server.configs.clone();
        let ran = server
            .pool
            .run(move || {
                let mut conv = conv;
                let outcome = conv.session.process_tls(&input, &configs);
                (conv, outcome)
            })
            .await;
        let Some((mut conv, outcome)) = ran else {
            server.conversations.remove(&sid);
            return server.failure(outer, 0, "the TLS worker stopped");
        };
        let reply_to = ReplyTo {
            request_auth,
            secret: &secret,
        };
        match outcome {
            TlsOutcome::Challenge(req) => match server.keep(sid, conv, req, outer) {
                Step::Done(d) => d,
                Step::Wait(_) => unreachable!("keep never waits"),
            },
            TlsOutcome::Failed {
                reason,
                alert: Some(req),
            } => {
                tracing::debug!(identity = %outer, %reason, "EAP: TLS alert sent");
                match server.keep(sid, conv, req, outer) {
                    Step::Done(d) => d,
                    Step::Wait(_) => unreachable!("keep never waits"),
                }
            }
            TlsOutcome::Failed { reason, alert: None } => {
                server.conversations.remove(&sid);
                server.failed_in(&conv.session, outer, reason)
            }
            TlsOutcome::Established => {
                server.count_handshake(&conv.session);
                let decision = authorize_certificate(&state, &conv.session, &outer).await;
                if !decision.accept {
                    server.conversations.remove(&sid);
                    return reply_to.finish(&server, decision, &conv.session);
                }
                match conv.session.conclude() {
                    Round::Challenge(req) => {
                        conv.pending = Some(decision);
                        match server.keep(sid, conv, req, outer) {
                            Step::Done(d) => d,
                            Step::Wait(_) => unreachable!("keep never waits"),
                        }
                    }
                    Round::Finish => {
                        server.conversations.remove(&sid);
                        reply_to.finish(&server, decision, &conv.session)
                    }
                    Round::Fail(reason) => {
                        server.conversations.remove(&sid);
                        server.failed_in(&conv.session, outer, reason)
                    }
                    Round::Tls(_) => {
                        server.conversations.remove(&sid);
                        server.failed_in(&conv.session, outer, "unexpected TLS input")
                    }
                }
            }
            TlsOutcome::InnerPap(pap) => {
                server.count_handshake(&conv.session);
                server.conversations.remove(&sid);
                let method = Method::EapTtls;
                let name = pap.user_name.clone();
                let password = crate::proto::crypto::Password::new(pap.password);
                let decision = if password.as_bytes().is_empty() {
                    Decision::reject(method, name, None, "empty inner password")
                } else {
                    match check_credentials(&state, &passwords, &name, method, Credential::Pap(password)) {
                        Step::Done(d) => d,
                        Step::Wait(work) => {
                            super::Deferred {
                                state: state.clone(),
                                work,
                                argon2: argon2.clone(),
                            }
                            .finish()
                            .await
                        }
                    }
                };
                reply_to.finish(&server, decision, &conv.session)
            }
        }
    }
}

/// The request a final reply answers: the keys are encrypted with its
/// authenticator.
struct ReplyTo<'a> {
    request_auth: [u8; 16],
    secret: &'a ClientSecret,
}

impl ReplyTo<'_> {
    fn finish(&self, server: &EapServer, mut d: Decision, s: &EapSession) -> Decision {
        let id = s.final_id();
        if !d.accept {
            server.stats.rejected.fetch_add(1, Ordering::Relaxed);
            d.eap = Some(EapReply {
                message: EapPacket::failure(id).encode().unwrap_or_default(),
                state: None,
                mppe: None,
            });
            return d;
        }
        let Some(msk) = s.msk() else {
            return server.failure(d.identity, id, "no keys could be derived from the TLS session");
        };
        server.stats.accepted.fetch_add(1, Ordering::Relaxed);
        d.eap = Some(EapReply {
            message: EapPacket::success(id).encode().unwrap_or_default(),
            state: None,
            mppe: Some(mppe_attributes(&msk, self.secret, &self.request_auth)),
        });
        d
    }
}

/// The account the client certificate names, through the precedence chain
/// and policy. The EAP identity (`outer`) only labels a refusal. Runs in
/// the TLS round's task, so AD is asked here on a cache miss.
async fn authorize_certificate(state: &State, s: &EapSession, outer: &str) -> Decision {
    let method = Method::EapTls;
    let Some(der) = s.peer_certificate() else {
        return Decision::reject(method, outer, None, "no client certificate");
    };
    let name = match cert_name(der) {
        Ok(n) => n,
        Err(e) => return Decision::reject(method, outer, None, e.to_string()),
    };
    let label = format!("{} ({})", name.value, name.rule.as_str());
    match resolve_cert_name(state, &name).await {
        Resolution::Found { directory, account } => {
            if !account.enabled() {
                return Decision::reject(
                    method,
                    account.label(),
                    Some(directory),
                    format!("{} (certificate {label})", super::disabled_reason(&account)),
                )
                .about(&account);
            }
            let mut d = accept(state, method, account.label(), directory, &account, "");
            d.reason = format!("client certificate verified; the account is its {}", name.rule.as_str()).into();
            d
        }
        Resolution::NotFound => Decision::reject(method, label, None, "the certificate names no known account"),
        Resolution::Unavailable { directory, reason } => Decision::reject(
            method,
            label,
            Some(directory),
            format!("{directory} is unavailable ({reason}); lower directories are not consulted"),
        ),
        Resolution::Pending { directory, .. } => {
            Decision::reject(method, label, Some(directory), format!("{directory} gave no answer"))
        }
    }
}

/// The certificate's name as a lookup through the precedence chain. An
/// Intune managed-device id is first turned into its Entra device id.
pub(super) async fn resolve_cert_name(state: &State, name: &CertName) -> Resolution {
    match identity_of(state, name) {
        Some(identity) => state.resolver.resolve_slow(&identity).await,
        None => Resolution::NotFound,
    }
}

/// The identity a certificate name is looked up by; `None` for an Intune
/// managed device the replica does not know.
pub(super) fn identity_of(state: &State, name: &CertName) -> Option<Identity> {
    if name.rule != CertRule::IntuneDeviceId {
        return Some(Identity::parse(&name.value));
    }
    let key = format!("{}{}", crate::directory::account::INTUNE_CERT_PREFIX, name.value);
    let device = state.entra.as_ref()?.replica().lookup_cert_identity(&key)?;
    Some(Identity::parse(device.device_id()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    /// RFC 2548 §2.4.3 decryption, as a NAS does it.
    fn decrypt(value: &[u8], secret: &[u8], auth: &[u8; 16]) -> Vec<u8> {
        let (salt, cipher) = value.split_at(2);
        let mut prev: Vec<u8> = [auth.as_slice(), salt].concat();
        let mut plain = Vec::new();
        for block in cipher.chunks(16) {
            let b = Md5::new().chain_update(secret).chain_update(&prev).finalize();
            plain.extend(block.iter().zip(b.iter()).map(|(c, k)| c ^ k));
            prev = block.to_vec();
        }
        plain[1..1 + plain[0] as usize].to_vec()
    }

    #[test]
    fn send_key_is_the_second_half_of_the_msk_and_recv_the_first() {
        let msk: [u8; 64] = std::array::from_fn(|i| i as u8 * 3);
        let secret = ClientSecret::new(b"s3cret");
        let auth = [0x5a; 16];
        let (recv, send) = mppe_attributes(&msk, &secret, &auth);
        assert_eq!(decrypt(&recv, b"s3cret", &auth), msk[..32]);
        assert_eq!(decrypt(&send, b"s3cret", &auth), msk[32..]);
        assert_ne!(recv[..2], send[..2], "each attribute has its own salt");
        assert!(recv[0] & 0x80 != 0 && send[0] & 0x80 != 0);
    }
}
