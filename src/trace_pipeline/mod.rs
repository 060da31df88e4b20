//! The reference's distributed-trace pipeline (`MCP_MESH_DISTRIBUTED_TRACING_ENABLED`): agents
//! write their spans to the Redis stream `mesh:trace`; the registry reads it in a consumer group
//! (`consumer`), exports the spans over OTLP (`event`, `export`), trims the stream, and answers
//! `/trace/{id}` from Tempo (`tempo`) and `/trace/status|stats|info` from the pipeline's state.
//!
//! Everything runs on a thread of its own with its own runtime, so neither Redis nor the
//! collector can slow the registry's own work; the routes only read a snapshot the thread keeps.

mod consumer;
mod event;
mod export;
mod tempo;
mod tls;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::{TelemetryProtocol, TracePipelineSettings};
use crate::metrics::TraceMetrics;
use crate::store::redact_url;
pub use tempo::{CompletedTrace, LookupError};

/// The reference's figures for its correlation mode (`TRACE_TIMEOUT`, `TRACE_PRETTY_OUTPUT`,
/// `TRACE_ENABLE_STATS`), which stream-through export never uses; `/trace/info` shows them as
/// the reference does.
const REFERENCE_TRACE_TIMEOUT_NANOS: u64 = 300_000_000_000;

/// The Redis connection as `/trace/status` names it (the reference's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Disconnected,
    Connecting,
    Connected,
    Failed,
}

impl ConnectionState {
    fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Failed => "failed",
        }
    }
}

/// The stream and group figures, as last read.
#[derive(Debug, Clone)]
pub struct StreamSnapshot {
    pub length: u64,
    pub last_entry_id: String,
    pub group_pending: Option<u64>,
    /// Entries not yet delivered to the group (Redis 7 and later say).
    pub group_lag: Option<u64>,
    pub group_last_delivered_id: Option<String>,
}

/// What the consumer thread shares with the routes.
#[derive(Debug)]
pub struct Shared {
    pub connection_state: ConnectionState,
    pub consuming: bool,
    pub running: bool,
    pub retry_count: u32,
    pub last_error: Option<(String, SystemTime)>,
    pub stream: Option<StreamSnapshot>,
}

/// The running pipeline: its settings, the state its thread keeps, Tempo for `/trace/{id}`.
pub struct TracePipeline {
    settings: TracePipelineSettings,
    consumer_name: String,
    shared: Arc<Mutex<Shared>>,
    tempo: Option<tempo::Tempo>,
    stop: watch::Sender<bool>,
}

impl TracePipeline {
    /// Starts the consumer thread, which counts what it does in `metrics`. Redis and the
    /// collector being down (or their certificates not trusted) are the thread's business; only
    /// a thread that cannot be started is an error.
    pub fn start(
        settings: TracePipelineSettings,
        metrics: TraceMetrics,
    ) -> Result<Arc<TracePipeline>, String> {
        let tempo = match tempo::Tempo::new(&settings.tempo_url, &settings.tempo_tls) {
            Ok(tempo) => Some(tempo),
            Err(error) => {
                tracing::warn!(
                    "trace pipeline: no Tempo client ({error}); /trace/{{id}} finds nothing"
                );
                None
            }
        };
        let shared = Arc::new(Mutex::new(Shared {
            connection_state: ConnectionState::Disconnected,
            consuming: false,
            running: true,
            retry_count: 0,
            last_error: None,
            stream: None,
        }));
        let (stop, stopped) = watch::channel(false);
        let consumer_name = consumer_name();
        let (thread_settings, thread_name, thread_shared) =
            (settings.clone(), consumer_name.clone(), shared.clone());
        std::thread::Builder::new()
            .name("trace-pipeline".into())
            .spawn(move || {
                consume(
                    thread_settings,
                    thread_name,
                    thread_shared,
                    metrics,
                    stopped,
                )
            })
            .map_err(|e| format!("cannot start the trace pipeline's thread: {e}"))?;
        tracing::info!(
            "trace pipeline: consuming {} from {} in group {}, exporting over OTLP/{} to {}; \
             stream retention {}",
            settings.stream,
            redact_url(&settings.redis_url),
            settings.consumer_group,
            settings.protocol.as_str(),
            settings.endpoint,
            settings
                .retention
                .map_or("off".to_owned(), |r| format!("{r:?}")),
        );
        Ok(Arc::new(TracePipeline {
            settings,
            consumer_name,
            shared,
            tempo,
            stop,
        }))
    }

    /// Stops the consumer thread (entries it holds unacknowledged are taken over later by
    /// another consumer of the group).
    pub fn stop(&self) {
        self.lock().running = false;
        let _ = self.stop.send(true);
    }

