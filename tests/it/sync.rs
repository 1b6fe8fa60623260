//! The sync worker against the project's Graph emulator, through the real
//! binary: the first full round, PAP for Entra users by the password grant,
//! a disabled user after the next delta round, domain scoping, nested groups
//! turned into a VLAN, an expired delta token, throttling, and a restart
//! after which Graph no longer knows the stored page link.

use entra_radius::store::Store;
use graph_emulator::{DEMO_CLIENT_ID, Emulator, Fault, Tenant};

use crate::harness::*;

const MA: &str = "Message-Authenticator = 0x00";

struct Setup {
    rt: tokio::runtime::Runtime,
    emu: Emulator,
    server: TestServer,
}

fn setup(domains: &[&str]) -> Setup {
    let (rt, emu) = start_emulator(Tenant::demo());
    // Clean rounds make the counts below exact; replays are covered by the
    // worker's own tests and by `replays_do_not_double_count`.
    emu.control().set_delta_quirks(0, 0);
    let body = format!(
        "{}{}\n[[policy]]\ngroup = \"Engineering\"\nvlan = \"20\"\n\n[[local.users]]\nname = \"alice@contoso.example\"\npassword = \"local-pw\"\n",
        localhost_client(""),
        entra_section(&emu.base_url(), "1s")
    );
    let tenant = emu.tenant_id();
    let server = TestServer::start_seeded(&body, |state| provision(state, &tenant, domains));
    server.wait_for_log("intune MAC addresses synced");
    Setup { rt, emu, server }
}

fn pap(s: &TestServer, user: &str, pw: &str) -> String {
    stdout(&radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"{user}\", User-Password = \"{pw}\", {MA}"),
    ))
}

#[test]
fn a_synced_tenant_decides_by_entra() {
    let Setup {
        rt: _rt,
        emu,
        server: s,
    } = setup(&["contoso.example", "fabrikam.example"]);
    // The password grant: right, wrong, MFA-required, federated.
    let out = pap(&s, "alice@contoso.example", "alice-pw");
    assert!(out.contains("Received Access-Accept"), "{out}");
    // Alice is in Engineering: VLAN 20.
    assert!(out.contains("Tunnel-Private-Group-Id:1 = \"20\""), "{out}");
    // The local alice is shadowed: her local password does not work.
    assert!(pap(&s, "alice@contoso.example", "local-pw").contains("Access-Reject"));
    s.wait_for_log("AADSTS50126");
    assert!(pap(&s, "carol@contoso.example", "carol-pw").contains("Access-Reject"));
    s.wait_for_log("AADSTS50076");
    assert!(pap(&s, "dave@fabrikam.example", "dave-pw").contains("Access-Reject"));
    s.wait_for_log("the user's domain is federated");
    // Bob is disabled in the tenant.
    assert!(pap(&s, "bob@contoso.example", "bob-pw").contains("Access-Reject"));
    s.wait_for_log("reason=account disabled in entra");
    // Nested groups: Carol is in Platform, which is in Engineering.
    let out = stdout(&s.cli(&["accounts", "lookup", "carol@contoso.example"]));
    assert!(
        out.contains("decided by: entra (carol@contoso.example: enabled, user, groups: Engineering, Platform"),
        "{out}"
    );
    // MAB for an Intune device: the laptop's Wi-Fi MAC, from managedDevices;
    // the laptop is in Engineering.
    let mac = Tenant::demo().managed_devices[0].wi_fi_mac_address.clone().unwrap();
    let out = stdout(&radclient(
        s.auth,
        "auth",
        SECRET,
        &format!("User-Name = \"{mac}\", User-Password = \"{mac}\", {MA}"),
    ));
    assert!(out.contains("Received Access-Accept"), "{out}");
    assert!(out.contains("Tunnel-Private-Group-Id:1 = \"20\""), "{out}");
    s.wait_for_log("method=\"mab-pap\" directory=\"entra\" result=\"accept\"");
    // Background requests are marked low priority.
    assert!(
        emu.control()
            .request_log()
            .iter()
            .any(|r| r.path_and_query.contains("/users/delta") && r.throttle_priority.as_deref() == Some("low"))
    );
}

