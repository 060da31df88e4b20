//! `GET /trace/{id}`: the trace read back from Tempo's HTTP API (`/api/traces/{id}`), in the
//! reference's shape (what `meshctl trace` draws). Tempo has every replica's spans, so any
//! replica answers the same.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::ClientTls;
use crate::telemetry::error_chain;

/// The reference's client waits this long for Tempo.
const TEMPO_TIMEOUT: Duration = Duration::from_secs(30);
/// A Tempo answer larger than this is not read (a trace of tens of thousands of spans).
const MAX_TEMPO_BYTES: usize = 32 << 20;

pub struct Tempo {
    client: reqwest::Client,
    base: String,
}

/// Why no trace came back (all of them answer 404, as the reference's).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Failed(String),
}

impl Tempo {
    /// Tempo at `base`; `tls` says whom an `https://` Tempo must be (`TEMPO_TLS_*`).
    pub fn new(base: &str, tls: &ClientTls) -> Result<Tempo, String> {
        let client = reqwest::Client::builder().timeout(TEMPO_TIMEOUT);
        let client = match base.to_ascii_lowercase().starts_with("https://") {
            true => client.use_preconfigured_tls(super::tls::config(tls)?),
            false => client,
        };
        Ok(Tempo {
            client: client.build().map_err(|e| e.to_string())?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The trace `trace_id` (hex, dashes allowed), assembled from Tempo's spans.
    pub async fn trace(&self, trace_id: &str) -> Result<CompletedTrace, LookupError> {
        let normalized: String = trace_id.chars().filter(|c| *c != '-').collect();
        if normalized.is_empty()
            || normalized.len() > 32
            || !normalized.chars().all(|c| c.is_ascii_hexdigit())
        {
            // Not an id Tempo could hold; never put it into Tempo's URL.
            return Err(LookupError::NotFound);
        }
        let url = format!("{}/api/traces/{normalized}", self.base);
        let failed =
            |e: reqwest::Error| LookupError::Failed(format!("GET {url}: {}", error_chain(&e)));
        let mut response = self.client.get(&url).send().await.map_err(failed)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Err(LookupError::NotFound),
            status => {
                return Err(LookupError::Failed(format!(
                    "GET {url}: Tempo answered {status}"
                )))
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_TEMPO_BYTES {
                return Err(LookupError::Failed(format!(
                    "GET {url}: the answer is larger than {MAX_TEMPO_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: TempoTrace = serde_json::from_slice(&body)
            .map_err(|e| LookupError::Failed(format!("GET {url}: not a Tempo trace: {e}")))?;
        completed(trace_id, answer).ok_or(LookupError::NotFound)
    }
}

#[derive(Deserialize)]
struct TempoTrace {
    #[serde(default)]
    batches: Vec<TempoBatch>,
}

#[derive(Deserialize)]
struct TempoBatch {
    #[serde(default)]
    resource: TempoResource,
    #[serde(default, rename = "scopeSpans")]
    scope_spans: Vec<TempoScopeSpans>,
}

#[derive(Deserialize, Default)]
struct TempoResource {
    #[serde(default)]
    attributes: Vec<TempoAttribute>,
}

#[derive(Deserialize)]
struct TempoScopeSpans {
    #[serde(default)]
    spans: Vec<TempoSpan>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TempoSpan {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    span_id: String,
    #[serde(default)]
    parent_span_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    start_time_unix_nano: String,
    #[serde(default)]
    end_time_unix_nano: String,
    #[serde(default)]
    attributes: Vec<TempoAttribute>,
    #[serde(default)]
    status: TempoStatus,
}

#[derive(Deserialize)]
struct TempoAttribute {
    key: String,
    #[serde(default)]
    value: TempoValue,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TempoValue {
    #[serde(default)]
    string_value: String,
}

#[derive(Deserialize, Default)]
struct TempoStatus {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The reference's `CompletedTrace`, field names as its JSON has them (Go's, unrenamed).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CompletedTrace {
    #[serde(rename = "TraceID")]
    trace_id: String,
    spans: Vec<TraceSpan>,
    #[serde(serialize_with = "go_time")]
    start_time: OffsetDateTime,
    #[serde(serialize_with = "go_time")]
    end_time: OffsetDateTime,
    /// Nanoseconds, as Go renders a `time.Duration`.
    duration: i64,
    success: bool,
    span_count: usize,
    agent_count: usize,
    agents: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TraceSpan {
    #[serde(rename = "TraceID")]
    trace_id: String,
    #[serde(rename = "SpanID")]
    span_id: String,
    parent_span: Option<String>,
    agent_name: String,
    #[serde(rename = "AgentID")]
    agent_id: String,
    #[serde(rename = "IPAddress")]
    ip_address: String,
    operation: String,
    #[serde(serialize_with = "go_time")]
    start_time: OffsetDateTime,
    #[serde(serialize_with = "go_time")]
    end_time: OffsetDateTime,
    #[serde(rename = "DurationMS")]
    duration_ms: Option<i64>,
    success: Option<bool>,
    error_message: Option<String>,
    capability: Option<String>,
    target_agent: Option<String>,
    runtime: String,
}

/// Tempo's batches as one trace: spans by start time, the trace's span of time, whether every
/// span succeeded, the agents (each batch's `service.name`). `None` when it holds no span.
fn completed(trace_id: &str, answer: TempoTrace) -> Option<CompletedTrace> {
    let mut spans = Vec::new();
    for batch in answer.batches {
        let service = batch
            .resource
            .attributes
            .iter()
            .find(|a| a.key == "service.name")
            .map_or("unknown", |a| a.value.string_value.as_str())
            .to_owned();
        for span in batch.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(trace_span(span, &service));
        }
    }
    spans.sort_by_key(|span| span.start_time);
    let start_time = spans.iter().map(|s| s.start_time).min()?;
    let end_time = spans
        .iter()
        .map(|s| s.end_time)
        .fold(start_time, OffsetDateTime::max);
    let mut agents: Vec<String> = spans.iter().map(|s| s.agent_name.clone()).collect();
    agents.sort();
    agents.dedup();
    Some(CompletedTrace {
        trace_id: trace_id.to_owned(),
        start_time,
        end_time,
        duration: (end_time - start_time).whole_nanoseconds() as i64,
        success: spans.iter().all(|s| s.success != Some(false)),
        span_count: spans.len(),
        agent_count: agents.len(),
        agents,
        spans,
    })
}

fn trace_span(span: TempoSpan, service: &str) -> TraceSpan {
    let nanos = |raw: &str| raw.parse::<i64>().unwrap_or(0);
    let (start, end) = (
        nanos(&span.start_time_unix_nano),
        nanos(&span.end_time_unix_nano),
    );
    let at = |nanos: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(nanos.into())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let attribute = |keys: &[&str]| {
        span.attributes
            .iter()
            .rev()
            .find(|a| keys.contains(&a.key.as_str()))
            .map(|a| a.value.string_value.clone())
    };
    let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
    TraceSpan {
        agent_id: attribute(&["mcp.agent.id"]).unwrap_or_default(),
        operation: attribute(&["mcp.operation"]).unwrap_or_else(|| span.name.clone()),
        capability: non_empty(attribute(&["mcp.capability"])),
        target_agent: non_empty(attribute(&["mcp.target.agent", "mcp.target_agent"])),
        runtime: attribute(&["mcp.runtime"]).unwrap_or_default(),
        ip_address: attribute(&["mcp.ip.address", "mcp.agent.ip"]).unwrap_or_default(),
        trace_id: span.trace_id,
        span_id: span.span_id,
        parent_span: Some(span.parent_span_id).filter(|p| !p.is_empty()),
        agent_name: service.to_owned(),
        start_time: at(start),
        end_time: at(end),
        duration_ms: Some((end - start) / 1_000_000),
        success: Some(span.status.code != "STATUS_CODE_ERROR"),
        error_message: Some(span.status.message).filter(|m| !m.is_empty()),
    }
}

/// A time as Go's JSON renders one: RFC 3339 with the fraction's trailing zeros cut (UTC).
fn go_time<S: serde::Serializer>(at: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let (date, time) = (at.date(), at.time());
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        date.year(),
        date.month() as u8,
        date.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    if time.nanosecond() > 0 {
        let fraction = format!("{:09}", time.nanosecond());
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    serializer.serialize_str(&text)
}
