//! The store: the one place that holds SQL, behind one boundary with two implementations.
//!
//! * `postgres`: the production backend, and the only one for several replicas. Every change of
//!   ownership is ONE guarded statement whose WHERE clause says what must still be true; hot
//!   paths are one round trip each, grouped under load (group commit).
//! * `embedded`: a single SQLite file in the working directory, the default when no
//!   `DATABASE_URL` is given, so one command serves a local mesh. One process owns the file (a
//!   lock); one thread owns the connection, so each call is atomic by construction.
//!
//! The HTTP layer and the actors see only `Store`; which backend runs is decided by the URL.

/// A live job is one still being worked on; everything else is terminal (absorbing).
macro_rules! live {
    () => {
        "('working', 'input_required')"
    };
}

/// Every column of the wire `Job`, in one list so reads cannot drift apart.
macro_rules! job_columns {
    () => {
        "job_id, capability, owner_instance_id, claim_epoch, status, progress, progress_message, \
         result, error, submitted_payload, recv_cursor, attempt_count, max_retries, max_duration, \
         total_deadline, lease_expires_at, last_heartbeat_at, submitted_at, submitted_by"
    };
}

/// Every column of an agent row.
macro_rules! agent_columns {
    () => {
        "agent_id, name, agent_type, runtime, version, description, namespace, http_host, \
         http_port, a2a_producer, a2a_consumer, status, created_at, updated_at"
    };
}

/// The SET list that takes a live job from its owner (T7, T8, T9): back to the queue as
/// `working`, or `failed` with `$error` when its retry budget is spent (then stamped `$now`,
/// the backend's spelling of the current time). Epoch, attempts and cursor are kept.
macro_rules! requeue_or_fail {
    ($error:literal, $now:literal) => {
        concat!(
            "status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END, \
             error = CASE WHEN attempt_count > max_retries THEN '",
            $error,
            "' ELSE error END, \
             last_heartbeat_at = CASE WHEN attempt_count > max_retries THEN ",
            $now,
            " END, owner_instance_id = NULL, lease_expires_at = NULL "
        )
    };
}

mod embedded;
mod model;
mod postgres;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mesh_registry_actors::{
    AgentDirectory, Expired, HeartbeatsRecorded, JobDirectory, LeaseChange, LeaseCheck, LeaseHeld,
    StoreFuture, StoredLiveness, SweepPhase, SweepReport,
};
use tokio::sync::mpsc;
use uuid::Uuid;

pub use model::{
    AgentRow, CancelOutcome, ClaimAfter, ClaimCall, ClaimOutcome, DeltaOutcome, DeltaUpdate,
    EventFilter, ExecutorRead, JobListQuery, Liveness, MeshSnapshot, NewJob, NewRegistration,
    NewTool, Notice, PostEventOutcome, ReclaimOutcome, Registered, ReleaseOutcome, SchemaPiece,
    SchemaReport, ToolRow,
};

use crate::wire::{AgentStatus, Job, JobEvent, RawJson, RejectReason};

/// The file the embedded backend uses when no `DATABASE_URL` is given (the reference's name).
pub const DEFAULT_EMBEDDED_FILE: &str = "mcp_mesh_registry.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored value not understood: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(String),
    /// The shared statement a call was part of failed (the message is the statement's error).
    #[error("{0}")]
    Batch(String),
    /// A feature the running backend does not have (the message says which, and why).
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Why the registry could not start on the configured database.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    #[error("cannot reach PostgreSQL at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("cannot open the database file {target}: {reason}")]
    File { target: String, reason: String },
    #[error(
        "the database file {target} is in use by another registry process; the embedded \
         store serves one process only (stop the other one, or use PostgreSQL for several \
         replicas)"
    )]
    Locked { target: String },
    #[error("cannot prepare the schema on {target}: {reason}")]
    Schema { target: String, reason: String },
}

/// Which backend a store runs on, and what it can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Embedded,
}

impl Backend {
    /// Chosen by the URL: `postgres://`/`postgresql://` is PostgreSQL; anything else (a path,
    /// `sqlite://path`, or nothing at all) is the embedded file.
    pub fn of(database_url: &str) -> Backend {
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Embedded
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Embedded => "embedded SQLite",
        }
    }
}

