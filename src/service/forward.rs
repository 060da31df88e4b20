//! The cancel forward: `POST {owner endpoint}/jobs/{job_id}/cancel`, so the owner's handler
//! stops now rather than at its next rejected delta; and the client of every call to agents.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use uuid::Uuid;

use super::jobs::ForwardHeaders;
use crate::store::Store;
use crate::tls::{client_config, ReloadingIdentity, ServerTrust};
use crate::wire::CancelRequest;

const CANCEL_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How the registry calls agents over HTTPS (`MCP_MESH_TLS_CA`, `MCP_MESH_TLS_CERT`,
/// `MCP_MESH_TLS_KEY`), as the reference does: an agent's certificate must chain to `roots`,
/// whatever name it carries (agents' certificates name pod addresses, not the host the
/// registry dials), and the registry presents its own certificate (read again when renewed).
#[derive(Debug, Clone)]
pub struct AgentTls {
    pub roots: RootCertStore,
    pub identity: Arc<ReloadingIdentity>,
}

/// The client of outbound calls to agents: the cancel forward and the MCP proxy, plain HTTP, and
/// HTTPS with `tls` for an agent an entity vouched for (`domain::agents::scheme`). It goes only
/// where an agent's registration says: the endpoint is a validated host and port
/// (`domain::agents::http_endpoint`), the path is fixed (or an `/mcp` path, for the proxy), and
/// redirects are never followed (an agent cannot send the registry elsewhere, such as to its
/// own admin listener or another internal service). Short timeouts: a hanging agent holds
/// nothing for long (the proxy sets each request's budget in place of the default). Without
/// `tls`, an HTTPS call believes the public web's CAs only and presents no certificate
/// (startup warns about it).
pub(super) fn agent_client(tls: Option<&AgentTls>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CANCEL_FORWARD_TIMEOUT);
    if let Some(tls) = tls {
        builder = builder.use_preconfigured_tls(client_config(
            ServerTrust::AnyName(tls.roots.clone()),
            Some(tls.identity.clone()),
        )?);
    }
    builder.build().map_err(|error| error.to_string())
}

pub(super) struct CancelForward {
    pub store: Store,
    pub client: reqwest::Client,
    pub owner: String,
    pub job_id: Uuid,
    pub reason: String,
    pub headers: ForwardHeaders,
}

impl CancelForward {
    pub async fn send(self) {
        let CancelForward {
            store,
            client,
            owner,
            job_id,
            reason,
            headers,
        } = self;
        let endpoint = match store.agent(&owner).await {
            Ok(Some(agent)) => agent.http_endpoint(),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, %job_id, owner, "cancel forward skipped: owner lookup failed");
                return;
            }
        };
        let Some(endpoint) = endpoint else {
            tracing::debug!(%job_id, owner, "cancel forward skipped: owner has no HTTP endpoint");
            return;
        };
        let url = format!("{endpoint}/jobs/{job_id}/cancel");
        let mut request = client
            .post(&url)
            .timeout(CANCEL_FORWARD_TIMEOUT)
            .header("Content-Type", "application/json");
        if !reason.is_empty() {
            request = request.json(&CancelRequest {
                reason: Some(reason),
            });
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(%job_id, owner, "cancel forwarded to the owner");
            }
            Ok(response) => {
                tracing::warn!(%job_id, url, status = %response.status(), "cancel forward refused");
            }
            Err(error) => tracing::warn!(%job_id, url, %error, "cancel forward failed"),
        }
    }
}
