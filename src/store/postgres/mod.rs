//! The PostgreSQL backend: the source of truth for every job's status, owner, claim epoch and
//! lease across replicas. Every change of ownership is ONE guarded statement whose WHERE clause
//! says what must still be true, and each "0 rows" outcome has a named meaning.
//!
//! Hot paths are one round trip each (prepared statements, cached per connection).

mod admin;
mod agents;
mod batch;
mod events;
mod import;
mod jobs;
mod namespace;
mod notify;
mod replan;
mod schema;
mod sweep;
pub mod tls;
mod writes;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounter};
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::model::PoolStatus;
use super::{Backend, ConnectError, DbSchema, Storage, StoreError};

/// The lease window of jobs without `max_duration`, as statements take it (seconds).
const DEFAULT_LEASE_SECONDS: f64 = crate::domain::jobs::DEFAULT_LEASE_WINDOW.as_secs_f64();

/// How long a request may wait for a pooled connection, or for a new one to open, before the
/// store reports the database unavailable (the caller answers 503 instead of hanging).
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub(super) struct PgStore {
    pool: Pool,
    /// For the connections that live outside the pool (schema changes).
    pg: Arc<tokio_postgres::Config>,
    /// TLS for every connection, pooled or not (see `tls`).
    tls: MakeRustlsConnect,
    /// `host:port/dbname`, for messages.
    target: Arc<str>,
    /// The schema that holds every object of ours; every connection looks there first.
    schema: DbSchema,
    /// Where this schema's replicas notify each other (see `notify`).
    channels: Arc<notify::Channels>,
    /// This process among the replicas (to skip its own announcements).
    replica: Arc<str>,
    /// Group commit of the hot writes (started with the server; `None` for the CLI's stores).
    batches: Option<Arc<Batches>>,
    /// When to prepare the statements again, for the tables as they have grown (see `replan`).
    replan: Arc<replan::Replan>,
    instruments: Instruments,
}

/// What the store measures of itself for `GET /metrics` (registered by `crate::metrics`).
#[derive(Clone)]
struct Instruments {
    /// Calls per shared statement, by kind (see `batch`).
    batch_sizes: HistogramVec,
    /// Calls that waited `POOL_TIMEOUT` for a connection in vain.
    pool_timeouts: IntCounter,
}

impl Instruments {
    fn new() -> Instruments {
        let sizes = HistogramOpts::new(
            "mesh_registry_db_batch_size",
            "Calls carried by each group-committed statement, by kind.",
        )
        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]);
        Instruments {
            batch_sizes: HistogramVec::new(sizes, &["kind"]).expect("valid metric"),
            pool_timeouts: IntCounter::new(
                "mesh_registry_db_pool_timeouts_total",
                "Calls that found no free PostgreSQL connection within 5 s (answered 503).",
            )
            .expect("valid metric"),
        }
    }
}

/// The hot calls that are grouped (see `batch`): reads into shared statements, writes of every
/// kind into shared transactions (see `writes`).
struct Batches {
    reads: batch::Batcher<uuid::Uuid, Option<crate::wire::Job>>,
    writes: batch::Batcher<writes::Write, writes::Written>,
}

/// Statements in flight per kind, and calls per statement, at most.
const BATCH_SLOTS: usize = 1;
const BATCH_MAX: usize = 64;

impl PgStore {
    /// Opens the pool and starts the group commit of the hot paths (the server's store).
    pub(super) async fn connect(
        database_url: &str,
        schema: &DbSchema,
        pool_size: usize,
    ) -> Result<PgStore, ConnectError> {
        let mut store = PgStore::open(database_url, schema, pool_size)?;
        let (for_reads, for_writes) = (store.clone(), store.clone());
        let sizes = |kind: &str| store.instruments.batch_sizes.with_label_values(&[kind]);
        store.batches = Some(Arc::new(Batches {
            reads: batch::Batcher::start(BATCH_SLOTS, BATCH_MAX, sizes("read"), move |ids| {
                let store = for_reads.clone();
                async move { store.get_jobs(ids).await }
            }),
            writes: batch::Batcher::start(BATCH_SLOTS, BATCH_MAX, sizes("write"), move |writes| {
                let store = for_writes.clone();
                async move { store.apply_writes(writes).await }
            }),
        }));
        Ok(store)
    }