/// Job statements: submit, read, list, claim, owner deltas, release, cancel, force reclaim and
/// the executor read's lease extension (contract §1.5 T1–T7).
#[async_trait]
pub trait JobStore {
    /// T1.
    async fn create_job(&self, job: NewJob) -> Result<(), StoreError>;
    async fn get_job(&self, job_id: Uuid) -> Result<Option<Job>, StoreError>;
    /// Newest first, `(submitted_at, job_id)` descending; at most `query.limit` rows.
    async fn list_jobs(&self, query: &JobListQuery) -> Result<Vec<Job>, StoreError>;
    /// T2: the FIFO-oldest claimable job of the capability, in `(submitted_at, job_id)` order.
    /// Rows past their retry budget are not claimable and never block the queue. A claimer
    /// whose tool for this capability has required dependencies is `Gated` until the caller
    /// has checked them and asks again with `gate_checked`.
    async fn claim_next(&self, call: ClaimCall) -> Result<ClaimOutcome, StoreError>;
    /// T3: a guarded update that re-asserts owner, liveness and (when the delta carries one)
    /// the claim epoch. A rejected delta touches nothing: no lease extension, no cursor advance.
    async fn apply_delta(&self, delta: DeltaUpdate) -> Result<DeltaOutcome, StoreError>;
    /// Why a delta from `instance_id` cannot apply to the job as it is now (`None`: nothing
    /// stands in the way).
    async fn delta_rejection(
        &self,
        instance_id: &str,
        job_id: Uuid,
        claim_epoch: Option<i64>,
    ) -> Result<Option<RejectReason>, StoreError>;
    /// T5 with decisions row 8: the owner gives the job back (fails past its budget).
    async fn release_job(
        &self,
        job_id: Uuid,
        instance_id: &str,
        reason: &str,
    ) -> Result<ReleaseOutcome, StoreError>;
    /// T6: cancel and append the synthetic `cancelled` event atomically. `error_reason` is the
    /// trimmed reason (empty = leave `error` alone); `event_reason` goes in the event payload.
    async fn cancel_job(
        &self,
        job_id: Uuid,
        error_reason: &str,
        event_reason: &str,
    ) -> Result<CancelOutcome, StoreError>;
    /// T7 with decisions row 9: force the job back to the queue (or fail it past its budget).
    async fn reclaim_job(&self, job_id: Uuid) -> Result<ReclaimOutcome, StoreError>;
    /// T4 and the fencing of executor reads (contract §2.6, §3.3): when the caller owns the
    /// live job at that epoch, its lease is extended to `now + window`, capped by
    /// `total_deadline` (or else by the opt-in stale ceiling), and only if that is later.
    async fn authorize_executor_read(
        &self,
        job_id: Uuid,
        instance_id: &str,
        claim_epoch: i64,
        stale_timeout: Option<Duration>,
    ) -> Result<ExecutorRead, StoreError>;
}

/// The event log of each job (contract §2.6, §2.7, §5).
#[async_trait]
pub trait EventStore {
    /// Events with `seq > after` (of the wanted types), ascending, at most `limit`; `None`
    /// when the job does not exist.
    async fn list_events(
        &self,
        job_id: Uuid,
        filter: &EventFilter,
    ) -> Result<Option<Vec<JobEvent>>, StoreError>;
    /// Appends an event to a live job with the next gap-free seq (decisions row 15).
    async fn post_event(
        &self,
        job_id: Uuid,
        event_type: &str,
        payload: Option<&RawJson>,
        trace_context: Option<&RawJson>,
    ) -> Result<PostEventOutcome, StoreError>;
}

