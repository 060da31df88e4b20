//! Lease-expiry reclaim and the safety sweep (docs/state-machine.md#sweep): the statements
//! behind the supervisor's lease timers and sweep.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mesh_registry_actors::{LeaseCheck, LeaseHeld, SweepPhase, SweepReport};
use uuid::Uuid;

use tokio_postgres::types::ToSql;

use super::{column, PgStore, DEFAULT_LEASE_SECONDS};
use crate::domain::jobs::{stale_reason, TakenBack};
use crate::domain::registry_events;
use crate::store::{LeaseStore, StoreError};

#[async_trait]
impl LeaseStore for PgStore {
    /// Every live claim with a lease, for the lease timers to watch after a start.
    async fn live_claims(&self) -> Result<Vec<LeaseHeld>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/live_claims.sql"))
            .await?;
        conn.query(&statement, &[])
            .await?
            .iter()
            .map(|row| {
                Ok(LeaseHeld {
                    job_id: column(row, "job_id")?,
                    claim_epoch: column(row, "claim_epoch")?,
                    lease_expires_at: column(row, "lease_expires_at")?,
                })
            })
            .collect()
    }

    /// The lease timer's guarded reclaim: applies only to this claim (epoch) and only if its lease
    /// has expired by the database's clock; otherwise says what there is to watch now.
    async fn reclaim_if_expired(
        &self,
        job_id: Uuid,
        claim_epoch: i64,
    ) -> Result<LeaseCheck, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/reclaim_if_expired.sql"))
            .await?;
        let exhausted_error = TakenBack::LeaseExpired.exhausted_error();
        let Some(row) = conn
            .query_opt(&statement, &[&job_id, &claim_epoch, &exhausted_error])
            .await?
        else {
            return Ok(LeaseCheck::NotLeased);
        };
        if let Some(status) = column::<Option<&str>>(&row, "reclaimed")? {
            return Ok(LeaseCheck::Reclaimed {
                exhausted: status == "failed",
            });
        }
        // Not expired: the row as it was, if it is still a leased live claim.
        let live = matches!(
            column::<&str>(&row, "status")?,
            "working" | "input_required"
        );
        let owned = column::<Option<&str>>(&row, "owner_instance_id")?.is_some();
        Ok(
            match column::<Option<SystemTime>>(&row, "lease_expires_at")? {
                Some(lease_expires_at) if live && owned => LeaseCheck::StillLeased {
                    claim_epoch: column(&row, "claim_epoch")?,
                    lease_expires_at,
                },
                _ => LeaseCheck::NotLeased,
            },
        )
    }

    /// One phase of the safety sweep.
    async fn sweep(&self, phase: SweepPhase) -> Result<SweepReport, StoreError> {
        let seconds = |age: Duration| age.as_secs_f64();
        match phase {
            SweepPhase::PurgeAgents { older_than } => {
                let purge = include_str!("sql/purge_agents.sql");
                self.count(purge, &[&seconds(older_than)]).await
            }
            SweepPhase::RerouteOrphans => {
                let error = TakenBack::Orphaned.exhausted_error();
                let reroute = include_str!("sql/reroute_untaken_pinned_jobs.sql");
                self.ended(reroute, &[&error, &DEFAULT_LEASE_SECONDS]).await
            }
            SweepPhase::ReclaimExpiredLeases => {
                let error = TakenBack::LeaseExpired.exhausted_error();
                let reclaim = include_str!("sql/reclaim_expired_leases.sql");
                self.ended(reclaim, &[&error]).await
            }
            SweepPhase::ExpireDeadlines => {
                self.ended(include_str!("sql/expire_deadlines.sql"), &[])
                    .await
            }
            SweepPhase::ExpireStale { timeout } => self.expire_stale(timeout).await,
            SweepPhase::PurgeEvents { older_than } => {
                let purge = include_str!("sql/purge_events.sql");
                let jobs = self.count(purge, &[&seconds(older_than)]).await?;
                let purge = include_str!("sql/purge_mesh_events.sql");
                let kept = registry_events::MAX_KEPT;
                let registry = self.count(purge, &[&seconds(older_than), &kept]).await?;
                Ok(SweepReport {
                    count: jobs.count + registry.count,
                    ..SweepReport::default()
                })
            }
            SweepPhase::PurgeJobs { older_than } => {
                let purge = include_str!("sql/purge_jobs.sql");
                self.count(purge, &[&seconds(older_than)]).await
            }
        }
    }
}

impl PgStore {
    /// A phase that ends claims: the ids of the jobs it changed.
    async fn ended(
        &self,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<SweepReport, StoreError> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(statement).await?;
        let ended: Vec<Uuid> = conn
            .query(&statement, params)
            .await?
            .iter()
            .map(|row| column(row, "job_id"))
            .collect::<Result<_, _>>()?;
        Ok(SweepReport {
            count: ended.len() as u64,
            ended,
            evented: Vec::new(),
        })
    }

    /// A retention phase: how many rows it removed.
    async fn count(
        &self,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<SweepReport, StoreError> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(statement).await?;
        let count = conn.execute(&statement, params).await?;
        Ok(SweepReport {
            count,
            ..SweepReport::default()
        })
    }

    /// Stale expiry (docs/state-machine.md#stale-expiry): live jobs without a deadline older
    /// than `max(S, max_duration)` fail, each with one `stale` event, in the same statement.
    async fn expire_stale(&self, timeout: Duration) -> Result<SweepReport, StoreError> {
        let conn = self.conn().await?;
        let candidates = conn
            .prepare_cached(include_str!("sql/stale_candidates.sql"))
            .await?;
        let rows = conn.query(&candidates, &[&timeout.as_secs_f64()]).await?;
        if rows.is_empty() {
            return Ok(SweepReport::default());
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut reasons = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(column::<Uuid>(row, "job_id")?);
            let max_duration = column::<Option<i64>>(row, "max_duration")?
                .map(|s| Duration::from_secs(s.max(0) as u64))
                .unwrap_or_default();
            reasons.push(stale_reason(timeout, max_duration));
        }
        let apply = conn
            .prepare_cached(include_str!("sql/expire_stale.sql"))
            .await?;
        let staled: Vec<Uuid> = conn
            .query(&apply, &[&ids, &reasons, &self.channels.job_events])
            .await?
            .iter()
            .map(|row| column(row, "job_id"))
            .collect::<Result<_, _>>()?;
        Ok(SweepReport {
            count: staled.len() as u64,
            ended: staled.clone(),
            evented: staled,
        })
    }
}
