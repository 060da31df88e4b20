//! What both backends speak: the inputs and outcomes of every store call, and what each
//! outcome changed for the actors.

use std::time::{Duration, SystemTime};

use mesh_registry_actors::{LeaseChange, LeaseHeld};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::wire::{
    AgentStatus, ClaimedJob, DependencySpec, Job, JobStatus, LlmProviderSpec, RawJson, RecvCursor,
    RejectReason, Timestamp,
};

// Jobs.

#[derive(Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub capability: String,
    pub submitted_by: String,
    pub submitted_payload: RawJson,
    pub owner_instance_id: Option<String>,
    pub max_retries: i64,
    pub max_duration: Option<i64>,
    pub total_deadline: Option<Timestamp>,
}

/// Filters of `GET /jobs`, already validated; `after` is the keyset position of the last row of
/// the previous page.
pub struct JobListQuery {
    pub statuses: Option<Vec<&'static str>>,
    pub owner_instance_id: Option<String>,
    pub capability: Option<String>,
    pub submitted_since: Option<Timestamp>,
    pub after: Option<(Timestamp, Uuid)>,
    pub limit: i64,
}

/// A page of `GET /jobs`.
#[derive(Debug)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// The byte budget ended the page before `limit` rows: more rows follow.
    pub cut: bool,
}

/// One group of the dashboard's job counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCount {
    pub status: String,
    pub capability: String,
    pub jobs: i64,
}

/// The bytes a job weighs in a page: what can be big in it.
pub fn job_weight(job: &Job) -> i64 {
    let text = |t: &Option<String>| t.as_deref().map_or(0, str::len);
    (job.submitted_payload.get().len()
        + job.result.as_ref().map_or(0, |r| r.get().len())
        + text(&job.error)
        + text(&job.progress_message)) as i64
}

/// The bytes an event weighs in a page.
pub fn event_weight(event: &crate::wire::JobEvent) -> i64 {
    let json = |j: &Option<RawJson>| j.as_ref().map_or(0, |j| j.get().len());
    (json(&event.payload) + json(&event.trace_context)) as i64
}

/// One `POST /jobs/claim` (past validation and the drain gate).
#[derive(Debug, Clone)]
pub struct ClaimCall {
    pub capability: String,
    pub instance_id: String,
    /// The caller already checked its required dependencies: do not gate it again.
    pub gate_checked: bool,
}

#[derive(Debug)]
pub enum ClaimOutcome {
    Claimed {
        job: ClaimedJob,
        /// How long the job waited claimable before this claim (`GET /metrics`); `None` for a
        /// job requeued before the store recorded requeue times.
        waited: Option<Duration>,
    },
    NoWork,
    /// The claimer has required dependencies to check before it may claim.
    Gated,
}

/// An owner's update of one job (a delta of `POST /jobs/batch`, its status already valid).
#[derive(Debug, Clone)]
pub struct DeltaUpdate {
    pub job_id: Uuid,
    pub instance_id: String,
    pub claim_epoch: Option<i64>,
    pub status: Option<JobStatus>,
    pub progress: Option<f64>,
    pub progress_message: Option<String>,
    pub result: Option<RawJson>,
    pub error: Option<String>,
    pub recv_cursor: Option<RecvCursor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaOutcome {
    Accepted(ClaimAfter),
    Rejected(RejectReason),
}

/// What an accepted write left of the claim, for the lease timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAfter {
    /// Still live, holding this lease.
    Held(LeaseHeld),
    /// Terminal: nothing to watch.
    Ended {
        job_id: Uuid,
        /// How long the claim ran (`GET /metrics`); `None` for a pinned job (never claimed)
        /// and for a claim made before the store recorded claim times.
        ran: Option<Duration>,
    },
}

#[derive(Debug)]
pub enum ReleaseOutcome {
    Released {
        job_id: Uuid,
        status: JobStatus,
        attempt_count: i64,
    },
    NotFound,
    Terminal,
    NotOwner,
}

#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled {
        job_id: Uuid,
        previous_owner: Option<String>,
        /// How long the claim it ended had run (`GET /metrics`); `None` when no claim held it
        /// (or the claim time is unknown, as for `ClaimAfter::Ended`).
        ran: Option<Duration>,
    },
    NotFound,
    Terminal,
}