#[test]
fn changes_arrive_with_the_next_delta_round() {
    let Setup {
        rt: _rt,
        emu,
        server: s,
    } = setup(&["contoso.example"]);
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Accept"));
    // Only the selected domain is synced.
    let out = stdout(&s.cli(&["accounts", "lookup", "dave@fabrikam.example"]));
    assert!(out.contains("decided by: none"), "{out}");
    let alice = Tenant::demo().users[0].id.clone();
    assert_eq!(
        emu.control().user(&alice).unwrap().user_principal_name,
        "alice@contoso.example"
    );
    emu.control().update_user(&alice, |u| u.account_enabled = false);
    let rounds = s.logs().matches("sync round done object=\"users\"").count();
    s.wait_for_log_count("sync round done object=\"users\"", rounds + 1);
    let out = pap(&s, "alice@contoso.example", "alice-pw");
    assert!(out.contains("Access-Reject"), "{out}");
    s.wait_for_log("reason=account disabled in entra");

    // A device disabled in the tenant: its Intune MAC is refused after the
    // next devices round, although MAB accepted it before.
    let demo = Tenant::demo();
    let mac = demo.managed_devices[0].wi_fi_mac_address.clone().unwrap();
    let mab = |s: &TestServer| {
        stdout(&radclient(
            s.auth,
            "auth",
            SECRET,
            &format!("User-Name = \"{mac}\", User-Password = \"{mac}\", {MA}"),
        ))
    };
    assert!(mab(&s).contains("Access-Accept"));
    emu.control()
        .update_device(&demo.devices[0].id, |d| d.account_enabled = false);
    let rounds = s.logs().matches("sync round done object=\"devices\"").count();
    s.wait_for_log_count("sync round done object=\"devices\"", rounds + 1);
    assert!(mab(&s).contains("Access-Reject"));
    s.wait_for_log("reason=device disabled in entra");
}

#[test]
fn an_expired_delta_token_and_throttling_are_survived() {
    let Setup {
        rt: _rt,
        emu,
        server: s,
    } = setup(&["contoso.example"]);
    let full_rounds = s.logs().matches("full=true").count();
    emu.control()
        .fail_next("/v1.0/users/delta", Fault::Throttle { retry_after_s: 1 }, 1);
    emu.control().expire_delta_tokens();
    s.wait_for_log("the delta token had expired; the enumeration started over");
    // The users resync completes (after waiting out the 429).
    s.wait_for_log_count("full=true", full_rounds + 1);
    assert!(
        emu.control().request_log().iter().any(|r| r.status == 429),
        "the throttling fault was served"
    );
    // Lookups kept answering, and still do.
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Accept"));
}

