//! The store: the one place that holds SQL, behind one boundary with two implementations.
//!
//! * `postgres`: the production backend, and the only one for several replicas. Every change of
//!   ownership is ONE guarded statement whose WHERE clause says what must still be true; hot
//!   paths are one round trip each, grouped under load (group commit).
//! * `embedded`: a single SQLite file in the working directory, the default when no
//!   `DATABASE_URL` is given, so one command serves a local mesh. One process owns the file (a
//!   lock); one thread owns the connection, so each call is atomic by construction.
//!
//! Each statement is written whole in its own file, `<backend>/sql/<name>.sql`, with its guard
//! and why; the rules the statements apply come from `crate::domain`.
//!
//! The service layer and the actors see only `Store`; which backend runs is decided by the URL.

mod embedded;
mod model;
mod namespace;
mod postgres;
mod schema;

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mesh_registry_actors::{
    AgentDirectory, Expired, HeartbeatsRecorded, JobDirectory, LeaseChange, LeaseCheck, LeaseHeld,
    StoreFuture, StoredLiveness, SweepPhase, SweepReport,
};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use uuid::Uuid;

pub use model::{
    AgentRow, AuditEvent, AuditWrite, CancelOutcome, Change, Changed, ClaimAfter, ClaimCall,
    ClaimOutcome, DeltaOutcome, DeltaUpdate, EventFilter, ExecutorRead, JobCount, JobListQuery,
    JobPage, Liveness, MeshEvent, MeshEventQuery, MeshSnapshot, NewJob, NewRegistration, NewTool,
    Notice, PoolStatus, PostEventOutcome, PublishedSchema, ReclaimOutcome, RegisterOutcome,
    Registered, ReleaseOutcome, SchemaEntry, Tally, ToolRow,
};
pub use namespace::{DbSchema, DEFAULT_DB_SCHEMA};
pub use schema::{SchemaPiece, SchemaReport};

use crate::domain::jobs::JobState;
use crate::domain::registry_events::AuditMemory;
use crate::wire::{AgentStatus, Job, JobEvent, RawJson};

/// The file the embedded backend uses when no `DATABASE_URL` is given: a name of its own, not
/// the Go registry's `mcp_mesh_registry.db` (docs/configuration.md#the-embedded-file).
pub const DEFAULT_EMBEDDED_FILE: &str = "mesh_registry.db";

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

impl StoreError {
    /// Whether the database refused a row (bad data, a constraint, a limit such as an index
    /// entry's size, a deadlock) rather than the connection failing: retrying each call of a
    /// shared statement alone then isolates the caller at fault.
    pub fn blames_a_row(&self) -> bool {
        let StoreError::Db(error) = self else {
            return false;
        };
        error
            .code()
            .is_some_and(|code| matches!(&code.code()[..2], "22" | "23" | "40" | "54"))
    }
}

/// Why the registry could not start on the configured database.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    #[error("PostgreSQL TLS: {0}")]
    Tls(String),
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

