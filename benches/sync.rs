//! Sync throughput against the project's Graph emulator, end to end (HTTP,
//! JSON, mapping, replica, SQLite): a full sync of a 100,000-user tenant,
//! then one delta round carrying 1,000 changes.
//!
//! `cargo bench --bench sync` (a single measured run each, printed as a
//! table; the emulator and the sync share this process and its 2 cores).

use std::time::Instant;

use entra_radius::directory::{EntraReplica, Identity};
use entra_radius::graph::{
    Credential, DEVICE_SELECT, GROUP_SELECT, GraphClient, GraphConfig, USER_SELECT, devices_delta_url,
    groups_delta_url, users_delta_url,
};
use entra_radius::integration::GraphPages;
use entra_radius::store::Store;
use entra_radius::sync::worker::{FetchError, ObjectType, PageData, PageSource, Syncer};
use graph_emulator::{Emulator, SYNTHETIC_CLIENT_ID, SYNTHETIC_CLIENT_SECRET, Tenant};

/// Graph pages, with the time spent waiting for them (HTTP and the
/// emulator) counted, so the table can tell fetching from applying.
struct Timed {
    inner: GraphPages,
    fetching: std::sync::Mutex<std::time::Duration>,
}

impl PageSource for Timed {
    async fn fetch(&self, url: &str) -> Result<PageData, FetchError> {
        let t = Instant::now();
        let r = self.inner.fetch(url).await;
        *self.fetching.lock().expect("lock") += t.elapsed();
        r
    }
}

impl Timed {
    fn take(&self) -> std::time::Duration {
        std::mem::take(&mut *self.fetching.lock().expect("lock"))
    }
}

const USERS: usize = 100_000;
const DEVICES: usize = 10_000;
const CHANGES: usize = 1_000;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let t = Instant::now();
    let tenant = Tenant::synthetic(USERS, DEVICES, 1);
    let domains: Vec<String> = tenant.domains.iter().map(|d| d.id.clone()).collect();
    let first_upn = tenant.users[0].user_principal_name.clone();
    let change_ids: Vec<String> = (0..CHANGES)
        .map(|i| tenant.users[i * (USERS / CHANGES)].id.clone())
        .collect();
    let emu = Emulator::start("127.0.0.1:0".parse().expect("addr"), tenant)
        .await
        .expect("emulator");
    // Real Graph pages are about 200 objects and replay some; so does this.
    emu.control().set_page_size(200);
    println!(
        "tenant of {USERS} users, {DEVICES} devices built and served in {:.2?}",
        t.elapsed()
    );
    let hwm_before = status_kb("VmHWM:");

    let client = GraphClient::new(GraphConfig {
        authority_host: emu.base_url(),
        graph_endpoint: emu.base_url(),
        tenant_id: emu.tenant_id(),
        client_id: SYNTHETIC_CLIENT_ID.into(),
        credential: Credential::Secret(SYNTHETIC_CLIENT_SECRET.into()),
    })
    .expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let ep = emu.base_url();
    let syncer = Syncer {
        source: Timed {
            inner: GraphPages(client),
            fetching: Default::default(),
        },
        replica: EntraReplica::new(),
        store: Store::open(dir.path()).expect("store"),
        selected_domains: domains,
        initial_urls: vec![
            (ObjectType::Users, users_delta_url(&ep, USER_SELECT)),
            (ObjectType::Devices, devices_delta_url(&ep, DEVICE_SELECT)),
            (ObjectType::Groups, groups_delta_url(&ep, GROUP_SELECT)),
        ],
        groups: Default::default(),
    };

    println!("\n| step | pages | items | time | items/s | of which fetching |\n| --- | --- | --- | --- | --- | --- |");
    let full = Instant::now();
    let mut total_items = 0;
    for object in [ObjectType::Users, ObjectType::Devices, ObjectType::Groups] {
        let t = Instant::now();
        let r = syncer.round(object).await.expect("round");
        let el = t.elapsed();
        total_items += r.items;
        println!(
            "| full {} | {} | {} | {:.2?} | {:.0} | {:.2?} |",
            object.as_str(),
            r.pages,
            r.items,
            el,
            r.items as f64 / el.as_secs_f64(),
            syncer.source.take()
        );
    }
    let el = full.elapsed();
    println!(
        "| full sync, all types | | {total_items} | {el:.2?} | {:.0} | |",
        total_items as f64 / el.as_secs_f64()
    );
    let counts = syncer.replica.counts();
    assert!(
        syncer.replica.lookup(&Identity::parse(&first_upn)).is_some(),
        "the first user was synced"
    );

    // 1,000 users disabled (then enabled again, and so on) in the tenant,
    // then one delta round; DELTA_ROUNDS rounds (default 5), median shown.
    let rounds: usize = std::env::var("DELTA_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        for id in &change_ids {
            emu.control()
                .update_user(id, |u| u.account_enabled = !u.account_enabled);
        }
        let t = Instant::now();
        let r = syncer.round(ObjectType::Users).await.expect("delta round");
        let el = t.elapsed();
        times.push(el);
        println!(
            "| delta round, {CHANGES} changes | {} | {} | {:.2?} | {:.0} | {:.2?} |",
            r.pages,
            r.items,
            el,
            r.items as f64 / el.as_secs_f64(),
            syncer.source.take()
        );
    }
    times.sort();
    println!(
        "| delta round, median of {rounds} | | | {:.2?} | | |",
        times[rounds / 2]
    );
    println!(
        "\nreplica: {} users, {} devices; peak RSS {} MiB (before the sync {} MiB; the emulator's tenant is in this process too)",
        counts.users,
        counts.devices,
        status_kb("VmHWM:") / 1024,
        hwm_before / 1024
    );
    emu.shutdown().await;
}
