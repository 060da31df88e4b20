//! What both backends speak: the inputs and outcomes of every store call, the schema model
//! they verify, and the helpers whose logic must not differ between them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime};

use mesh_registry_actors::{LeaseChange, LeaseHeld};
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{Backend, StoreError};
use crate::config::format_go_duration;
use crate::wire::{
    AgentStatus, ClaimedJob, DependencySpec, JobStatus, LlmProviderSpec, RawJson, RecvCursor,
    RejectReason, Timestamp,
};

// Jobs.

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

/// One `POST /jobs/claim` (past validation and the drain gate).
#[derive(Debug)]
pub struct ClaimCall {
    pub capability: String,
    pub instance_id: String,
    /// The caller already checked its required dependencies: do not gate it again.
    pub gate_checked: bool,
}

#[derive(Debug)]
pub enum ClaimOutcome {
    Claimed(ClaimedJob),
    NoWork,
    /// The claimer has required dependencies to check before it may claim.
    Gated,
}

/// An owner's update of one job (a delta of `POST /jobs/batch`, its status already valid).
#[derive(Debug)]
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

/// What an accepted write left of the claim, for the job actors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAfter {
    /// Still live, holding this lease.
    Held(LeaseHeld),
    /// Terminal: nothing to watch.
    Ended(Uuid),
}

#[derive(Debug)]
pub enum ReleaseOutcome {
    Released {
        status: JobStatus,
        attempt_count: i64,
    },
    NotFound,
    Terminal,
    NotOwner,
}

#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled { previous_owner: Option<String> },
    NotFound,
    Terminal,
}