#[derive(Debug)]
pub enum ReclaimOutcome {
    Reclaimed {
        job_id: Uuid,
        status: JobStatus,
        previous_owner: Option<String>,
        claim_epoch: i64,
    },
    NotFound,
    Terminal,
}

/// Verdict on an executor event read (one that carries `instance_id` and `claim_epoch`).
#[derive(Debug, PartialEq, Eq)]
pub enum ExecutorRead {
    NotFound,
    /// Live job owned by someone else, or by this instance under another epoch.
    Superseded,
    /// Serve the events; `renewed` is the new lease when the read extended it.
    Serve {
        renewed: Option<LeaseHeld>,
    },
}

/// What a store call changed that this replica's actors must hear of. Every outcome of a write
/// says it through [`Changed`]; the service layer forwards it, so no caller has to remember.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A claim holds this lease (claimed, or renewed): its lease timer is (re)armed.
    LeaseHeld(LeaseHeld),
    /// A claim ended (finished, released, cancelled, reclaimed): its lease timer retires.
    ClaimEnded(Uuid),
    /// An event was appended to the job's log: its long-polls wake.
    EventPosted(Uuid),
}

/// An outcome that knows what it changed.
pub trait Changed {
    fn changes(&self) -> Vec<Change>;
}

impl Changed for ClaimOutcome {
    fn changes(&self) -> Vec<Change> {
        match self {
            ClaimOutcome::Claimed { job, .. } => job
                .lease_expires_at
                .map(|lease| {
                    Change::LeaseHeld(LeaseHeld {
                        job_id: job.id,
                        claim_epoch: job.claim_epoch,
                        lease_expires_at: lease.0,
                    })
                })
                .into_iter()
                .collect(),
            ClaimOutcome::NoWork | ClaimOutcome::Gated => Vec::new(),
        }
    }
}

impl Changed for DeltaOutcome {
    fn changes(&self) -> Vec<Change> {
        match self {
            DeltaOutcome::Accepted(ClaimAfter::Held(lease)) => vec![Change::LeaseHeld(*lease)],
            DeltaOutcome::Accepted(ClaimAfter::Ended { job_id, .. }) => {
                vec![Change::ClaimEnded(*job_id)]
            }
            DeltaOutcome::Rejected(_) => Vec::new(),
        }
    }
}

impl Changed for ReleaseOutcome {
    fn changes(&self) -> Vec<Change> {
        match self {
            ReleaseOutcome::Released { job_id, .. } => vec![Change::ClaimEnded(*job_id)],
            _ => Vec::new(),
        }
    }
}

impl Changed for CancelOutcome {
    fn changes(&self) -> Vec<Change> {
        match self {
            // The synthetic `cancelled` event was appended in the same statement.
            CancelOutcome::Cancelled { job_id, .. } => {
                vec![Change::ClaimEnded(*job_id), Change::EventPosted(*job_id)]
            }
            _ => Vec::new(),
        }
    }
}

impl Changed for ReclaimOutcome {
    fn changes(&self) -> Vec<Change> {
        match self {
            ReclaimOutcome::Reclaimed { job_id, .. } => vec![Change::ClaimEnded(*job_id)],
            _ => Vec::new(),
        }
    }
}

impl Changed for ExecutorRead {
    fn changes(&self) -> Vec<Change> {
        match self {
            ExecutorRead::Serve {
                renewed: Some(lease),
            } => vec![Change::LeaseHeld(*lease)],
            _ => Vec::new(),
        }
    }
}

impl Changed for PostEventOutcome {
    fn changes(&self) -> Vec<Change> {
        match self {
            PostEventOutcome::Posted { job_id, .. } => vec![Change::EventPosted(*job_id)],
            _ => Vec::new(),
        }
    }
}

// Events.

/// Which events of a job to read.
pub struct EventFilter {
    pub after: i64,
    /// `None` = every type.
    pub types: Option<Vec<String>>,
    pub limit: i64,
}

#[derive(Debug)]
pub enum PostEventOutcome {
    Posted {
        job_id: Uuid,
        seq: i64,
        created_at: Timestamp,
    },
    NotFound,
    Terminal,
}

// Agents.