/// Agents: registration, liveness, deregistration and what resolution reads. An agent that
/// goes away keeps its claims until their leases lapse (docs/ownership.md): an older SDK keeps running a job after it deregisters.
#[async_trait]
pub trait AgentStore {
    /// Registers or refreshes an agent from a full heartbeat; the topology version moves only
    /// when the agent is new, comes back, or changed what it offers.
    async fn register_agent(&self, agent: &NewRegistration<'_>) -> Result<Registered, StoreError>;
    /// The agent turns unhealthy: the new topology version when it was live. Its jobs stay
    /// with it until their leases lapse.
    async fn deregister_agent(&self, agent_id: &str) -> Result<Option<i64>, StoreError>;
    /// Agents silent for longer than `silent_for` turn unhealthy (their jobs stay with them
    /// until their leases lapse).
    async fn expire_silent_agents(
        &self,
        silent_for: Duration,
    ) -> Result<(Vec<String>, Option<i64>), StoreError>;
    /// Stamps collected HEAD heartbeats (live agents only); every agent's status, and the
    /// topology version.
    async fn record_heartbeats(
        &self,
        agent_ids: &[String],
    ) -> Result<(Vec<(String, AgentStatus)>, Option<i64>), StoreError>;
    async fn agent_liveness(&self, agent_id: &str) -> Result<Option<Liveness>, StoreError>;
    /// Claimable jobs (capped at 100) for the capabilities of every agent sharing this
    /// agent's name (decisions row 18).
    async fn pending_jobs_for(&self, agent_id: &str) -> Result<i64, StoreError>;
    /// Every agent and tool, without the tools' LLM fields (`None`).
    async fn mesh_snapshot(&self) -> Result<MeshSnapshot, StoreError>;
    /// Every agent and tool with the tools' LLM fields (input schema, `llm_filter`,
    /// `llm_provider`): a heavier read, for LLM resolution and listing.
    async fn llm_snapshot(&self) -> Result<MeshSnapshot, StoreError>;
    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>, StoreError>;
}

/// Leases and the safety sweep (contract §4; decisions rows 10, 11, 19).
#[async_trait]
pub trait LeaseStore {
    /// Every live claim with a lease, for the supervisor to watch after a start.
    async fn live_claims(&self) -> Result<Vec<LeaseHeld>, StoreError>;
    /// Reclaims this claim (epoch) only if its lease has expired; else what to watch now.
    async fn reclaim_if_expired(
        &self,
        job_id: Uuid,
        claim_epoch: i64,
    ) -> Result<LeaseCheck, StoreError>;
    async fn sweep(&self, phase: SweepPhase) -> Result<SweepReport, StoreError>;
}

/// Drain bookkeeping, cross-replica notifications and the health of the connection.
#[async_trait]
pub trait AdminStore {
    /// Owned live jobs across the whole database (contract §7.2).
    async fn count_live_claims(&self) -> Result<i64, StoreError>;
    /// The fleet-wide drain flag (decisions row 16); PostgreSQL only.
    async fn set_fleet_draining(&self, draining: bool) -> Result<(), StoreError>;
    async fn fleet_draining(&self) -> Result<bool, StoreError>;
    /// Tells the other replicas about lease changes made here.
    async fn announce_leases(&self, changes: &[LeaseChange]) -> Result<(), StoreError>;
    /// Notices from other replicas; `None` where there can be no other replica.
    fn listen(&self) -> Option<mpsc::Receiver<Notice>>;
    /// One cheap round trip: is the database answering?
    async fn ping(&self) -> Result<(), StoreError>;
    /// Releases the database (connections, the embedded file's lock) once the server stopped;
    /// calls after it fail.
    async fn close(&self);
}

/// Schema reconciliation (decisions row 17) and the operator's `migrate` commands.
#[async_trait]
pub trait SchemaStore {
    /// Start-up reconciliation: migrate what is pending, then verify the model.
    async fn prepare_schema(&self) -> Result<(), StoreError>;
    /// Applies what is pending (up to version N); the names of what was applied.
    async fn migrate_up(&self, up_to: Option<u32>) -> Result<Vec<String>, StoreError>;
    async fn schema_report(&self) -> Result<SchemaReport, StoreError>;
    /// Drops everything the model does not know; returns what was dropped.
    async fn prune(&self) -> Result<Vec<SchemaPiece>, StoreError>;
}

/// A backend: every concern of the store, plus what it is.
pub trait Storage:
    JobStore + EventStore + AgentStore + LeaseStore + AdminStore + SchemaStore + Send + Sync
{
    fn backend(&self) -> Backend;
    /// Where the data lives, for messages (never a password).
    fn target(&self) -> &str;
    /// Names a failure to reach or prepare the database for the one-line start-up error.
    fn connect_error(&self, error: StoreError) -> ConnectError;
}

/// The store the application holds: one backend behind the boundary, cheap to clone.
#[derive(Clone)]
pub struct Store(Arc<dyn Storage>);

impl Deref for Store {
    type Target = dyn Storage;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl Store {
    /// Opens the backend the URL names and reconciles its schema: what the server does at
    /// start. An empty URL is the embedded file in the working directory.
    pub async fn connect(database_url: &str, pool_size: usize) -> Result<Store, ConnectError> {
        let store = match Backend::of(database_url) {
            Backend::Postgres => Store(Arc::new(
                postgres::PgStore::connect(database_url, pool_size).await?,
            )),
            Backend::Embedded => Store(Arc::new(embedded::EmbeddedStore::open(database_url)?)),
        };
        store
            .prepare_schema()
            .await
            .map_err(|error| store.connect_error(error))?;
        Ok(store)
    }

    /// Opens the backend without touching the schema (the `migrate` commands).
    pub fn open(database_url: &str) -> Result<Store, ConnectError> {
        Ok(match Backend::of(database_url) {
            Backend::Postgres => Store(Arc::new(postgres::PgStore::open(database_url, 1)?)),
            Backend::Embedded => Store(Arc::new(embedded::EmbeddedStore::open(database_url)?)),
        })
    }
}

/// The supervisor's storage, served by whichever backend runs.
impl JobDirectory for Store {
    fn live_claims(&self) -> StoreFuture<Vec<LeaseHeld>> {
        let store = self.clone();
        Box::pin(async move { store.0.live_claims().await.map_err(|e| e.to_string()) })
    }

