//! Our schema in a shared database (docs/operations.md#sharing-a-database): created under the
//! migration lock; a layout of an earlier mesh-registry (our tables in `public`) moved into it
//! once; the Go registry's tables in `public` recognised, named in the log, and never touched.

use tokio_postgres::Client;

use super::schema::{compare, read_live};
use super::PgStore;
use crate::store::namespace::{
    reference_found_line, reference_tables, OUR_FIRST_MIGRATION, REFERENCE_SCHEMA, RULE_FUNCTIONS,
};
use crate::store::schema::{LiveSchema, HISTORY_TABLE, MODEL};
use crate::store::{SchemaPiece, StoreError};

/// What an earlier mesh-registry left in `public`, if anything.
enum EarlierLayout {
    None,
    /// Our tables as we made them, with the history that says so: they can be moved.
    Intact {
        tables: Vec<String>,
    },
    /// Our history, but tables that another tool has changed (`meshui`'s auto-migration drops
    /// and retypes columns): these columns no longer are what we wrote.
    Changed(Vec<SchemaPiece>),
}

/// What `public` holds besides (or instead of) ours.
struct PublicSchema {
    reference_tables: Vec<String>,
    earlier: EarlierLayout,
}

async fn read_public(client: &Client) -> Result<PublicSchema, StoreError> {
    let (applied, live) = read_live(client, REFERENCE_SCHEMA).await?;
    let reference_tables = reference_tables(live.columns.keys().map(String::as_str));
    let ours = applied
        .iter()
        .any(|(version, name)| (*version, name.as_str()) == OUR_FIRST_MIGRATION);
    let earlier = match ours {
        false => EarlierLayout::None,
        true => earlier_layout(applied, &live),
    };
    Ok(PublicSchema {
        reference_tables,
        earlier,
    })
}

/// Columns a later migration adds to a table an earlier one created, with that migration's
/// version: an earlier layout that has not applied it lacks the column without anyone having
/// changed its tables.
const ADDED_LATER: [(&str, &str, i64); 5] = [
    ("agent_tools", "output_schema_hash", 6),
    ("agents", "entity_id", 7),
    ("agents", "resolution_audit", 9),
    ("jobs", "claimed_at", 10),
    ("jobs", "requeued_at", 10),
];

/// Our history is in `public`: the tables are ours as long as no column of ours is missing or
/// of another type in a table that exists (a whole table missing, or a column of
/// `ADDED_LATER`, is one a pending migration creates).
fn earlier_layout(applied: Vec<(i64, String)>, live: &LiveSchema) -> EarlierLayout {
    let versions: Vec<i64> = applied.iter().map(|(version, _)| *version).collect();
    let pending = |table: &str, column: &str| {
        ADDED_LATER
            .iter()
            .any(|&(t, c, v)| t == table && c == column && !versions.contains(&v))
    };
    let changed: Vec<SchemaPiece> = compare(applied, live)
        .missing
        .into_iter()
        .filter(|piece| match piece {
            SchemaPiece::Column { table, column, .. } => !pending(table, column),
            _ => false,
        })
        .collect();
    if !changed.is_empty() {
        return EarlierLayout::Changed(changed);
    }
    let tables = MODEL
        .iter()
        .map(|table| table.name)
        .chain([HISTORY_TABLE])
        .filter(|table| live.columns.contains_key(*table))
        .map(str::to_owned)
        .collect();
    EarlierLayout::Intact { tables }
}

