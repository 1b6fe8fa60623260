//! The integration's operations as the admin API offers them. Each call
//! arrives on a blocking thread (see `admin::AdminBackend`), does its part
//! in the store, and answers JSON, or an [`ApiError`] whose message says
//! which step comes first. Every step can be repeated without harm.

use std::time::Duration;

use serde_json::{Value, json};
use tracing::info;

use super::status::ConsentRecord;
use super::{CLIENT_CERT_FILE, CLIENT_SECRET_FILE, Integration, Settings};
use crate::admin::ApiError;
use crate::admin::api::{
    ConsentBody, CredentialsBody, DisableBody, IntegrationRequest, SelectionAction, SelectionBody,
};
use crate::clock::now_unix;
use crate::graph::{
    CertificateCredential, Credential, DomainInfo, GraphClient, GraphConfig, GraphError, REQUIRED_ROLES, missing_roles,
    query_escape,
};
use crate::store::integration::keys;

/// After admin consent, Entra ID may take a while before tokens carry the
/// new roles; the check retries after these pauses.
const CONSENT_PROPAGATION: [Duration; 5] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(15),
];

fn store_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("the state store failed: {e}"))
}

/// Graph's and the token endpoint's refusals, explained, as 502.
fn graph_err(e: GraphError) -> ApiError {
    ApiError::upstream(e.to_string())
}

impl Integration {
    /// Answers one admin API operation.
    pub fn handle(self: &std::sync::Arc<Self>, request: IntegrationRequest) -> Result<Value, ApiError> {
        match request {
            IntegrationRequest::Status => self.status_json(),
            IntegrationRequest::Enable => self.enable(),
            IntegrationRequest::Disable(body) => self.disable(body),
            IntegrationRequest::ProvisionStart(body) => self.provision_start(body),
            IntegrationRequest::ProvisionProgress => Ok(self.provision_progress()),
            IntegrationRequest::SetCredentials(body) => self.set_credentials(body),
            IntegrationRequest::ConsentUrl { redirect_uri } => self.consent_url(&redirect_uri),
            IntegrationRequest::ConsentResult(body) => self.consent_result(body),
            IntegrationRequest::Domains => self.domains_json(),
            IntegrationRequest::SelectDomains(body) => self.select_domains(body),
            IntegrationRequest::SyncNow => self.sync_now(),
            IntegrationRequest::SyncStatus => self.sync_status_json(),
        }
    }

    fn read_settings(&self) -> Result<Settings, ApiError> {
        self.settings().map_err(store_err)
    }

    fn set_keys(&self, pairs: &[(&str, Option<&str>)]) -> Result<(), ApiError> {
        let conn = self.parts.store.conn().map_err(store_err)?;
        let now = now_unix();
        for (k, v) in pairs {
            conn.set_setting(k, *v, now).map_err(store_err)?;
        }
        Ok(())
    }

