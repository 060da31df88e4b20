//! One entry of the `mesh:trace` stream, as the agents' runtimes write it (flat string fields,
//! the reference's `TraceEvent`), and the OTLP span it becomes.
//!
//! Two shapes arrive: the Python runtime's single "execution trace" per call (no `event_type`,
//! `function_name` and `start_time`), and the Go/TypeScript pair `span_start`/`span_end`. A
//! span is exported for the single event and for `span_end`; `span_start` carries nothing the
//! end does not, so it is acknowledged and skipped, as the reference does.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

/// The fields of one stream entry the export needs, read leniently as the reference reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEvent {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span: Option<String>,
    pub agent_name: String,
    pub agent_id: String,
    pub ip_address: String,
    pub operation: String,
    pub event_type: String,
    /// Seconds since the epoch (the start of the call).
    pub timestamp: f64,
    pub duration_ms: Option<i64>,
    pub success: Option<bool>,
    pub error_message: Option<String>,
    pub capability: Option<String>,
    pub target_agent: Option<String>,
    pub runtime: String,
}

/// What to do with an entry.
#[derive(Debug)]
pub enum Disposition {
    /// A finished call: export this span (its agent's name is the OTLP service).
    Export(Box<Span>, String),
    /// Nothing to export (a `span_start`, an `error` marker, an entry without an operation).
    Skip,
    /// Unusable (ids that are not hex of the OTLP sizes): acknowledged and dropped, with why.
    Malformed(String),
}

impl TraceEvent {
    /// Reads an entry's fields; the Python runtime's names (`agent_ip`, `function_name`,
    /// `start_time`) stand in for the Go ones when those are missing.
    pub fn from_fields(fields: &HashMap<String, String>) -> TraceEvent {
        let get = |key: &str| fields.get(key).map(String::as_str).unwrap_or_default();
        let either = |key: &str, fallback: &str| match get(key) {
            "" => get(fallback).to_owned(),
            value => value.to_owned(),
        };
        let optional = |key: &str| Some(get(key).to_owned()).filter(|v| !v.is_empty());
        let timestamp = match get("timestamp") {
            "" => get("start_time"),
            value => value,
        };
        let parent_span = Some(get("parent_span").trim())
            .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("null"))
            .filter(|p| !p.eq_ignore_ascii_case("none"))
            .map(str::to_owned);
        let duration_ms = match get("duration_ms") {
            "" => None,
            raw => raw
                .parse::<i64>()
                .ok()
                .or_else(|| raw.parse::<f64>().ok().map(|ms| ms as i64)),
        };
        TraceEvent {
            trace_id: get("trace_id").to_owned(),
            span_id: get("span_id").to_owned(),
            parent_span,
            agent_name: get("agent_name").to_owned(),
            agent_id: get("agent_id").to_owned(),
            ip_address: either("ip_address", "agent_ip"),
            operation: either("operation", "function_name"),
            event_type: get("event_type").to_owned(),
            timestamp: timestamp.parse().unwrap_or(0.0),
            duration_ms,
            success: optional("success").map(|s| s == "true" || s == "True"),
            error_message: optional("error_message"),
            capability: optional("capability"),
            target_agent: optional("target_agent"),
            runtime: Some(get("runtime"))
                .filter(|r| !r.is_empty())
                .unwrap_or("unknown")
                .to_owned(),
        }
    }

    pub fn disposition(&self) -> Disposition {
        let complete = match self.event_type.as_str() {
            "span_end" => true,
            "" => !self.operation.is_empty(),
            _ => false,
        };
        if !complete {
            return Disposition::Skip;
        }
        match self.span() {
            Ok(span) => Disposition::Export(Box::new(span), self.agent_name.clone()),
            Err(why) => Disposition::Malformed(why),
        }
    }

    /// The OTLP span, with the agent's own trace and span ids (so the trace Tempo assembles is
    /// the one the agents propagated).
    fn span(&self) -> Result<Span, String> {
        let trace_id = hex_id(&self.trace_id, 16)
            .ok_or_else(|| format!("trace_id {:?} is not 32 hex digits", self.trace_id))?;
        let span_id = hex_id(&self.span_id, 8)
            .ok_or_else(|| format!("span_id {:?} is not 16 hex digits", self.span_id))?;
        let parent_span_id = self
            .parent_span
            .as_deref()
            .and_then(|parent| hex_id(parent, 8))
            .unwrap_or_default();
        // Whole seconds and the fraction apart: a float of seconds since 1970 times 1e9 is off
        // by up to 256 ns.
        let seconds = self.timestamp.max(0.0).trunc();
        let start = (seconds as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(((self.timestamp.max(0.0) - seconds) * 1e9).round() as u64);
        let end = start.saturating_add(self.duration_ms.unwrap_or(0).max(0) as u64 * 1_000_000);
        let kind = match self.parent_span {
            None => span::SpanKind::Server,
            Some(_) => span::SpanKind::Internal,
        };
        let status = match self.success {
            Some(false) => Status {
                code: status::StatusCode::Error as i32,
                message: self
                    .error_message
                    .clone()
                    .unwrap_or_else(|| "Failed".into()),
            },
            _ => Status {
                code: status::StatusCode::Ok as i32,
                message: String::new(),
            },
        };
        Ok(Span {
            trace_id,
            span_id,
            parent_span_id,
            name: self.operation.clone(),
            kind: kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: self.attributes(),
            status: Some(status),
            ..Span::default()
        })
    }

    /// The reference's `mcp.*` attributes (what `/trace/{id}` reads back from Tempo).
    fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = vec![
            text("mcp.agent.name", &self.agent_name),
            text("mcp.agent.id", &self.agent_id),
            text("mcp.operation", &self.operation),
            text("mcp.event.type", &self.event_type),
            text("mcp.runtime", &self.runtime),
            text("mcp.ip.address", &self.ip_address),
            text("mcp.trace.id", &self.trace_id),
            text("mcp.span.id", &self.span_id),
        ];
        let optional = [
            ("mcp.capability", &self.capability),
            ("mcp.target.agent", &self.target_agent),
            ("mcp.parent.span", &self.parent_span),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attributes.push(text(key, value));
            }
        }
        if let Some(ms) = self.duration_ms {
            attributes.push(KeyValue {
                key: "mcp.duration.ms".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(ms)),
                }),
            });
        }
        attributes
    }
}

