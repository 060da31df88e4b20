//! The MCP proxy: `/proxy/{host}:{port}/mcp…` relays one MCP request to a registered agent, so
//! that `meshctl call` (which goes through the registry by default) reaches agents the caller
//! cannot reach itself (docs/contract.md#proxy).
//!
//! It goes only where a registration says: the target names a registered agent (by its host,
//! id or name, on its port) and the request goes to that agent's registered endpoint, never to
//! the host the caller wrote; only `/mcp` paths; a fixed set of headers. The answer is relayed
//! as it arrives (SSE frames are not held back, big answers are not buffered), within a time
//! budget; a client that goes away drops the upstream request with it. At most
//! `MCP_MESH_PROXY_MAX_STREAMS` requests are relayed at once.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Registry;
use crate::config::MAX_PROXY_TIMEOUT;
use crate::store::{AgentRow, StoreError};
use crate::telemetry::error_chain;

/// The proxy's knobs (from the configuration).
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// The budget of a request without `X-Mesh-Timeout` (`MCP_MESH_PROXY_TIMEOUT`).
    pub timeout: Duration,
    /// `MCP_MESH_PROPAGATE_HEADERS`: lowercase names, or prefixes ending in `*`.
    pub propagate: Vec<String>,
    /// `MCP_MESH_PROXY_MAX_STREAMS`
    pub max_streams: usize,
}

/// Headers always forwarded when the caller sent them (the reference's fixed set): the content
/// negotiation, distributed tracing, the caller's time budget, and the job a call belongs to.
const FORWARDED: [&str; 8] = [
    "content-type",
    "accept",
    "x-trace-id",
    "x-parent-span",
    "x-mesh-timeout",
    "x-mesh-job-id",
    "x-mesh-calling-job-id",
    "x-mesh-calling-claim-epoch",
];

/// Sent to the agent in place of the caller's, whatever `MCP_MESH_PROPAGATE_HEADERS` says: they
/// describe the caller's connection to the registry, not the registry's to the agent.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// The comment frame that ends an SSE answer cut by the budget, so that meshctl reports a
/// timeout rather than a broken stream (the reference's marker, matched by meshctl).
const SSE_TIMEOUT_MARKER: &str = "mesh-proxy-timeout";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMethod {
    Get,
    Post,
}

/// A request to relay, as the caller sent it.
pub struct ProxyCall {
    pub method: ProxyMethod,
    /// What follows `/proxy/`: `{host}:{port}/mcp…`.
    pub target: String,
    /// The caller's headers (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The request body (`POST`), already read under the body limit.
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "Invalid target format: missing path. Expected format: {{host}}:{{port}}/mcp/{{path}}"
    )]
    MissingPath,
    #[error("Only /mcp/* paths are allowed for proxying")]
    NotMcp,
    #[error("Target host '{0}' is not a registered agent")]
    NotRegistered(String),
    #[error("too many proxied requests in flight ({0}); retry")]
    Busy(usize),
    #[error("Failed to reach target agent: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The agent's answer: its status and headers, and its body as it arrives.
pub struct Relay {
    pub status: u16,
    /// The agent's headers, less the hop-by-hop ones.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body's length when the agent announced it.
    pub content_length: Option<u64>,
    pub body: RelayBody,
}

/// The agent's body, chunk by chunk; holds the relay's slot until it ends or is dropped (the
/// client went away), which drops the upstream request too.
pub type RelayBody = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, RelayCut>>>>;

/// The agent's answer broke off (never the budget on an SSE answer: that ends with the marker).
#[derive(Debug, thiserror::Error)]
#[error("the agent's answer broke off: {0}")]
pub struct RelayCut(String);

