//! `migrate import-reference` on PostgreSQL (docs/operations.md#switching-from-the-go-registry):
//! the Go registry's jobs and events, in its ent tables in schema `public`, copied into ours in
//! one transaction. Its tables are only read; the column mapping is in sql/import_reference.sql.

use std::collections::BTreeMap;

use tokio_postgres::IsolationLevel;

use super::{column, PgStore};
use crate::store::namespace::REFERENCE_SCHEMA;
use crate::store::{ImportOutcome, ImportReport, ReferenceClaim, StoreError};

impl PgStore {
    pub(super) async fn import_reference_tables(
        &self,
        force: bool,
    ) -> Result<ImportOutcome, StoreError> {
        let mut conn = self.conn().await?;
        // One snapshot for the live-claim check and the copy: a claim taken in between cannot
        // slip through half seen.
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await?;
        let present: bool = tx
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                &[
                    &format!("{REFERENCE_SCHEMA}.jobs"),
                    &format!("{REFERENCE_SCHEMA}.job_events"),
                ],
            )
            .await?
            .try_get(0)?;
        if !present {
            return Ok(ImportOutcome::NoReference);
        }
        let claims = tx
            .query(include_str!("sql/reference_live_claims.sql"), &[])
            .await?
            .iter()
            .map(|row| {
                Ok(ReferenceClaim {
                    job_id: column(row, "job_id")?,
                    owner_instance_id: column(row, "owner_instance_id")?,
                    lease_expires_at: column(row, "lease_expires_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if !claims.is_empty() && !force {
            return Ok(ImportOutcome::LiveClaims(claims));
        }
        let row = tx
            .query_one(include_str!("sql/import_reference.sql"), &[])
            .await?;
        let by_status: String = column(&row, "jobs_by_status")?;
        let jobs_by_status: BTreeMap<String, i64> = serde_json::from_str(&by_status)
            .map_err(|error| StoreError::Corrupt(format!("imported jobs by status: {error}")))?;
        let report = ImportReport {
            reference_jobs: column(&row, "reference_jobs")?,
            jobs_by_status,
            events: column(&row, "events")?,
            forced_claims: claims,
        };
        tx.commit().await?;
        Ok(ImportOutcome::Imported(report))
    }
}
