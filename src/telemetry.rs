//! Logging and the registry's own spans: `tracing` to stdout, level from `RUST_LOG` when set,
//! else from the reference's `MCP_MESH_LOG_LEVEL` vocabulary (`MCP_MESH_DEBUG_MODE` forces
//! DEBUG); with `MCP_MESH_OTLP_ENDPOINT`, the spans also go out over OTLP/HTTP.
//!
//! Every request runs in one `request` span (its request id, method, route and status; see
//! `RequestSpan`); the service's store calls and actor hand-offs are DEBUG spans inside it. The
//! OTLP layer takes those DEBUG spans of this crate whatever the log level, while the log keeps
//! its own level: with no export and an INFO log nobody wants them, and they cost nothing.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::HttpMessage;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The service name the registry's spans carry.
const SERVICE_NAME: &str = "mesh-registry";

/// Maps the reference's level names onto `tracing` levels; `None` for an unknown name.
pub fn level_directive(mesh_level: &str) -> Option<&'static str> {
    Some(match mesh_level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => return None,
    })
}

/// The installed logging; with an OTLP export, dropping it sends the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("mesh-registry: the last spans were not exported: {error}");
            }
        }
    }
}

/// Installs the global subscriber (and the OTLP export when `otlp_endpoint` names one). Returns
/// the warnings to log once it is up (an unknown level name, an export that cannot start).
pub fn init(
    mesh_level: &str,
    debug_mode: bool,
    otlp_endpoint: Option<&str>,
) -> (Telemetry, Vec<String>) {
    let mut warnings = Vec::new();
    let directive = match (debug_mode, level_directive(mesh_level)) {
        (true, _) => "debug",
        (false, Some(directive)) => directive,
        (false, None) => {
            warnings.push(format!(
                "unknown MCP_MESH_LOG_LEVEL {mesh_level:?}; using INFO"
            ));
            "info"
        }
    };
    // actix-server announces every worker at INFO, and refinery dumps every migration's SQL:
    // noise next to the registry's own log (which names each migration it applies).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{directive},actix_server=warn,refinery_core=warn"))
    });
    let log = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_filter(filter);
    let provider = otlp_endpoint.and_then(|endpoint| match otlp_provider(endpoint) {
        Ok(provider) => Some(provider),
        Err(error) => {
            warnings.push(format!(
                "MCP_MESH_OTLP_ENDPOINT={endpoint:?}: cannot export spans ({error}); not exporting"
            ));
            None
        }
    });
    let export = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_filter(
                Targets::new()
                    .with_target(env!("CARGO_CRATE_NAME"), LevelFilter::DEBUG)
                    .with_default(LevelFilter::OFF),
            )
    });
    // A second init (tests start many apps in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(export)
        .try_init();
    (Telemetry { provider }, warnings)
}

/// OTLP over HTTP (protobuf) to `endpoint` (the collector's base URL, or its `/v1/traces`),
/// in batches from a thread of its own; callers continue a `traceparent` they send.
fn otlp_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let base = endpoint.trim().trim_end_matches('/');
    let traces = match base.ends_with("/v1/traces") {
        true => base.to_owned(),
        false => format!("{base}/v1/traces"),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces)
        .build()
        .map_err(|e| e.to_string())?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(SERVICE_NAME)
                .build(),
        )
        .build())
}

/// The span of one request: its id (also answered as `x-request-id`), method, the route
/// pattern (recorded once routed) and the status. A caller's W3C `traceparent` becomes its
/// parent when spans are exported.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let span = tracing::info_span!(
            "request",
            request_id = tracing::field::Empty,
            method = %request.method(),
            route = tracing::field::Empty,
            status = tracing::field::Empty,
            otel.kind = "server",
        );
        if !span.is_disabled() {
            if let Some(id) = request.extensions().get::<RequestId>() {
                span.record("request_id", tracing::field::display(id));
            }
            continue_remote_trace(request, &span);
        }
        span
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(response) => response.response().status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("status", status.as_u16());
    }
}

/// Makes the caller's `traceparent` (when it sent one) the parent of `span`.
fn continue_remote_trace(request: &ServiceRequest, span: &Span) {
    use opentelemetry::propagation::Extractor;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Headers<'a>(&'a actix_web::http::header::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|value| value.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|name| name.as_str()).collect()
        }
    }
    if !request.headers().contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(request.headers()))
    });
    let _ = span.set_parent(parent);
}

/// An error with its causes, for a log line (reqwest's own message alone says only "error
/// sending request", tonic's "transport error").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::level_directive;

    #[test]
    fn reference_level_names() {
        assert_eq!(level_directive("WARNING"), Some("warn"));
        assert_eq!(level_directive("critical"), Some("error"));
        assert_eq!(level_directive("TRACE"), Some("trace"));
        assert_eq!(level_directive("loud"), None);
    }
}