#[test]
fn missing_consent_is_reported_in_the_status() {
    let (_rt, emu) = start_emulator(Tenant::demo());
    emu.control().revoke_consent(DEMO_CLIENT_ID);
    let body = format!("{}{}", localhost_client(""), entra_section(&emu.base_url(), "1s"));
    let tenant = emu.tenant_id();
    let s = TestServer::start_seeded(&body, |state| provision(state, &tenant, &["contoso.example"]));
    s.wait_for_log("sync round failed");
    let token = std::fs::read_to_string(s.state_dir().join("admin.token")).unwrap();
    let rt2 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt2
        .block_on(async {
            entra_radius::admin::AdminClient::new(s.admin, token.trim().to_string())
                .unwrap()
                .get_json("/v1/status")
                .await
        })
        .unwrap();
    let err = status["sync"]["users"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(err.contains("User.Read.All"), "{status:#}");
}

#[test]
fn a_server_killed_mid_round_resumes_at_the_stored_page() {
    let tenant = Tenant::synthetic(3000, 10, 7);
    let domains: Vec<String> = tenant.domains.iter().map(|d| d.id.clone()).collect();
    let (_rt, emu) = start_emulator(tenant);
    // Small pages make a long round to interrupt.
    emu.control().set_page_size(10);
    let (_keep, state, config) = synthetic_setup(&emu, &domains);
    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    // Kill it once some pages are stored but the round has not finished.
    let store = Store::open(&state).unwrap();
    let next = || store.checkpoint("users.next").unwrap();
    wait_for_users_next(&store);
    s.kill();
    let stored_next = next().expect("the position survives the kill");
    let before = emu.control().request_log().len();

    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    s.wait_for_log("sync round done object=\"users\"");
    assert!(s.logs().contains("resumed=true"), "{}", s.logs());
    // The first users request after the restart is the stored next link,
    // not the start of a new enumeration.
    let log = emu.control().request_log();
    let first = log[before..]
        .iter()
        .find(|r| r.path_and_query.contains("/users/delta"))
        .expect("a users request");
    let tail = stored_next.split_once("/v1.0/").map(|(_, t)| t).unwrap_or(&stored_next);
    assert!(
        first.path_and_query.ends_with(tail),
        "{} vs {stored_next}",
        first.path_and_query
    );
    let out = stdout(&s.cli(&["accounts", "lookup", "--json", "x@y"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entra"]["users"], 3000, "{v:#}");
}

#[test]
fn a_resumed_round_whose_stored_link_graph_forgot_starts_over() {
    use entra_radius::directory::{AccountKind, EntraReplica, persist};
    let tenant = Tenant::synthetic(1000, 10, 11);
    let domains: Vec<String> = tenant.domains.iter().map(|d| d.id.clone()).collect();
    let upn_of: std::collections::HashMap<String, String> = tenant
        .users
        .iter()
        .map(|u| (u.id.clone(), u.user_principal_name.clone()))
        .collect();
    let (_rt, emu) = start_emulator(tenant);
    emu.control().set_page_size(10);
    emu.control().set_delta_quirks(0, 0);
    let (_keep, state, config) = synthetic_setup(&emu, &domains);
    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    let store = Store::open(&state).unwrap();
    let next = || store.checkpoint("users.next").unwrap();
    wait_for_users_next(&store);
    // Hold the first round in the middle of the enumeration (its next page
    // waits out a long Retry-After), then kill -9 it there.
    emu.control()
        .fail_next("/v1.0/users/delta", Fault::Throttle { retry_after_s: 120 }, 1);
    s.wait_for_log("Graph is busy; retrying");
    s.kill();
    assert!(next().is_some(), "the position survives the kill");

    // While the server is down, users it already stored leave the tenant,
    // one joins, and Graph forgets the page links of rounds in progress.
    let replica = EntraReplica::new();
    persist::load_replica(&store, &replica).unwrap();
    let stored: Vec<String> = replica
        .snapshot_accounts()
        .iter()
        .filter(|a| a.kind() == AccountKind::User)
        .map(|a| a.object_id().to_string())
        .collect();
    assert!(stored.len() >= 3 && stored.len() < 1000, "{}", stored.len());
    let gone = &stored[..3];
    for id in gone {
        emu.control().delete_user(id);
    }
    let mut newcomer = emu.control().user(&stored[3.min(stored.len() - 1)]).unwrap();
    let domain = newcomer.user_principal_name.rsplit('@').next().unwrap().to_string();
    newcomer.id = "0000beef-0000-4000-8000-000000000001".into();
    newcomer.user_principal_name = format!("newcomer@{domain}");
    emu.control().add_user(newcomer);
    emu.control().forget_page_links();

    let s = TestServer::start_raw(&config, tempfile::tempdir().unwrap());
    s.wait_for_log("sync round done object=\"users\"");
    assert!(s.logs().contains("the stored page link had expired"), "{}", s.logs());
    let out = s.cli(&["sync", "now", "--wait"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = stdout(&s.cli(&["accounts", "lookup", "--json", "x@y"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entra"]["users"], 1000 - 3 + 1, "{v:#}");
    for id in gone {
        let out = stdout(&s.cli(&["accounts", "lookup", &upn_of[id]]));
        assert!(out.contains("decided by: none"), "{out}");
    }
    let out = stdout(&s.cli(&["accounts", "lookup", &format!("newcomer@{domain}")]));
    assert!(out.contains("decided by: entra"), "{out}");
    // The status says the round started over, without calling it a failure.
    let out = s.cli(&["sync", "status"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let users = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("users"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        users.contains("started over") && users.contains("the stored page link had expired"),
        "{text}"
    );
    assert!(!text.contains("last error"), "{text}");
}

/// An RSA key and a self-signed certificate for it: the PEM an
/// administrator gives `entra provision --certificate`, and what Entra ID
/// keeps of the uploaded certificate.
fn certificate() -> (String, graph_emulator::AppCertificate) {
    use aws_lc_rs::encoding::AsDer;
    use base64::Engine as _;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
    let public_key = aws_lc_rs::signature::KeyPair::public_key(&key).as_ref().to_vec();
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec());
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["entra-radius.example".into()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let thumb = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.der());
    let x5t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(thumb.as_ref());
    (
        format!("{}{}", cert.pem(), kp.serialize_pem()),
        graph_emulator::AppCertificate { x5t, public_key },
    )
}

#[test]
fn a_certificate_credential_signs_client_assertions() {
    use entra_radius::graph::{CertificateCredential, Credential, GraphClient, GraphConfig, GraphError};
    let (rt, emu) = start_emulator(Tenant::demo());
    let (pem, registered) = certificate();
    let (other_pem, _) = certificate();
    emu.control().add_app_certificate(DEMO_CLIENT_ID, registered);
    let client = |pem: &str| {
        GraphClient::new(GraphConfig {
            authority_host: emu.base_url(),
            graph_endpoint: emu.base_url(),
            tenant_id: emu.tenant_id(),
            client_id: DEMO_CLIENT_ID.into(),
            credential: Credential::Certificate(std::sync::Arc::new(
                CertificateCredential::from_pem(pem.as_bytes()).unwrap(),
            )),
        })
        .unwrap()
    };
    let token = rt
        .block_on(client(&pem).token())
        .expect("a token for the registered certificate");
    assert!(token.roles.iter().any(|r| r == "User.Read.All"));
    match rt.block_on(client(&other_pem).token()) {
        Err(GraphError::Aadsts {
            code: 700027,
            explanation,
            ..
        }) => assert!(explanation.contains("not registered"), "{explanation}"),
        other => panic!("expected AADSTS700027, got {other:?}"),
    }
    // The key never shows in Debug.
    assert!(!format!("{:?}", CertificateCredential::from_pem(pem.as_bytes()).unwrap()).contains("PRIVATE"));
    // And through the binary: `entra provision --certificate` instead of a
    // secret; an unregistered certificate is refused before anything is saved.
    let body = format!("{}{}", localhost_client(""), entra_section(&emu.base_url(), "1h"));
    let tenant = emu.tenant_id();
    let s = TestServer::start(&body);
    let cli = |args: &[&str], code: i32| {
        let o = s.cli(args);
        let text = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.status.code(), Some(code), "{args:?}: {text}");
        text
    };
    let other_file = s.dir.path().join("other.pem");
    let cert_file = s.dir.path().join("cert.pem");
    write_private(&other_file, other_pem.as_bytes());
    write_private(&cert_file, pem.as_bytes());
    let provision_with = |file: &std::path::Path, code: i32| {
        cli(
            &[
                "entra",
                "provision",
                "--tenant",
                &tenant,
                "--client-id",
                DEMO_CLIENT_ID,
                "--certificate",
                file.to_str().unwrap(),
            ],
            code,
        )
    };
    let t = provision_with(&other_file, 1);
    assert!(t.contains("AADSTS700027"), "{t}");
    assert!(!s.state_dir().join("entra-client-cert.pem").exists());
    let t = provision_with(&cert_file, 0);
    assert!(t.contains("Admin consent: granted"), "{t}");
    assert!(!t.contains("PRIVATE KEY"), "{t}");
    assert!(cli(&["entra", "status"], 0).contains("(manual, certificate"));
    cli(&["domains", "select", "contoso.example"], 0);
    cli(&["entra", "enable"], 0);
    cli(&["sync", "now", "--wait"], 0);
    assert!(pap(&s, "alice@contoso.example", "alice-pw").contains("Access-Accept"));
}
