//! Schema reconciliation (decisions row 17): at start, under a PostgreSQL advisory lock held on a
//! dedicated connection, apply the embedded migrations this binary knows, then verify that every
//! table, column and index the compiled model needs exists with its type. A database *ahead* of
//! the binary (a downgrade) is not an error: a warning, and nothing is dropped. Dropping what the
//! binary does not know is the explicit `migrate prune`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use tokio_postgres::{Client, NoTls};

use super::{Store, StoreError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Advisory-lock key reserved for schema changes ("meshreg1").
const MIGRATION_LOCK_KEY: i64 = 0x6d65_7368_7265_6731;

/// Where refinery records applied migrations; never pruned.
const HISTORY_TABLE: &str = "refinery_schema_history";

/// One table of the compiled model: the columns (with their `information_schema` data type) and
/// the indexes this binary's statements rely on.
struct ModelTable {
    name: &'static str,
    columns: &'static [(&'static str, &'static str)],
    indexes: &'static [&'static str],
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
const MODEL: &[ModelTable] = &[
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
    },
    ModelTable {
        name: "mesh_topology",
        columns: &[("singleton", BOOLEAN), ("version", BIGINT)],
        indexes: &["mesh_topology_pkey"],
    },
    ModelTable {
        name: "fleet_state",
        columns: &[
            ("singleton", BOOLEAN),
            ("draining", BOOLEAN),
            ("draining_changed_at", TIMESTAMP),
        ],
        indexes: &["fleet_state_pkey"],
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
}

fn known_migrations() -> Vec<(i64, String)> {
    let mut known: Vec<(i64, String)> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| (i64::from(m.version()), m.name().to_owned()))
        .collect();
    known.sort();
    known
}

fn runner() -> refinery::Runner {
    // A migration recorded by a newer binary is not an error here (decisions row 17).
    embedded::migrations::runner()
        .set_abort_missing(false)
        .set_abort_divergent(true)
}