    fn credential_kind(&self) -> &'static str {
        if self.state_dir.join(CLIENT_CERT_FILE).exists() {
            "certificate"
        } else if self.state_dir.join(CLIENT_SECRET_FILE).exists() {
            "secret"
        } else {
            "missing"
        }
    }

    /// The next thing the administrator should do, as a sentence with the
    /// command.
    fn next_step(&self, s: &Settings) -> String {
        let st = self.sync_status();
        if !s.enabled {
            return "turn the integration on: `entra-radius entra enable`".into();
        }
        if !s.provisioned() {
            return "register the application in the tenant: `entra-radius entra provision` (or `--tenant … --client-id … --client-secret-file …` for one registered by hand)".into();
        }
        if self.credential_kind() == "missing" {
            return "the application's credential is missing from the state directory: run `entra-radius entra provision` again".into();
        }
        match &s.consent {
            None => return "grant admin consent: `entra-radius entra consent`".into(),
            Some(c) if !c.complete() => {
                return if c.missing.is_empty() || c.granted.is_empty() {
                    "grant admin consent: `entra-radius entra consent`".into()
                } else {
                    format!(
                        "admin consent lacks {}: run `entra-radius entra consent` again",
                        c.missing.join(", ")
                    )
                };
            }
            Some(_) => {}
        }
        if s.selected_domains.is_empty() {
            return "choose the domains whose users may sign in: `entra-radius domains pick` (or `domains select --all`)"
                .into();
        }
        if st.running {
            return "a sync is running: `entra-radius sync now --wait` follows it".into();
        }
        if st.last_round_ok == Some(false) {
            return format!(
                "the last sync failed ({}); fix the cause, then `entra-radius sync now --wait`",
                st.last_round_error.as_deref().unwrap_or("see `sync status`")
            );
        }
        if st.users.last_success.is_none() {
            return "start the first sync: `entra-radius sync now --wait` (or wait for the next interval)".into();
        }
        format!(
            "nothing to do: the replica syncs every {}",
            humantime::format_duration(self.cfg.sync_interval)
        )
    }

    /// Checkpoint ages: how old each object type's delta token is.
    fn delta_ages(&self) -> Value {
        let now = now_unix();
        let mut ages = serde_json::Map::new();
        if let Ok(list) = self.parts.store.checkpoints() {
            for (name, _, updated) in list {
                if let Some(object) = name.strip_suffix(".delta") {
                    ages.insert(object.to_string(), json!(now - updated));
                }
            }
        }
        Value::Object(ages)
    }

    fn status_json(&self) -> Result<Value, ApiError> {
        let s = self.read_settings()?;
        let counts = self.parts.entra.replica().counts();
        Ok(json!({
            "enabled": s.enabled,
            "provisioned": s.provisioned().then(|| json!({
                "tenant_id": s.tenant_id,
                "client_id": s.client_id,
                "app_object_id": s.app_object_id,
                "at": s.provisioned_at,
                "by": s.provisioned_by,
                "credential": self.credential_kind(),
            })),
            "consent": s.consent,
            "domains": { "selected": s.selected_domains, "rescope_pending": s.rescope_pending },
            "replica": { "users": counts.users, "devices": counts.devices, "soft_deleted": counts.soft_deleted },
            "sync": self.sync_status().current(s.sync_blocker()),
            "delta_token_age_seconds": self.delta_ages(),
            "provisioning": self.provision_progress(),
            "next_step": self.next_step(&s),
        }))
    }

    fn enable(&self) -> Result<Value, ApiError> {
        self.set_keys(&[(keys::ENABLED, Some("true"))])?;
        self.parts.entra.set_enabled(true);
        let s = self.read_settings()?;
        let round = s.sync_blocker().is_none().then(|| self.request_round());
        info!("entra integration enabled");
        Ok(json!({ "enabled": true, "sync_round": round, "next_step": self.next_step(&s) }))
    }

    fn disable(&self, body: DisableBody) -> Result<Value, ApiError> {
        self.set_keys(&[(keys::ENABLED, Some("false"))])?;
        // From here on no decision uses Entra accounts.
        self.parts.entra.set_enabled(false);
        self.parts.passwords.set_checker(None);
        self.cancel_round();
        let mut purged = None;
        if body.purge {
            purged = Some(self.purge()?);
        }
        info!(purge = body.purge, "entra integration disabled");
        let s = self.read_settings()?;
        Ok(json!({ "enabled": false, "purged": purged, "next_step": self.next_step(&s) }))
    }

    /// Deletes every Entra account, group and checkpoint, once no round
    /// runs. Returns how many objects were deleted.
    pub(super) fn purge(&self) -> Result<u64, ApiError> {
        self.runtime.block_on(async {
            let _no_round = self.round_lock.lock().await;
            let n = self.parts.store.purge().map_err(store_err)?;
            self.parts.entra.replica().load(std::iter::empty());
            self.parts.passwords.forget_unless(|_| false);
            let mut st = self.status();
            for o in st.objects_mut() {
                *o = Default::default();
            }
            info!(objects = n, "entra replica purged");
            Ok(n)
        })
    }

    fn set_credentials(&self, body: CredentialsBody) -> Result<Value, ApiError> {
        let tenant = body.tenant.trim().to_string();
        let client_id = body.client_id.trim().to_string();
        if tenant.is_empty() {
            return Err(ApiError::bad_request(
                "--tenant is empty: give the tenant id or a verified domain",
            ));
        }
        if !is_guid(&client_id) {
            return Err(ApiError::bad_request(format!(
                "--client-id {client_id:?} is not an application (client) id: expected a GUID such as 11111111-2222-3333-4444-555555555555"
            )));
        }
        let (credential, file, bytes, other) = match (&body.client_secret, &body.certificate_pem) {
            (Some(secret), None) => {
                let secret = secret.trim().to_string();
                if secret.is_empty() {
                    return Err(ApiError::bad_request("the client secret file is empty"));
                }
                let bytes = format!("{secret}\n").into_bytes();
                (Credential::Secret(secret), CLIENT_SECRET_FILE, bytes, CLIENT_CERT_FILE)
            }
            (None, Some(pem)) => {
                let cert = CertificateCredential::from_pem(pem.as_bytes())
                    .map_err(|e| ApiError::bad_request(format!("the certificate file: {e}")))?;
                (
                    Credential::Certificate(std::sync::Arc::new(cert)),
                    CLIENT_CERT_FILE,
                    pem.as_bytes().to_vec(),
                    CLIENT_SECRET_FILE,
                )
            }
            _ => {
                return Err(ApiError::bad_request(
                    "give exactly one of --client-secret-file and --certificate",
                ));
            }
        };
        let client = GraphClient::new(GraphConfig {
            authority_host: self.cfg.authority_host.clone(),
            graph_endpoint: self.cfg.graph_endpoint.clone(),
            tenant_id: tenant.clone(),
            client_id: client_id.clone(),
            credential,
        })
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        // A credential that cannot get a token is refused before anything is saved.
        let token = self.runtime.block_on(client.token()).map_err(graph_err)?;
        let tenant_id = token.tenant_id.clone().unwrap_or(tenant);
        self.record_application(&tenant_id, &client_id, None, "manual", file, &bytes, other)?;
        let consent = self.record_consent(ConsentRecord {
            checked_at: now_unix(),
            missing: missing_roles(&token.roles),
            granted: token.roles.clone(),
            error: None,
        })?;
        let s = self.read_settings()?;
        Ok(
            json!({ "tenant_id": tenant_id, "client_id": client_id, "consent": consent, "next_step": self.next_step(&s) }),
        )
    }

    /// Saves the application's credential file (0600, atomically) and its
    /// ids. A different tenant than before empties the replica first: it
    /// holds the other tenant's accounts.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_application(
        &self,
        tenant_id: &str,
        client_id: &str,
        app_object_id: Option<&str>,
        by: &str,
        file: &str,
        bytes: &[u8],
        other_file: &str,
    ) -> Result<(), ApiError> {
        let before = self.read_settings()?;
        if before
            .tenant_id
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case(tenant_id))
        {
            info!(old = ?before.tenant_id, new = tenant_id, "the tenant changed: purging the old tenant's replica");
            self.cancel_round();
            self.purge()?;
        }
        let path = self.state_dir.join(file);
        crate::store::write_private_file(&path, bytes)
            .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", path.display())))?;
        let other = self.state_dir.join(other_file);
        match std::fs::remove_file(&other) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ApiError::internal(format!("cannot remove {}: {e}", other.display()))),
        }
        let now = now_unix().to_string();
        let changed_app = before.client_id.as_deref() != Some(client_id);
        self.set_keys(&[
            (keys::TENANT_ID, Some(tenant_id)),
            (keys::CLIENT_ID, Some(client_id)),
            (keys::APP_OBJECT_ID, app_object_id),
            (keys::PROVISIONED_AT, Some(&now)),
            (keys::PROVISIONED_BY, Some(by)),
        ])?;
        if changed_app {
            // Consent belongs to an application: a new one needs its own.
            self.set_keys(&[(keys::CONSENT, None)])?;
        }
        info!(tenant = tenant_id, client_id, by, "entra application recorded");
        Ok(())
    }

    fn record_consent(&self, record: ConsentRecord) -> Result<ConsentRecord, ApiError> {
        let text = serde_json::to_string(&record).map_err(|e| ApiError::internal(e.to_string()))?;
        self.set_keys(&[(keys::CONSENT, Some(&text))])?;
        Ok(record)
    }

    fn consent_url(&self, redirect_uri: &str) -> Result<Value, ApiError> {
        let s = self.read_settings()?;
        let (Some(tenant), Some(client_id)) = (&s.tenant_id, &s.client_id) else {
            return Err(ApiError::conflict(
                "no application is registered yet: run `entra-radius entra provision` first",
            ));
        };
        if !is_loopback_http(redirect_uri) {
            return Err(ApiError::bad_request(format!(
                "the redirect URI {redirect_uri:?} must be http://localhost:PORT/… or http://127.0.0.1:PORT/…"
            )));
        }
        let nonce = random_state();
        *self.consent_state.lock().unwrap_or_else(|p| p.into_inner()) = Some(nonce.clone());
        let url = format!(
            "{}/{}/adminconsent?client_id={}&state={}&redirect_uri={}",
            self.cfg.authority_host.trim_end_matches('/'),
            query_escape(tenant),
            query_escape(client_id),
            query_escape(&nonce),
            query_escape(redirect_uri)
        );
        Ok(json!({ "url": url, "state": nonce, "tenant_id": tenant, "client_id": client_id }))
    }

    /// The consent redirect's answer (or, with an empty body, only a new
    /// check of the roles: consent granted in the portal).
    fn consent_result(&self, body: ConsentBody) -> Result<Value, ApiError> {
        let s = self.read_settings()?;
        let client = self.graph_client(&s)?;
        let redirected = body.admin_consent.is_some() || body.error.is_some();
        if redirected {
            let expected = self.consent_state.lock().unwrap_or_else(|p| p.into_inner()).take();
            if expected.is_none() || body.state != expected {
                return Err(ApiError::bad_request(
                    "the consent answer does not match the URL this server handed out (state differs): run `entra-radius entra consent` again",
                ));
            }
        }
        if let Some(error) = &body.error {
            let description = body.error_description.clone().unwrap_or_default();
            let explained = match aadsts_code(&description) {
                Some(code) => format!(
                    "admin consent failed: AADSTS{code}: {}",
                    crate::graph::explain_aadsts(code)
                ),
                None => format!("admin consent failed: {error}: {description}"),
            };
            self.record_consent(ConsentRecord {
                checked_at: now_unix(),
                granted: vec![],
                missing: REQUIRED_ROLES.iter().map(|r| r.to_string()).collect(),
                error: Some(explained.clone()),
            })?;
            return Err(ApiError::upstream(explained));
        }
        if redirected
            && !body
                .admin_consent
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err(ApiError::upstream(
                "admin consent was not granted (the answer did not say admin_consent=True)",
            ));
        }
        // Tokens may lag behind a fresh consent: retry a few times, each
        // time with a new token (a cached one keeps its old roles).
        let mut pauses = CONSENT_PROPAGATION.iter();
        let record = loop {
            let token = self.runtime.block_on(client.fresh_token()).map_err(graph_err)?;
            let record = ConsentRecord {
                checked_at: now_unix(),
                missing: missing_roles(&token.roles),
                granted: token.roles.clone(),
                error: None,
            };
            if record.missing.is_empty() || !redirected {
                break record;
            }
            match pauses.next() {
                Some(p) => std::thread::sleep(*p),
                None => break record,
            }
        };
        let record = self.record_consent(record)?;
        info!(granted = ?record.granted, missing = ?record.missing, "admin consent checked");
        let s = self.read_settings()?;
        Ok(json!({ "consent": record, "next_step": self.next_step(&s) }))
    }

    fn fetch_domains(&self, s: &Settings) -> Result<Vec<DomainInfo>, ApiError> {
        let client = self.graph_client(s)?;
        self.runtime.block_on(client.domains()).map_err(graph_err)
    }

    fn domains_json(&self) -> Result<Value, ApiError> {
        let s = self.read_settings()?;
        let domains = self.fetch_domains(&s)?;
        Ok(domains_value(&domains, &s.selected_domains))
    }

    fn select_domains(&self, body: SelectionBody) -> Result<Value, ApiError> {
        let s = self.read_settings()?;
        let domains = self.fetch_domains(&s)?;
        let canonical = |name: &str| {
            domains
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(name))
                .map(|d| d.name.clone())
        };
        let mut named = Vec::new();
        let mut unknown = Vec::new();
        for n in &body.names {
            match canonical(n.trim()) {
                Some(c) => named.push(c),
                None => unknown.push(n.clone()),
            }
        }
        if !unknown.is_empty() {
            let known: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
            return Err(ApiError::bad_request(format!(
                "not a domain of the tenant: {} (its domains: {})",
                unknown.join(", "),
                known.join(", ")
            )));
        }
        if !body.all && named.is_empty() && body.action != SelectionAction::Exact {
            return Err(ApiError::bad_request("name at least one domain, or --all"));
        }
        let all: Vec<String> = domains.iter().map(|d| d.name.clone()).collect();
        // Keep only selected names the tenant still has.
        let mut selection: Vec<String> = s.selected_domains.iter().filter_map(|n| canonical(n)).collect();
        match (body.action, body.all) {
            (SelectionAction::Select, true) | (SelectionAction::Exact, true) => selection = all,
            (SelectionAction::Unselect, true) => selection.clear(),
            (SelectionAction::Select, false) => {
                for n in named {
                    if !selection.contains(&n) {
                        selection.push(n);
                    }
                }
            }
            (SelectionAction::Unselect, false) => selection.retain(|n| !named.contains(n)),
            (SelectionAction::Exact, false) => selection = named,
        }
        selection.sort();
        selection.dedup();
        let mut before = s.selected_domains.clone();
        before.sort();
        let changed = before != selection;
        if changed {
            let text = serde_json::to_string(&selection).map_err(|e| ApiError::internal(e.to_string()))?;
            self.set_keys(&[
                (keys::SELECTED_DOMAINS, Some(&text)),
                (keys::RESCOPE_PENDING, Some("1")),
            ])?;
            info!(selected = ?selection, "domain selection saved");
        }
        let federated: Vec<&str> = domains
            .iter()
            .filter(|d| d.federated && selection.contains(&d.name))
            .map(|d| d.name.as_str())
            .collect();
        let s = self.read_settings()?;
        Ok(json!({
            "selected": selection,
            "changed": changed,
            "federated_selected": federated,
            "next_step": self.next_step(&s),
        }))
    }

    fn sync_now(&self) -> Result<Value, ApiError> {
        let s = self.read_settings()?;
        if let Some(blocker) = s.sync_blocker() {
            return Err(ApiError::conflict(format!("cannot sync: {blocker}")));
        }
        let round = self.request_round();
        Ok(json!({ "round": round, "sync": self.sync_status() }))
    }

    fn sync_status_json(&self) -> Result<Value, ApiError> {
        let s = self.read_settings()?;
        let counts = self.parts.entra.replica().counts();
        Ok(json!({
            "sync": self.sync_status().current(s.sync_blocker()),
            "delta_token_age_seconds": self.delta_ages(),
            "replica": { "users": counts.users, "devices": counts.devices, "soft_deleted": counts.soft_deleted },
            "blocked": s.sync_blocker(),
            "interval_seconds": self.cfg.sync_interval.as_secs(),
        }))
    }
}

