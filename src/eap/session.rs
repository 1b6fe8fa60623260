//! One EAP-TLS or EAP-TTLS conversation, from the Identity Response to the
//! last Request: the method offered (and a Nak to the other one), fragments
//! both ways with their ACKs, the TLS engine, the TLS 1.3 commitment
//! message, and the final acknowledgement before Success.
//!
//! Who the peer is and whether it may in is not decided here: when the
//! handshake is done (EAP-TLS) or the inner credentials have arrived
//! (TTLS), [`EapSession::process_tls`] says so and the caller decides, then
//! calls [`EapSession::conclude`]. The cheap steps ([`EapSession::receive`])
//! touch no TLS state; only [`EapSession::process_tls`] costs CPU, so the
//! caller can run it off the receive loop.

use super::tls::{TlsConfigs, TlsSession, Version};
use super::tls_frame::{Fragmenter, Reassembled, Reassembler, TlsData, ack_request, start_request};
use super::ttls::{InnerPap, inner_pap};
use super::{EapCode, EapPacket, EapType};

#[derive(Debug)]
enum Phase {
    /// The method's Start was sent; a Nak may still change the method.
    Start,
    Handshake,
    /// TTLS: the tunnel is up, the inner credentials are awaited.
    Inner,
    /// The last flight (TLS 1.2 Finished, TLS 1.3 tickets and commitment)
    /// was sent; the peer's empty Response ends the conversation.
    Final,
    /// A TLS alert was sent; whatever the peer answers, it is a failure.
    Alerted(String),
}

/// What the caller does with the peer's Response.
#[derive(Debug, PartialEq, Eq)]
pub enum Round {
    /// Send this EAP-Request in an Access-Challenge.
    Challenge(Vec<u8>),
    /// A whole TLS message arrived: hand it to [`EapSession::process_tls`].
    Tls(Vec<u8>),
    /// The peer acknowledged the last flight: send the decision kept for it.
    Finish,
    /// End with EAP-Failure, for this reason.
    Fail(String),
}

/// What a TLS message from the peer led to.
#[derive(Debug)]
pub enum TlsOutcome {
    /// The handshake goes on: send this Request.
    Challenge(Vec<u8>),
    /// EAP-TLS: the handshake is done and the client certificate verified.
    /// Decide, then call [`EapSession::conclude`].
    Established,
    /// TTLS: the inner PAP credentials.
    InnerPap(InnerPap),
    /// The handshake failed. With `alert`, send it (Access-Challenge) and
    /// end at the peer's next Response; without, end now.
    Failed { reason: String, alert: Option<Vec<u8>> },
}

/// One conversation's method state.
pub struct EapSession {
    offered: Vec<EapType>,
    method: EapType,
    /// Identifier of our last Request; the peer's Response must echo it.
    last_id: u8,
    /// The EAP identity, as sent (never trusted for authorisation).
    pub outer_identity: String,
    fragment_size: usize,
    tls: Option<TlsSession>,
    reassembler: Reassembler,
    out: Option<Fragmenter>,
    phase: Phase,
    /// The flight rustls produced with the handshake's end, held until the
    /// caller has decided.
    pending_flight: Vec<u8>,
}

impl std::fmt::Debug for EapSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EapSession")
            .field("method", &self.method)
            .field("phase", &self.phase)
            .field("last_id", &self.last_id)
            .finish_non_exhaustive()
    }
}

impl EapSession {
    /// Answers an EAP-Response/Identity with the Start of the first method
    /// offered. `offered` is never empty (the config refuses that).
    pub fn start(
        identity_response: &EapPacket<'_>,
        offered: &[EapType],
        fragment_size: usize,
    ) -> (EapSession, Vec<u8>) {
        let method = offered.first().copied().unwrap_or(EapType::TLS);
        let last_id = identity_response.identifier.wrapping_add(1);
        let s = EapSession {
            offered: offered.to_vec(),
            method,
            last_id,
            outer_identity: String::from_utf8_lossy(identity_response.data).into_owned(),
            fragment_size,
            tls: None,
            reassembler: Reassembler::default(),
            out: None,
            phase: Phase::Start,
            pending_flight: Vec::new(),
        };
        let req = start_request(last_id, method, 0).unwrap_or_default();
        (s, req)
    }

    pub fn method(&self) -> EapType {
        self.method
    }

    /// The Identifier a Success or Failure carries: that of the last
    /// Response (RFC 3748 §4.2), which echoed our last Request.
    pub fn final_id(&self) -> u8 {
        self.last_id
    }

    pub fn version(&self) -> Option<Version> {
        self.tls.as_ref()?.version()
    }

