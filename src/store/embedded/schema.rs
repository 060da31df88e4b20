//! Schema reconciliation on the embedded file: the embedded migrations, then the same model
//! verification as PostgreSQL (in SQLite's types). The file has one process, so no lock is
//! needed beyond the file's own.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::Connection;

use super::EmbeddedStore;
use crate::store::model::{
    applied_migrations, known_migrations, reconciling, LiveSchema, HISTORY_TABLE,
};
use crate::store::{Backend, SchemaPiece, SchemaReport, SchemaStore, StoreError};

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

    async fn prune(&self) -> Result<Vec<SchemaPiece>, StoreError> {
        self.run_alone(|db| {
            let unknown = inspect(db)?.unknown;
            let tx = db.transaction()?;
            for piece in &unknown {
                match (piece.drop_statement(), piece) {
                    (Some(statement), _) => tx.execute_batch(&statement)?,
                    (None, SchemaPiece::Migration { version, .. }) => {
                        tx.execute(
                            &format!("DELETE FROM {HISTORY_TABLE} WHERE version = ?1"),
                            [version],
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
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([HISTORY_TABLE])?;
    let applied: Vec<(i64, String)> = if history_exists {
        db.prepare(&format!(
            "SELECT version, name FROM {HISTORY_TABLE} ORDER BY version"
        ))?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let mut columns: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut indexes: BTreeMap<String, String> = BTreeMap::new();
    let mut statement = db.prepare(
        "SELECT m.name, c.name, c.type, c.pk FROM sqlite_master m \
         JOIN pragma_table_info(m.name) c \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let (table, column, data_type, pk): (String, String, String, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        if pk > 0 {
            indexes.insert(format!("{table}_pkey"), table.clone());
        }
        columns.entry(table).or_default().insert(column, data_type);
    }
    let mut statement = db.prepare(
        "SELECT name, tbl_name FROM sqlite_master \
         WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%'",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        indexes.insert(row.get(0)?, row.get(1)?);
    }
    Ok(SchemaReport::compare(
        Backend::Embedded,
        known_migrations(&compiled::migrations::runner()),
        applied,
        &LiveSchema { columns, indexes },
    ))
}
