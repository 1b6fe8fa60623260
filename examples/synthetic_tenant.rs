//! Times `Tenant::synthetic(1_000_000, 100_000, 1)`; run with
//! `cargo run --release --example synthetic_tenant` (target: well under 10 s).

use std::time::Instant;

use graph_emulator::Tenant;

fn main() {
    let start = Instant::now();
    let t = Tenant::synthetic(1_000_000, 100_000, 1);
    let built = start.elapsed();
    println!(
        "synthetic tenant: {} users, {} devices, {} managed devices, {} groups in {:.2?}",
        t.users.len(),
        t.devices.len(),
        t.managed_devices.len(),
        t.groups.len(),
        built
    );
}