fn listed<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl PgStore {
    /// At each start: says so when the Go registry's tables are in `public` (they are never
    /// read or changed), and warns when an earlier mesh-registry's tables are there beside ours
    /// (left by an older release that ran after the move: its data is not ours to take).
    pub(super) async fn tell_about_neighbours(
        &self,
        client: &Client,
        ours_exist: bool,
    ) -> Result<(), StoreError> {
        let public = read_public(client).await?;
        let schema = &self.schema;
        if !public.reference_tables.is_empty() {
            tracing::info!(
                "{}",
                reference_found_line(
                    "schema public",
                    &public.reference_tables,
                    &format!("schema {schema}")
                )
            );
        }
        if ours_exist && !matches!(public.earlier, EarlierLayout::None) {
            tracing::warn!(
                "schema public also holds tables of an earlier mesh-registry (its migration \
                 history says so); this registry serves schema {schema} and neither uses nor \
                 changes them (docs/operations.md#rolling-back-past-the-move)"
            );
        }
        Ok(())
    }

    /// For `migrate status` while our schema has no history yet: what the next start will do
    /// with an earlier mesh-registry's tables in `public` (the move `claim_namespace` makes).
    pub(super) async fn earlier_layout_note(
        &self,
        client: &Client,
    ) -> Result<Option<String>, StoreError> {
        let schema = &self.schema;
        Ok(match read_public(client).await?.earlier {
            EarlierLayout::None => None,
            EarlierLayout::Intact { tables } => Some(format!(
                "schema public holds the tables of an earlier mesh-registry ({}); the next start \
                 moves them into schema {schema}, with their data, once; a mesh-registry older \
                 than this one no longer finds them (docs/operations.md#rolling-back-past-the-move)",
                listed(&tables)
            )),
            EarlierLayout::Changed(pieces) => Some(format!(
                "schema public holds tables of an earlier mesh-registry that another tool has \
                 changed ({}); the next start leaves them where they are and begins with empty \
                 tables in schema {schema}",
                listed(&pieces)
            )),
        })
    }

    /// Under the migration lock, before migrating: our schema exists afterwards. When it has
    /// no history yet and `public` holds an earlier mesh-registry's tables, intact, they move
    /// into it in one transaction (data, indexes and the migration history with them), once.
    pub(super) async fn claim_namespace(&self, client: &mut Client) -> Result<(), StoreError> {
        let schema = self.schema.as_str();
        let (applied, _) = read_live(client, schema).await?;
        let earlier = match applied.is_empty() {
            true => read_public(client).await?.earlier,
            false => EarlierLayout::None,
        };
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&schema],
            )
            .await?
            .try_get(0)?;
        let tx = client.transaction().await?;
        // Only when missing: CREATE SCHEMA needs a right on the database that an operator may
        // grant only for the first start (or create the schema for us and grant it).
        if !exists {
            tx.batch_execute(&format!("CREATE SCHEMA {schema}")).await?;
        }
        match earlier {
            EarlierLayout::None => {}
            EarlierLayout::Changed(pieces) => tracing::warn!(
                "schema public holds tables of an earlier mesh-registry that another tool has \
                 changed ({}); they are not moved: mesh-registry starts with empty tables in \
                 schema {schema} and leaves them as they are \
                 (docs/operations.md#sharing-a-database)",
                listed(&pieces)
            ),
            EarlierLayout::Intact { tables } => {
                for table in &tables {
                    tx.batch_execute(&format!(
                        "ALTER TABLE {REFERENCE_SCHEMA}.{table} SET SCHEMA {schema}"
                    ))
                    .await?;
                }
                let functions = tx
                    .query(
                        "SELECT p.proname::text, pg_get_function_identity_arguments(p.oid) \
                         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                         WHERE n.nspname = $1 AND p.proname = ANY($2)",
                        &[&REFERENCE_SCHEMA, &RULE_FUNCTIONS],
                    )
                    .await?;
                let mut moved = tables;
                for row in functions {
                    let (name, arguments): (String, String) = (row.try_get(0)?, row.try_get(1)?);
                    tx.batch_execute(&format!(
                        "ALTER FUNCTION {REFERENCE_SCHEMA}.{name}({arguments}) SET SCHEMA {schema}"
                    ))
                    .await?;
                    moved.push(format!("{name}()"));
                }
                tracing::info!(
                    "moved the tables of an earlier mesh-registry from schema public into schema \
                     {schema} ({}), once; a mesh-registry older than this one no longer finds \
                     them (docs/operations.md#rolling-back-past-the-move)",
                    listed(&moved)
                );
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