/// A validated `POST /heartbeat`.
pub struct NewRegistration<'a> {
    pub agent_id: &'a str,
    pub name: &'a str,
    pub agent_type: &'a str,
    pub runtime: &'a str,
    pub version: &'a str,
    pub description: &'a str,
    pub namespace: &'a str,
    pub http_host: Option<&'a str>,
    pub http_port: Option<i32>,
    pub a2a_producer: bool,
    pub a2a_consumer: bool,
    pub tools: Vec<NewTool<'a>>,
    /// The body as the agent sent it.
    pub body: &'a RawValue,
    /// The entity that vouched for the client certificate of the request (mTLS registration
    /// trust), if any.
    pub entity_id: Option<&'a str>,
}

/// One tool of a registration. Its serialized form is kept in the agent's `topology` (so a change
/// of any of it is a topology change); the LLM fields are read back from there.
#[derive(Debug, Serialize)]
pub struct NewTool<'a> {
    pub function_name: &'a str,
    pub capability: &'a str,
    pub version: &'a str,
    pub description: &'a str,
    pub tags: &'a [String],
    pub kwargs: Option<&'a RawValue>,
    pub dependencies: &'a [DependencySpec],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_filter: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_provider: Option<&'a LlmProviderSpec>,
    /// The published schemas (hash, canonical form); only the output hash is part of the
    /// topology (the canonical forms go to the schema store).
    #[serde(skip)]
    pub published_input: Option<PublishedSchema<'a>>,
    #[serde(
        rename = "output_schema_hash",
        serialize_with = "published_hash",
        skip_serializing_if = "Option::is_none"
    )]
    pub published_output: Option<PublishedSchema<'a>>,
}

/// A canonical JSON Schema a tool published, and its content hash.
#[derive(Debug, Clone, Copy)]
pub struct PublishedSchema<'a> {
    pub hash: &'a str,
    pub canonical: &'a RawValue,
}

fn published_hash<S: serde::Serializer>(
    schema: &Option<PublishedSchema<'_>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(schema.map_or("", |s| s.hash))
}

impl NewTool<'_> {
    /// The schemas this tool publishes, for the schema store.
    pub fn published_schemas(&self) -> impl Iterator<Item = PublishedSchema<'_>> {
        self.published_input
            .into_iter()
            .chain(self.published_output)
    }
}

impl NewRegistration<'_> {
    /// The required-dependency edges its tools declare.
    pub fn required_edges(&self) -> crate::domain::agents::RequiredEdges {
        let mut edges = Default::default();
        for tool in &self.tools {
            crate::domain::agents::add_required_edges(
                &mut edges,
                tool.capability,
                tool.dependencies,
            );
        }
        edges
    }

    /// What other agents' resolution depends on; a change of it is a topology change.
    /// An entity is part of it (the endpoint's scheme follows it), only when there is one: the
    /// topology of an agent without one reads as it did before entities were kept.
    pub(super) fn topology(&self) -> serde_json::Value {
        let mut topology = serde_json::json!({
            "name": self.name,
            "namespace": self.namespace,
            "agent_type": self.agent_type,
            "http_host": self.http_host,
            "http_port": self.http_port,
            "tools": self.tools,
        });
        if let Some(entity_id) = self.entity_id {
            topology["entity_id"] = entity_id.into();
        }
        topology
    }
}

/// What became of a registration.
#[derive(Debug, Clone)]
pub enum RegisterOutcome {
    Registered(Registered),
    /// Refused, nothing stored: it would close this cycle of required dependencies
    /// (`"a → b → a"`, `domain::agents::required_cycle`).
    RequiredCycle(String),
    /// Refused, nothing stored: another entity vouched for this agent
    /// (`domain::agents::entity_may_update`).
    OwnedByAnotherEntity,
}

#[derive(Debug, Clone)]
pub struct Registered {
    /// First registration of this agent id.
    pub created: bool,
    /// Mesh topology version the agent has now seen.
    pub topology_version: i64,
    /// What the log holds of the agent's resolution audit, as stored
    /// (`domain::registry_events::AuditMemory`): the registration decides its audit events
    /// against it, and replaces it only if it is still this (`record_resolution_audit`).
    pub resolution_audit: RawJson,
}

/// A `dependency_resolved` / `dependency_unresolved` event of a consumer, to record.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub event_type: &'static str,
    pub function_name: String,
    /// The resolution's trace, in the reference's shape (`resolve::trace`).
    pub data: serde_json::Value,
}