/// Spans grouped by agent, each agent one OTLP resource (`service.name`), as the reference
/// sends them.
pub fn resource_spans(spans: Vec<(Span, String)>) -> Vec<ResourceSpans> {
    let mut by_agent: Vec<(String, Vec<Span>)> = Vec::new();
    for (span, agent) in spans {
        match by_agent.iter_mut().find(|(name, _)| *name == agent) {
            Some((_, group)) => group.push(span),
            None => by_agent.push((agent, vec![span])),
        }
    }
    by_agent
        .into_iter()
        .map(|(agent, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", &agent),
                    text("service.version", "1.0.0"),
                    text("deployment.environment", "docker-compose"),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: format!("mcp-mesh/{agent}"),
                    version: "1.0.0".into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        })
        .collect()
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

/// An id as OTLP bytes: the hex digits without dashes (a UUID is accepted), the first `bytes`
/// of them; `None` unless there are enough hex digits.
fn hex_id(raw: &str, bytes: usize) -> Option<Vec<u8>> {
    let digits: Vec<u8> = raw.bytes().filter(|c| *c != b'-').collect();
    // A trace id is exactly 128 bits (a longer one is not cut into another trace); a span id
    // is the first 64 bits of what the runtime wrote (the reference's rule for UUIDs).
    let fits = match bytes {
        16 => digits.len() == 32,
        _ => digits.len() >= bytes * 2,
    };
    if !fits || !digits[..bytes * 2].iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).unwrap_or_default() as u8;
    Some(
        digits[..bytes * 2]
            .chunks(2)
            .map(|pair| nibble(pair[0]) << 4 | nibble(pair[1]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn python_execution_trace_becomes_a_span() {
        let event = TraceEvent::from_fields(&fields(&[
            ("trace_id", "0af7651916cd43dd8448eb211c80319c"),
            ("span_id", "b7ad6b7169203331"),
            ("parent_span", "None"),
            ("agent_name", "weather"),
            ("agent_id", "weather-1"),
            ("agent_ip", "10.0.0.7"),
            ("function_name", "forecast"),
            ("start_time", "1700000000.5"),
            ("duration_ms", "12.7"),
            ("success", "False"),
            ("error_message", "boom"),
            ("runtime", "python"),
        ]));
        assert_eq!(event.parent_span, None);
        assert_eq!(event.ip_address, "10.0.0.7");
        assert_eq!(event.duration_ms, Some(12));
        let Disposition::Export(span, agent) = event.disposition() else {
            panic!("exported");
        };
        assert_eq!(agent, "weather");
        assert_eq!(span.name, "forecast");
        assert_eq!(span.start_time_unix_nano, 1_700_000_000_500_000_000);
        assert_eq!(span.end_time_unix_nano, 1_700_000_000_512_000_000);
        assert_eq!(span.kind, span::SpanKind::Server as i32);
        let status = span.status.unwrap();
        assert_eq!(status.code, status::StatusCode::Error as i32);
        assert_eq!(status.message, "boom");
        assert_eq!(hex(&span.span_id), "b7ad6b7169203331");
    }

    #[test]
    fn span_start_is_skipped_and_bad_ids_are_malformed() {
        let start =
            TraceEvent::from_fields(&fields(&[("event_type", "span_start"), ("operation", "x")]));
        assert!(matches!(start.disposition(), Disposition::Skip));
        for (trace, span) in [
            ("nothex", "b7ad6b7169203331"),
            ("0af7651916cd43dd8448eb211c80319c00", "b7ad6b7169203331"),
            ("0af7651916cd43dd8448eb211c80319c", "b7ad"),
        ] {
            let event = TraceEvent::from_fields(&fields(&[
                ("event_type", "span_end"),
                ("operation", "x"),
                ("trace_id", trace),
                ("span_id", span),
            ]));
            assert!(
                matches!(event.disposition(), Disposition::Malformed(_)),
                "{trace} {span}"
            );
        }
    }

    #[test]
    fn uuid_ids_and_parents() {
        let event = TraceEvent::from_fields(&fields(&[
            ("event_type", "span_end"),
            ("operation", "call"),
            ("trace_id", "1322f09d-baee-4241-a45d-a4ee78dc199f"),
            ("span_id", "a45da4ee-78dc-199f-0000-000000000000"),
            ("parent_span", "00f067aa0ba902b7"),
        ]));
        let Disposition::Export(span, _) = event.disposition() else {
            panic!("exported");
        };
        assert_eq!(hex(&span.trace_id), "1322f09dbaee4241a45da4ee78dc199f");
        assert_eq!(hex(&span.span_id), "a45da4ee78dc199f");
        assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(span.kind, span::SpanKind::Internal as i32);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
