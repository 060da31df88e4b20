//! Schema reconciliation (docs/operations.md#migrations): at start, under a PostgreSQL advisory
//! lock held on a dedicated connection, apply the embedded migrations this binary knows, then
//! verify that every table, column and index the compiled model needs exists with its type. A
//! database *ahead* of the binary (a downgrade) is not an error: a warning, and nothing is
//! dropped. Dropping what the binary does not know is the explicit `migrate prune`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use tokio_postgres::{Client, NoTls};

use super::PgStore;
use crate::store::schema::{
    applied_migrations, known_migrations, reconciling, LiveSchema, HISTORY_TABLE,
};
use crate::store::{Backend, ImportOutcome, SchemaPiece, SchemaReport, SchemaStore, StoreError};

mod compiled {
    refinery::embed_migrations!("migrations/postgres");
}

/// Advisory-lock key reserved for schema changes ("meshreg1").
const MIGRATION_LOCK_KEY: i64 = 0x6d65_7368_7265_6731;

#[async_trait]
impl SchemaStore for PgStore {
    /// Start-up reconciliation: migrate what is pending (under the lock), then verify.
    async fn prepare_schema(&self) -> Result<(), StoreError> {
        let mut client = self.dedicated().await?;
        let report = inspect(&client, self.schema.as_str()).await?;
        self.tell_about_neighbours(&client, !report.applied.is_empty())
            .await?;
        // Fast path: nothing pending means no lock (a fleet restarting together doesn't queue).
        if !report.pending().is_empty() {
            self.migrate_locked(&mut client, None).await?;
        }
        inspect(&client, self.schema.as_str())
            .await?
            .check_servable()
    }

    /// `migrate up [--to N]`: apply what is pending (up to version N); the names of what was
    /// applied.
    async fn migrate_up(&self, up_to: Option<u32>) -> Result<Vec<String>, StoreError> {
        let mut client = self.dedicated().await?;
        self.migrate_locked(&mut client, up_to).await
    }

    /// `migrate status`, with a note when the next start will move an earlier layout.
    async fn schema_report(&self) -> Result<SchemaReport, StoreError> {
        let client = self.dedicated().await?;
        let mut report = inspect(&client, self.schema.as_str()).await?;
        if report.applied.is_empty() {
            report
                .notes
                .extend(self.earlier_layout_note(&client).await?);
        }
        Ok(report)
    }

    /// `migrate import-reference` (see `import.rs`), into our tables brought up to date first,
    /// as `serve` would.
    async fn import_reference(
        &self,
        force: bool,
        reference_file: Option<PathBuf>,
    ) -> Result<ImportOutcome, StoreError> {
        if reference_file.is_some() {
            return Err(StoreError::Unsupported(
                "--from names the Go registry's SQLite file; on PostgreSQL its tables are read \
                 from the same database (schema public)",
            ));
        }
        self.prepare_schema().await?;
        self.import_reference_tables(force).await
    }

    /// `migrate prune --yes`: drops everything the model does not know, and forgets migrations
    /// this binary does not know (so a later upgrade applies them again), in one transaction
    /// under the migration lock. Returns what was dropped. It looks at our schema only, and
    /// names it in every statement: another application's tables are never candidates.
    async fn prune(&self) -> Result<Vec<SchemaPiece>, StoreError> {
        let mut client = self.dedicated().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let unknown = inspect(&client, self.schema.as_str()).await?.unknown;
        let tx = client.transaction().await?;
        for piece in &unknown {
            match (piece.drop_statement(self.schema.as_str()), piece) {
                (Some(statement), _) => tx.batch_execute(&statement).await?,
                (None, SchemaPiece::Migration { version, .. }) => {
                    tx.execute(
                        &format!("DELETE FROM {HISTORY_TABLE} WHERE version = $1"),
                        &[&(*version as i32)],
                    )
                    .await?;
                }
                (None, _) => {}
            }
        }
        tx.commit().await?;
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        Ok(unknown)
    }
}

impl PgStore {
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

    async fn migrate_locked(
        &self,
        client: &mut Client,
        up_to: Option<u32>,
    ) -> Result<Vec<String>, StoreError> {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        let applied = match self.claim_namespace(client).await {
            Ok(()) => reconciling(compiled::migrations::runner(), up_to)
                .run_async(client)
                .await
                .map_err(|e| StoreError::Migration(e.to_string())),
            Err(error) => Err(error),
        };
        // Unlock even when a migration failed (the session ends soon anyway).
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await?;
        Ok(applied_migrations(&applied?))
    }
}

/// Compares the live schema of `schema` with the binary's migrations and model.
pub(super) async fn inspect(client: &Client, schema: &str) -> Result<SchemaReport, StoreError> {
    let (applied, live) = read_live(client, schema).await?;
    Ok(compare(applied, &live))
}

/// A schema's history and tables compared with the binary's migrations and model.
pub(super) fn compare(applied: Vec<(i64, String)>, live: &LiveSchema) -> SchemaReport {
    SchemaReport::compare(
        Backend::Postgres,
        known_migrations(&compiled::migrations::runner()),
        applied,
        live,
    )
}

/// The migration history (`(version, name)`, empty without a history table), the tables with
/// their columns, and the indexes of one schema, as its catalogue tells them.
pub(super) async fn read_live(
    client: &Client,
    schema: &str,
) -> Result<(Vec<(i64, String)>, LiveSchema), StoreError> {
    let history = format!("{schema}.{HISTORY_TABLE}");
    let history_exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&history])
        .await?
        .try_get(0)?;
    let applied: Vec<(i64, String)> = if history_exists {
        client
            .query(
                &format!("SELECT version::bigint, name FROM {history} ORDER BY version"),
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
             WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'",
            &[&schema],
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
            "SELECT indexname::text, tablename::text FROM pg_indexes WHERE schemaname = $1",
            &[&schema],
        )
        .await?
    {
        indexes.insert(row.try_get(0)?, row.try_get(1)?);
    }
    Ok((applied, LiveSchema { columns, indexes }))
}
