//! The cancel forward: `POST {owner endpoint}/jobs/{job_id}/cancel`, so the owner's handler
//! stops now rather than at its next rejected delta.

use std::time::Duration;

use uuid::Uuid;

use super::jobs::ForwardHeaders;
use crate::store::Store;
use crate::wire::CancelRequest;

const CANCEL_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The client of outbound calls to agents: the cancel forward and the MCP proxy. It goes only
/// where an agent's registration says: the endpoint is a validated host and port
/// (`domain::agents::http_endpoint`), the path is fixed (or an `/mcp` path, for the proxy), and
/// redirects are never followed (an agent cannot send the registry elsewhere, such as to its
/// own admin listener or another internal service). Short timeouts: a hanging agent holds
/// nothing for long (the proxy sets each request's budget in place of the default).
pub(super) fn agent_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CANCEL_FORWARD_TIMEOUT)
        .build()
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
