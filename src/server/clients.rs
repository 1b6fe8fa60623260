//! The client table: which NAS may talk to us, with which secret and which
//! BlastRADIUS settings. Looked up by source address, most specific prefix
//! first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use ipnet::IpNet;

use super::counters::{CounterRegistry, Counters};
use crate::config::{ClientConfig, Tristate};
use crate::proto::ClientSecret;

/// One configured RADIUS client (a NAS or a range of them).
#[derive(Debug)]
pub struct Client {
    pub name: String,
    pub network: IpNet,
    pub secret: ClientSecret,
    pub require_message_authenticator: Tristate,
    pub limit_proxy_state: Tristate,
    /// What `auto` learned from the client's first Access-Request (one of
    /// the `LEARNED_*` values). Shared by every address in the prefix, like
    /// FreeRADIUS, which keeps the flag on the client definition.
    learned: AtomicU8,
    pub counters: Arc<Counters>,
}

const LEARNED_NOTHING: u8 = 0;
/// The first Access-Request carried a valid Message-Authenticator: require it.
const LEARNED_SENDS_MA: u8 = 1;
/// The first Access-Request had none and no Proxy-State.
const LEARNED_NO_MA: u8 = 2;
/// The first Access-Request had none but carried Proxy-State: a proxy.
const LEARNED_NO_MA_PROXY: u8 = 3;

/// What the BlastRADIUS rules say about one Access-Request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MaVerdict {
    Allow,
    /// `require_message_authenticator` (set or learned) and none present.
    MissingMessageAuthenticator,
    /// `limit_proxy_state`: Proxy-State without Message-Authenticator.
    ProxyStateWithoutMessageAuthenticator,
}

impl Client {
    pub fn new(cfg: &ClientConfig, counters: Arc<Counters>) -> Client {
        Client {
            name: cfg.name.clone(),
            network: cfg.network,
            secret: ClientSecret::new(&cfg.secret),
            require_message_authenticator: cfg.require_message_authenticator,
            limit_proxy_state: cfg.limit_proxy_state,
            learned: AtomicU8::new(LEARNED_NOTHING),
            counters,
        }
    }

    /// Applies `require_message_authenticator` and `limit_proxy_state` to an
    /// Access-Request whose Message-Authenticator, if any, is already known to
    /// be valid. Returns the verdict and whether this packet taught `auto`
    /// something (so the caller can log it once).
    pub fn check_blast_radius(&self, has_ma: bool, has_proxy_state: bool) -> (MaVerdict, bool) {
        let auto = self.require_message_authenticator == Tristate::Auto || self.limit_proxy_state == Tristate::Auto;
        let mut learned_now = false;
        let mut learned = self.learned.load(Ordering::Relaxed);
        if auto && learned == LEARNED_NOTHING {
            let value = match (has_ma, has_proxy_state) {
                (true, _) => LEARNED_SENDS_MA,
                (false, false) => LEARNED_NO_MA,
                (false, true) => LEARNED_NO_MA_PROXY,
            };
            learned = match self
                .learned
                .compare_exchange(LEARNED_NOTHING, value, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    learned_now = true;
                    value
                }
                Err(current) => current,
            };
        }
        if has_ma {
            return (MaVerdict::Allow, learned_now);
        }
        let require = match self.require_message_authenticator {
            Tristate::Yes => true,
            Tristate::No => false,
            Tristate::Auto => learned == LEARNED_SENDS_MA,
        };
        if require {
            return (MaVerdict::MissingMessageAuthenticator, learned_now);
        }
        let limit = match self.limit_proxy_state {
            Tristate::Yes => true,
            Tristate::No => false,
            // A client that was first seen without Proxy-State is a NAS, and
            // a NAS has no business sending Proxy-State unauthenticated.
            Tristate::Auto => learned != LEARNED_NO_MA_PROXY,
        };
        if limit && has_proxy_state {
            return (MaVerdict::ProxyStateWithoutMessageAuthenticator, learned_now);
        }
        (MaVerdict::Allow, learned_now)
    }

    /// Describes what `auto` learned, for the log.
    pub fn learned_description(&self) -> &'static str {
        match self.learned.load(Ordering::Relaxed) {
            LEARNED_SENDS_MA => "sends Message-Authenticator: now required from this client",
            LEARNED_NO_MA => {
                "sends no Message-Authenticator: accepted without it, Proxy-State refused (upgrade the NAS and set require_message_authenticator = yes)"
            }
            LEARNED_NO_MA_PROXY => {
                "sends Proxy-State without Message-Authenticator: treated as a proxy (vulnerable to BlastRADIUS; set require_message_authenticator = yes)"
            }
            _ => "nothing learned yet",
        }
    }
}