    fn reclaim_if_expired(&self, job_id: Uuid, claim_epoch: i64) -> StoreFuture<LeaseCheck> {
        let store = self.clone();
        Box::pin(async move {
            store
                .0
                .reclaim_if_expired(job_id, claim_epoch)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn sweep(&self, phase: SweepPhase) -> StoreFuture<SweepReport> {
        let store = self.clone();
        Box::pin(async move { store.0.sweep(phase).await.map_err(|e| e.to_string()) })
    }

    fn fleet_draining(&self) -> StoreFuture<bool> {
        let store = self.clone();
        Box::pin(async move { store.0.fleet_draining().await.map_err(|e| e.to_string()) })
    }

    fn announce(&self, changes: Vec<LeaseChange>) -> StoreFuture<()> {
        let store = self.clone();
        Box::pin(async move {
            store
                .0
                .announce_leases(&changes)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The agent tracker's storage, served by whichever backend runs.
impl AgentDirectory for Store {
    fn liveness(&self, agent_id: String) -> StoreFuture<Option<StoredLiveness>> {
        let store = self.clone();
        Box::pin(async move {
            let liveness = store
                .agent_liveness(&agent_id)
                .await
                .map_err(|e| e.to_string())?;
            Ok(liveness.map(|l| StoredLiveness {
                healthy: l.status != AgentStatus::Unhealthy,
                topology_seen: l.topology_seen,
                topology_version: l.topology_version,
            }))
        })
    }

    fn record_heartbeats(&self, agent_ids: Vec<String>) -> StoreFuture<HeartbeatsRecorded> {
        let store = self.clone();
        Box::pin(async move {
            let (statuses, topology_version) = store
                .0
                .record_heartbeats(&agent_ids)
                .await
                .map_err(|e| e.to_string())?;
            Ok(HeartbeatsRecorded {
                healthy: statuses
                    .into_iter()
                    .map(|(id, status)| (id, status != AgentStatus::Unhealthy))
                    .collect(),
                topology_version,
            })
        })
    }

    fn expire_silent(&self, silent_for: Duration) -> StoreFuture<Expired> {
        let store = self.clone();
        Box::pin(async move {
            let (agent_ids, topology_version) = store
                .expire_silent_agents(silent_for)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Expired {
                agent_ids,
                topology_version,
            })
        })
    }
}
