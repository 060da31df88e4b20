//! Schema reconciliation, shared by both backends: the model of tables, columns and indexes
//! this binary's statements need, the comparison of a live database with it and with the
//! migrations this binary embeds, and the refinery policy (a database ahead of the binary is
//! not an error). Each backend reads its own catalogue and applies this (docs/operations.md,
//! "Schema migrations").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Backend, StoreError};

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
            ("claimed_at", TIMESTAMP),
            ("requeued_at", TIMESTAMP),
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
            ("entity_id", TEXT),
            ("resolution_audit", JSONB),
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
            ("output_schema_hash", TEXT),
        ],
        indexes: &["agent_tools_pkey", "agent_tools_capability_idx"],
        postgres_only: false,
    },
    ModelTable {
        name: "schema_entries",
        columns: &[
            ("hash", TEXT),
            ("canonical", JSONB),
            ("runtime_origin", TEXT),
            ("created_at", TIMESTAMP),
        ],
        indexes: &["schema_entries_pkey", "schema_entries_created_idx"],
        postgres_only: false,
    },
    ModelTable {
        name: "mesh_events",
        columns: &[
            ("event_id", BIGINT),
            ("event_type", TEXT),
            ("agent_id", TEXT),
            ("function_name", TEXT),
            ("data", JSONB),
            ("recorded_at", TIMESTAMP),
        ],
        indexes: &[
            "mesh_events_pkey",
            "mesh_events_recorded_idx",
            "mesh_events_agent_idx",
        ],
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
    /// What else the next start will do to the database, for the operator.
    pub notes: Vec<String>,
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
/// error (docs/contract.md#diff-migrations); with `up_to`, it stops at that version.
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
    /// The statement that drops this piece of `schema` (`None` for a history row, which is
    /// deleted). Every name is qualified with the schema, so nothing outside it can be hit.
    /// Names come from the catalogue, quoted as identifiers; nothing user-typed.
    pub(super) fn drop_statement(&self, schema: &str) -> Option<String> {
        let ident = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let qualified = |name: &str| format!("{}.{}", ident(schema), ident(name));
        match self {
            SchemaPiece::Table(table) => Some(format!("DROP TABLE IF EXISTS {}", qualified(table))),
            SchemaPiece::Column { table, column, .. } => Some(format!(
                "ALTER TABLE {} DROP COLUMN {}",
                qualified(table),
                ident(column)
            )),
            SchemaPiece::Index { index, .. } => {
                Some(format!("DROP INDEX IF EXISTS {}", qualified(index)))
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

    /// Compares a live schema with the binary's migrations and the backend's model. (Long because
    /// it is one pass per kind of piece — columns, indexes, tables, migrations — each a few lines;
    /// split, the passes would share half a dozen arguments.)
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
            notes: Vec::new(),
        }
    }
}