/// The URL as it may be shown (logs, errors, `Debug`): a password in it becomes `***`, whether
/// in the user part (`postgres://user:secret@host`) or as a `password=` parameter.
pub fn redact_url(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme_end) = shown.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = shown[authority_start..]
            .find(['/', '?'])
            .map_or(shown.len(), |i| authority_start + i);
        if let Some(at) = shown[authority_start..authority_end].rfind('@') {
            let userinfo = &shown[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                let secret = authority_start + colon + 1..authority_start + at;
                shown.replace_range(secret, "***");
            }
        }
    }
    let lower = shown.to_ascii_lowercase();
    let mut redacted = String::with_capacity(shown.len());
    let mut rest = 0;
    for (at, _) in lower.match_indices("password=") {
        if at < rest {
            continue;
        }
        let value_start = at + "password=".len();
        let value_end = shown[value_start..]
            .find(['&', ' '])
            .map_or(shown.len(), |i| value_start + i);
        redacted.push_str(&shown[rest..value_start]);
        redacted.push_str("***");
        rest = value_end;
    }
    redacted.push_str(&shown[rest..]);
    redacted
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
/// the executor read's lease extension (docs/state-machine.md#transitions).
#[async_trait]
pub trait JobStore {
    /// Submit (docs/state-machine.md#submit).
    async fn create_job(&self, job: NewJob) -> Result<(), StoreError>;
    async fn get_job(&self, job_id: Uuid) -> Result<Option<Job>, StoreError>;
    /// Newest first, `(submitted_at, job_id)` descending; at most `query.limit` rows.
    /// The page stops once it holds `max_bytes` of payloads, results and messages (it always
    /// holds one job): a page of big jobs cannot take the registry's memory.
    async fn list_jobs(&self, query: &JobListQuery, max_bytes: i64) -> Result<JobPage, StoreError>;
    /// Claim (docs/state-machine.md#claim): the FIFO-oldest claimable job of the capability, in
    /// `(submitted_at, job_id)` order. Rows past their retry budget are not claimable and never
    /// block the queue. A claimer whose tool for this capability has required dependencies is
    /// `Gated` until the caller has checked them and asks again with `gate_checked`.
    async fn claim_next(&self, call: ClaimCall) -> Result<ClaimOutcome, StoreError>;
    /// Update (docs/state-machine.md#update): a guarded write that re-asserts owner, liveness
    /// and (when the delta carries one) the claim epoch. A rejected delta touches nothing: no
    /// lease extension, no cursor advance.
    async fn apply_delta(&self, delta: DeltaUpdate) -> Result<DeltaOutcome, StoreError>;
    /// Status, owner and epoch as they are now: what names the reason a write was refused.
    async fn job_state(&self, job_id: Uuid) -> Result<Option<JobState>, StoreError>;
    /// Release (docs/state-machine.md#release): the owner gives the job back, `input_required`
    /// too (docs/contract.md#diff-release-input-required); past its budget the job fails with
    /// `exhausted_error`.
    async fn release_job(
        &self,
        job_id: Uuid,
        instance_id: &str,
        exhausted_error: &str,
    ) -> Result<ReleaseOutcome, StoreError>;
    /// Cancel (docs/state-machine.md#cancel) and append the synthetic `cancelled` event
    /// atomically. `error` replaces the job's error when given; `event_reason` goes in the event
    /// payload as the caller sent it.
    async fn cancel_job(
        &self,
        job_id: Uuid,
        error: Option<&str>,
        event_reason: &str,
    ) -> Result<CancelOutcome, StoreError>;
    /// Force reclaim (docs/state-machine.md#force-reclaim): the job goes back to the queue, or
    /// fails past its budget (docs/contract.md#diff-reclaim-over-budget).
    async fn reclaim_job(&self, job_id: Uuid) -> Result<ReclaimOutcome, StoreError>;
    /// Renew-on-read and the fencing of executor reads (docs/state-machine.md#renew-on-read,
    /// docs/contract.md#executor-read): when the caller owns the live job at that epoch, its
    /// lease is extended to `now + window`, capped by `total_deadline` (or else by the opt-in
    /// stale ceiling), and only if that is later.
    async fn authorize_executor_read(
        &self,
        job_id: Uuid,
        instance_id: &str,
        claim_epoch: i64,
        stale_timeout: Option<Duration>,
    ) -> Result<ExecutorRead, StoreError>;
}

/// The event log of each job (docs/contract.md#events-endpoints).
#[async_trait]
pub trait EventStore {
    /// Events with `seq > after` (of the wanted types), ascending, at most `limit`; `None`
    /// when the job does not exist.
    /// (The page stops once it holds `max_bytes` of payloads; it always holds one event.)
    async fn list_events(
        &self,
        job_id: Uuid,
        filter: &EventFilter,
        max_bytes: i64,
    ) -> Result<Option<Vec<JobEvent>>, StoreError>;
    /// Appends an event to a live job with the next gap-free seq
    /// (docs/contract.md#diff-event-seq).
    async fn post_event(
        &self,
        job_id: Uuid,
        event_type: &str,
        payload: Option<&RawJson>,
        trace_context: Option<&RawJson>,
        posted_by: Option<&str>,
    ) -> Result<PostEventOutcome, StoreError>;
}