#[derive(Debug)]
pub enum ReclaimOutcome {
    Reclaimed {
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

/// What the miss paths need to name the reason a guarded statement matched nothing.
pub(super) struct JobState {
    pub status: JobStatus,
    pub owner_instance_id: Option<String>,
    pub claim_epoch: i64,
}

impl JobState {
    /// Why a delta from `instance_id` (with or without an epoch) cannot apply to the job as it
    /// is, in the reference's order: ownership/epoch, then terminal state. `None` when nothing
    /// stands in the way.
    pub fn delta_rejection(
        &self,
        instance_id: &str,
        claim_epoch: Option<i64>,
    ) -> Option<RejectReason> {
        let owned = self.owner_instance_id.as_deref() == Some(instance_id);
        match claim_epoch {
            Some(epoch) if !owned || epoch != self.claim_epoch => {
                Some(RejectReason::ClaimSuperseded)
            }
            None if !owned => Some(RejectReason::NotOwner),
            _ if self.status.is_terminal() => Some(RejectReason::AlreadyTerminal),
            _ => None,
        }
    }

    /// Whether an executor read by this caller is fenced off: the job is live and held by
    /// someone else, or by this instance under another epoch.
    pub fn superseded_for(&self, instance_id: &str, claim_epoch: i64) -> bool {
        let current_claim = self.owner_instance_id.as_deref() == Some(instance_id)
            && self.claim_epoch == claim_epoch;
        !(self.status.is_terminal() || current_claim)
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
    Posted { seq: i64, created_at: Timestamp },
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
}

impl NewRegistration<'_> {
    /// What other agents' resolution depends on; a change of it is a topology change.
    pub(super) fn topology(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "namespace": self.namespace,
            "agent_type": self.agent_type,
            "http_host": self.http_host,
            "http_port": self.http_port,
            "tools": self.tools,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Registered {
    /// First registration of this agent id.
    pub created: bool,
    /// Mesh topology version the agent has now seen.
    pub topology_version: i64,
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
}

impl AgentRow {
    /// `http://host:port` when the agent registered an HTTP endpoint.
    pub fn http_endpoint(&self) -> Option<String> {
        match (self.http_host.as_deref(), self.http_port) {
            (Some(host), Some(port)) if !host.is_empty() && port > 0 => {
                Some(format!("http://{host}:{port}"))
            }
            _ => None,
        }
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

// Schema.

/// Where refinery records applied migrations (both backends); never pruned.
pub(super) const HISTORY_TABLE: &str = "refinery_schema_history";

/// One table of the compiled model: the columns (with their `information_schema` data type) and
/// the indexes this binary's statements rely on.
pub(super) struct ModelTable {
    pub name: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
    pub indexes: &'static [&'static str],
    /// Only PostgreSQL has it (a feature of several replicas).
    pub postgres_only: bool,
}

/// How a backend declares a model type (the model uses PostgreSQL's `information_schema`
/// spelling; SQLite's STRICT tables know TEXT, INTEGER and REAL).
fn stored_type(backend: Backend, data_type: &'static str) -> &'static str {
    match (backend, data_type) {
        (Backend::Postgres, _) => data_type,
        (Backend::Embedded, BIGINT | INTEGER | BOOLEAN | TIMESTAMP) => "INTEGER",
        (Backend::Embedded, FLOAT) => "REAL",
        (Backend::Embedded, _) => "TEXT",
    }
}

const UUID: &str = "uuid";
const TEXT: &str = "text";
const BIGINT: &str = "bigint";
const INTEGER: &str = "integer";
const BOOLEAN: &str = "boolean";
const FLOAT: &str = "double precision";
const JSON: &str = "json";
const JSONB: &str = "jsonb";
const TIMESTAMP: &str = "timestamp with time zone";
const TEXT_ARRAY: &str = "ARRAY";

/// Everything the compiled statements read or write.
pub(super) const MODEL: &[ModelTable] = &[
    ModelTable {
        name: "jobs",
        columns: &[
            ("job_id", UUID),
            ("capability", TEXT),
            ("owner_instance_id", TEXT),
            ("claim_epoch", BIGINT),
            ("status", TEXT),
            ("progress", FLOAT),
            ("progress_message", TEXT),
            ("result", JSON),
            ("error", TEXT),
            ("submitted_payload", JSON),
            ("recv_cursor", JSONB),
            ("attempt_count", BIGINT),
            ("max_retries", BIGINT),
            ("max_duration", BIGINT),
            ("total_deadline", TIMESTAMP),
            ("lease_expires_at", TIMESTAMP),
            ("last_heartbeat_at", TIMESTAMP),
            ("submitted_at", TIMESTAMP),
            ("submitted_by", TEXT),
            ("event_seq", BIGINT),
        ],
        indexes: &[
            "jobs_pkey",
            "jobs_claimable_idx",
            "jobs_submitted_idx",
            "jobs_live_owner_idx",
            "jobs_live_deadline_idx",
            "jobs_live_submitted_idx",
            "jobs_finished_idx",
        ],
        postgres_only: false,
    },
    ModelTable {
        name: "job_events",
        columns: &[
            ("job_id", UUID),
            ("seq", BIGINT),
            ("type", TEXT),
            ("payload", JSON),
            ("trace_context", JSON),
            ("posted_by", TEXT),
            ("created_at", TIMESTAMP),
        ],
        indexes: &["job_events_pkey"],
        postgres_only: false,
    },
    ModelTable {
        name: "agents",
        columns: &[
            ("agent_id", TEXT),
            ("name", TEXT),
            ("agent_type", TEXT),
            ("runtime", TEXT),
            ("version", TEXT),
            ("description", TEXT),
            ("namespace", TEXT),
            ("http_host", TEXT),
            ("http_port", INTEGER),
            ("a2a_producer", BOOLEAN),
            ("a2a_consumer", BOOLEAN),
            ("status", TEXT),
            ("registration", JSON),
            ("topology", JSONB),
            ("topology_seen", BIGINT),
            ("created_at", TIMESTAMP),
            ("updated_at", TIMESTAMP),
        ],
        indexes: &["agents_pkey", "agents_name_idx"],
        postgres_only: false,
    },
    ModelTable {
        name: "agent_tools",
        columns: &[
            ("agent_id", TEXT),
            ("position", INTEGER),
            ("function_name", TEXT),
            ("capability", TEXT),
            ("version", TEXT),
            ("description", TEXT),
            ("tags", TEXT_ARRAY),
            ("kwargs", JSONB),
            ("dependencies", JSONB),
            ("has_required_dependencies", BOOLEAN),
        ],
        indexes: &["agent_tools_pkey", "agent_tools_capability_idx"],
        postgres_only: false,
    },
    ModelTable {
        name: "mesh_topology",
        columns: &[("singleton", BOOLEAN), ("version", BIGINT)],
        indexes: &["mesh_topology_pkey"],
        postgres_only: false,
    },
    ModelTable {
        name: "fleet_state",
        columns: &[
            ("singleton", BOOLEAN),
            ("draining", BOOLEAN),
            ("draining_changed_at", TIMESTAMP),
        ],
        indexes: &["fleet_state_pkey"],
        postgres_only: true,
    },
];

/// A piece of schema, named the way an operator reads it. Sorted in the order `prune` drops
/// them: indexes, then columns, then tables.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SchemaPiece {
    Index {
        table: String,
        index: String,
    },
    Column {
        table: String,
        column: String,
        data_type: String,
    },
    Table(String),
    /// A migration recorded in the history that this binary does not know.
    Migration {
        version: i64,
        name: String,
    },
}

impl fmt::Display for SchemaPiece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaPiece::Table(table) => write!(f, "table {table}"),
            SchemaPiece::Column {
                table,
                column,
                data_type,
            } => write!(f, "column {table}.{column} ({data_type})"),
            SchemaPiece::Index { table, index } => write!(f, "index {index} on {table}"),
            SchemaPiece::Migration { version, name } => {
                write!(f, "migration history row V{version}__{name}")
            }
        }
    }
}

/// The live schema compared with this binary's migrations and model.
#[derive(Debug)]
pub struct SchemaReport {
    /// (version, name) of every migration this binary embeds.
    pub known: Vec<(i64, String)>,
    /// (version, name) of every migration recorded in the database.
    pub applied: Vec<(i64, String)>,
    /// What the model needs and the database lacks (or has with another type).
    pub missing: Vec<SchemaPiece>,
    /// What the database has and this binary does not know (`migrate prune` drops it).
    pub unknown: Vec<SchemaPiece>,
}

/// The migrations a backend's runner embeds, as `(version, name)` in version order.
pub(super) fn known_migrations(runner: &refinery::Runner) -> Vec<(i64, String)> {
    let mut known: Vec<(i64, String)> = runner
        .get_migrations()
        .iter()
        .map(|m| (i64::from(m.version()), m.name().to_owned()))
        .collect();
    known.sort();
    known
}

/// A runner with the reconciliation policy: a migration recorded by a newer binary is not an
/// error (decisions row 17); with `up_to`, it stops at that version.
pub(super) fn reconciling(runner: refinery::Runner, up_to: Option<u32>) -> refinery::Runner {
    let runner = runner.set_abort_missing(false).set_abort_divergent(true);
    match up_to {
        Some(version) => runner.set_target(refinery::Target::Version(version)),
        None => runner,
    }
}

/// The names of what a migration run applied, each logged.
pub(super) fn applied_migrations(report: &refinery::Report) -> Vec<String> {
    let applied: Vec<String> = report
        .applied_migrations()
        .iter()
        .map(ToString::to_string)
        .collect();
    for migration in &applied {
        tracing::info!(migration, "applied schema migration");
    }
    applied
}

impl SchemaPiece {
    /// The statement that drops this piece (`None` for a history row, which is deleted). Names
    /// come from the catalogue, quoted as identifiers; nothing user-typed.
    pub(super) fn drop_statement(&self) -> Option<String> {
        let ident = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        match self {
            SchemaPiece::Table(table) => Some(format!("DROP TABLE IF EXISTS {}", ident(table))),
            SchemaPiece::Column { table, column, .. } => Some(format!(
                "ALTER TABLE {} DROP COLUMN {}",
                ident(table),
                ident(column)
            )),
            SchemaPiece::Index { index, .. } => {
                Some(format!("DROP INDEX IF EXISTS {}", ident(index)))
            }
            SchemaPiece::Migration { .. } => None,
        }
    }
}

/// What a database holds, as its catalogue tells it.
pub(super) struct LiveSchema {
    /// table -> column -> declared data type.
    pub columns: BTreeMap<String, BTreeMap<String, String>>,
    /// index -> its table.
    pub indexes: BTreeMap<String, String>,
}

impl SchemaReport {
    /// Known migrations not applied yet.
    pub fn pending(&self) -> Vec<&(i64, String)> {
        self.known
            .iter()
            .filter(|m| !self.applied.iter().any(|a| a.0 == m.0))
            .collect()
    }

    /// Applied migrations this binary does not know (the database is ahead of it).
    pub fn ahead(&self) -> Vec<&(i64, String)> {
        self.applied
            .iter()
            .filter(|a| !self.known.iter().any(|m| m.0 == a.0))
            .collect()
    }

    /// Whether this binary can serve the schema: everything its model needs must exist; a
    /// database ahead of the binary is served with what the binary knows (a warning).
    pub(super) fn check_servable(&self) -> Result<(), StoreError> {
        if !self.missing.is_empty() {
            let missing: Vec<String> = self.missing.iter().map(ToString::to_string).collect();
            return Err(StoreError::Migration(format!(
                "the database lacks what this binary needs: {}. Apply the migrations with \
                 `mesh-registry migrate up --database-url <url>`; if its history says they are \
                 applied, they were dropped by hand or by an older binary's `migrate prune`: \
                 restore them from a backup",
                missing.join(", ")
            )));
        }
        if let Some((version, name)) = self.ahead().last() {
            let known = self.known.last().map_or(0, |m| m.0);
            tracing::warn!(
                "database schema is ahead of this binary: it has V{version}__{name}, this \
                 binary knows up to V{known}; serving with what it knows and dropping nothing"
            );
        }
        Ok(())
    }

    /// Compares a live schema with the binary's migrations and the backend's model.
    pub(super) fn compare(
        backend: Backend,
        known: Vec<(i64, String)>,
        applied: Vec<(i64, String)>,
        live_schema: &LiveSchema,
    ) -> SchemaReport {
        let model = || {
            MODEL
                .iter()
                .filter(move |t| backend == Backend::Postgres || !t.postgres_only)
        };
        let stored_type = |data_type| stored_type(backend, data_type);
        let mut missing = Vec::new();
        let mut unknown = Vec::new();
        let model_tables: BTreeSet<&str> = model().map(|t| t.name).collect();
        for table in model() {
            let live = live_schema.columns.get(table.name);
            for &(column, data_type) in table.columns {
                if live.and_then(|l| l.get(column)).map(String::as_str)
                    != Some(stored_type(data_type))
                {
                    missing.push(SchemaPiece::Column {
                        table: table.name.into(),
                        column: column.into(),
                        data_type: stored_type(data_type).into(),
                    });
                }
            }
            for &index in table.indexes {
                if !live_schema.indexes.contains_key(index) {
                    missing.push(SchemaPiece::Index {
                        table: table.name.into(),
                        index: index.into(),
                    });
                }
            }
            for (column, data_type) in live.into_iter().flatten() {
                if !table.columns.iter().any(|(c, _)| c == column) {
                    unknown.push(SchemaPiece::Column {
                        table: table.name.into(),
                        column: column.clone(),
                        data_type: data_type.clone(),
                    });
                }
            }
        }
        for table in live_schema.columns.keys() {
            if !model_tables.contains(table.as_str()) && table != HISTORY_TABLE {
                unknown.push(SchemaPiece::Table(table.clone()));
            }
        }
        for (index, table) in &live_schema.indexes {
            let modelled = model().any(|t| t.indexes.contains(&index.as_str()));
            // Indexes of unknown tables go with their table.
            if !modelled && model_tables.contains(table.as_str()) {
                unknown.push(SchemaPiece::Index {
                    table: table.clone(),
                    index: index.clone(),
                });
            }
        }
        for (version, name) in &applied {
            if !known.iter().any(|k| k.0 == *version) {
                unknown.push(SchemaPiece::Migration {
                    version: *version,
                    name: name.clone(),
                });
            }
        }
        // A table whose model table is missing entirely reads better as one piece.
        for table in model() {
            if !live_schema.columns.contains_key(table.name) {
                missing.retain(|piece| {
                    !matches!(piece, SchemaPiece::Column { table: t, .. } | SchemaPiece::Index { table: t, .. } if t == table.name)
                });
                missing.push(SchemaPiece::Table(table.name.into()));
            }
        }
        unknown.sort();
        SchemaReport {
            known,
            applied,
            missing,
            unknown,
        }
    }
}

// Sweeps.

/// The reference's stale reason (contract §3.6).
pub(super) fn stale_reason(timeout: Duration, max_duration: Duration) -> String {
    if max_duration > timeout {
        format!(
            "stale: no total_deadline set and exceeded max_duration ({})",
            format_go_duration(max_duration)
        )
    } else {
        format!(
            "stale: no total_deadline set and exceeded the MCP_MESH_JOB_STALE_TIMEOUT ceiling ({})",
            format_go_duration(timeout)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_reasons_match_the_reference() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            stale_reason(hour, Duration::ZERO),
            "stale: no total_deadline set and exceeded the MCP_MESH_JOB_STALE_TIMEOUT ceiling (1h0m0s)"
        );
        assert_eq!(
            stale_reason(hour, 3 * hour),
            "stale: no total_deadline set and exceeded max_duration (3h0m0s)"
        );
        assert_eq!(
            stale_reason(hour, Duration::from_secs(600)),
            "stale: no total_deadline set and exceeded the MCP_MESH_JOB_STALE_TIMEOUT ceiling (1h0m0s)"
        );
    }
}
