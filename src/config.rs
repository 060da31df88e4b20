//! The registry's configuration: the parsed command line resolved into one typed `Config`.
//!
//! A few knobs keep the reference's lenient parsing (an invalid value means the default, with a
//! warning) so that an environment written for the reference behaves the same here; those
//! warnings are returned to the caller to log once logging is up.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::go_duration::parse_go_duration;
use crate::store::{redact_url, DbSchema};
use crate::tls::TlsMode;

#[derive(Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// `MCP_MESH_ADMIN_PORT`: `/admin/*` only there (`Some(0)` picks a free port, for tests).
    pub admin_port: Option<u16>,
    /// `MCP_MESH_ADMIN_HOST`: where the admin port listens.
    pub admin_host: String,
    /// `MCP_MESH_UI`: serve the dashboard at `/ui`.
    pub ui: bool,
    /// An empty one is the embedded file in the working directory.
    pub database_url: String,
    /// `MCP_MESH_DB_SCHEMA`: where our tables live on PostgreSQL.
    pub db_schema: DbSchema,
    pub db_pool_size: usize,
    pub http_workers: usize,
    pub max_body_bytes: usize,
    /// `MCP_MESH_MAX_PAGE_BYTES`
    pub max_page_bytes: usize,
    /// `MCP_MESH_MAX_CONNECTIONS`, all workers together.
    pub max_connections: usize,
    pub max_long_polls: usize,
    /// `MCP_MESH_MAX_LONG_POLLS_PER_CLIENT`, at most `max_long_polls`.
    pub max_long_polls_per_client: usize,
    pub cancel_event_grace: Duration,
    /// `MCP_MESH_JOB_STALE_TIMEOUT`; `None` = the opt-in stale ceiling is off.
    pub job_stale_timeout: Option<Duration>,
    /// `MCP_MESH_SWEEP_INTERVAL`
    pub sweep_interval: Duration,
    /// `MCP_MESH_RETENTION`; `None` keeps events and unhealthy agents forever.
    pub retention: Option<Duration>,
    /// `MCP_MESH_JOB_ROW_RETENTION`; `None` keeps terminal job rows forever.
    pub job_row_retention: Option<Duration>,
    /// `MCP_MESH_STARTUP_GRACE`
    pub startup_grace: Duration,
    pub shutdown_timeout: Duration,
    /// `HEALTH_CHECK_INTERVAL`
    pub health_check_interval: Duration,
    /// `DEFAULT_TIMEOUT_THRESHOLD`
    pub agent_timeout: Duration,
    /// `MCP_MESH_PROXY_TIMEOUT`: the budget of a proxied request without `X-Mesh-Timeout`.
    pub proxy_timeout: Duration,
    /// `MCP_MESH_PROPAGATE_HEADERS`: lowercase names, or prefixes ending in `*`.
    pub propagate_headers: Vec<String>,
    /// `MCP_MESH_PROXY_MAX_STREAMS`
    pub proxy_max_streams: usize,
    pub metrics: MetricsSettings,
    /// HTTPS, registration trust and calls to agents over TLS (read at start).
    pub tls: TlsSettings,
    /// `MCP_MESH_DISTRIBUTED_TRACING_ENABLED` and its knobs; `None`: the pipeline is off.
    pub trace_pipeline: Option<TracePipelineSettings>,
}

/// The distributed-trace pipeline's settings (the reference's variables and defaults).
#[derive(Debug, Clone)]
pub struct TracePipelineSettings {
    /// `REDIS_URL`
    pub redis_url: String,
    /// The stream the agents write (`mesh:trace`).
    pub stream: String,
    /// `MCP_MESH_TRACE_CONSUMER_GROUP`
    pub consumer_group: String,
    /// `TRACE_BATCH_SIZE`
    pub batch_size: u32,
    /// `MCP_MESH_TRACE_RETENTION`; `None` never trims.
    pub retention: Option<Duration>,
    /// `TRACE_EXPORTER_TYPE`, as given (`otlp` or `telemetry`).
    pub exporter_type: String,
    /// `TELEMETRY_ENDPOINT` (or `OTLP_ENDPOINT`): `host:port`.
    pub endpoint: String,
    /// `TELEMETRY_PROTOCOL`
    pub protocol: TelemetryProtocol,
    /// `TELEMETRY_PROTOCOL` as given, for `/trace/info`.
    pub protocol_name: String,
    /// `TEMPO_URL`, or derived from the endpoint's host.
    pub tempo_url: String,
    /// `REDIS_TLS_*`
    pub redis_tls: ClientTls,
    /// `TELEMETRY_TLS_*`
    pub telemetry_tls: ClientTls,
    /// `TEMPO_TLS_*`
    pub tempo_tls: ClientTls,
}

