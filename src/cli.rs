//! The command line: `mesh-registry [serve] [flags]`. Every serve flag has the reference's
//! environment variable as its fallback, so the same deployment config drives either registry.

use clap::{ArgAction, Args, Parser, Subcommand};

use std::path::PathBuf;

use crate::store::{DbSchema, DEFAULT_DB_SCHEMA};
use crate::tls::TlsMode;

#[derive(Debug, Parser)]
#[command(
    name = "mesh-registry",
    version,
    about = "Registry for an MCP Mesh: agents, long-running jobs, leases and drain",
    long_about = "Registry for an MCP Mesh: agents register and heartbeat, consumers submit \
                  long-running jobs, producers claim them under a lease and a claim epoch.\n\
                  Wire-compatible with the MCP Mesh registry v3.7 (SDKs and meshctl work unchanged).\n\n\
                  With no command, `serve` runs.",
    args_conflicts_with_subcommands = true,
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version and exit
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,

    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the registry (the default when no command is given)
    Serve(Box<ServeArgs>),
    /// Administer a running registry: drain before an upgrade, resume, status (meshctl's
    /// `registry` commands)
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Inspect, apply or prune the database schema
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
        /// The database: a PostgreSQL URL (postgres://postgres@127.0.0.1:5432/mesh?sslmode=disable)
        /// or an embedded SQLite file (a path or sqlite://path) [default: mesh_registry.db].
        /// PostgreSQL TLS as libpq: sslmode=disable|prefer|require|verify-ca|verify-full
        /// (prefer when absent, libpq's default: TLS whenever the server offers it, and a
        /// server without TLS still works), sslrootcert=<CA file>|system, sslcert=, sslkey=
        #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// The PostgreSQL schema that holds mesh-registry's tables; the commands look at it
        /// only
        #[arg(long, global = true, env = "MCP_MESH_DB_SCHEMA", default_value = DEFAULT_DB_SCHEMA,
              value_parser = DbSchema::parse)]
        db_schema: DbSchema,
    },
    /// Inspect or force-reclaim one job (meshctl's `job` commands)
    Job {
        #[command(subcommand)]
        command: JobCommand,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// Where the registry to administer is.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Registry URL (overrides host/port/scheme); point it at the admin port when the registry
    /// runs one
    #[arg(long, global = true, env = "MCP_MESH_REGISTRY_URL")]
    pub registry_url: Option<String>,

    /// Registry host
    #[arg(long, global = true, default_value = "localhost")]
    pub registry_host: String,

    /// Registry port
    #[arg(long, global = true, default_value_t = 8000)]
    pub registry_port: u16,

    /// Registry URL scheme (http or https)
    #[arg(long, global = true, default_value = "http")]
    pub registry_scheme: String,

    /// Skip TLS certificate verification
    #[arg(long, global = true)]
    pub insecure: bool,

    /// The CA certificates (PEM) that vouch for an HTTPS registry (default: the public web's)
    #[arg(long, global = true, env = "MCP_MESH_REGISTRY_TLS_CA")]
    pub ca_cert: Option<PathBuf>,

    /// A client certificate (PEM) to present, for a registry in TLS mode strict
    #[arg(
        long,
        global = true,
        env = "MCP_MESH_REGISTRY_TLS_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// The key of --client-cert (PEM)
    #[arg(
        long,
        global = true,
        env = "MCP_MESH_REGISTRY_TLS_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,

    /// Request timeout in seconds
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RegistryCommand {
    /// Show the drain state and the live-claim count
    Status {
        /// Print the registry's JSON as it is
        #[arg(long)]
        json: bool,
    },
    /// Pause new job claims and let running jobs finish
    Drain {
        /// Block until no live claims remain
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds (0 waits as long as it takes)
        #[arg(long, default_value_t = 0)]
        wait_timeout: u64,
        /// Seconds between live-claim polls while waiting (at least 1)
        #[arg(long, default_value_t = 2)]
        poll_interval: u64,
        /// Drain every replica (stored in PostgreSQL; survives restarts until resumed)
        #[arg(long)]
        fleet: bool,
        /// Without --wait: stay this many seconds after the drain is set, then exit 0 (a
        /// Kubernetes preStop hook: the pod leaves its Service and clients move their
        /// connections elsewhere before SIGTERM)
        #[arg(long, default_value_t = 0, conflicts_with = "wait")]
        linger: u64,
    },
    /// Resume normal job dispatch
    Resume {
        /// Clear the fleet-wide drain
        #[arg(long)]
        fleet: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum MigrateCommand {
    /// Applied versus known migrations, and how the live schema differs from this binary's
    Status,
    /// Apply the pending migrations, then exit (the registry also does this when it starts)
    Up {
        /// Stop after this migration version
        #[arg(long)]
        to: Option<u32>,
    },
    /// Drop the columns, indexes and tables this binary does not know, and forget the
    /// migrations it does not know; without --yes, only print what would be dropped
    Prune {
        /// Really drop them
        #[arg(long)]
        yes: bool,
    },
    /// Copy the Go registry's jobs and their events into mesh-registry's, to switch a mesh
    /// over: on PostgreSQL from its tables in schema public of the same database, on the
    /// embedded store from its SQLite file; they are only read, and jobs already imported are
    /// skipped
    ImportReference {
        /// Import even though the Go registry still holds live claims (drain it first:
        /// `meshctl registry drain --wait`)
        #[arg(long)]
        force: bool,
        /// Embedded store only: the Go registry's SQLite file [default: mcp_mesh_registry.db,
        /// its default, in the working directory]
        #[arg(long, value_name = "FILE")]
        from: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum JobCommand {
    /// Show a job
    Status {
        job_id: String,
        /// Print the registry's JSON as it is
        #[arg(long)]
        json: bool,
    },
    /// Force-reclaim a job: evict its owner and make it claimable again
    Reclaim { job_id: String },
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(short = 'H', long, env = "HOST", default_value = "localhost")]
    pub host: String,

    /// Port to listen on (0 picks a free port)
    #[arg(short = 'p', long, env = "PORT", default_value_t = 8000)]
    pub port: u16,

    /// Serve /admin/* only on this port (all interfaces, plain HTTP); unset or 0 serves them on
    /// the public port
    #[arg(long, env = "MCP_MESH_ADMIN_PORT")]
    pub admin_port: Option<String>,

    /// Address the admin port listens on (127.0.0.1 keeps /admin/* to this machine or pod)
    #[arg(long, env = "MCP_MESH_ADMIN_HOST", default_value = "0.0.0.0")]
    pub admin_host: String,

    /// The database: a PostgreSQL URL for production and replicas
    /// (postgres://postgres@127.0.0.1:5432/mesh?sslmode=disable), or an embedded SQLite file for
    /// one process (a path or sqlite://path) [default: mesh_registry.db]. PostgreSQL TLS as
    /// libpq: sslmode=disable|prefer|require|verify-ca|verify-full (prefer when absent, libpq's
    /// default: TLS whenever the server offers it, and a server without TLS still works; the Go
    /// registry assumes require), sslrootcert=<CA file>|system, sslcert=<client certificate>,
    /// sslkey=<its key>
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// TLS on the public port: off (plain HTTP), auto (HTTPS; a client certificate is optional,
    /// one presented must be trusted), strict (HTTPS; every request needs a trusted client
    /// certificate). auto and strict need --tls-cert and --tls-key
    #[arg(long, env = "MCP_MESH_TLS_MODE", default_value = "off", value_parser = TlsMode::parse)]
    pub tls_mode: TlsMode,

    /// The registry's certificate (PEM, the chain leaf first); reloaded when the file changes.
    /// Also its client certificate for calls to agents
    #[arg(long, env = "MCP_MESH_TLS_CERT")]
    pub tls_cert: Option<String>,

    /// The key of --tls-cert (PEM)
    #[arg(long, env = "MCP_MESH_TLS_KEY")]
    pub tls_key: Option<String>,

    /// The CA certificates (PEM) that agents' certificates are checked against when the
    /// registry calls them over HTTPS (cancel forward, /proxy)
    #[arg(long, env = "MCP_MESH_TLS_CA")]
    pub tls_ca: Option<String>,

    /// Registration trust backends, comma-separated, tried in order (filestore)
    #[arg(long, env = "MCP_MESH_TRUST_BACKEND", default_value = "")]
    pub trust_backend: String,

    /// The filestore backend's directory: each *.pem there and in entities/ is one trusted
    /// entity CA; changes are picked up without a restart
    #[arg(long, env = "MCP_MESH_TRUST_DIR")]
    pub trust_dir: Option<String>,

    /// The PostgreSQL schema that holds every table of this registry (created at start; other
    /// applications' tables in the database are never touched)
    #[arg(long, env = "MCP_MESH_DB_SCHEMA", default_value = DEFAULT_DB_SCHEMA,
          value_parser = DbSchema::parse)]
    pub db_schema: DbSchema,

    /// Maximum number of pooled PostgreSQL connections
    #[arg(long, env = "MCP_MESH_DB_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// HTTP worker threads (default: one per CPU)
    #[arg(long, env = "MCP_MESH_HTTP_WORKERS",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub http_workers: Option<u32>,

    /// Largest accepted request body, in bytes
    #[arg(long, env = "MCP_MESH_MAX_BODY_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_body_bytes: u32,

    /// A page of GET /jobs or of a job's events stops once it holds this many bytes of
    /// payloads and results (it always holds one item; the cursor stays valid)
    #[arg(long, env = "MCP_MESH_MAX_PAGE_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_page_bytes: u32,

    /// Most client connections open at once (all workers together); past it new connections
    /// wait in the listen queue
    #[arg(long, env = "MCP_MESH_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most event long-polls parked at once; past it a long-poll gets 503 and retries
    #[arg(long, env = "MCP_MESH_MAX_LONG_POLLS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_long_polls: u32,

    /// Seconds a request relayed by /proxy/* may take in all, streamed answer included, unless
    /// its X-Mesh-Timeout asks otherwise (max 600; an invalid value means the default, 60)
    #[arg(long, env = "MCP_MESH_PROXY_TIMEOUT", allow_hyphen_values = true)]
    pub proxy_timeout: Option<String>,

    /// Request headers /proxy/* forwards to the agent besides its fixed set: comma-separated
    /// names, or prefixes ending in `*` (x-tenant-*); a lone `*` is ignored
    #[arg(long, env = "MCP_MESH_PROPAGATE_HEADERS", default_value = "")]
    pub propagate_headers: String,

    /// Most requests /proxy/* relays at once (all workers together); past it one gets 503
    #[arg(long, env = "MCP_MESH_PROXY_MAX_STREAMS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub proxy_max_streams: u32,
    /// Most event long-polls one client address may hold parked, so that one client cannot take
    /// every slot [default: a quarter of --max-long-polls]. Behind a proxy that hides client
    /// addresses every client shares one address: raise it to --max-long-polls there
    #[arg(long, env = "MCP_MESH_MAX_LONG_POLLS_PER_CLIENT",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_long_polls_per_client: Option<u32>,

    /// Pause between a cancel's synthetic event and its answer, in ms (0 disables, max 10000;
    /// an invalid value means the default, 200)
    #[arg(
        long,
        env = "MCP_MESH_CANCEL_EVENT_GRACE_MS",
        allow_hyphen_values = true
    )]
    pub cancel_event_grace_ms: Option<String>,

    /// Opt-in stale ceiling for jobs without total_deadline, as a Go duration such as 1h
    /// (unset or 0 disables; also caps executor-read lease extensions)
    #[arg(long, env = "MCP_MESH_JOB_STALE_TIMEOUT", allow_hyphen_values = true)]
    pub job_stale_timeout: Option<String>,

    /// Seconds between checks for agents that stopped heartbeating
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub health_check_interval: u64,

    /// Seconds of silence after which an agent is unhealthy (its jobs stay until their leases lapse)
    #[arg(long, env = "DEFAULT_TIMEOUT_THRESHOLD", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub agent_timeout: u64,

    /// Safety sweep period, as a Go duration (invalid, zero or negative means 5m)
    #[arg(long, env = "MCP_MESH_SWEEP_INTERVAL", allow_hyphen_values = true)]
    pub sweep_interval: Option<String>,

    /// How long events of finished jobs and unhealthy agents are kept (Go duration; 0 keeps
    /// them forever; invalid means 1h)
    #[arg(long, env = "MCP_MESH_RETENTION", allow_hyphen_values = true)]
    pub retention: Option<String>,

    /// Delete terminal job rows this long after they finished (Go duration; unset or 0 keeps
    /// them forever)
    #[arg(long, env = "MCP_MESH_JOB_ROW_RETENTION", allow_hyphen_values = true)]
    pub job_row_retention: Option<String>,

    /// After a start, leases are not reclaimed before this has passed, so owners can renew
    /// (Go duration; default 30s)
    #[arg(long, env = "MCP_MESH_STARTUP_GRACE", allow_hyphen_values = true)]
    pub startup_grace: Option<String>,

    /// Serve GET /metrics (Prometheus text format; on the admin port when there is one) and
    /// measure every request for it (true/false)
    #[arg(long, env = "MCP_MESH_METRICS", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub metrics: bool,

    /// How many capabilities get series of their own in mesh_registry_jobs_by_capability (the
    /// ones with the most jobs; the rest are summed as "other"); 0 leaves that metric out
    #[arg(long, env = "MCP_MESH_METRICS_CAPABILITIES", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub metrics_capabilities: u32,

    /// Seconds the database counts of GET /metrics (jobs, agents, live claims) are reused
    /// before a scrape counts again (0: every scrape counts)
    #[arg(long, env = "MCP_MESH_METRICS_REFRESH", default_value_t = 5)]
    pub metrics_refresh: u64,

    /// Export the registry's own spans (one per request, with its store calls and actor
    /// hand-offs) over OTLP/HTTP to this collector URL, e.g. http://otel-collector:4318 (unset:
    /// no export)
    #[arg(long, env = "MCP_MESH_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// The reference's distributed-trace pipeline: consume the spans agents write to the Redis
    /// stream mesh:trace, export them over OTLP, trim the stream, answer /trace/{id} from Tempo
    /// (true enables it; anything else leaves it off)
    #[arg(
        long,
        env = "MCP_MESH_DISTRIBUTED_TRACING_ENABLED",
        default_value = "false"
    )]
    pub distributed_tracing: String,

    /// The Redis that holds the agents' span stream (trace pipeline)
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://localhost:6379",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// The Redis consumer group the trace pipeline reads with; replicas in one group share the
    /// stream, each span exported once [default: mcp-mesh-registry-processors]
    #[arg(long, env = "MCP_MESH_TRACE_CONSUMER_GROUP")]
    pub trace_consumer_group: Option<String>,

    /// Stream entries read (and exported) per batch by the trace pipeline (1-10000; invalid
    /// means 100) [default: 100]
    #[arg(long, env = "TRACE_BATCH_SIZE", allow_hyphen_values = true)]
    pub trace_batch_size: Option<String>,

    /// Span stream entries older than this are trimmed (Go duration; 0 never trims; invalid
    /// means 24h) [default: 24h]
    #[arg(long, env = "MCP_MESH_TRACE_RETENTION", allow_hyphen_values = true)]
    pub trace_retention: Option<String>,

    /// Where the trace pipeline sends spans: otlp (or telemetry), the only kind this registry
    /// has [default: otlp]
    #[arg(long, env = "TRACE_EXPORTER_TYPE")]
    pub trace_exporter_type: Option<String>,

    /// The OTLP collector of the trace pipeline, host:port without a scheme (env
    /// TELEMETRY_ENDPOINT, or OTLP_ENDPOINT) [default: localhost:4317]
    #[arg(long, env = "TELEMETRY_ENDPOINT")]
    pub telemetry_endpoint: Option<String>,

    /// The reference's other name for TELEMETRY_ENDPOINT.
    #[arg(long, env = "OTLP_ENDPOINT", hide = true)]
    pub telemetry_endpoint_alias: Option<String>,

    /// The trace pipeline's OTLP protocol: grpc, or http (protobuf bodies to /v1/traces)
    /// [default: grpc]
    #[arg(long, env = "TELEMETRY_PROTOCOL")]
    pub telemetry_protocol: Option<String>,

    /// Tempo's HTTP API, where GET /trace/{id} reads traces [default: port 3200 of the
    /// TELEMETRY_ENDPOINT host, else http://localhost:3200]
    #[arg(long, env = "TEMPO_URL")]
    pub tempo_url: Option<String>,

    /// The CA certificates (PEM) Redis's certificate must chain to, instead of the public
    /// web's CAs. Any REDIS_TLS_* variable turns TLS on,
    /// as a rediss:// URL does
    #[arg(long, env = "REDIS_TLS_CA")]
    pub redis_tls_ca: Option<String>,

    /// A client certificate (PEM) the trace pipeline presents to Redis, with REDIS_TLS_KEY
    #[arg(long, env = "REDIS_TLS_CERT")]
    pub redis_tls_cert: Option<String>,

    /// The key of REDIS_TLS_CERT (PEM)
    #[arg(long, env = "REDIS_TLS_KEY")]
    pub redis_tls_key: Option<String>,

    /// true: accept any certificate from Redis (encrypted, but not proven to be Redis)
    #[arg(long, env = "REDIS_TLS_SKIP_VERIFY")]
    pub redis_tls_skip_verify: Option<String>,

    /// The CA certificates (PEM) the OTLP collector's certificate must chain to, instead of the public
    /// web's CAs. Any TELEMETRY_TLS_*
    /// variable turns TLS on, as an https:// endpoint does
    #[arg(long, env = "TELEMETRY_TLS_CA")]
    pub telemetry_tls_ca: Option<String>,

    /// A client certificate (PEM) the trace pipeline presents to the OTLP collector, with TELEMETRY_TLS_KEY
    #[arg(long, env = "TELEMETRY_TLS_CERT")]
    pub telemetry_tls_cert: Option<String>,

    /// The key of TELEMETRY_TLS_CERT (PEM)
    #[arg(long, env = "TELEMETRY_TLS_KEY")]
    pub telemetry_tls_key: Option<String>,

    /// true: accept any certificate from the OTLP collector (encrypted, but not proven to be the OTLP collector)
    #[arg(long, env = "TELEMETRY_TLS_SKIP_VERIFY")]
    pub telemetry_tls_skip_verify: Option<String>,

    /// The CA certificates (PEM) Tempo's certificate must chain to, instead of the public
    /// web's CAs (for an https:// TEMPO_URL)
    #[arg(long, env = "TEMPO_TLS_CA")]
    pub tempo_tls_ca: Option<String>,

    /// A client certificate (PEM) the trace pipeline presents to Tempo, with TEMPO_TLS_KEY
    #[arg(long, env = "TEMPO_TLS_CERT")]
    pub tempo_tls_cert: Option<String>,

    /// The key of TEMPO_TLS_CERT (PEM)
    #[arg(long, env = "TEMPO_TLS_KEY")]
    pub tempo_tls_key: Option<String>,

    /// true: accept any certificate from Tempo (encrypted, but not proven to be Tempo)
    #[arg(long, env = "TEMPO_TLS_SKIP_VERIFY")]
    pub tempo_tls_skip_verify: Option<String>,

    /// Seconds to let in-flight requests finish after SIGTERM/SIGINT
    #[arg(long, env = "MCP_MESH_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// Serve the dashboard at /ui (true/false): on the admin port when one is set, with its
    /// actions (cancel, force-reclaim, drain, resume); else read-only on the public port
    #[arg(long, env = "MCP_MESH_UI", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub ui: bool,

    /// Log level: TRACE, DEBUG, INFO, WARNING, ERROR or CRITICAL (RUST_LOG, when set, wins)
    #[arg(long, env = "MCP_MESH_LOG_LEVEL", default_value = "INFO")]
    pub log_level: String,

    /// Force DEBUG logging (true/false, 1/0, yes/no)
    #[arg(long, env = "MCP_MESH_DEBUG_MODE", default_value_t = false, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub debug_mode: bool,
}
