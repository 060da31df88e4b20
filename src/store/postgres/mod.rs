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
mod schema;
mod sweep;
pub mod tls;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::model::{ClaimCall, ClaimOutcome, DeltaOutcome, DeltaUpdate, NewJob};
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
}

/// The hot writes that are grouped into shared statements (see `batch`).
struct Batches {
    reads: batch::Batcher<uuid::Uuid, Option<crate::wire::Job>>,
    submits: batch::Batcher<NewJob, ()>,
    claims: batch::Batcher<ClaimCall, ClaimOutcome>,
    deltas: batch::Batcher<DeltaUpdate, DeltaOutcome>,
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
        let (for_reads, for_submits) = (store.clone(), store.clone());
        let (for_claims, for_deltas) = (store.clone(), store.clone());
        store.batches = Some(Arc::new(Batches {
            reads: batch::Batcher::start(BATCH_SLOTS, BATCH_MAX, move |ids| {
                let store = for_reads.clone();
                async move { store.get_jobs(ids).await }
            }),
            submits: batch::Batcher::start(BATCH_SLOTS, BATCH_MAX, move |jobs| {
                let store = for_submits.clone();
                async move { store.create_jobs(jobs).await }
            }),
            claims: batch::Batcher::start(BATCH_SLOTS, BATCH_MAX, move |calls| {
                let store = for_claims.clone();
                async move { store.claim_many(calls).await }
            }),
            deltas: batch::Batcher::start(BATCH_SLOTS, BATCH_MAX, move |deltas| {
                let store = for_deltas.clone();
                async move { store.apply_deltas(deltas).await }
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
        })
    }

    async fn conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }
}

impl Storage for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
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
