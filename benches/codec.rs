//! Micro-benchmarks of the per-request work: the codec on its own, and PAP
//! end to end in-process (decode, verify, decide, encode), without sockets.
//!
//! Run with `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use std::sync::Arc;

use entra_radius::auth::{AuthConfig, Authenticator};
use entra_radius::config::DEFAULT_DIRECTORY_ORDER;
use entra_radius::directory::policy::PolicyRule;
use entra_radius::directory::{EntraDirectory, EntraReplica};
use entra_radius::directory::{LocalDirectory, LocalMac, LocalUser, MacAddr, UserCredential};
use entra_radius::proto::crypto::{
    MaBatch, MessageAuth, Password, ResponseBatch, Unsigned, check_message_authenticator, hide_password,
    unhide_password,
};
use entra_radius::proto::{AttrType, Builder, ClientSecret, Code, Packet};

const RA: [u8; 16] = [0x3c; 16];

/// An Access-Request as a switch sends it for PAP or MAB.
fn access_request(secret: &ClientSecret, user: &str, pw: &str, calling_station_id: &str) -> Vec<u8> {
    let mut b = Builder::request_with_ma(Code::ACCESS_REQUEST, 42, RA);
    b.push(AttrType::USER_NAME, user.as_bytes()).unwrap();
    b.push(
        AttrType::USER_PASSWORD,
        &hide_password(pw.as_bytes(), secret, &RA).unwrap(),
    )
    .unwrap();
    b.push(AttrType::NAS_IP_ADDRESS, &[192, 0, 2, 10]).unwrap();
    b.push_u32(AttrType::NAS_PORT, 10101).unwrap();
    b.push_u32(AttrType::NAS_PORT_TYPE, 15).unwrap();
    b.push(AttrType::CALLING_STATION_ID, calling_station_id.as_bytes())
        .unwrap();
    b.push(AttrType::CALLED_STATION_ID, b"AA-BB-CC-DD-EE-FF").unwrap();
    b.push(AttrType::NAS_IDENTIFIER, b"access-switch-17").unwrap();
    b.finish_request(secret)
}

struct Reply<'a>(Vec<u8>, &'a ClientSecret);

impl Unsigned for Reply<'_> {
    fn bytes_and_secret(&mut self) -> (&mut [u8], &ClientSecret) {
        (&mut self.0, self.1)
    }
}

