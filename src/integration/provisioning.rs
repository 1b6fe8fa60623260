//! `entra provision` without a hand-made application: the server signs the
//! administrator in with the device-code flow, then creates the application,
//! its service principal and a client secret through Graph
//! (`graph::provision`), and records them. The admin API starts it and
//! reports its progress; the CLI prints the code and follows the steps.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use super::{CLIENT_CERT_FILE, CLIENT_SECRET_FILE, Integration, IntegrationError};
use crate::admin::ApiError;
use crate::admin::api::ProvisionBody;
use crate::clock::now_unix;
use crate::graph::provision::{ProvisionStep, Provisioner};

/// The application's name in the tenant when the administrator gives none.
pub const DEFAULT_DISPLAY_NAME: &str = "entra-radius";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Idle,
    WaitingForSignIn,
    Creating,
    Done,
    Failed,
}

/// How the automatic registration is going.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub phase: Phase,
    pub user_code: Option<String>,
    pub verification_uri: Option<String>,
    pub message: Option<String>,
    /// Unix seconds when the sign-in code expires.
    pub code_expires_at: Option<i64>,
    /// What has been done, one line per step.
    pub steps: Vec<String>,
    pub error: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub reused_application: Option<bool>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

fn step_text(step: &ProvisionStep) -> String {
    match step {
        ProvisionStep::FindingApplication => "looking for an application of this name".into(),
        ProvisionStep::CreatingApplication => "creating the application".into(),
        ProvisionStep::CreatingServicePrincipal { attempt } => {
            format!("creating its service principal (attempt {attempt})")
        }
        ProvisionStep::WaitingForReplication {
            what,
            attempt,
            delay_ms,
        } => format!(
            "waiting {:.1} s for directory replication before {what} (attempt {attempt})",
            *delay_ms as f64 / 1000.0
        ),
        ProvisionStep::AddingSecret => "adding a client secret".into(),
        ProvisionStep::Done => "done".into(),
    }
}

impl Integration {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.provisioning.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn provision_progress(&self) -> Value {
        serde_json::to_value(&*self.progress()).unwrap_or_default()
    }

    /// Starts the sign-in and returns the code to show; the rest runs in the
    /// background. While a sign-in is pending or the application is being
    /// created, a repeated call returns the same progress.
    pub(super) fn provision_start(self: &Arc<Self>, body: ProvisionBody) -> Result<Value, ApiError> {
        {
            let p = self.progress();
            let pending = match p.phase {
                Phase::WaitingForSignIn => p.code_expires_at.is_some_and(|t| t > now_unix()),
                Phase::Creating => true,
                _ => false,
            };
            if pending {
                return Ok(serde_json::to_value(&*p).unwrap_or_default());
            }
        }
        let provisioner = Provisioner::new(&self.cfg.authority_host, &self.cfg.graph_endpoint)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let tenant = body
            .tenant
            .clone()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| "organizations".into());
        let flow = self
            .runtime
            .block_on(provisioner.start_sign_in(&tenant))
            .map_err(|e| ApiError::upstream(e.to_string()))?;
        let expires_in = flow.expires_at.saturating_duration_since(std::time::Instant::now());
        let progress = Progress {
            phase: Phase::WaitingForSignIn,
            user_code: Some(flow.user_code.clone()),
            verification_uri: Some(flow.verification_uri.clone()),
            message: Some(flow.message.clone()),
            code_expires_at: Some(now_unix() + expires_in.as_secs() as i64),
            steps: vec![format!(
                "waiting for an administrator to sign in at {}",
                flow.verification_uri
            )],
            started_at: Some(now_unix()),
            ..Progress::default()
        };
        *self.progress() = progress.clone();
        info!(tenant, "provisioning: waiting for the administrator's sign-in");
        let name = body
            .display_name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_DISPLAY_NAME.into());
        let this = Arc::clone(self);
        self.runtime.spawn(async move {
            let result = this.provision_run(provisioner, flow, name).await;
            let mut p = this.progress();
            p.finished_at = Some(now_unix());
            match result {
                Ok(()) => p.phase = Phase::Done,
                Err(e) => {
                    warn!(error = %e, "provisioning failed");
                    p.phase = Phase::Failed;
                    p.error = Some(e.to_string());
                }
            }
        });
        Ok(serde_json::to_value(&progress).unwrap_or_default())
    }

    async fn provision_run(
        self: &Arc<Self>,
        provisioner: Provisioner,
        flow: crate::graph::provision::DeviceCodeFlow,
        name: String,
    ) -> Result<(), IntegrationError> {
        let token = provisioner.wait_for_sign_in(&flow).await?;
        {
            let mut p = self.progress();
            p.phase = Phase::Creating;
            p.tenant_id = Some(token.tenant_id.clone());
            p.steps.push(format!(
                "signed in{} to tenant {}",
                token.user.as_deref().map(|u| format!(" as {u}")).unwrap_or_default(),
                token.tenant_id
            ));
        }
        let observe = |step: ProvisionStep| {
            self.progress().steps.push(step_text(&step));
        };
        let app = provisioner.create_app(&token, &name, &observe).await?;
        let secret = format!("{}\n", app.client_secret.as_str());
        let this = Arc::clone(self);
        let (tenant, client, object) = (app.tenant_id.clone(), app.client_id.clone(), app.app_object_id.clone());
        tokio::task::spawn_blocking(move || {
            this.record_application(
                &tenant,
                &client,
                Some(&object),
                "automatic",
                CLIENT_SECRET_FILE,
                secret.as_bytes(),
                CLIENT_CERT_FILE,
            )
        })
        .await
        .map_err(IntegrationError::RecordTask)?
        .map_err(|e| IntegrationError::Record(e.message))?;
        let mut p = self.progress();
        p.client_id = Some(app.client_id.clone());
        p.reused_application = Some(app.reused);
        p.steps.push(format!(
            "recorded application {} ({}); its secret is in the state directory and expires {}",
            app.client_id,
            if app.reused { "existing" } else { "new" },
            app.secret_expires
        ));
        info!(client_id = %app.client_id, reused = app.reused, "provisioning done");
        Ok(())
    }
}
