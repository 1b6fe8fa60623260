//! The Intune MAB scenario: entra-radius with no local accounts, set up
//! through its admin CLI against the project's Graph emulator serving a
//! synthetic tenant, synced, then driven with MAB for the MAC addresses of
//! the tenant's enabled Intune devices. What a site whose printers, phones
//! and laptops are Intune-managed sends after a power cut.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use entra_radius::directory::MacAddr;
use graph_emulator::{Emulator, SYNTHETIC_CLIENT_ID, SYNTHETIC_CLIENT_SECRET, Tenant};

use super::peers::{self, Peer};

/// Keeps the emulator (and the runtime it runs on) alive while the peer is measured.
pub struct Graph {
    _emulator: Emulator,
    _runtime: tokio::runtime::Runtime,
}

fn cli(bin: &Path, config: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .with_context(|| format!("running entra-radius {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "entra-radius {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Starts entra-radius against a synthetic tenant of `devices` devices
/// (about four in five Intune-managed), registers the application, selects
/// every domain and syncs. Returns the peer, the MACs of enabled Intune
/// devices and the emulator to keep alive.
pub fn start(cpus: &str, devices: usize) -> Result<(Peer, Vec<String>, Graph)> {
    let tenant = Tenant::synthetic(1_000, devices, 11);
    let enabled: HashSet<&str> = tenant
        .devices
        .iter()
        .filter(|d| d.account_enabled)
        .map(|d| d.device_id.as_str())
        .collect();
    let macs: Vec<String> = tenant
        .managed_devices
        .iter()
        .filter(|m| enabled.contains(m.azure_ad_device_id.as_str()))
        .flat_map(|m| [m.wi_fi_mac_address.as_deref(), m.ethernet_mac_address.as_deref()])
        .flatten()
        // `AA-BB-CC-DD-EE-FF`, as the generator sends MACs.
        .filter_map(|m| MacAddr::parse(m).ok().map(|m| m.to_string()))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let emulator = runtime.block_on(Emulator::start(([127, 0, 0, 1], 0).into(), tenant))?;
    let url = emulator.base_url();
    let extra = format!("\n[entra]\nauthority_host = \"{url}\"\ngraph_endpoint = \"{url}\"\nsync_interval = \"1h\"\n");
    let bin = Path::new(env!("CARGO_BIN_EXE_entra-radius"));
    let peer = peers::start_entra_binary(bin, "entra-radius (Intune)", cpus, 0, 0, None, &extra)?;
    let config = peer.config_path();
    let secret = config.with_file_name("client-secret");
    std::fs::write(&secret, SYNTHETIC_CLIENT_SECRET)?;
    let tenant_id = emulator.tenant_id();
    let secret_s = secret.display().to_string();
    cli(
        bin,
        &config,
        &[
            "entra",
            "provision",
            "--tenant",
            &tenant_id,
            "--client-id",
            SYNTHETIC_CLIENT_ID,
            "--client-secret-file",
            &secret_s,
        ],
    )?;
    cli(bin, &config, &["domains", "select", "--all"])?;
    cli(bin, &config, &["entra", "enable"])?;
    cli(bin, &config, &["sync", "now", "--wait"])?;
    Ok((
        peer,
        macs,
        Graph {
            _emulator: emulator,
            _runtime: runtime,
        },
    ))
}