    /// Parses the URL and builds the pool; connects lazily, touches nothing.
    pub(super) fn open(
        database_url: &str,
        schema: &DbSchema,
        pool_size: usize,
    ) -> Result<PgStore, ConnectError> {
        let (database_url, tls) = tls::split_url(database_url).map_err(ConnectError::InvalidUrl)?;
        let mut pg = tokio_postgres::Config::from_str(&database_url)
            .map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
        pg.ssl_mode(tls.wire_mode());
        let tls = tls.connector().map_err(ConnectError::Tls)?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(POOL_TIMEOUT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("mesh-registry");
        }
        // A connection whose server vanished is noticed, not waited on forever.
        pg.keepalives(true).keepalives_idle(Duration::from_secs(10));
        // Every statement is prepared once per connection and reused: plan it once too (the
        // default re-plans statements with array parameters on every execution). Names resolve
        // in our schema only, never in `public`, where the Go registry's tables may be
        // (docs/operations.md#sharing-a-database); given last, it wins over a search_path in
        // the URL's own options.
        let ours = format!("-c plan_cache_mode=force_generic_plan -c search_path={schema}");
        let options = match pg.get_options() {
            Some(given) => format!("{given} {ours}"),
            None => ours,
        };
        pg.options(&options);
        let target = describe_target(&pg);
        let manager = Manager::from_config(
            pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| ConnectError::InvalidUrl(e.to_string()))?;
        Ok(PgStore {
            pool,
            pg: Arc::new(pg),
            tls,
            target: target.into(),
            schema: schema.clone(),
            channels: Arc::new(notify::Channels::of(schema)),
            replica: uuid::Uuid::new_v4().simple().to_string().into(),
            batches: None,
            replan: Arc::new(replan::Replan::new()),
            instruments: Instruments::new(),
        })
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|error| {
            if matches!(error, deadpool_postgres::PoolError::Timeout(_)) {
                self.instruments.pool_timeouts.inc();
            }
            StoreError::Pool(error)
        })
    }
}

impl Storage for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn pool_status(&self) -> Option<PoolStatus> {
        let status = self.pool.status();
        Some(PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        })
    }

    fn instruments(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.instruments.batch_sizes.clone()),
            Box::new(self.instruments.pool_timeouts.clone()),
        ]
    }

    /// `host:port/dbname` (never the password).
    fn target(&self) -> &str {
        &self.target
    }

    fn connect_error(&self, error: StoreError) -> ConnectError {
        let target = self.target.to_string();
        match error {
            StoreError::Pool(reason) => ConnectError::Unreachable {
                target,
                reason: pool_error_reason(reason),
            },
            StoreError::Db(error) if refused_connection(&error) => ConnectError::Unreachable {
                target,
                reason: connection_error_reason(&error),
            },
            other => ConnectError::Schema {
                target,
                reason: other.to_string(),
            },
        }
    }
}

/// `host:port/dbname` for messages: never the password.
fn describe_target(pg: &tokio_postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let db = pg.get_dbname().or(pg.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// The underlying cause of a failed connection attempt, without deadpool's wrapping.
fn pool_error_reason(error: deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(e) => connection_error_reason(&e),
        deadpool_postgres::PoolError::Timeout(_) => {
            format!("no connection within {}s", POOL_TIMEOUT.as_secs())
        }
        other => other.to_string(),
    }
}

/// Whether an error means no session could be had (no server, TLS refused either way, a role
/// not allowed in, no such database), rather than a session that failed a statement.
fn refused_connection(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_none_or(|db| {
        let code = db.code().code();
        // 08: connection exception; 28: invalid authorization; 3D000: no such database.
        code.starts_with("08") || code.starts_with("28") || code == "3D000"
    })
}

/// The server's message, or the client-side error with its causes (a TLS handshake's "invalid
/// peer certificate: UnknownIssuer" is in the causes, not in the error's own text).
fn connection_error_reason(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.message().to_owned();
    }
    let mut reason = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        reason = format!("{reason}: {inner}");
        cause = inner.source();
    }
    reason
}

/// Reads a column, turning a type mismatch into an error instead of a panic.
fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    name: &str,
) -> Result<T, StoreError> {
    Ok(row.try_get(name)?)
}
