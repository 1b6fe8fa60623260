//! Lookup latency on a replica of 1M synthetic accounts (900k users, 100k
//! devices), and precedence resolution through Entra → Local.
//!
//! `cargo bench --bench lookup`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use entra_radius::directory::{
    Account, Directory, DirectoryKind, EntraDirectory, EntraReplica, Identity, Lookup, Resolver,
};

#[path = "support/synthetic.rs"]
mod synthetic;
use synthetic::{guid, mac, synthetic};

const USERS: usize = 900_000;
const DEVICES: usize = 100_000;

/// The same synthetic tenant as the memory probe: 90 % users, 10 % devices.
fn accounts() -> impl Iterator<Item = Account> {
    synthetic(USERS + DEVICES).map(Account::from)
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