/// The slots of concurrent relays, shared by every worker.
pub(super) struct ProxySlots {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ProxySlots {
    pub fn new(max: usize) -> ProxySlots {
        ProxySlots {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    fn take(&self) -> Result<OwnedSemaphorePermit, ProxyError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ProxyError::Busy(self.max))
    }
}

impl Registry {
    /// `GET`/`POST /proxy/{host}:{port}/mcp…`: relays the call to the registered agent.
    pub async fn proxy(&self, call: ProxyCall) -> Result<Relay, ProxyError> {
        let (host_port, path) = call
            .target
            .split_at(call.target.find('/').ok_or(ProxyError::MissingPath)?);
        if !is_mcp_path(path) {
            return Err(ProxyError::NotMcp);
        }
        let not_registered = || ProxyError::NotRegistered(host_port.to_owned());
        let (host, port) = split_host_port(host_port).ok_or_else(not_registered)?;
        let candidates = self.store.proxy_candidates(host, port).await?;
        let endpoint = proxy_target(host, &candidates)
            .and_then(AgentRow::http_endpoint)
            .ok_or_else(not_registered)?;
        // The URL parser resolves dot segments (`/mcp/../admin`): check the path it will send.
        let url =
            reqwest::Url::parse(&format!("{endpoint}{path}")).map_err(|_| ProxyError::NotMcp)?;
        if !is_mcp_path(url.path()) || url.query().is_some() || url.fragment().is_some() {
            return Err(ProxyError::NotMcp);
        }
        let slot = self.proxy_slots.take()?;
        let budget = budget(&call.headers, self.settings.proxy.timeout);
        let request = match call.method {
            ProxyMethod::Get => self.agent_client.get(url.clone()),
            ProxyMethod::Post => self.agent_client.post(url.clone()).body(call.body),
        };
        let response = request
            .headers(forwarded_headers(
                &call.headers,
                &self.settings.proxy.propagate,
            ))
            .timeout(budget)
            .send()
            .await
            .map_err(|error| ProxyError::Unreachable(error_chain(&error)))?;
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        let is_sse = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(is_sse_content_type);
        Ok(Relay {
            status: response.status().as_u16(),
            headers,
            content_length: response.content_length(),
            body: relay_body(response, is_sse, budget, url, slot),
        })
    }
}

/// `/mcp` or below it.
fn is_mcp_path(path: &str) -> bool {
    path == "/mcp" || path.starts_with("/mcp/")
}

/// `host:port` with a port above 0 (an IPv6 literal is not a target, as in the reference). A
/// host that no registration could hold (control bytes, NUL, beyond 253 bytes) names nothing
/// and is not looked up.
fn split_host_port(host_port: &str) -> Option<(&str, i32)> {
    let (host, port) = host_port.split_once(':')?;
    let port = port.parse::<i32>().ok().filter(|&port| port > 0)?;
    let storable = host.len() <= 253 && host.bytes().all(|b| b.is_ascii_graphic());
    (!host.is_empty() && storable).then_some((host, port))
}

/// Which agent `host` means among the candidates on its port: the one registered at that host,
/// else one whose id or name it is (the candidates come ordered by id, so the choice is stable).
fn proxy_target<'a>(host: &str, candidates: &'a [AgentRow]) -> Option<&'a AgentRow> {
    candidates
        .iter()
        .find(|agent| agent.http_host.as_deref() == Some(host))
        .or_else(|| {
            candidates
                .iter()
                .find(|agent| agent.agent_id == host || agent.name == host)
        })
}

/// The caller's `X-Mesh-Timeout` in whole seconds (capped at 600), else the configured budget.
fn budget(headers: &[(String, Vec<u8>)], default: Duration) -> Duration {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-mesh-timeout"))
        .and_then(|(_, value)| std::str::from_utf8(value).ok()?.trim().parse::<u64>().ok())
        .filter(|&secs| secs > 0)
        .map_or(default, |secs| {
            Duration::from_secs(secs).min(MAX_PROXY_TIMEOUT)
        })
}

/// The headers the agent gets: the fixed set, then those `MCP_MESH_PROPAGATE_HEADERS` names.
fn forwarded_headers(headers: &[(String, Vec<u8>)], propagate: &[String]) -> HeaderMap {
    let propagated = |name: &str| {
        !HOP_BY_HOP.contains(&name)
            && propagate.iter().any(|entry| match entry.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == entry,
            })
    };
    let mut forwarded = HeaderMap::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if !(FORWARDED.contains(&name.as_str()) || propagated(&name)) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            forwarded.append(name, value);
        }
    }
    forwarded
}