/// One of the trace pipeline's TLS clients, as the reference's `<PREFIX>_CA`, `_CERT`, `_KEY`
/// and `_SKIP_VERIFY` variables describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CAs the server's certificate must chain to, instead of the public web's.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key, for a server that asks for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Any server certificate is accepted.
    pub skip_verify: bool,
}

impl ClientTls {
    /// Whether any of its variables is set: the reference then speaks TLS to Redis and to the
    /// collector whatever their addresses say.
    pub fn given(&self) -> bool {
        self.ca.is_some() || self.identity.is_some() || self.skip_verify
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelemetryProtocol {
    Grpc,
    Http,
}

/// `MCP_MESH_METRICS*`: what `GET /metrics` serves and how often it counts in the database.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    /// `MCP_MESH_METRICS`: the endpoint and the per-request measurements.
    pub enabled: bool,
    /// `MCP_MESH_METRICS_CAPABILITIES`: capabilities with series of their own (0: none).
    pub capabilities: usize,
    /// `MCP_MESH_METRICS_REFRESH`: how long database counts are reused.
    pub refresh: Duration,
}

/// The `MCP_MESH_TLS_*` and `MCP_MESH_TRUST_*` settings, as given.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub mode: TlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub trust_backend: String,
    pub trust_dir: Option<PathBuf>,
}

/// Like a derived `Debug`, with the database URL's password hidden.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_port", &self.admin_port)
            .field("admin_host", &self.admin_host)
            .field("ui", &self.ui)
            .field("database_url", &redact_url(&self.database_url))
            .field("db_schema", &self.db_schema)
            .field("db_pool_size", &self.db_pool_size)
            .field("http_workers", &self.http_workers)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_page_bytes", &self.max_page_bytes)
            .field("max_connections", &self.max_connections)
            .field("max_long_polls", &self.max_long_polls)
            .field("max_long_polls_per_client", &self.max_long_polls_per_client)
            .field("cancel_event_grace", &self.cancel_event_grace)
            .field("job_stale_timeout", &self.job_stale_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("retention", &self.retention)
            .field("job_row_retention", &self.job_row_retention)
            .field("startup_grace", &self.startup_grace)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("health_check_interval", &self.health_check_interval)
            .field("agent_timeout", &self.agent_timeout)
            .field("proxy_timeout", &self.proxy_timeout)
            .field("propagate_headers", &self.propagate_headers)
            .field("proxy_max_streams", &self.proxy_max_streams)
            .field("metrics", &self.metrics)
            .field("tls", &self.tls)
            .field(
                "trace_pipeline",
                &self.trace_pipeline.as_ref().map(|p| TracePipelineSettings {
                    redis_url: redact_url(&p.redis_url),
                    ..p.clone()
                }),
            )
            .finish()
    }
}

const DEFAULT_TRACE_CONSUMER_GROUP: &str = "mcp-mesh-registry-processors";
const DEFAULT_TRACE_BATCH_SIZE: u32 = 100;
const DEFAULT_TRACE_RETENTION: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_CANCEL_EVENT_GRACE: Duration = Duration::from_millis(200);
const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(300);
const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);
const DEFAULT_STARTUP_GRACE: Duration = Duration::from_secs(30);
const MAX_CANCEL_EVENT_GRACE: Duration = Duration::from_millis(10_000);
/// The budget of a proxied request (`MCP_MESH_PROXY_TIMEOUT`, `X-Mesh-Timeout`) and its cap.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_PROXY_TIMEOUT: Duration = Duration::from_secs(600);