    /// `GET /trace/status` and `/trace/info`: the reference's answer, field for field.
    pub fn info(&self) -> Value {
        let settings = &self.settings;
        let shared = self.lock();
        let mut consumer = json!({
            "enabled": true,
            "running": shared.running,
            "connection_state": shared.connection_state.as_str(),
            "consuming": shared.consuming,
            "stream_name": settings.stream,
            "consumer_group": settings.consumer_group,
            "consumer_name": self.consumer_name,
            "retry_count": shared.retry_count,
        });
        if let Some((error, at)) = &shared.last_error {
            consumer["last_error"] = json!(error);
            consumer["last_error_time"] = json!(rfc3339(*at));
        }
        if let Some(stream) = shared
            .stream
            .as_ref()
            .filter(|_| shared.connection_state == ConnectionState::Connected)
        {
            consumer["stream_length"] = json!(stream.length);
            consumer["stream_last_entry_id"] = json!(stream.last_entry_id);
            if let Some(pending) = stream.group_pending {
                consumer["group_pending"] = json!(pending);
            }
            if let Some(id) = &stream.group_last_delivered_id {
                consumer["group_last_delivered_id"] = json!(id);
            }
        }
        json!({
            "enabled": true,
            "exporter_type": settings.exporter_type,
            "stream_through_mode": true,
            "config": {
                "enabled": true,
                "redis_url": redact_url(&settings.redis_url),
                "stream_name": settings.stream,
                "consumer_group": settings.consumer_group,
                "consumer_name": "",
                "batch_size": settings.batch_size,
                "block_timeout": 5_000_000_000u64,
                "trace_timeout": REFERENCE_TRACE_TIMEOUT_NANOS,
                "trace_retention": settings.retention.map_or(0, |r| r.as_nanos() as u64),
                "exporter_type": settings.exporter_type,
                "pretty_console_output": true,
                "enable_stats": true,
                "telemetry_endpoint": settings.endpoint,
                "telemetry_protocol": settings.protocol_name,
                "tempo_query_url": settings.tempo_url,
            },
            "consumer": consumer,
        })
    }

    /// `GET /trace/stats`: the reference keeps no statistics while streaming spans through.
    pub fn stats(&self) -> Value {
        json!({
            "enabled": true,
            "stats_available": false,
            "reason": "statistics collection not enabled",
        })
    }

    /// `GET /trace/{id}`, from Tempo.
    pub async fn trace(&self, trace_id: &str) -> Result<CompletedTrace, LookupError> {
        let tempo = self.tempo.as_ref().ok_or(LookupError::NotFound)?;
        tempo.trace(trace_id).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TelemetryProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            TelemetryProtocol::Grpc => "gRPC",
            TelemetryProtocol::Http => "HTTP",
        }
    }
}

/// The pipeline thread: a runtime of its own, the exporter built on it (so its connections,
/// gRPC's HTTP/2 driver too, live here and not on the registry's threads), then the consumer
/// until the pipeline stops.
fn consume(
    settings: TracePipelineSettings,
    consumer_name: String,
    shared: Arc<Mutex<Shared>>,
    metrics: TraceMetrics,
    stop: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("trace pipeline: cannot start ({error})");
            return;
        }
    };
    runtime.block_on(async move {
        let exporter = export::Exporter::new(
            &settings.endpoint,
            settings.protocol,
            &settings.telemetry_tls,
        );
        match exporter {
            Ok(exporter) => {
                let consumer = consumer::Consumer {
                    settings,
                    consumer_name,
                    outlet: consumer::Outlet { exporter, metrics },
                    shared,
                    stop,
                };
                consumer.run().await
            }
            Err(error) => {
                let why = format!("TELEMETRY_ENDPOINT={:?}: {error}", settings.endpoint);
                tracing::error!("trace pipeline: cannot export ({why}); not consuming");
                let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
                shared.connection_state = ConnectionState::Failed;
                shared.running = false;
                shared.last_error = Some((why, SystemTime::now()));
            }
        }
    })
}

/// `registry-<hostname>-<pid>` as the reference names its consumer (a second pipeline in one
/// process, as tests run, gets a suffix: two consumers of one name would be one consumer).
fn consumer_name() -> String {
    static STARTED: AtomicU32 = AtomicU32::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into());
    let name = format!("registry-{host}-{}", std::process::id());
    match STARTED.fetch_add(1, Ordering::Relaxed) {
        0 => name,
        n => format!("{name}-{n}"),
    }
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_never_shows_the_redis_password() {
        let settings = TracePipelineSettings {
            redis_url: "redis://:s3cret@127.0.0.1:9/0".into(),
            stream: "mesh:trace".into(),
            consumer_group: "g".into(),
            batch_size: 100,
            retention: None,
            exporter_type: "otlp".into(),
            endpoint: "127.0.0.1:9".into(),
            protocol: TelemetryProtocol::Http,
            protocol_name: "http".into(),
            tempo_url: "http://127.0.0.1:9".into(),
            redis_tls: Default::default(),
            telemetry_tls: Default::default(),
            tempo_tls: Default::default(),
        };
        let pipeline = TracePipeline::start(settings, TraceMetrics::register(&Default::default()))
            .expect("started");
        let info = pipeline.info();
        pipeline.stop();
        assert_eq!(info["config"]["redis_url"], "redis://:***@127.0.0.1:9/0");
        assert_eq!(info["config"]["trace_retention"], 0);
        assert!(!info.to_string().contains("s3cret"), "{info}");
    }
}