/// The domain list as the API shows it.
pub(super) fn domains_value(domains: &[DomainInfo], selected: &[String]) -> Value {
    let is_selected = |n: &str| selected.iter().any(|s| s.eq_ignore_ascii_case(n));
    let list: Vec<Value> = domains
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "verified": d.is_verified,
                "default": d.is_default,
                "initial": d.is_initial,
                "federated": d.federated,
                "selected": is_selected(&d.name),
            })
        })
        .collect();
    let stale: Vec<&String> = selected
        .iter()
        .filter(|s| !domains.iter().any(|d| d.name.eq_ignore_ascii_case(s)))
        .collect();
    json!({ "domains": list, "selected": selected, "selected_but_gone": stale })
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n)
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `http://localhost[:port]/…` or `http://127.x.x.x[:port]/…` or `http://[::1]…`.
fn is_loopback_http(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    crate::admin::host_is_loopback(authority)
}

/// The AADSTS number at the start of an Entra error description.
fn aadsts_code(description: &str) -> Option<u32> {
    let at = description.find("AADSTS")?;
    let digits: String = description[at + 6..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn random_state() -> String {
    use rand::RngExt;
    let b: [u8; 16] = rand::rng().random();
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_and_redirects() {
        assert!(is_guid("11111111-2222-4333-8444-555555555555"));
        assert!(!is_guid("11111111-2222-4333-8444-55555555555"));
        assert!(!is_guid("not-a-guid"));
        assert!(is_loopback_http("http://localhost:4711/consent"));
        assert!(is_loopback_http("http://127.0.0.1:4711/"));
        assert!(is_loopback_http("http://[::1]:80"));
        assert!(!is_loopback_http("https://localhost/"));
        assert!(!is_loopback_http("http://evil.example/"));
        assert!(!is_loopback_http("http://localhost.evil.example/"));
    }

    #[test]
    fn aadsts_codes_are_found() {
        assert_eq!(aadsts_code("AADSTS65004: User declined to consent."), Some(65004));
        assert_eq!(aadsts_code("Trace ID: x"), None);
    }

    #[test]
    fn missing_roles_are_named() {
        let granted = vec!["user.read.all".to_string(), "Device.Read.All".into()];
        let missing = missing_roles(&granted);
        assert!(missing.contains(&"GroupMember.Read.All".to_string()));
        assert!(!missing.iter().any(|m| m == "User.Read.All" || m == "Device.Read.All"));
    }

    #[test]
    fn domain_list_marks_selection_and_stale_names() {
        let d = |name: &str, federated| DomainInfo {
            name: name.into(),
            federated,
            is_default: false,
            is_initial: false,
            is_verified: true,
        };
        let v = domains_value(
            &[d("contoso.com", false), d("fabrikam.com", true)],
            &["CONTOSO.com".into(), "gone.example".into()],
        );
        assert_eq!(v["domains"][0]["selected"], true);
        assert_eq!(v["domains"][1]["selected"], false);
        assert_eq!(v["domains"][1]["federated"], true);
        assert_eq!(v["selected_but_gone"], json!(["gone.example"]));
    }
}
