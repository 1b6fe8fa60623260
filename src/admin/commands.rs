//! The admin CLI's integration commands (`entra …`, `domains …`, `sync …`): each one a few calls
//! to the admin API and a readable answer. They return the process exit code: 0 success, 1 the
//! operation failed, 2 a usage error (the API answered 400).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::api::{CredentialsBody, SelectionAction};
use super::pick::{PickItem, PickOutcome, Picker};
use super::{AdminClient, AdminError};
use crate::clock::now_unix;

/// Exit codes of the admin commands.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// How often `--wait` loops ask the server for progress.
const POLL: Duration = Duration::from_millis(250);

/// Prints an admin API error on one line and picks the exit code.
pub fn report(e: &AdminError) -> u8 {
    eprintln!("entra-radius: {e}");
    match e {
        AdminError::Api { status: 400, .. } => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// "3 min ago", "2 h ago", "just now".
pub fn ago(unix: i64) -> String {
    let secs = (now_unix() - unix).max(0);
    match secs {
        0..=4 => "just now".into(),
        5..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        7200..=172_799 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `entra status`.
pub async fn entra_status(client: &AdminClient, as_json: bool) -> Result<u8, AdminError> {
    let v = client.get_json("/v1/entra").await?;
    if as_json {
        print_json(&v);
        return Ok(EXIT_OK);
    }
    print!("{}", status_text(&v));
    Ok(EXIT_OK)
}

/// The text of `entra status`.
pub fn status_text(v: &Value) -> String {
    let mut out = String::new();
    let on = v["enabled"].as_bool().unwrap_or(false);
    out.push_str(&format!("Integration:  {}\n", if on { "enabled" } else { "disabled" }));
    let p = &v["provisioned"];
    if p.is_object() {
        out.push_str(&format!(
            "Application:  client {} in tenant {} ({}, {}{})\n",
            p["client_id"].as_str().unwrap_or("?"),
            p["tenant_id"].as_str().unwrap_or("?"),
            p["by"].as_str().unwrap_or("recorded"),
            p["credential"].as_str().unwrap_or("?"),
            p["at"].as_i64().map(|t| format!(", {}", ago(t))).unwrap_or_default()
        ));
    } else {
        out.push_str("Application:  not registered\n");
    }
    let c = &v["consent"];
    if c.is_object() {
        let granted = strings(&c["granted"]);
        let missing = strings(&c["missing"]);
        let when = c["checked_at"].as_i64().map(ago).unwrap_or_default();
        if let Some(err) = c["error"].as_str() {
            out.push_str(&format!("Consent:      failed ({when}): {err}\n"));
        } else if missing.is_empty() && !granted.is_empty() {
            out.push_str(&format!(
                "Consent:      granted, checked {when} ({})\n",
                granted.join(", ")
            ));
        } else {
            out.push_str(&format!(
                "Consent:      MISSING {} (checked {when})\n",
                missing.join(", ")
            ));
        }
    } else {
        out.push_str("Consent:      not checked yet\n");
    }
    let selected = strings(&v["domains"]["selected"]);
    out.push_str(&format!(
        "Domains:      {}{}\n",
        if selected.is_empty() {
            "none selected".to_string()
        } else {
            selected.join(", ")
        },
        if v["domains"]["rescope_pending"].as_bool() == Some(true) {
            " (changed: applied at the next sync)"
        } else {
            ""
        }
    ));
    out.push_str(&sync_lines(&v["sync"], &v["delta_token_age_seconds"]));
    out.push_str(&format!(
        "Replica:      {} users, {} devices ({} soft-deleted)\n",
        v["replica"]["users"].as_u64().unwrap_or(0),
        v["replica"]["devices"].as_u64().unwrap_or(0),
        v["replica"]["soft_deleted"].as_u64().unwrap_or(0)
    ));
    let prov = &v["provisioning"];
    if prov["phase"] == "failed" {
        out.push_str(&format!(
            "Provisioning: failed: {}\n",
            prov["error"].as_str().unwrap_or("unknown error")
        ));
    } else if prov["phase"] == "waiting_for_sign_in" || prov["phase"] == "creating" {
        out.push_str(&format!(
            "Provisioning: {} (code {})\n",
            prov["phase"].as_str().unwrap_or(""),
            prov["user_code"].as_str().unwrap_or("?")
        ));
    }
    out.push_str(&format!("Next step:    {}\n", v["next_step"].as_str().unwrap_or("?")));
    out
}

/// The per-object lines of `entra status` and `sync status`.
fn sync_lines(sync: &Value, ages: &Value) -> String {
    let mut out = format!("Sync:         {}\n", sync["state"].as_str().unwrap_or("not started"));
    for object in ["users", "devices", "groups", "intune"] {
        let o = &sync[object];
        let mut line = format!("  {object:<8}");
        match o["last_success"].as_i64() {
            Some(t) => line.push_str(&format!(
                "last success {} ({} items, {} pages, {:.1} s{})",
                ago(t),
                o["items"].as_u64().unwrap_or(0),
                o["pages"].as_u64().unwrap_or(0),
                o["last_duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                if o["full"].as_bool() == Some(true) {
                    ", full"
                } else {
                    ""
                }
            )),
            None => line.push_str("never synced"),
        }
        if let Some(age) = ages[object].as_i64() {
            line.push_str(&format!("; delta token {}", ago(now_unix() - age)));
        }
        if let (Some(why), Some(t)) = (o["restarted"].as_str(), o["restarted_at"].as_i64()) {
            line.push_str(&format!("\n            {}: {why}", ago(t)));
        }
        if let Some(e) = o["last_error"].as_str() {
            line.push_str(&format!("\n            last error: {e}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `entra enable`.
pub async fn entra_enable(client: &AdminClient) -> Result<u8, AdminError> {
    let v = client.post_json("/v1/entra/enable", &json!({})).await?;
    println!("The Entra ID integration is enabled.");
    if let Some(r) = v["sync_round"].as_u64() {
        println!("Sync round {r} starts now.");
    }
    println!("Next step: {}", v["next_step"].as_str().unwrap_or("?"));
    Ok(EXIT_OK)
}

/// `entra disable [--purge]`.
pub async fn entra_disable(client: &AdminClient, purge: bool) -> Result<u8, AdminError> {
    let v = client
        .post_json("/v1/entra/disable", &json!({ "purge": purge }))
        .await?;
    println!("The Entra ID integration is disabled: Entra accounts no longer decide anything and the sync stopped.");
    if let Some(n) = v["purged"].as_u64() {
        println!("Purged {n} Entra objects (accounts, devices, groups) and every sync checkpoint.");
    } else {
        println!("The replica is kept; `entra disable --purge` deletes it.");
    }
    Ok(EXIT_OK)
}

/// What `entra provision` was asked to do.
pub enum ProvisionArgs {
    /// Register the application through Graph after a device-code sign-in.
    Automatic {
        tenant: Option<String>,
        display_name: Option<String>,
    },
    /// Record an application registered by hand.
    Manual {
        tenant: String,
        client_id: String,
        secret_file: Option<PathBuf>,
        certificate: Option<PathBuf>,
    },
}

fn read_file(path: &PathBuf, what: &'static str) -> Result<String, AdminError> {
    std::fs::read_to_string(path).map_err(|source| AdminError::ReadFile {
        what,
        path: path.clone(),
        source,
    })
}

/// `entra provision`.
pub async fn entra_provision(client: &AdminClient, args: ProvisionArgs) -> Result<u8, AdminError> {
    match args {
        ProvisionArgs::Manual {
            tenant,
            client_id,
            secret_file,
            certificate,
        } => {
            let mut body = CredentialsBody {
                tenant,
                client_id,
                ..CredentialsBody::default()
            };
            let read = match (&secret_file, &certificate) {
                (Some(f), None) => read_file(f, "client secret file").map(|s| body.client_secret = Some(s)),
                (None, Some(f)) => read_file(f, "certificate file").map(|s| body.certificate_pem = Some(s)),
                _ => Err(AdminError::Usage(
                    "give exactly one of --client-secret-file and --certificate",
                )),
            };
            if let Err(e) = read {
                eprintln!("entra-radius: {e}");
                return Ok(EXIT_USAGE);
            }
            let body = serde_json::to_value(&body).unwrap_or_default();
            let v = client.put_json("/v1/entra/credentials", &body).await?;
            println!(
                "Recorded application {} in tenant {}; its credential is in the state directory (owner-only).",
                v["client_id"].as_str().unwrap_or("?"),
                v["tenant_id"].as_str().unwrap_or("?")
            );
            print_consent(&v["consent"]);
            println!("Next step: {}", v["next_step"].as_str().unwrap_or("?"));
            Ok(EXIT_OK)
        }
        ProvisionArgs::Automatic { tenant, display_name } => {
            let v = client
                .post_json(
                    "/v1/entra/provision",
                    &json!({ "tenant": tenant, "display_name": display_name }),
                )
                .await?;
            println!(
                "To register the application, sign in as an administrator who may create applications \
                 (Application Administrator or Cloud Application Administrator):\n\n    open {}\n    enter the code {}\n",
                v["verification_uri"].as_str().unwrap_or("?"),
                v["user_code"].as_str().unwrap_or("?")
            );
            follow_provisioning(client).await
        }
    }
}

/// Prints provisioning steps as they happen until it ends.
async fn follow_provisioning(client: &AdminClient) -> Result<u8, AdminError> {
    let mut shown = 0;
    loop {
        let p = client.get_json("/v1/entra/provision").await?;
        let steps = strings(&p["steps"]);
        for s in steps.iter().skip(shown) {
            println!("  {s}");
        }
        shown = steps.len();
        match p["phase"].as_str() {
            Some("done") => {
                let s = client.get_json("/v1/entra").await?;
                println!("Next step: {}", s["next_step"].as_str().unwrap_or("?"));
                return Ok(EXIT_OK);
            }
            Some("failed") => {
                eprintln!(
                    "entra-radius: provisioning failed: {}",
                    p["error"].as_str().unwrap_or("unknown error")
                );
                return Ok(EXIT_FAILED);
            }
            Some("idle") | None => {
                eprintln!("entra-radius: the server is not provisioning (was it restarted?)");
                return Ok(EXIT_FAILED);
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

fn print_consent(c: &Value) {
    let granted = strings(&c["granted"]);
    let missing = strings(&c["missing"]);
    if missing.is_empty() && !granted.is_empty() {
        println!("Admin consent: granted ({}).", granted.join(", "));
    } else if granted.is_empty() {
        println!("Admin consent: not granted yet.");
    } else {
        println!(
            "Admin consent: MISSING {} (granted: {}).",
            missing.join(", "),
            granted.join(", ")
        );
    }
}

/// `entra consent`: the consent URL, a one-shot loopback listener for the redirect, then the
/// server's check of the token's roles. With `check_only`, only the check.
pub async fn entra_consent(
    client: &AdminClient,
    check_only: bool,
    port: u16,
    timeout: Duration,
) -> Result<u8, AdminError> {
    let answer = if check_only {
        json!({})
    } else {
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("entra-radius: cannot listen for the consent redirect on 127.0.0.1:{port}: {e}");
                return Ok(EXIT_FAILED);
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        // Browsers may resolve localhost to ::1 first: listen there too when IPv6 is up.
        let v6 = tokio::net::TcpListener::bind(("::1", port)).await.ok();
        let redirect = format!("http://localhost:{port}/consent");
        let v = client
            .get_json(&format!(
                "/v1/entra/consent?redirect_uri={}",
                super::client::encode_path_segment(&redirect)
            ))
            .await?;
        println!(
            "Open this URL as a Global Administrator or Privileged Role Administrator of the tenant, and accept:\n\n    {}\n\nWaiting up to {} s for the answer on {redirect} …",
            v["url"].as_str().unwrap_or("?"),
            timeout.as_secs()
        );
        match tokio::time::timeout(timeout, wait_for_redirect(listener, v6)).await {
            Ok(Ok(params)) => params,
            Ok(Err(e)) => {
                eprintln!("entra-radius: the consent redirect failed: {e}");
                return Ok(EXIT_FAILED);
            }
            Err(_) => {
                eprintln!(
                    "entra-radius: no answer within {} s; run `entra-radius entra consent` again (or `--check` after consenting in the Entra admin center)",
                    timeout.as_secs()
                );
                return Ok(EXIT_FAILED);
            }
        }
    };
    let v = client.post_json("/v1/entra/consent", &answer).await?;
    print_consent(&v["consent"]);
    println!("Next step: {}", v["next_step"].as_str().unwrap_or("?"));
    let complete = strings(&v["consent"]["missing"]).is_empty() && !strings(&v["consent"]["granted"]).is_empty();
    Ok(if complete { EXIT_OK } else { EXIT_FAILED })
}

/// Serves the loopback redirect (axum, on each listener) until the first request for
/// `/consent`, and returns its query parameters; anything else (a browser's favicon) gets 404
/// and the wait goes on.
async fn wait_for_redirect(
    listener: tokio::net::TcpListener,
    v6: Option<tokio::net::TcpListener>,
) -> std::io::Result<Value> {
    use axum::extract::{Query, State};
    use axum::response::Html;
    type Answer = std::sync::Arc<tokio::sync::Mutex<Option<tokio::sync::oneshot::Sender<Value>>>>;
    async fn consent(
        State(answer): State<Answer>,
        Query(params): Query<std::collections::HashMap<String, String>>,
    ) -> Html<&'static str> {
        let ok = params
            .get("admin_consent")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut body = serde_json::Map::new();
        for key in ["admin_consent", "tenant", "state", "error", "error_description"] {
            if let Some(v) = params.get(key) {
                body.insert(key.into(), Value::String(v.clone()));
            }
        }
        if let Some(tx) = answer.lock().await.take() {
            let _ = tx.send(Value::Object(body));
        }
        Html(if ok {
            "<!doctype html><title>entra-radius</title><p>Admin consent received. You can close this window and return to the terminal."
        } else {
            "<!doctype html><title>entra-radius</title><p>Admin consent was not granted. The terminal says why."
        })
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let answer: Answer = std::sync::Arc::new(tokio::sync::Mutex::new(Some(tx)));
    let app = axum::Router::new()
        .route("/consent", axum::routing::get(consent))
        .with_state(answer);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut servers = Vec::new();
    for l in std::iter::once(listener).chain(v6) {
        let serve = axum::serve(l, app.clone()).with_graceful_shutdown(stop.clone().cancelled_owned());
        servers.push(tokio::spawn(async move { serve.await }));
    }
    let got = rx
        .await
        .map_err(|_| std::io::Error::other("the redirect listener stopped"));
    // Let the browser's page go out before the listeners close (a browser
    // holding its connection open does not hold the command up for long).
    stop.cancel();
    for s in servers {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), s).await;
    }
    got
}

/// `a=1&b=x%20y` → map, percent- and plus-decoded (form encoding, by the
/// URL parser reqwest already carries).
pub fn parse_query(q: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(&format!("http://localhost/?{q}"))
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

/// `domains list [--search TEXT]`.
pub async fn domains_list(client: &AdminClient, search: Option<&str>, as_json: bool) -> Result<u8, AdminError> {
    let v = client.get_json("/v1/domains").await?;
    let needle = search.map(str::to_lowercase);
    let domains: Vec<&Value> = v["domains"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|d| {
                    needle
                        .as_ref()
                        .is_none_or(|n| d["name"].as_str().unwrap_or("").to_lowercase().contains(n))
                })
                .collect()
        })
        .unwrap_or_default();
    if as_json {
        print_json(&json!({ "domains": domains, "selected": v["selected"] }));
        return Ok(EXIT_OK);
    }
    let width = domains
        .iter()
        .map(|d| d["name"].as_str().unwrap_or("").len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!("{:<width$}  SELECTED  VERIFIED  DEFAULT  INITIAL  FEDERATED", "DOMAIN");
    let yes = |b: &Value| if b.as_bool() == Some(true) { "yes" } else { "-" };
    for d in &domains {
        println!(
            "{:<width$}  {:<8}  {:<8}  {:<7}  {:<7}  {}",
            d["name"].as_str().unwrap_or("?"),
            yes(&d["selected"]),
            yes(&d["verified"]),
            yes(&d["default"]),
            yes(&d["initial"]),
            if d["federated"].as_bool() == Some(true) {
                "yes (PAP cannot be checked)"
            } else {
                "-"
            }
        );
    }
    if domains.is_empty() {
        println!("(no domain matches)");
    }
    let gone = strings(&v["selected_but_gone"]);
    if !gone.is_empty() {
        println!(
            "Selected but no longer in the tenant: {} (unselect them with `domains unselect`)",
            gone.join(", ")
        );
    }
    Ok(EXIT_OK)
}

/// `domains select` / `domains unselect`.
pub async fn domains_change(
    client: &AdminClient,
    action: SelectionAction,
    all: bool,
    names: &[String],
) -> Result<u8, AdminError> {
    let v = client
        .post_json(
            "/v1/domains/selection",
            &json!({ "action": action, "all": all, "names": names }),
        )
        .await?;
    print_selection(&v);
    Ok(EXIT_OK)
}

fn print_selection(v: &Value) {
    let selected = strings(&v["selected"]);
    if selected.is_empty() {
        println!("Selected domains: none (no Entra user can sign in)");
    } else {
        println!("Selected domains: {}", selected.join(", "));
    }
    if v["changed"].as_bool() == Some(true) {
        println!("Saved; the next sync re-scopes the replica to this selection.");
    } else {
        println!("Unchanged.");
    }
    let federated = strings(&v["federated_selected"]);
    if !federated.is_empty() {
        println!(
            "Note: {} federated: Entra ID does not hold those users' passwords, so PAP cannot be checked for them (MAB and certificates still work).",
            if federated.len() == 1 {
                format!("{} is", federated[0])
            } else {
                format!("{} are", federated.join(", "))
            }
        );
    }
    if let Some(n) = v["next_step"].as_str() {
        println!("Next step: {n}");
    }
}

/// `domains pick`.
pub async fn domains_pick(client: &AdminClient) -> Result<u8, AdminError> {
    let v = client.get_json("/v1/domains").await?;
    let items: Vec<PickItem> = v["domains"]
        .as_array()
        .map(|a| a.iter().map(pick_item).collect())
        .unwrap_or_default();
    if items.is_empty() {
        eprintln!("entra-radius: the tenant has no domains to pick");
        return Ok(EXIT_FAILED);
    }
    let mut picker = Picker::new(items);
    // The runtime of the CLI runs nothing else meanwhile, so blocking on the terminal is fine.
    let outcome = match super::pick::run_terminal(&mut picker) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("entra-radius: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    match outcome {
        PickOutcome::Cancel => {
            println!("Cancelled; the selection is unchanged.");
            Ok(EXIT_OK)
        }
        PickOutcome::Save(names) => {
            let v = client
                .post_json(
                    "/v1/domains/selection",
                    &json!({ "action": SelectionAction::Exact, "names": names }),
                )
                .await?;
            print_selection(&v);
            Ok(EXIT_OK)
        }
    }
}

fn pick_item(d: &Value) -> PickItem {
    let mut notes = Vec::new();
    for (flag, text) in [
        ("default", "default"),
        ("initial", "initial"),
        ("federated", "federated: no PAP"),
    ] {
        if d[flag].as_bool() == Some(true) {
            notes.push(text);
        }
    }
    if d["verified"].as_bool() == Some(false) {
        notes.push("unverified");
    }
    PickItem {
        name: d["name"].as_str().unwrap_or("?").to_string(),
        note: notes.join(", "),
        selected: d["selected"].as_bool() == Some(true),
    }
}

/// `sync status`.
pub async fn sync_status(client: &AdminClient, as_json: bool) -> Result<u8, AdminError> {
    let v = client.get_json("/v1/sync").await?;
    if as_json {
        print_json(&v);
        return Ok(EXIT_OK);
    }
    print!("{}", sync_lines(&v["sync"], &v["delta_token_age_seconds"]));
    println!(
        "Replica:      {} users, {} devices; rounds every {}",
        v["replica"]["users"].as_u64().unwrap_or(0),
        v["replica"]["devices"].as_u64().unwrap_or(0),
        humantime::format_duration(Duration::from_secs(v["interval_seconds"].as_u64().unwrap_or(0)))
    );
    if let Some(b) = v["blocked"].as_str() {
        println!("Blocked:      {b}");
    }
    let failed = v["sync"]["last_round_ok"].as_bool() == Some(false);
    Ok(if failed { EXIT_FAILED } else { EXIT_OK })
}

/// `sync now [--wait]`.
pub async fn sync_now(client: &AdminClient, wait: bool) -> Result<u8, AdminError> {
    let v = client.post_json("/v1/sync", &json!({})).await?;
    let round = v["round"].as_u64().unwrap_or(0);
    if !wait {
        println!("Sync round {round} requested; `entra-radius sync status` shows how it goes.");
        return Ok(EXIT_OK);
    }
    let bars = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template("{spinner} {prefix:<8} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
    let objects = ["users", "devices", "groups", "intune"];
    let lines: Vec<indicatif::ProgressBar> = objects
        .iter()
        .map(|o| {
            let b = bars.add(indicatif::ProgressBar::new_spinner());
            b.set_style(style.clone());
            b.set_prefix(o.to_string());
            b.set_message("waiting");
            b
        })
        .collect();
    let mut done: HashSet<&str> = HashSet::new();
    let result = loop {
        let s = client.get_json("/v1/sync").await?;
        let sync = &s["sync"];
        // The integration was disabled (or lost its application) before the round began.
        if sync["running"].as_bool() != Some(true)
            && sync["rounds_started"].as_u64().unwrap_or(0) < round
            && let Some(blocked) = s["blocked"].as_str()
        {
            for b in &lines {
                b.finish_and_clear();
            }
            eprintln!("entra-radius: sync round {round} did not run: {blocked}");
            return Ok(EXIT_FAILED);
        }
        let finished = sync["rounds_finished"].as_u64().unwrap_or(0) >= round;
        let current = sync["current"].as_str().unwrap_or("");
        let started = sync["rounds_started"].as_u64().unwrap_or(0) >= round;
        let mut reached_current = false;
        for (o, bar) in objects.iter().zip(&lines) {
            let st = &sync[*o];
            if *o == current {
                reached_current = true;
            }
            if started && !finished && *o == current {
                bar.set_message(format!(
                    "{} pages, {} objects",
                    st["running_pages"].as_u64().unwrap_or(0),
                    st["running_items"].as_u64().unwrap_or(0)
                ));
                bar.tick();
            } else if (finished || (started && !reached_current && !current.is_empty())) && !done.contains(o) {
                done.insert(o);
                let text = match st["last_error"].as_str() {
                    Some(e) => format!("FAILED: {e}"),
                    None => format!(
                        "{} pages, {} objects in {:.1} s{}",
                        st["pages"].as_u64().unwrap_or(0),
                        st["items"].as_u64().unwrap_or(0),
                        st["last_duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                        if st["full"].as_bool() == Some(true) {
                            " (full)"
                        } else {
                            ""
                        }
                    ),
                };
                bar.finish_with_message(text);
            }
        }
        if finished {
            break sync.clone();
        }
        tokio::time::sleep(POLL).await;
    };
    for b in &lines {
        if !b.is_finished() {
            b.finish();
        }
    }
    if result["last_round_ok"].as_bool() == Some(true) {
        println!("Sync round {round} finished.");
        Ok(EXIT_OK)
    } else {
        eprintln!(
            "entra-radius: sync round {round} failed: {}",
            result["last_round_error"]
                .as_str()
                .unwrap_or("see `entra-radius sync status`")
        );
        Ok(EXIT_FAILED)
    }
}

/// One line on how fresh the Entra replica is, for the CLI.
pub fn freshness_line(entra: &Value) -> String {
    let users = entra["users"].as_u64().unwrap_or(0);
    let devices = entra["devices"].as_u64().unwrap_or(0);
    let newest = entra["checkpoints"]
        .as_array()
        .and_then(|c| c.iter().filter_map(|c| c["age_seconds"].as_i64()).min());
    let enabled = if entra["enabled"].as_bool().unwrap_or(false) {
        "enabled"
    } else {
        "disabled"
    };
    match newest {
        Some(age) => {
            format!("entra replica: {enabled}, {users} users, {devices} devices, last sync checkpoint {age} s ago")
        }
        None => format!("entra replica: {enabled}, {users} users, {devices} devices, never synced"),
    }
}

/// The query string of `/v1/auth/log` for `q`.
pub fn auth_log_path(q: &super::api::AuthLogQuery) -> String {
    use super::client::encode_path_segment as enc;
    let mut parts = Vec::new();
    let mut text = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={}", enc(v)));
        }
    };
    text("identity", &q.identity);
    text("mac", &q.mac);
    text("client", &q.client);
    text("result", &q.result);
    for (k, v) in [("since_ms", q.since_ms), ("after_id", q.after_id)] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    if let Some(l) = q.limit {
        parts.push(format!("limit={l}"));
    }
    if parts.is_empty() {
        "/v1/auth/log".into()
    } else {
        format!("/v1/auth/log?{}", parts.join("&"))
    }
}

/// One decision of the history on one line: time, result, identity,
/// method, where from, directory, VLAN, reason.
pub fn history_line(row: &Value) -> String {
    let s = |k: &str| row[k].as_str().unwrap_or("-").to_string();
    let time = crate::clock::Rfc3339(row["time_ms"].as_i64().unwrap_or(0).div_euclid(1000));
    let result = if row["accept"].as_bool() == Some(true) {
        "accept"
    } else {
        "reject"
    };
    let mut line = format!(
        "{time}  {result:<6}  {}  {}  client {} ({})",
        s("identity"),
        s("method"),
        s("client"),
        s("nas_addr")
    );
    if let Some(p) = row["nas_port"].as_str() {
        line.push_str(&format!(" port {p}"));
    }
    if let Some(c) = row["calling_station_id"].as_str() {
        line.push_str(&format!(" station {c}"));
    }
    line.push_str(&format!("  directory {}", s("directory")));
    if let Some(a) = row["account"].as_str() {
        line.push_str(&format!("  account {a}"));
    }
    if let Some(r) = row["policy_rule"].as_u64() {
        line.push_str(&format!("  policy #{r}"));
    }
    if let Some(v) = row["vlan"].as_str() {
        line.push_str(&format!("  vlan {v}"));
    }
    line.push_str(&format!("  {}", s("reason")));
    line
}

/// `auth log`: newest first; with `follow`, the last ones oldest first and
/// then each new one as it is written, until interrupted.
pub async fn auth_log(
    client: &AdminClient,
    mut q: super::api::AuthLogQuery,
    as_json: bool,
    follow: bool,
) -> Result<u8, AdminError> {
    let print = |row: &Value| {
        if as_json {
            println!("{}", serde_json::to_string(row).unwrap_or_default());
        } else {
            println!("{}", history_line(row));
        }
    };
    let rows = client.get_json(&auth_log_path(&q)).await?;
    let rows = rows.as_array().cloned().unwrap_or_default();
    if !follow {
        if as_json {
            print_json(&Value::Array(rows));
        } else if rows.is_empty() {
            println!("No decisions match.");
        } else {
            rows.iter().for_each(print);
        }
        return Ok(EXIT_OK);
    }
    let mut last = rows.iter().filter_map(|r| r["id"].as_i64()).max().unwrap_or(0);
    rows.iter().rev().for_each(print);
    q.since_ms = None;
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        q.after_id = Some(last);
        let new = client.get_json(&auth_log_path(&q)).await?;
        for row in new.as_array().into_iter().flatten() {
            print(row);
            last = last.max(row["id"].as_i64().unwrap_or(last));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
}

/// How often `auth log --follow` asks for new decisions.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        let q = parse_query("admin_consent=True&tenant=abc&error_description=AADSTS65004%3A+User+declined&x");
        assert_eq!(q["admin_consent"], "True");
        assert_eq!(q["error_description"], "AADSTS65004: User declined");
        assert_eq!(q["x"], "");
        assert_eq!(parse_query("a=100%")["a"], "100%");
        assert_eq!(parse_query("a=%zz")["a"], "%zz");
    }

    #[test]
    fn status_text_names_missing_consent_and_next_step() {
        let v = json!({
            "enabled": true,
            "provisioned": { "client_id": "c1", "tenant_id": "t1", "by": "manual", "credential": "secret", "at": now_unix() },
            "consent": { "checked_at": now_unix(), "granted": ["User.Read.All"], "missing": ["Device.Read.All"] },
            "domains": { "selected": [], "rescope_pending": false },
            "sync": { "state": "idle", "users": { "last_success": null } },
            "replica": { "users": 0, "devices": 0, "soft_deleted": 0 },
            "next_step": "admin consent lacks Device.Read.All: run `entra-radius entra consent` again",
            "provisioning": { "phase": "idle" },
        });
        let t = status_text(&v);
        assert!(t.contains("Consent:      MISSING Device.Read.All"), "{t}");
        assert!(t.contains("client c1 in tenant t1 (manual, secret"), "{t}");
        assert!(t.contains("Domains:      none selected"), "{t}");
        assert!(t.contains("Next step:    admin consent lacks Device.Read.All"), "{t}");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(now_unix()), "just now");
        assert_eq!(ago(now_unix() - 30), "30 s ago");
        assert_eq!(ago(now_unix() - 600), "10 min ago");
        assert_eq!(ago(now_unix() - 3 * 86_400), "3 days ago");
    }

    #[test]
    fn auth_log_queries_are_encoded() {
        let q = crate::admin::AuthLogQuery {
            identity: Some("CORP\\al ice&x=1".into()),
            result: Some("reject".into()),
            after_id: Some(7),
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(
            auth_log_path(&q),
            "/v1/auth/log?identity=CORP%5Cal%20ice%26x%3D1&result=reject&after_id=7&limit=5"
        );
        assert_eq!(auth_log_path(&Default::default()), "/v1/auth/log");
    }
}