    pub fn resumed(&self) -> bool {
        self.tls.as_ref().is_some_and(TlsSession::resumed)
    }

    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.tls.as_ref()?.peer_certificate().map(|c| c.as_ref())
    }

    pub fn msk(&self) -> Option<[u8; 64]> {
        self.tls.as_ref()?.msk()
    }

    fn next_id(&mut self) -> u8 {
        self.last_id = self.last_id.wrapping_add(1);
        self.last_id
    }

    /// Sends `flight` (possibly empty: one Request holding only flags).
    fn send(&mut self, flight: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut f = Fragmenter::new(self.method, 0, flight, self.fragment_size);
        let id = self.next_id();
        let req = f.next_request(id).map_err(|e| e.to_string())?;
        self.out = Some(f);
        Ok(req)
    }

    /// The cheap part of a round: no TLS work happens here.
    pub fn receive(&mut self, resp: &EapPacket<'_>) -> Round {
        if resp.code != EapCode::RESPONSE {
            return Round::Fail(format!("EAP code {} from the peer, expected a Response", resp.code.0));
        }
        if resp.identifier != self.last_id {
            return Round::Fail(format!(
                "EAP Identifier {} does not answer our Request {}",
                resp.identifier, self.last_id
            ));
        }
        let Some(typ) = resp.typ else {
            return Round::Fail("EAP Response without a Type".into());
        };
        if typ == EapType::NAK {
            return self.nak(resp);
        }
        if typ != self.method {
            return Round::Fail(format!(
                "the peer answered with EAP type {typ}, expected {}",
                self.method
            ));
        }
        let data = match TlsData::decode(resp.data) {
            Ok(d) => d,
            Err(e) => return Round::Fail(e.to_string()),
        };
        if let Some(out) = &mut self.out
            && !out.is_done()
        {
            if let Err(e) = out.ack(resp) {
                return Round::Fail(e.to_string());
            }
            let id = self.next_id();
            return match self.out.as_mut().map(|o| o.next_request(id)) {
                Some(Ok(req)) => Round::Challenge(req),
                Some(Err(e)) => Round::Fail(e.to_string()),
                None => Round::Fail("no flight in progress".into()),
            };
        }
        self.out = None;
        match &self.phase {
            Phase::Final if data.is_ack() => return Round::Finish,
            Phase::Final => return Round::Fail("expected the peer's acknowledgement of our last flight".into()),
            Phase::Alerted(reason) => return Round::Fail(reason.clone()),
            Phase::Start | Phase::Handshake | Phase::Inner => {}
        }
        match self.reassembler.push(&data) {
            Ok(Reassembled::SendAck) => {
                let id = self.next_id();
                match ack_request(id, self.method, 0) {
                    Ok(req) => Round::Challenge(req),
                    Err(e) => Round::Fail(e.to_string()),
                }
            }
            Ok(Reassembled::Complete(bytes)) if bytes.is_empty() => {
                Round::Fail("the peer sent an empty TLS message where data was expected".into())
            }
            Ok(Reassembled::Complete(bytes)) => Round::Tls(bytes),
            Err(e) => Round::Fail(e.to_string()),
        }
    }

    fn nak(&mut self, resp: &EapPacket<'_>) -> Round {
        let desired = match resp.nak_desired() {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Round::Fail(e.to_string()),
            None => Vec::new(),
        };
        if !matches!(self.phase, Phase::Start) {
            return Round::Fail("Nak after the method had started".into());
        }
        let tried = self.method;
        match desired.iter().find(|t| **t != tried && self.offered.contains(t)) {
            Some(&next) => {
                self.method = next;
                let id = self.next_id();
                match start_request(id, next, 0) {
                    Ok(req) => Round::Challenge(req),
                    Err(e) => Round::Fail(e.to_string()),
                }
            }
            None => {
                let wanted: Vec<String> = desired.iter().map(|t| t.to_string()).collect();
                let ours: Vec<String> = self.offered.iter().map(|t| t.to_string()).collect();
                Round::Fail(format!(
                    "the peer refused {tried} and wants [{}]; this server offers [{}]",
                    wanted.join(", "),
                    ours.join(", ")
                ))
            }
        }
    }

    /// The CPU part: one whole TLS message from the peer through rustls.
    pub fn process_tls(&mut self, bytes: &[u8], configs: &TlsConfigs) -> TlsOutcome {
        if self.tls.is_none() {
            match TlsSession::new(configs.for_method(self.method), self.method) {
                Ok(t) => self.tls = Some(t),
                Err(f) => return self.failed(f.reason, f.flight),
            }
        }
        let Some(tls) = self.tls.as_mut() else {
            return self.failed("no TLS session".into(), Vec::new());
        };
        let fed = match tls.feed(bytes) {
            Ok(f) => f,
            Err(f) => return self.failed(f.reason, f.flight),
        };
        if tls.is_handshaking() {
            if fed.flight.is_empty() {
                return self.failed("the TLS handshake stalled: nothing to send".into(), Vec::new());
            }
            self.phase = Phase::Handshake;
            return self.challenge(fed.flight);
        }
        if self.method == EapType::TTLS {
            if !fed.plaintext.is_empty() {
                return match inner_pap(&fed.plaintext) {
                    Ok(p) => TlsOutcome::InnerPap(p),
                    Err(e) => self.failed(e.to_string(), Vec::new()),
                };
            }
            if fed.just_finished {
                // TLS 1.2: our ChangeCipherSpec and Finished; TLS 1.3
                // (no tickets for TTLS): an empty Request, to which the peer
                // answers with its inner AVPs.
                self.phase = Phase::Inner;
                return self.challenge(fed.flight);
            }
            return self.failed("expected the inner credentials".into(), Vec::new());
        }
        if fed.just_finished {
            self.pending_flight = fed.flight;
            return TlsOutcome::Established;
        }
        self.failed("unexpected TLS data after the handshake".into(), Vec::new())
    }

    fn challenge(&mut self, flight: Vec<u8>) -> TlsOutcome {
        match self.send(flight) {
            Ok(req) => TlsOutcome::Challenge(req),
            Err(e) => TlsOutcome::Failed { reason: e, alert: None },
        }
    }

    fn failed(&mut self, reason: String, alert: Vec<u8>) -> TlsOutcome {
        if alert.is_empty() {
            return TlsOutcome::Failed { reason, alert: None };
        }
        match self.send(alert) {
            Ok(req) => {
                self.phase = Phase::Alerted(reason.clone());
                TlsOutcome::Failed {
                    reason,
                    alert: Some(req),
                }
            }
            Err(_) => TlsOutcome::Failed { reason, alert: None },
        }
    }

    /// After [`TlsOutcome::Established`] and an accepting decision: sends
    /// the last flight (TLS 1.2 Finished of a full handshake; TLS 1.3
    /// tickets and the commitment message), or nothing when the peer spoke
    /// last (TLS 1.2 resumption: Success right away, EAP-NOTES §0).
    pub fn conclude(&mut self) -> Round {
        let mut flight = std::mem::take(&mut self.pending_flight);
        if self.version() == Some(Version::Tls13)
            && let Some(tls) = self.tls.as_mut()
        {
            flight.extend(tls.commit());
        }
        if flight.is_empty() {
            return Round::Finish;
        }
        match self.send(flight) {
            Ok(req) => {
                self.phase = Phase::Final;
                Round::Challenge(req)
            }
            Err(e) => Round::Fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: u8, name: &[u8]) -> Vec<u8> {
        EapPacket::response(id, EapType::IDENTITY, name).encode().unwrap()
    }

    #[test]
    fn start_nak_and_identifiers() {
        let id = identity(7, b"anonymous@contoso.com");
        let (mut s, req) = EapSession::start(&EapPacket::decode(&id).unwrap(), &[EapType::TLS, EapType::TTLS], 1024);
        let p = EapPacket::decode(&req).unwrap();
        assert_eq!((p.identifier, p.typ, p.data), (8, Some(EapType::TLS), &[0x20][..]));
        assert_eq!(s.outer_identity, "anonymous@contoso.com");
        // A Response to an older Request is refused.
        let stale = EapPacket::response(7, EapType::NAK, &[21]).encode().unwrap();
        assert!(matches!(s.receive(&EapPacket::decode(&stale).unwrap()), Round::Fail(_)));
        // Nak → TTLS.
        let nak = EapPacket::response(8, EapType::NAK, &[21]).encode().unwrap();
        let Round::Challenge(req) = s.receive(&EapPacket::decode(&nak).unwrap()) else {
            panic!("expected the TTLS Start")
        };
        let p = EapPacket::decode(&req).unwrap();
        assert_eq!((p.identifier, p.typ), (9, Some(EapType::TTLS)));
        assert_eq!(s.method(), EapType::TTLS);
    }

    #[test]
    fn a_nak_for_something_we_do_not_offer_fails_with_both_lists() {
        let id = identity(1, b"x");
        let (mut s, _) = EapSession::start(&EapPacket::decode(&id).unwrap(), &[EapType::TLS], 1024);
        let nak = EapPacket::response(2, EapType::NAK, &[25, 26]).encode().unwrap();
        let Round::Fail(why) = s.receive(&EapPacket::decode(&nak).unwrap()) else {
            panic!()
        };
        assert!(why.contains("wants [PEAP"), "{why}");
        assert!(why.contains("offers [TLS]"), "{why}");
    }

    #[test]
    fn fragments_from_the_peer_are_acked_then_handed_over() {
        let id = identity(1, b"x");
        let (mut s, _) = EapSession::start(&EapPacket::decode(&id).unwrap(), &[EapType::TLS], 1024);
        // First fragment: L|M, total 6, 3 bytes.
        let f1 = EapPacket::response(2, EapType::TLS, &[0xc0, 0, 0, 0, 6, 1, 2, 3])
            .encode()
            .unwrap();
        let Round::Challenge(ack) = s.receive(&EapPacket::decode(&f1).unwrap()) else {
            panic!()
        };
        assert_eq!(ack, EapPacket::request(3, EapType::TLS, &[0]).encode().unwrap());
        let f2 = EapPacket::response(3, EapType::TLS, &[0x00, 4, 5, 6]).encode().unwrap();
        assert_eq!(
            s.receive(&EapPacket::decode(&f2).unwrap()),
            Round::Tls(vec![1, 2, 3, 4, 5, 6])
        );
        // Wrong type mid-way.
        let wrong = EapPacket::response(3, EapType::MD5_CHALLENGE, &[1]).encode().unwrap();
        assert!(matches!(s.receive(&EapPacket::decode(&wrong).unwrap()), Round::Fail(_)));
    }
}
