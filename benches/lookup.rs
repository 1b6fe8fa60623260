//! Lookup latency on a replica of 1M synthetic accounts (900k users, 100k
//! devices), and precedence resolution through Entra → Local.
//!
//! `cargo bench --bench lookup`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use entra_radius::directory::{
    Account, AccountData, AccountKind, Directory, DirectoryKind, EntraDirectory, EntraReplica, GroupRef, Identity,
    Lookup, MacAddr, Resolver,
};

const USERS: usize = 900_000;
const DEVICES: usize = 100_000;

fn guid(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", i as u32, i)
}

fn mac(i: usize) -> MacAddr {
    let b = (i as u64).to_be_bytes();
    MacAddr([0x02, 0x00, b[4], b[5], b[6], b[7]])
}

fn accounts() -> impl Iterator<Item = Account> {
    let groups: Vec<GroupRef> = (0..200)
        .map(|g| GroupRef {
            id: guid(0xffff_0000 + g),
            name: format!("Group {g}"),
        })
        .collect();
    (0..USERS + DEVICES).map(move |i| {
        let d = if i < USERS {
            let mut d = AccountData::new(DirectoryKind::Entra, AccountKind::User, guid(i));
            d.display_name = Some(format!("User {i}"));
            d.upn = Some(format!("user{i}@contoso.com"));
            d.sam_account_name = Some(format!("user{i}"));
            d.netbios_domain = Some("CONTOSO".into());
            d.dns_domain = Some("contoso.local".into());
            d.enabled = true;
            d.groups = vec![groups[i % 200].clone(), groups[(i / 200) % 200].clone()];
            d.last_change = Some(1_700_000_000);
            d
        } else {
            let j = i - USERS;
            let mut d = AccountData::new(DirectoryKind::Entra, AccountKind::Device, guid(i));
            d.device_id = Some(guid(0x1000_0000 + j));
            d.macs = vec![mac(2 * j)];
            if j.is_multiple_of(2) {
                d.macs.push(mac(2 * j + 1));
            }
            d.enabled = true;
            d
        };
        Account::from(d)
    })
}

/// Stands in for the local directory: never reached on an Entra hit.
struct Local;

impl Directory for Local {
    fn kind(&self) -> DirectoryKind {
        DirectoryKind::Local
    }
    fn lookup(&self, _: &Identity) -> Lookup {
        Lookup::NotFound
    }
}

/// Cycles through `n` pre-parsed identities so that every iteration asks
/// for a different account, as a busy server does.
fn ids(n: usize, f: impl Fn(usize) -> String) -> Vec<Identity> {
    // A fixed stride through the key space defeats the caches.
    (0..n).map(|k| Identity::parse(&f((k * 7919) % n))).collect()
}

fn bench(c: &mut Criterion) {
    let replica = EntraReplica::new();
    replica.load(accounts());
    assert_eq!(replica.len(), USERS + DEVICES);

    let cases: [(&str, Vec<Identity>); 5] = [
        ("upn", ids(USERS, |i| format!("user{i}@contoso.com"))),
        ("sam", ids(USERS, |i| format!("CONTOSO\\user{i}"))),
        ("mac", ids(DEVICES, |j| mac(2 * j).to_string())),
        ("device_id", ids(DEVICES, |j| guid(0x1000_0000 + j))),
        ("miss_upn", ids(100_000, |i| format!("nobody{i}@contoso.com"))),
    ];
    let mut g = c.benchmark_group("replica_lookup");
    for (name, ids) in &cases {
        let mut k = 0;
        g.bench_function(*name, |b| {
            b.iter(|| {
                k = (k + 1) % ids.len();
                black_box(replica.lookup(black_box(&ids[k])))
            })
        });
    }
    g.finish();

    let resolver = Resolver::new(vec![Arc::new(EntraDirectory::new(replica.clone())), Arc::new(Local)]);
    let upns = &cases[0].1;
    let mut k = 0;
    c.bench_function("resolve_entra_hit", |b| {
        b.iter(|| {
            k = (k + 1) % upns.len();
            black_box(resolver.resolve(black_box(&upns[k])))
        })
    });
    // Parsing the User-Name is part of every request too.
    let mut k = 0;
    c.bench_function("parse_and_resolve_entra_hit", |b| {
        b.iter(|| {
            k = (k + 1) % USERS;
            let name = format!("user{k}@contoso.com");
            black_box(resolver.resolve(&Identity::parse(black_box(&name))))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