/// What became of the audit events of a registration.
#[derive(Debug)]
pub enum AuditWrite {
    Recorded,
    /// Nothing recorded: the agent's audit memory moved on meanwhile (another replica recorded
    /// events for it); this is the memory now, to decide again against.
    Moved(RawJson),
    /// Nothing recorded: the agent is gone.
    Gone,
}

/// What a heartbeat check needs about one agent.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub status: AgentStatus,
    pub topology_seen: i64,
    pub topology_version: i64,
}

/// An agent as stored.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub agent_id: String,
    pub name: String,
    pub agent_type: String,
    pub runtime: String,
    pub version: String,
    pub description: String,
    pub namespace: String,
    pub http_host: Option<String>,
    pub http_port: Option<i32>,
    pub a2a_producer: bool,
    pub a2a_consumer: bool,
    pub status: AgentStatus,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    /// The entity that vouched for the agent's client certificate, if one did.
    pub entity_id: Option<String>,
}

impl AgentRow {
    /// `http(s)://host:port` when the agent registered an HTTP endpoint.
    pub fn http_endpoint(&self) -> Option<String> {
        crate::domain::agents::http_endpoint(
            self.http_host.as_deref()?,
            self.http_port?,
            self.entity_id.as_deref(),
        )
    }

    /// The HTTP endpoint, or `stdio://<id>` for an agent without one (as the reference shows it).
    pub fn endpoint(&self) -> String {
        self.http_endpoint()
            .unwrap_or_else(|| format!("stdio://{}", self.agent_id))
    }
}

/// A tool as stored, in registration order.
#[derive(Debug, Clone)]
pub struct ToolRow {
    pub agent_id: String,
    pub function_name: String,
    pub capability: String,
    pub version: String,
    pub description: String,
    pub tags: Vec<String>,
    pub kwargs: Option<RawJson>,
    pub dependencies: Vec<DependencySpec>,
    /// The LLM fields: read by `llm_snapshot` only (`None` from `mesh_snapshot`).
    pub input_schema: Option<RawJson>,
    pub llm_filter: Option<RawJson>,
    pub llm_provider: Option<LlmProviderSpec>,
    /// The hash of the tool's published output schema (its canonical form is in the schema
    /// store).
    pub output_schema_hash: Option<String>,
}

/// A row of the registry's event log (`GET /events`).
#[derive(Debug, Clone)]
pub struct MeshEvent {
    pub event_type: String,
    pub agent_id: String,
    /// The agent's name as it is now (`None` once the agent is gone).
    pub agent_name: Option<String>,
    pub function_name: Option<String>,
    pub data: RawJson,
    pub recorded_at: SystemTime,
}

/// Which events `GET /events` reads: newest first, each filter applied when given.
#[derive(Debug, Clone, Default)]
pub struct MeshEventQuery {
    pub event_type: Option<String>,
    pub agent_id: Option<String>,
    pub function_name: Option<String>,
    pub limit: i64,
}

/// A canonical JSON Schema in the schema store.
#[derive(Debug, Clone)]
pub struct SchemaEntry {
    pub hash: String,
    pub canonical: RawJson,
    /// `python`, `typescript`, `java` or `unknown`: the runtime that first published it.
    pub runtime_origin: String,
    pub created_at: SystemTime,
}

/// Every agent and tool at one moment.
pub struct MeshSnapshot {
    pub agents: Vec<AgentRow>,
    pub tools: Vec<ToolRow>,
}

// Notifications.

/// What another replica (or the database) told this one.
#[derive(Debug)]
pub enum Notice {
    EventPosted(Uuid),
    Leases(Vec<LeaseChange>),
    FleetDrain(bool),
    /// The listening connection is down: notifications are being lost.
    Lost,
    /// Listening again (after a start or a reconnection).
    Listening,
}

/// What `GET /metrics` counts in the database (a full count: cached by the caller).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// `(state, capability, jobs)`: the job status, except that a working job nobody owns is
    /// `queued`.
    pub jobs: Vec<(String, String, i64)>,
    /// `(status, agents)`.
    pub agents: Vec<(String, i64)>,
    /// Owned live jobs (docs/contract.md#live-claims).
    pub live_claims: i64,
}

/// The PostgreSQL connection pool right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    /// Connections open (in use or idle).
    pub size: usize,
    /// Open connections idle.
    pub available: usize,
    /// Calls waiting for a connection.
    pub waiting: usize,
}