impl Config {
    /// Resolves the flags; the second value lists the lenient knobs that fell back to a default.
    pub fn from_args(args: &ServeArgs) -> (Config, Vec<String>) {
        let mut warnings = Vec::new();
        // No database named: the store picks the embedded file in the working directory.
        let database_url = args.database_url.clone().unwrap_or_default();
        let cancel_event_grace = cancel_event_grace(args.cancel_event_grace_ms.as_deref())
            .unwrap_or_else(|raw| {
                warnings.push(format!(
                    "MCP_MESH_CANCEL_EVENT_GRACE_MS={raw:?} is not a non-negative integer; using 200"
                ));
                DEFAULT_CANCEL_EVENT_GRACE
            });
        let timing = SweepTiming::from_args(args, &mut warnings);
        let admin_port = admin_port(args.admin_port.as_deref(), &mut warnings);
        let config = Config {
            host: args.host.clone(),
            port: args.port,
            admin_port,
            admin_host: args.admin_host.clone(),
            ui: args.ui,
            database_url,
            db_schema: args.db_schema.clone(),
            db_pool_size: args.db_pool_size as usize,
            http_workers: args.http_workers.map_or_else(
                || std::thread::available_parallelism().map_or(2, |n| n.get()),
                |n| n as usize,
            ),
            max_body_bytes: args.max_body_bytes as usize,
            max_page_bytes: args.max_page_bytes as usize,
            max_connections: args.max_connections as usize,
            max_long_polls: args.max_long_polls as usize,
            max_long_polls_per_client: args
                .max_long_polls_per_client
                .map_or(args.max_long_polls / 4, |share| {
                    share.min(args.max_long_polls)
                })
                .max(1) as usize,
            cancel_event_grace,
            job_stale_timeout: timing.job_stale_timeout,
            sweep_interval: timing.sweep_interval,
            retention: timing.retention,
            job_row_retention: timing.job_row_retention,
            startup_grace: timing.startup_grace,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
            health_check_interval: Duration::from_secs(args.health_check_interval),
            agent_timeout: Duration::from_secs(args.agent_timeout),
            proxy_timeout: proxy_timeout(args.proxy_timeout.as_deref(), &mut warnings),
            propagate_headers: propagate_headers(&args.propagate_headers, &mut warnings),
            proxy_max_streams: args.proxy_max_streams as usize,
            metrics: MetricsSettings {
                enabled: args.metrics,
                capabilities: args.metrics_capabilities as usize,
                refresh: Duration::from_secs(args.metrics_refresh),
            },
            tls: TlsSettings {
                mode: args.tls_mode,
                cert: path(&args.tls_cert),
                key: path(&args.tls_key),
                ca: path(&args.tls_ca),
                trust_backend: args.trust_backend.clone(),
                trust_dir: path(&args.trust_dir),
            },
            trace_pipeline: trace_pipeline(args, &mut warnings),
        };
        (config, warnings)
    }
}

/// The sweep's Go-duration knobs, read leniently as the reference does (an invalid value means
/// the default, with a warning).
struct SweepTiming {
    job_stale_timeout: Option<Duration>,
    sweep_interval: Duration,
    retention: Option<Duration>,
    job_row_retention: Option<Duration>,
    startup_grace: Duration,
}

impl SweepTiming {
    fn from_args(args: &ServeArgs, warnings: &mut Vec<String>) -> SweepTiming {
        let mut knob = |name: &str, raw: &Option<String>, meaning: &str| {
            let raw = raw.as_deref().map(str::trim).filter(|r| !r.is_empty())?;
            let parsed = parse_go_duration(raw);
            if parsed.is_none() {
                warnings.push(format!("{name}={raw:?} is not a Go duration; {meaning}"));
            }
            Some(parsed)
        };
        let job_stale_timeout = knob(
            "MCP_MESH_JOB_STALE_TIMEOUT",
            &args.job_stale_timeout,
            "the stale ceiling stays off",
        )
        .flatten()
        .filter(|d| !d.is_zero());
        let sweep_interval = match knob("MCP_MESH_SWEEP_INTERVAL", &args.sweep_interval, "using 5m")
        {
            Some(Some(d)) if !d.is_zero() => d,
            _ => DEFAULT_SWEEP_INTERVAL,
        };
        let retention = match knob("MCP_MESH_RETENTION", &args.retention, "using 1h") {
            None | Some(None) => Some(DEFAULT_RETENTION),
            Some(Some(d)) => Some(d).filter(|d| !d.is_zero()),
        };
        let job_row_retention = knob(
            "MCP_MESH_JOB_ROW_RETENTION",
            &args.job_row_retention,
            "job rows are kept",
        )
        .flatten()
        .filter(|d| !d.is_zero());
        let startup_grace = knob("MCP_MESH_STARTUP_GRACE", &args.startup_grace, "using 30s")
            .flatten()
            .unwrap_or(DEFAULT_STARTUP_GRACE);
        SweepTiming {
            job_stale_timeout,
            sweep_interval,
            retention,
            job_row_retention,
            startup_grace,
        }
    }
}