/// Clients by address. Exact host entries sit in a hash map; prefixes are
/// scanned longest first, so the most specific definition wins.
#[derive(Debug, Default)]
pub struct ClientTable {
    // Keyed by the configuration, not by what arrives: a fast hash will do.
    hosts: HashMap<IpAddr, Arc<Client>, foldhash::fast::RandomState>,
    prefixes: Vec<Arc<Client>>,
}

impl ClientTable {
    pub fn new(configs: &[ClientConfig], registry: &CounterRegistry) -> ClientTable {
        let mut t = ClientTable::default();
        for c in configs {
            let client = Arc::new(Client::new(c, registry.for_client(&c.name)));
            if c.network.prefix_len() == c.network.max_prefix_len() {
                t.hosts.insert(c.network.addr(), client);
            } else {
                t.prefixes.push(client);
            }
        }
        t.prefixes.sort_by_key(|c| std::cmp::Reverse(c.network.prefix_len()));
        t
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<Client>> {
        let ip = canonical_ip(ip);
        self.hosts
            .get(&ip)
            .or_else(|| self.prefixes.iter().find(|c| c.network.contains(&ip)))
    }

    pub fn len(&self) -> usize {
        self.hosts.len() + self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An IPv4 client reaching a dual-stack socket shows up as `::ffff:a.b.c.d`.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, net: &str, ma: Tristate, ps: Tristate) -> ClientConfig {
        ClientConfig {
            name: name.into(),
            network: net.parse().unwrap(),
            secret: b"s".to_vec(),
            require_message_authenticator: ma,
            limit_proxy_state: ps,
            coa: None,
        }
    }

    #[test]
    fn most_specific_wins() {
        let reg = CounterRegistry::default();
        let t = ClientTable::new(
            &[
                cfg("wide", "10.0.0.0/8", Tristate::Yes, Tristate::Yes),
                cfg("narrow", "10.1.0.0/16", Tristate::Yes, Tristate::Yes),
                cfg("host", "10.1.2.3/32", Tristate::Yes, Tristate::Yes),
                cfg("v6", "2001:db8::/32", Tristate::Yes, Tristate::Yes),
            ],
            &reg,
        );
        let name = |ip: &str| t.lookup(ip.parse().unwrap()).map(|c| c.name.clone());
        assert_eq!(name("10.1.2.3").as_deref(), Some("host"));
        assert_eq!(name("10.1.2.4").as_deref(), Some("narrow"));
        assert_eq!(name("10.2.0.1").as_deref(), Some("wide"));
        assert_eq!(name("::ffff:10.1.2.3").as_deref(), Some("host"));
        assert_eq!(name("2001:db8::1").as_deref(), Some("v6"));
        assert_eq!(name("192.0.2.1"), None);
    }

    fn client(ma: Tristate, ps: Tristate) -> Client {
        Client::new(&cfg("c", "10.0.0.1/32", ma, ps), Arc::default())
    }

    #[test]
    fn require_yes_and_no() {
        let c = client(Tristate::Yes, Tristate::Yes);
        assert_eq!(c.check_blast_radius(true, true).0, MaVerdict::Allow);
        assert_eq!(
            c.check_blast_radius(false, false).0,
            MaVerdict::MissingMessageAuthenticator
        );
        let c = client(Tristate::No, Tristate::Yes);
        assert_eq!(c.check_blast_radius(false, false).0, MaVerdict::Allow);
        assert_eq!(
            c.check_blast_radius(false, true).0,
            MaVerdict::ProxyStateWithoutMessageAuthenticator
        );
        assert_eq!(c.check_blast_radius(true, true).0, MaVerdict::Allow);
        let c = client(Tristate::No, Tristate::No);
        assert_eq!(c.check_blast_radius(false, true).0, MaVerdict::Allow);
    }

    #[test]
    fn auto_learns_from_the_first_packet() {
        let c = client(Tristate::Auto, Tristate::Yes);
        assert_eq!(c.check_blast_radius(true, false), (MaVerdict::Allow, true));
        assert_eq!(
            c.check_blast_radius(false, false),
            (MaVerdict::MissingMessageAuthenticator, false)
        );

        let c = client(Tristate::Auto, Tristate::Yes);
        assert_eq!(c.check_blast_radius(false, false), (MaVerdict::Allow, true));
        assert_eq!(c.check_blast_radius(false, false), (MaVerdict::Allow, false));
        assert_eq!(
            c.check_blast_radius(false, true).0,
            MaVerdict::ProxyStateWithoutMessageAuthenticator
        );

        let c = client(Tristate::No, Tristate::Auto);
        assert_eq!(c.check_blast_radius(false, true), (MaVerdict::Allow, true));
        assert_eq!(c.check_blast_radius(false, true).0, MaVerdict::Allow);

        let c = client(Tristate::No, Tristate::Auto);
        assert_eq!(c.check_blast_radius(false, false), (MaVerdict::Allow, true));
        assert_eq!(
            c.check_blast_radius(false, true).0,
            MaVerdict::ProxyStateWithoutMessageAuthenticator
        );
    }
}