/// `text/event-stream`, whatever its case and parameters.
fn is_sse_content_type(value: &HeaderValue) -> bool {
    value.to_str().is_ok_and(|value| {
        value
            .split(';')
            .next()
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
    })
}

/// The agent's body as it arrives. A cut by the budget ends an SSE answer with the timeout
/// comment frame (the status and headers are long sent, so this is the only way left to say
/// it); any other break ends the relay with an error, so the client sees a broken answer.
fn relay_body(
    response: reqwest::Response,
    is_sse: bool,
    budget: Duration,
    url: reqwest::Url,
    slot: OwnedSemaphorePermit,
) -> RelayBody {
    Box::pin(futures_util::stream::unfold(
        Some((response, slot)),
        move |state| {
            let url = url.clone();
            async move {
                let (mut response, slot) = state?;
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some((response, slot)))),
                    Ok(None) => None,
                    Err(error) if error.is_timeout() && is_sse => {
                        tracing::warn!(%url, ?budget, "proxied stream cut by its time budget");
                        let marker =
                            format!("\n: {SSE_TIMEOUT_MARKER} budget={}s\n\n", budget.as_secs());
                        Some((Ok(Bytes::from(marker)), None))
                    }
                    Err(error) => {
                        let error = error_chain(&error);
                        tracing::warn!(%url, error, "proxied stream ended early");
                        Some((Err(RelayCut(error)), None))
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn targets_and_paths() {
        assert_eq!(split_host_port("agent:8080"), Some(("agent", 8080)));
        let long = format!("{}:80", "h".repeat(254));
        for bad in [
            "agent",
            "agent:0",
            "agent:-1",
            ":80",
            "agent:80:1",
            "a:b",
            "::1:80",
            "a\0b:80",
            "a b:80",
            &long,
        ] {
            assert_eq!(split_host_port(bad), None, "{bad}");
        }
        assert!(is_mcp_path("/mcp") && is_mcp_path("/mcp/") && is_mcp_path("/mcp/v1"));
        assert!(!is_mcp_path("/mcpx") && !is_mcp_path("/admin") && !is_mcp_path("/"));
    }

    #[test]
    fn the_budget_is_the_callers_within_the_cap() {
        let default = Duration::from_secs(60);
        let of = |value: &str| budget(&headers(&[("X-Mesh-Timeout", value)]), default).as_secs();
        assert_eq!(budget(&[], default), default);
        assert_eq!(of("5"), 5);
        assert_eq!(of("9999"), 600);
        for ignored in ["0", "-1", "2.5", "soon"] {
            assert_eq!(of(ignored), 60, "{ignored}");
        }
    }

    #[test]
    fn only_the_fixed_set_and_the_propagated_headers_go_on() {
        let sent = headers(&[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("X-Trace-Id", "t1"),
            ("X-Mesh-Job-Id", "j1"),
            ("Authorization", "Bearer secret"),
            ("Cookie", "a=b"),
            ("X-Tenant-Id", "acme"),
            ("X-Tenant-Region", "eu"),
            ("Connection", "close"),
            ("Host", "evil"),
        ]);
        let names = |propagate: &[&str]| {
            let propagate: Vec<String> = propagate.iter().map(|s| s.to_string()).collect();
            let mut names: Vec<String> = forwarded_headers(&sent, &propagate)
                .keys()
                .map(|n| n.as_str().to_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            names(&[]),
            ["accept", "content-type", "x-mesh-job-id", "x-trace-id"]
        );
        assert_eq!(
            names(&["authorization", "x-tenant-*", "connection", "ho*"]),
            [
                "accept",
                "authorization",
                "content-type",
                "x-mesh-job-id",
                "x-tenant-id",
                "x-tenant-region",
                "x-trace-id"
            ]
        );
    }

    #[test]
    fn sse_is_recognised_by_its_media_type() {
        let sse = |v: &str| is_sse_content_type(&HeaderValue::from_str(v).unwrap());
        assert!(sse("text/event-stream") && sse("Text/Event-Stream; charset=utf-8"));
        assert!(!sse("application/json") && !sse("text/event-streamx"));
    }
}