/// A file or directory setting: empty means unset, as it does for the reference.
fn path(raw: &Option<String>) -> Option<PathBuf> {
    raw.as_deref()
        .filter(|raw| !raw.trim().is_empty())
        .map(PathBuf::from)
}

/// The trace pipeline's settings when `MCP_MESH_DISTRIBUTED_TRACING_ENABLED` is `true`, read as
/// the reference reads them: lenient numbers and durations (the default, with a warning); an
/// exporter or protocol it does not have leaves the pipeline off, with a warning.
fn trace_pipeline(args: &ServeArgs, warnings: &mut Vec<String>) -> Option<TracePipelineSettings> {
    if !args.distributed_tracing.trim().eq_ignore_ascii_case("true") {
        return None;
    }
    fn given(raw: &Option<String>) -> Option<&str> {
        raw.as_deref().map(str::trim).filter(|r| !r.is_empty())
    }
    let exporter_type = given(&args.trace_exporter_type)
        .unwrap_or("otlp")
        .to_owned();
    if !["otlp", "telemetry"].contains(&exporter_type.to_ascii_lowercase().as_str()) {
        warnings.push(format!(
            "TRACE_EXPORTER_TYPE={exporter_type:?}: mesh-registry exports spans over OTLP only \
             (otlp); the trace pipeline is off"
        ));
        return None;
    }
    let protocol_name = given(&args.telemetry_protocol).unwrap_or("grpc").to_owned();
    let protocol = match protocol_name.to_ascii_lowercase().as_str() {
        "grpc" => TelemetryProtocol::Grpc,
        "http" | "http/protobuf" => TelemetryProtocol::Http,
        _ => {
            warnings.push(format!(
                "TELEMETRY_PROTOCOL={protocol_name:?} is not grpc or http; the trace pipeline is off"
            ));
            return None;
        }
    };
    let batch_size = match given(&args.trace_batch_size).map(str::parse::<u32>) {
        None => DEFAULT_TRACE_BATCH_SIZE,
        Some(Ok(size @ 1..=10_000)) => size,
        Some(_) => {
            warnings.push(format!(
                "TRACE_BATCH_SIZE={:?} is not a number from 1 to 10000; using 100",
                args.trace_batch_size.as_deref().unwrap_or_default()
            ));
            DEFAULT_TRACE_BATCH_SIZE
        }
    };
    let retention = match given(&args.trace_retention).map(|raw| (raw, parse_go_duration(raw))) {
        None => Some(DEFAULT_TRACE_RETENTION),
        Some((_, Some(d))) => Some(d).filter(|d| !d.is_zero()),
        Some((raw, None)) => {
            warnings.push(format!(
                "MCP_MESH_TRACE_RETENTION={raw:?} is not a Go duration (0 disables); using 24h"
            ));
            Some(DEFAULT_TRACE_RETENTION)
        }
    };
    let named_endpoint = given(&args.telemetry_endpoint);
    let endpoint = named_endpoint
        .or(given(&args.telemetry_endpoint_alias))
        .unwrap_or("localhost:4317")
        .to_owned();
    // Tempo's query port on the collector's host, as the reference guesses it (from
    // TELEMETRY_ENDPOINT only).
    let tempo_url = match (given(&args.tempo_url), named_endpoint) {
        (Some(url), _) => url.to_owned(),
        (None, Some(endpoint)) => format!(
            "http://{}:3200",
            endpoint.split(':').next().unwrap_or("localhost")
        ),
        (None, None) => "http://localhost:3200".to_owned(),
    };
    let tls = |prefix: &str,
               ca: &Option<String>,
               cert: &Option<String>,
               key: &Option<String>,
               skip_verify: &Option<String>| {
        let identity = match (path(cert), path(key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(format!("{prefix}_CERT and {prefix}_KEY go together")),
        };
        Ok(ClientTls {
            ca: path(ca),
            identity,
            // The reference's test: anything but "true" (any case) is false.
            skip_verify: given(skip_verify).is_some_and(|raw| raw.eq_ignore_ascii_case("true")),
        })
    };
    let tls = [
        tls(
            "REDIS_TLS",
            &args.redis_tls_ca,
            &args.redis_tls_cert,
            &args.redis_tls_key,
            &args.redis_tls_skip_verify,
        ),
        tls(
            "TELEMETRY_TLS",
            &args.telemetry_tls_ca,
            &args.telemetry_tls_cert,
            &args.telemetry_tls_key,
            &args.telemetry_tls_skip_verify,
        ),
        tls(
            "TEMPO_TLS",
            &args.tempo_tls_ca,
            &args.tempo_tls_cert,
            &args.tempo_tls_key,
            &args.tempo_tls_skip_verify,
        ),
    ];
    let [redis_tls, telemetry_tls, tempo_tls] = match tls {
        [Ok(redis), Ok(telemetry), Ok(tempo)] => [redis, telemetry, tempo],
        failed => {
            for error in failed.into_iter().filter_map(Result::err) {
                warnings.push(format!("{error}; the trace pipeline is off"));
            }
            return None;
        }
    };
    if telemetry_tls.given() && endpoint.to_ascii_lowercase().starts_with("http://") {
        warnings.push(format!(
            "TELEMETRY_ENDPOINT={endpoint:?} says http://: the TELEMETRY_TLS_* settings are not used"
        ));
    }
    Some(TracePipelineSettings {
        redis_url: args.redis_url.clone(),
        stream: "mesh:trace".to_owned(),
        consumer_group: given(&args.trace_consumer_group)
            .unwrap_or(DEFAULT_TRACE_CONSUMER_GROUP)
            .to_owned(),
        batch_size,
        retention,
        exporter_type,
        endpoint,
        protocol,
        protocol_name,
        tempo_url,
        redis_tls,
        telemetry_tls,
        tempo_tls,
    })
}

/// `MCP_MESH_ADMIN_PORT`: unset, empty or 0 keep `/admin/*` on the public port; a value that is
/// not a port does too, with a warning.
fn admin_port(raw: Option<&str>, warnings: &mut Vec<String>) -> Option<u16> {
    match raw.map(str::trim) {
        None | Some("") => None,
        Some(raw) => match raw.parse::<u16>() {
            Ok(0) => None,
            Ok(port) => Some(port),
            Err(_) => {
                warnings.push(format!(
                    "MCP_MESH_ADMIN_PORT={raw:?} is not a port; /admin/* stays on the public port"
                ));
                None
            }
        },
    }
}

/// `MCP_MESH_PROXY_TIMEOUT` as the reference reads it: whole seconds above 0, at most 600;
/// unset means 60, anything else too (with a warning).
fn proxy_timeout(raw: Option<&str>, warnings: &mut Vec<String>) -> Duration {
    let Some(raw) = raw.map(str::trim).filter(|raw| !raw.is_empty()) else {
        return DEFAULT_PROXY_TIMEOUT;
    };
    match raw.parse::<u64>() {
        Ok(secs) if secs > 0 => Duration::from_secs(secs).min(MAX_PROXY_TIMEOUT),
        _ => {
            warnings.push(format!(
                "MCP_MESH_PROXY_TIMEOUT={raw:?} is not a positive number of seconds; using 60"
            ));
            DEFAULT_PROXY_TIMEOUT
        }
    }
}

/// `MCP_MESH_PROPAGATE_HEADERS` as the reference reads it: trimmed, lowercased entries; one
/// that would match every header (`*`) is dropped with a warning, since it would forward
/// credentials to agents.
fn propagate_headers(raw: &str, warnings: &mut Vec<String>) -> Vec<String> {
    raw.split(',')
        .map(|entry| entry.trim().to_ascii_lowercase())
        .filter(|entry| !entry.is_empty())
        .filter(|entry| {
            let everything = entry.trim_end_matches('*').is_empty();
            if everything {
                warnings.push(format!(
                    "MCP_MESH_PROPAGATE_HEADERS entry {entry:?} would forward every header; ignored"
                ));
            }
            !everything
        })
        .collect()
}

/// `MCP_MESH_CANCEL_EVENT_GRACE_MS` as the reference reads it: unset means 200 ms, 0 disables,
/// anything above 10 s is clamped; a negative or non-integer value is an error (caller uses 200).
fn cancel_event_grace(raw: Option<&str>) -> Result<Duration, &str> {
    let Some(raw) = raw.map(str::trim).filter(|raw| !raw.is_empty()) else {
        return Ok(DEFAULT_CANCEL_EVENT_GRACE);
    };
    match raw.parse::<i64>() {
        Ok(ms) if ms >= 0 => Ok(Duration::from_millis(ms as u64).min(MAX_CANCEL_EVENT_GRACE)),
        _ => Err(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_grace_follows_the_reference() {
        let ms = |raw| cancel_event_grace(raw).map(|d| d.as_millis());
        assert_eq!(ms(None), Ok(200));
        assert_eq!(ms(Some("150")), Ok(150));
        assert_eq!(ms(Some("0")), Ok(0));
        assert_eq!(ms(Some("86400000")), Ok(10_000));
        assert_eq!(ms(Some("10000")), Ok(10_000));
        assert!(ms(Some("-5")).is_err());
        assert!(ms(Some("not-a-number")).is_err());
    }

    fn resolve(flags: &[&str]) -> (Config, Vec<String>) {
        let mut argv = vec!["mesh-registry", "--database-url", "postgres://x/y"];
        argv.extend_from_slice(flags);
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        Config::from_args(&cli.serve)
    }

    #[test]
    fn sweep_interval_follows_the_reference() {
        // The reference's default and parsing (docs/configuration.md#jobs).
        let interval = |flags: &[&str]| resolve(flags).0.sweep_interval.as_secs();
        assert_eq!(interval(&[]), 300);
        assert_eq!(interval(&["--sweep-interval", "10s"]), 10);
        assert_eq!(interval(&["--sweep-interval", "1m30s"]), 90);
        for invalid in ["garbage", "0s", "-5m"] {
            assert_eq!(interval(&["--sweep-interval", invalid]), 300, "{invalid}");
        }
        assert_eq!(
            resolve(&["--sweep-interval", "garbage"]).1.len(),
            1,
            "a warning"
        );
    }

    #[test]
    fn proxy_knobs_follow_the_reference() {
        let (config, warnings) = resolve(&[]);
        assert_eq!(config.proxy_timeout, Duration::from_secs(60));
        assert!(config.propagate_headers.is_empty() && warnings.is_empty());
        let timeout = |raw: &str| resolve(&["--proxy-timeout", raw]).0.proxy_timeout.as_secs();
        assert_eq!(timeout("5"), 5);
        assert_eq!(timeout("9999"), 600);
        for invalid in ["0", "-3", "1m", "abc"] {
            assert_eq!(timeout(invalid), 60, "{invalid}");
        }
        let (config, warnings) =
            resolve(&["--propagate-headers", " Authorization, x-tenant-*,*,, ***"]);
        assert_eq!(config.propagate_headers, ["authorization", "x-tenant-*"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn retention_knobs() {
        let (config, _) = resolve(&[]);
        assert_eq!(config.retention, Some(Duration::from_secs(3600)));
        assert_eq!(config.job_row_retention, None);
        assert_eq!(config.startup_grace, Duration::from_secs(30));
        let (config, warnings) = resolve(&[
            "--retention",
            "0",
            "--job-row-retention",
            "24h",
            "--startup-grace",
            "0",
        ]);
        assert_eq!(config.retention, None);
        assert_eq!(config.job_row_retention, Some(Duration::from_secs(86_400)));
        assert_eq!(config.startup_grace, Duration::ZERO);
        assert!(warnings.is_empty());
        let (config, warnings) = resolve(&["--retention", "-1h"]);
        assert_eq!(config.retention, Some(Duration::from_secs(3600)));
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn trace_pipeline_follows_the_reference() {
        assert!(resolve(&[]).0.trace_pipeline.is_none(), "off by default");
        assert!(resolve(&["--distributed-tracing", "1"])
            .0
            .trace_pipeline
            .is_none());
        let (config, warnings) = resolve(&["--distributed-tracing", "TRUE"]);
        let pipeline = config.trace_pipeline.expect("on");
        assert!(warnings.is_empty());
        assert_eq!(pipeline.redis_url, "redis://localhost:6379");
        assert_eq!(pipeline.consumer_group, "mcp-mesh-registry-processors");
        assert_eq!(pipeline.batch_size, 100);
        assert_eq!(pipeline.retention, Some(Duration::from_secs(86_400)));
        assert_eq!(pipeline.endpoint, "localhost:4317");
        assert_eq!(pipeline.protocol, TelemetryProtocol::Grpc);
        assert_eq!(pipeline.tempo_url, "http://localhost:3200");
        let (config, warnings) = resolve(&[
            "--distributed-tracing",
            "true",
            "--telemetry-endpoint",
            "tempo:4317",
            "--telemetry-protocol",
            "http",
            "--trace-retention",
            "0",
            "--trace-batch-size",
            "-3",
        ]);
        let pipeline = config.trace_pipeline.expect("on");
        assert_eq!(
            pipeline.tempo_url, "http://tempo:3200",
            "guessed from the endpoint"
        );
        assert_eq!(pipeline.protocol, TelemetryProtocol::Http);
        assert_eq!(pipeline.retention, None);
        assert_eq!(pipeline.batch_size, 100);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        for off in [
            ["--telemetry-protocol", "carrier-pigeon"],
            ["--trace-exporter-type", "console"],
        ] {
            let mut flags = vec!["--distributed-tracing", "true"];
            flags.extend(off);
            let (config, warnings) = resolve(&flags);
            assert!(config.trace_pipeline.is_none(), "{off:?}");
            assert_eq!(warnings.len(), 1);
        }
    }

    #[test]
    fn trace_pipeline_tls_reads_the_reference_variables() {
        let (config, warnings) = resolve(&[
            "--distributed-tracing",
            "true",
            "--redis-tls-ca",
            "/certs/ca.pem",
            "--telemetry-tls-skip-verify",
            "TRUE",
            "--tempo-tls-cert",
            "/certs/me.pem",
            "--tempo-tls-key",
            "/certs/me.key",
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let pipeline = config.trace_pipeline.expect("on");
        let redis = &pipeline.redis_tls;
        assert_eq!(
            redis.ca.as_deref(),
            Some(std::path::Path::new("/certs/ca.pem"))
        );
        assert!(redis.given() && !redis.skip_verify && redis.identity.is_none());
        assert!(pipeline.telemetry_tls.skip_verify && pipeline.telemetry_tls.given());
        assert_eq!(
            pipeline.tempo_tls.identity,
            Some(("/certs/me.pem".into(), "/certs/me.key".into()))
        );
        // The reference's test: "true" in any case, nothing else.
        let (config, _) = resolve(&[
            "--distributed-tracing",
            "true",
            "--redis-tls-skip-verify",
            "yes",
        ]);
        assert!(!config.trace_pipeline.expect("on").redis_tls.given());
        // A certificate without its key: the reference refuses; the pipeline is off.
        let (config, warnings) = resolve(&[
            "--distributed-tracing",
            "true",
            "--redis-tls-cert",
            "/certs/me.pem",
        ]);
        assert!(config.trace_pipeline.is_none());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("REDIS_TLS_CERT and REDIS_TLS_KEY"));
        // An endpoint that says http:// keeps it; the TLS settings are said to be unused.
        let (config, warnings) = resolve(&[
            "--distributed-tracing",
            "true",
            "--telemetry-endpoint",
            "http://collector:4318",
            "--telemetry-tls-ca",
            "/certs/ca.pem",
        ]);
        assert!(config.trace_pipeline.is_some());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}