/// Agents: registration, liveness, deregistration and what resolution reads. An agent that
/// goes away keeps its claims until their leases lapse (docs/ownership.md): an older SDK keeps
/// running a job after it deregisters.
#[async_trait]
pub trait AgentStore {
    /// Registers or refreshes an agent from a full heartbeat; the topology version moves only
    /// when the agent is new, comes back, or changed what it offers.
    /// A registration that declares required dependencies is first checked, against every
    /// other agent's, for a cycle it would close (refused then, nothing stored); that check and
    /// the write are serialized across replicas. Refused too, with nothing written, when
    /// another entity vouched for the agent (`domain::agents::entity_may_update`).
    async fn register_agent(
        &self,
        agent: &NewRegistration<'_>,
    ) -> Result<RegisterOutcome, StoreError>;
    /// `POST /admin/rotate`: how many healthy agents (of `entity_id`, or all) must register
    /// again, and, when there are any, the new topology version that tells them so.
    async fn rotate_agents(
        &self,
        entity_id: Option<&str>,
    ) -> Result<(i64, Option<i64>), StoreError>;
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
    /// agent's name (docs/contract.md#diff-pending-header).
    async fn pending_jobs_for(&self, agent_id: &str) -> Result<i64, StoreError>;
    /// Every agent and tool, without the tools' LLM fields (`None`).
    async fn mesh_snapshot(&self) -> Result<MeshSnapshot, StoreError>;
    /// Every agent and tool with the tools' LLM fields (input schema, `llm_filter`,
    /// `llm_provider`): a heavier read, for LLM resolution and listing.
    async fn llm_snapshot(&self) -> Result<MeshSnapshot, StoreError>;
    async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>, StoreError>;
    /// The agents the proxy may reach as `host:port`: an HTTP endpoint on `port` whose
    /// registered host, id or name is `host`, by id.
    async fn proxy_candidates(&self, host: &str, port: i32) -> Result<Vec<AgentRow>, StoreError>;
    /// The schema store, newest first (`GET /schemas`).
    async fn schema_entries(&self, limit: i64) -> Result<Vec<SchemaEntry>, StoreError>;
    async fn schema_entry(&self, hash: &str) -> Result<Option<SchemaEntry>, StoreError>;
    /// The canonical output schemas of the tools that published one (for schema matching).
    async fn published_output_schemas(&self) -> Result<Vec<SchemaEntry>, StoreError>;
    /// The registry's event log, newest first (`GET /events`). Its lifecycle events are
    /// written by the calls above that make the change (domain::registry_events).
    async fn mesh_events(&self, query: &MeshEventQuery) -> Result<Vec<MeshEvent>, StoreError>;
    /// Records a consumer's resolution audit events and replaces its audit memory with
    /// `memory`, together, only if the stored memory is still `expected` (as `register_agent`
    /// returned it): two replicas deciding for one consumer at once cannot both record.
    async fn record_resolution_audit(
        &self,
        agent_id: &str,
        expected: &RawValue,
        memory: &AuditMemory,
        events: &[AuditEvent],
    ) -> Result<AuditWrite, StoreError>;
}

/// Leases and the safety sweep (docs/state-machine.md#lease-timers, docs/state-machine.md#sweep;
/// where they differ from the reference: docs/contract.md#differences).
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
    /// Owned live jobs across the whole database (docs/contract.md#live-claims).
    async fn count_live_claims(&self) -> Result<i64, StoreError>;
    /// Jobs by state and capability, agents by status and the live claims (`GET /metrics`).
    async fn tally(&self) -> Result<Tally, StoreError>;

    /// The fleet-wide drain flag (docs/contract.md#diff-fleet-drain); PostgreSQL only.
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