fn codec(c: &mut Criterion) {
    let secret = ClientSecret::new(b"a-reasonably-long-shared-secret");
    let req = access_request(&secret, "user00042", "pw-00042", "00-11-22-33-44-55");
    c.bench_function("decode+verify+encode Access-Request/Accept", |b| {
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            let p = Packet::decode(black_box(&req)).unwrap();
            assert_eq!(check_message_authenticator(&p, &secret, None), MessageAuth::Valid);
            let pw = unhide_password(p.get(AttrType::USER_PASSWORD).unwrap(), &secret, p.authenticator()).unwrap();
            black_box(pw.as_bytes());
            let mut r = Builder::reply_into(std::mem::take(&mut buf), Code::ACCESS_ACCEPT, &p, true);
            r.push_tagged_u32(AttrType::TUNNEL_TYPE, 1, 13).unwrap();
            r.push_tagged_u32(AttrType::TUNNEL_MEDIUM_TYPE, 1, 6).unwrap();
            r.push_tagged(AttrType::TUNNEL_PRIVATE_GROUP_ID, 1, b"20").unwrap();
            buf = r.finish_response(&secret);
            black_box(&buf);
        })
    });
    // 32 requests as one receive batch brings them: checked and answered
    // one at a time, or with the digests of the batch computed together.
    let reqs: Vec<Vec<u8>> = (0..32)
        .map(|i| access_request(&secret, &format!("user{i:05}"), "pw", "00-11-22-33-44-55"))
        .collect();
    let accept = |p: &Packet<'_>, buf: Vec<u8>| {
        let mut r = Builder::reply_into(buf, Code::ACCESS_ACCEPT, p, true);
        r.push_tagged_u32(AttrType::TUNNEL_TYPE, 1, 13).unwrap();
        r.push_tagged_u32(AttrType::TUNNEL_MEDIUM_TYPE, 1, 6).unwrap();
        r.push_tagged(AttrType::TUNNEL_PRIVATE_GROUP_ID, 1, b"20").unwrap();
        r
    };
    c.bench_function("verify+sign 32 requests, one by one", |b| {
        let mut bufs: Vec<Vec<u8>> = (0..32).map(|_| Vec::with_capacity(256)).collect();
        b.iter(|| {
            for (req, buf) in reqs.iter().zip(bufs.iter_mut()) {
                let p = Packet::decode(black_box(req)).unwrap();
                assert_eq!(check_message_authenticator(&p, &secret, None), MessageAuth::Valid);
                *buf = accept(&p, std::mem::take(buf)).finish_response(&secret);
            }
            black_box(&bufs);
        })
    });
    c.bench_function("verify+sign 32 requests, batched", |b| {
        let mut checks = MaBatch::default();
        let mut signer = ResponseBatch::default();
        let mut out: Vec<Reply<'_>> = (0..32).map(|_| Reply(Vec::with_capacity(256), &secret)).collect();
        b.iter(|| {
            checks.clear();
            for req in &reqs {
                checks.push(&Packet::decode(black_box(req)).unwrap(), &secret, None);
            }
            checks.run();
            for (i, (req, o)) in reqs.iter().zip(out.iter_mut()).enumerate() {
                assert_eq!(checks.verdict(i), MessageAuth::Valid);
                let p = Packet::decode(req).unwrap();
                o.0 = accept(&p, std::mem::take(&mut o.0)).finish_unsigned();
            }
            signer.finish(&mut out);
            black_box(&out);
        })
    });
    c.bench_function("decode only", |b| {
        b.iter(|| Packet::decode(black_box(&req)).unwrap().attrs().count())
    });
}

fn pap_end_to_end(c: &mut Criterion) {
    let secret = ClientSecret::new(b"a-reasonably-long-shared-secret");
    let users = (0..100_000)
        .map(|i| LocalUser {
            name: format!("user{i:05}"),
            credential: UserCredential::Cleartext(Password::new(format!("pw-{i:05}").into_bytes())),
        })
        .collect();
    let macs = (0..10_000u32)
        .map(|i| LocalMac {
            mac: MacAddr([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            description: None,
        })
        .collect();
    // The production chain: an (empty) Entra replica is asked first, then
    // the local accounts; a default policy rule adds a VLAN.
    let authn = Authenticator::new(
        Some(Arc::new(EntraDirectory::new(EntraReplica::new()))),
        AuthConfig {
            order: DEFAULT_DIRECTORY_ORDER.to_vec(),
            local: LocalDirectory::new(users, macs),
            policy: vec![PolicyRule {
                group: None,
                kind: None,
                vlan: Some("20".into()),
                filter_id: None,
                session_timeout: None,
                reply_message: None,
            }],
            ad: None,
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let accept = access_request(&secret, "user04242", "pw-04242", "00-11-22-33-44-55");
    let reject = access_request(&secret, "user04242", "wrong", "00-11-22-33-44-55");
    let mab = access_request(&secret, "020000001092", "020000001092", "02-00-00-00-10-92");
    for (name, req, want) in [
        ("PAP accept", &accept, true),
        ("PAP reject", &reject, false),
        ("MAB accept", &mab, true),
    ] {
        c.bench_function(&format!("{name}, in-process, 100k users"), |b| {
            b.iter(|| {
                let p = Packet::decode(black_box(req)).unwrap();
                assert_eq!(check_message_authenticator(&p, &secret, None), MessageAuth::Valid);
                let d = rt.block_on(authn.decide(&p, &secret, "nas"));
                assert_eq!(d.accept, want);
                let code = if d.accept {
                    Code::ACCESS_ACCEPT
                } else {
                    Code::ACCESS_REJECT
                };
                black_box(Builder::reply_to(code, &p, true).finish_response(&secret))
            })
        });
    }
}

criterion_group!(benches, codec, pap_end_to_end);
criterion_main!(benches);
