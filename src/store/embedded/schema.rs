//! Schema reconciliation on the embedded file: the embedded migrations, then the same model
//! verification as PostgreSQL (in SQLite's types). The file has one process, so no lock is
//! needed beyond the file's own.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use rusqlite::{named_params, Connection};

use super::file::REFERENCE_DEFAULT_FILE;
use super::import::import_reference_file;
use super::EmbeddedStore;
use crate::store::schema::{
    applied_migrations, known_migrations, reconciling, LiveSchema, HISTORY_TABLE,
};
use crate::store::{Backend, ImportOutcome, SchemaPiece, SchemaReport, SchemaStore, StoreError};

mod compiled {
    refinery::embed_migrations!("migrations/embedded");
}

fn migrate(db: &mut Connection, up_to: Option<u32>) -> Result<Vec<String>, StoreError> {
    let report = reconciling(compiled::migrations::runner(), up_to)
        .run(db)
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(applied_migrations(&report))
}

#[async_trait]
impl SchemaStore for EmbeddedStore {
    async fn prepare_schema(&self) -> Result<(), StoreError> {
        self.run_alone(|db| {
            if !inspect(db)?.pending().is_empty() {
                migrate(db, None)?;
            }
            inspect(db)?.check_servable()
        })
        .await
    }

    async fn migrate_up(&self, up_to: Option<u32>) -> Result<Vec<String>, StoreError> {
        self.run_alone(move |db| migrate(db, up_to)).await
    }

    async fn schema_report(&self) -> Result<SchemaReport, StoreError> {
        self.run_alone(|db| inspect(db)).await
    }

    /// From the Go registry's SQLite file (see `import`), into our file brought up to date
    /// first, as `serve` would.
    async fn import_reference(
        &self,
        force: bool,
        reference_file: Option<PathBuf>,
    ) -> Result<ImportOutcome, StoreError> {
        self.prepare_schema().await?;
        let file = reference_file.unwrap_or_else(|| REFERENCE_DEFAULT_FILE.into());
        self.run_alone(move |db| import_reference_file(db, &file, force))
            .await
    }

    async fn prune(&self) -> Result<Vec<SchemaPiece>, StoreError> {
        self.run_alone(|db| {
            let unknown = inspect(db)?.unknown;
            let tx = db.transaction()?;
            for piece in &unknown {
                match (piece.drop_statement("main"), piece) {
                    (Some(statement), _) => tx.execute_batch(&statement)?,
                    (None, SchemaPiece::Migration { version, .. }) => {
                        tx.execute(
                            include_str!("sql/forget_migration.sql"),
                            named_params! {":version": version},
                        )?;
                    }
                    (None, _) => {}
                }
            }
            tx.commit()?;
            Ok(unknown)
        })
        .await
    }
}

/// Compares the file's schema with the binary's migrations and model. A table's primary key
/// is reported as `<table>_pkey`, PostgreSQL's name for it, so that one model fits both.
fn inspect(db: &Connection) -> Result<SchemaReport, StoreError> {
    let history_exists = db
        .prepare(include_str!("sql/history_table_exists.sql"))?
        .exists(named_params! {":table": HISTORY_TABLE})?;
    let applied: Vec<(i64, String)> = if history_exists {
        db.prepare(include_str!("sql/applied_migrations.sql"))?
            .query_map([], |row| Ok((row.get("version")?, row.get("name")?)))?
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let mut columns: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut indexes: BTreeMap<String, String> = BTreeMap::new();
    let mut statement = db.prepare(include_str!("sql/table_columns.sql"))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (table, column, data_type, pk): (String, String, String, i64) = (
            row.get("table_name")?,
            row.get("column_name")?,
            row.get("data_type")?,
            row.get("primary_key")?,
        );
        if pk > 0 {
            indexes.insert(format!("{table}_pkey"), table.clone());
        }
        columns.entry(table).or_default().insert(column, data_type);
    }
    let mut statement = db.prepare(include_str!("sql/indexes.sql"))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        indexes.insert(row.get("name")?, row.get("tbl_name")?);
    }
    Ok(SchemaReport::compare(
        Backend::Embedded,
        known_migrations(&compiled::migrations::runner()),
        applied,
        &LiveSchema { columns, indexes },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_statements_name_the_table_refinery_writes() {
        for statement in [
            include_str!("sql/applied_migrations.sql"),
            include_str!("sql/forget_migration.sql"),
        ] {
            let from = format!("FROM {HISTORY_TABLE} ");
            assert!(statement.contains(&from), "{statement}");
        }
    }

    /// A file a newer binary migrated: prune forgets the migration this binary does not know
    /// and drops its table, and keeps everything the model knows.
    #[tokio::test]
    async fn prune_forgets_unknown_migrations_and_drops_their_tables() {
        let path = std::env::temp_dir().join(format!("mesh-prune-{}.db", uuid::Uuid::new_v4()));
        let store = EmbeddedStore::open(path.to_str().unwrap()).unwrap();
        store.prepare_schema().await.unwrap();
        store
            .run_alone(|db| {
                db.execute_batch(&format!(
                    "CREATE TABLE future (id INTEGER); \
                     INSERT INTO {HISTORY_TABLE} (version, name, applied_on, checksum) \
                     VALUES (999, 'future', '', '0');"
                ))?;
                Ok(())
            })
            .await
            .unwrap();
        let dropped = store.prune().await.unwrap();
        let report = store.schema_report().await.unwrap();
        store.shut_down().await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        assert!(
            dropped.contains(&SchemaPiece::Table("future".into())),
            "{dropped:?}"
        );
        assert!(dropped.contains(&SchemaPiece::Migration {
            version: 999,
            name: "future".into()
        }));
        assert!(report.unknown.is_empty(), "{:?}", report.unknown);
        report.check_servable().unwrap();
    }
}