/// Schema reconciliation and the operator's `migrate` commands (docs/operations.md#migrations).
#[async_trait]
pub trait SchemaStore {
    /// Start-up reconciliation: migrate what is pending, then verify the model.
    async fn prepare_schema(&self) -> Result<(), StoreError>;
    /// Applies what is pending (up to version N); the names of what was applied.
    async fn migrate_up(&self, up_to: Option<u32>) -> Result<Vec<String>, StoreError>;
    async fn schema_report(&self) -> Result<SchemaReport, StoreError>;
    /// Drops everything the model does not know; returns what was dropped.
    async fn prune(&self) -> Result<Vec<SchemaPiece>, StoreError>;
    /// Copies the Go registry's jobs and events into ours (docs/operations.md#switching-from-the-go-registry),
    /// never writing its tables; with `force`, also while it still holds live claims.
    /// `migrate import-reference`: the Go registry's jobs and events, from its tables in the
    /// same PostgreSQL database, or (embedded) from its SQLite file, `reference_file` or else
    /// its default file in the working directory.
    async fn import_reference(
        &self,
        force: bool,
        reference_file: Option<PathBuf>,
    ) -> Result<ImportOutcome, StoreError>;
}

/// A claim the Go registry still holds: an owner under a lease that has not lapsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceClaim {
    pub job_id: String,
    pub owner_instance_id: String,
    /// As PostgreSQL prints it.
    pub lease_expires_at: String,
}

/// What `migrate import-reference` found and did.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportOutcome {
    /// The database holds no tables of the Go registry to import from.
    NoReference,
    /// Refused: the Go registry still holds these claims (drain it first, or force).
    LiveClaims(Vec<ReferenceClaim>),
    Imported(ImportReport),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// Jobs in the Go registry's table; those not imported now were already ours.
    pub reference_jobs: i64,
    /// Jobs copied by this run, per status.
    pub jobs_by_status: std::collections::BTreeMap<String, i64>,
    /// Events copied by this run (those of the jobs it copied).
    pub events: i64,
    /// Live claims carried over because the import was forced (empty otherwise).
    pub forced_claims: Vec<ReferenceClaim>,
}

impl ImportReport {
    pub fn jobs(&self) -> i64 {
        self.jobs_by_status.values().sum()
    }
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
    /// Whether the store can still serve at all (not whether the database answers now): false
    /// once the embedded store's thread is gone.
    fn alive(&self) -> bool {
        true
    }
    /// The connection pool, where there is one (PostgreSQL).
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }
    /// What the backend measures of itself (group commit, pool waits), for `GET /metrics`.
    fn instruments(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        Vec::new()
    }
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
    /// start. An empty URL is the embedded file in the working directory. On PostgreSQL every
    /// object of ours lives in `schema` (the embedded file has a name of its own instead).
    pub async fn connect(
        database_url: &str,
        schema: &DbSchema,
        pool_size: usize,
    ) -> Result<Store, ConnectError> {
        let store = match Backend::of(database_url) {
            Backend::Postgres => Store(Arc::new(
                postgres::PgStore::connect(database_url, schema, pool_size).await?,
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
    pub fn open(database_url: &str, schema: &DbSchema) -> Result<Store, ConnectError> {
        Ok(match Backend::of(database_url) {
            Backend::Postgres => Store(Arc::new(postgres::PgStore::open(database_url, schema, 1)?)),
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

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://mesh:s3cret@db:5432/mesh?sslmode=require"),
            "postgres://mesh:***@db:5432/mesh?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://db/mesh?user=u&password=s3cret&sslmode=require"),
            "postgresql://db/mesh?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("host=db password=s3cret user=u"),
            "host=db password=*** user=u"
        );
        assert_eq!(
            redact_url("postgres://mesh@db/mesh"),
            "postgres://mesh@db/mesh"
        );
        assert_eq!(redact_url("mcp_mesh_registry.db"), "mcp_mesh_registry.db");
    }

    #[tokio::test]
    async fn an_unknown_scheme_or_a_key_value_string_is_refused_in_one_line() {
        for url in [
            "PostgreSQL://u:s3cret@db/mesh",
            "postgresql+asyncpg://u:s3cret@db/mesh",
            "host=db password=s3cret dbname=mesh",
        ] {
            let error = Store::connect(url, &DbSchema::default(), 1)
                .await
                .err()
                .expect(url)
                .to_string();
            assert!(!error.contains("s3cret"), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