impl Store {
    /// A connection of its own, outside the pool: the advisory lock must stay on one session
    /// from the first look to the last verification.
    async fn dedicated(&self) -> Result<Client, StoreError> {
        let (client, connection) = self.pg.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "schema connection closed");
            }
        });
        Ok(client)
    }

    /// Start-up reconciliation: migrate what is pending (under the lock), then verify.
    pub(super) async fn prepare_schema(&self) -> Result<(), StoreError> {
        let mut client = self.dedicated().await?;
        // Fast path: nothing pending means no lock (a fleet restarting together doesn't queue).
        if !inspect(&client).await?.pending().is_empty() {
            self.migrate_locked(&mut client, None).await?;
        }
        let report = inspect(&client).await?;
        if !report.missing.is_empty() {
            let missing: Vec<String> = report.missing.iter().map(ToString::to_string).collect();
            return Err(StoreError::Migration(format!(
                "the database lacks what this binary needs: {}. Apply the migrations with \
                 `mesh-registry migrate up --database-url <url>`; if its history says they are \
                 applied, they were dropped by hand or by an older binary's `migrate prune`: \
                 restore them from a backup",
                missing.join(", ")
            )));
        }
        if let Some((version, name)) = report.ahead().last() {
            let known = report.known.last().map_or(0, |m| m.0);
            tracing::warn!(
                "database schema is ahead of this binary: it has V{version}__{name}, this \
                 binary knows up to V{known}; serving with what it knows and dropping nothing"
            );
        }
        Ok(())
    }

    async fn migrate_locked(
        &self,
        client: &mut Client,
        up_to: Option<u32>,
    ) -> Result<Vec<String>, StoreError> {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let runner = match up_to {
            Some(version) => runner().set_target(refinery::Target::Version(version)),
            None => runner(),
        };
        let applied = runner
            .run_async(client)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()));
        // Unlock even when a migration failed (the session ends soon anyway).
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let applied: Vec<String> = applied?
            .applied_migrations()
            .iter()
            .map(ToString::to_string)
            .collect();
        for migration in &applied {
            tracing::info!(migration, "applied schema migration");
        }
        Ok(applied)
    }

    /// `migrate up [--to N]`: apply what is pending (up to version N); the names of what was
    /// applied.
    pub async fn migrate_up(&self, up_to: Option<u32>) -> Result<Vec<String>, StoreError> {
        let mut client = self.dedicated().await?;
        self.migrate_locked(&mut client, up_to).await
    }

    /// `migrate status`.
    pub async fn schema_report(&self) -> Result<SchemaReport, StoreError> {
        inspect(&self.dedicated().await?).await
    }

    /// `migrate prune --yes`: drops everything the model does not know, and forgets migrations
    /// this binary does not know (so a later upgrade applies them again), in one transaction
    /// under the migration lock. Returns what was dropped.
    pub async fn prune(&self) -> Result<Vec<SchemaPiece>, StoreError> {
        let mut client = self.dedicated().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let unknown = inspect(&client).await?.unknown;
        let tx = client.transaction().await?;
        for piece in &unknown {
            // Names come from the catalogue, quoted as identifiers; nothing user-typed.
            let statement = match piece {
                SchemaPiece::Table(table) => format!("DROP TABLE IF EXISTS {}", ident(table)),
                SchemaPiece::Column { table, column, .. } => format!(
                    "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
                    ident(table),
                    ident(column)
                ),
                SchemaPiece::Index { index, .. } => {
                    format!("DROP INDEX IF EXISTS {}", ident(index))
                }
                SchemaPiece::Migration { version, .. } => {
                    tx.execute(
                        &format!("DELETE FROM {HISTORY_TABLE} WHERE version = $1"),
                        &[&(*version as i32)],
                    )
                    .await?;
                    continue;
                }
            };
            tx.batch_execute(&statement).await?;
        }
        tx.commit().await?;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        Ok(unknown)
    }
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Compares the live schema with the binary's migrations and model.
async fn inspect(client: &Client) -> Result<SchemaReport, StoreError> {
    let history_exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await?
        .try_get(0)?;
    let applied: Vec<(i64, String)> = if history_exists {
        client
            .query(
                &format!("SELECT version::bigint, name FROM {HISTORY_TABLE} ORDER BY version"),
                &[],
            )
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?
    } else {
        Vec::new()
    };
    let mut columns: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for row in client
        .query(
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text \
             FROM information_schema.columns c \
             JOIN information_schema.tables t USING (table_schema, table_name) \
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'",
            &[],
        )
        .await?
    {
        columns
            .entry(row.try_get(0)?)
            .or_default()
            .insert(row.try_get(1)?, row.try_get(2)?);
    }
    let mut indexes: BTreeMap<String, String> = BTreeMap::new();
    for row in client
        .query(
            "SELECT indexname::text, tablename::text FROM pg_indexes \
             WHERE schemaname = current_schema()",
            &[],
        )
        .await?
    {
        indexes.insert(row.try_get(0)?, row.try_get(1)?);
    }

    let known = known_migrations();
    let mut missing = Vec::new();
    let mut unknown = Vec::new();
    let model_tables: BTreeSet<&str> = MODEL.iter().map(|t| t.name).collect();
    for table in MODEL {
        let live = columns.get(table.name);
        for &(column, data_type) in table.columns {
            if live.and_then(|l| l.get(column)).map(String::as_str) != Some(data_type) {
                missing.push(SchemaPiece::Column {
                    table: table.name.into(),
                    column: column.into(),
                    data_type: data_type.into(),
                });
            }
        }
        for &index in table.indexes {
            if !indexes.contains_key(index) {
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
    for table in columns.keys() {
        if !model_tables.contains(table.as_str()) && table != HISTORY_TABLE {
            unknown.push(SchemaPiece::Table(table.clone()));
        }
    }
    for (index, table) in &indexes {
        let modelled = MODEL.iter().any(|t| t.indexes.contains(&index.as_str()));
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
    for table in MODEL {
        if !columns.contains_key(table.name) {
            missing.retain(|piece| {
                !matches!(piece, SchemaPiece::Column { table: t, .. } | SchemaPiece::Index { table: t, .. } if t == table.name)
            });
            missing.push(SchemaPiece::Table(table.name.into()));
        }
    }
    unknown.sort();
    Ok(SchemaReport {
        known,
        applied,
        missing,
        unknown,
    })
}
