//! Lease-expiry reclaim and the safety sweep (contract §4 with decisions rows 10, 11, 19): the
//! statements behind the supervisor and its job actors.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mesh_registry_actors::{LeaseCheck, LeaseHeld, SweepPhase, SweepReport};
use uuid::Uuid;

use super::{column, PgStore};
use crate::domain::jobs::stale_reason;
use crate::store::{LeaseStore, StoreError};

/// T9: a claim whose lease expired goes back to the queue (normalised to `working`), or fails
/// when its retry budget is spent.
macro_rules! reclaim_expired_lease {
    () => {
        concat!(
            "UPDATE jobs SET ",
            requeue_or_fail!("lease expired: no completion within lease window", "now()")
        )
    };
}

#[async_trait]
impl LeaseStore for PgStore {
    /// Every live claim with a lease, for the job actors to watch after a start.
    async fn live_claims(&self) -> Result<Vec<LeaseHeld>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "SELECT job_id, claim_epoch, lease_expires_at FROM jobs \
                 WHERE owner_instance_id IS NOT NULL AND lease_expires_at IS NOT NULL \
                   AND status IN ",
                live!()
            ))
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

    /// The job actor's guarded reclaim: applies only to this claim (epoch) and only if its lease
    /// has expired by the database's clock; otherwise says what there is to watch now.
    async fn reclaim_if_expired(
        &self,
        job_id: Uuid,
        claim_epoch: i64,
    ) -> Result<LeaseCheck, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "WITH expired AS (",
                reclaim_expired_lease!(),
                "  WHERE job_id = $1 AND claim_epoch = $2 AND lease_expires_at < now() \
                     AND status IN ",
                live!(),
                "  RETURNING status) \
                 SELECT (SELECT status FROM expired) AS reclaimed, \
                   status, owner_instance_id, claim_epoch, lease_expires_at \
                 FROM jobs WHERE job_id = $1"
            ))
            .await?;
        let Some(row) = conn.query_opt(&statement, &[&job_id, &claim_epoch]).await? else {
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
        match phase {
            SweepPhase::PurgeAgents { older_than } => {
                self.count(
                    "DELETE FROM agents \
                     WHERE status <> 'healthy' AND updated_at < now() - make_interval(secs => $1)",
                    older_than,
                )
                .await
            }
            // T8, narrowed (docs/ownership.md): a job with a lease is
            // left to its lease, whatever its owner's health, because an older SDK keeps running
            // a job after it deregisters. Only a pinned job its owner never touched (no lease
            // yet) is rerouted here, once a lease window has passed since it was submitted.
            SweepPhase::RerouteOrphans => {
                self.ended(concat!(
                    "UPDATE jobs SET ",
                    requeue_or_fail!("orphaned: max retries exceeded", "now()"),
                    "WHERE status IN ",
                    live!(),
                    "  AND owner_instance_id IS NOT NULL AND lease_expires_at IS NULL \
                       AND submitted_at < now() - make_interval( \
                         secs => CASE WHEN max_duration > 0 THEN max_duration ELSE 300 END) \
                       AND NOT EXISTS (SELECT 1 FROM agents \
                         WHERE agents.agent_id = jobs.owner_instance_id \
                           AND agents.status = 'healthy') \
                     RETURNING job_id"
                ))
                .await
            }
            SweepPhase::ReclaimExpiredLeases => {
                self.ended(concat!(
                    reclaim_expired_lease!(),
                    "WHERE lease_expires_at < now() AND status IN ",
                    live!(),
                    " RETURNING job_id"
                ))
                .await
            }
            // Guarded on the job still being live (decisions row 10): a completion that commits
            // first is never overwritten.
            SweepPhase::ExpireDeadlines => {
                self.ended(concat!(
                    "UPDATE jobs SET status = 'failed', error = 'deadline_exceeded', \
                       owner_instance_id = NULL, lease_expires_at = NULL, \
                       last_heartbeat_at = now() \
                     WHERE total_deadline < now() AND status IN ",
                    live!(),
                    " RETURNING job_id"
                ))
                .await
            }
            SweepPhase::ExpireStale { timeout } => self.expire_stale(timeout).await,
            SweepPhase::PurgeEvents { older_than } => {
                self.count(
                    "DELETE FROM job_events USING jobs \
                     WHERE job_events.job_id = jobs.job_id \
                       AND jobs.status IN ('completed', 'failed', 'cancelled') \
                       AND jobs.last_heartbeat_at < now() - make_interval(secs => $1)",
                    older_than,
                )
                .await
            }
            SweepPhase::PurgeJobs { older_than } => {
                self.count(
                    "WITH purged AS ( \
                       DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') \
                         AND last_heartbeat_at < now() - make_interval(secs => $1) \
                       RETURNING job_id), \
                     purged_events AS ( \
                       DELETE FROM job_events WHERE job_id IN (SELECT job_id FROM purged)) \
                     SELECT job_id FROM purged",
                    older_than,
                )
                .await
            }
        }
    }
}

impl PgStore {
    /// A phase that ends claims: the ids of the jobs it changed.
    async fn ended(&self, statement: &str) -> Result<SweepReport, StoreError> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(statement).await?;
        let ended: Vec<Uuid> = conn
            .query(&statement, &[])
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
        older_than: Duration,
    ) -> Result<SweepReport, StoreError> {
        let conn = self.conn().await?;
        let statement = conn.prepare_cached(statement).await?;
        let count = conn
            .execute(&statement, &[&older_than.as_secs_f64()])
            .await?;
        Ok(SweepReport {
            count,
            ..SweepReport::default()
        })
    }

    /// T11: live jobs without a deadline older than `max(S, max_duration)` fail, each with one
    /// `stale` event, in the same statement.
    async fn expire_stale(&self, timeout: Duration) -> Result<SweepReport, StoreError> {
        let conn = self.conn().await?;
        let candidates = conn
            .prepare_cached(concat!(
                "SELECT job_id, max_duration FROM jobs \
                 WHERE total_deadline IS NULL AND status IN ",
                live!(),
                "  AND submitted_at < now() - make_interval(secs => $1) \
                   AND submitted_at <= now() \
                     - make_interval(secs => greatest($1, coalesce(max_duration, 0)))"
            ))
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
            .prepare_cached(concat!(
                "WITH staled AS ( \
                   UPDATE jobs SET status = 'failed', error = stale.reason, \
                     owner_instance_id = NULL, lease_expires_at = NULL, \
                     last_heartbeat_at = now(), event_seq = event_seq + 1 \
                   FROM unnest($1::uuid[], $2::text[]) AS stale(job_id, reason) \
                   WHERE jobs.job_id = stale.job_id AND jobs.total_deadline IS NULL \
                     AND jobs.status IN ",
                live!(),
                "  RETURNING jobs.job_id, jobs.event_seq, stale.reason) \
                 INSERT INTO job_events (job_id, seq, type, payload) \
                 SELECT job_id, event_seq, 'stale', \
                   json_build_object('reason', 'stale', 'detail', reason) \
                 FROM staled \
                 RETURNING job_id, pg_notify('",
                job_events_channel!(),
                "', job_id::text)::text"
            ))
            .await?;
        let staled: Vec<Uuid> = conn
            .query(&apply, &[&ids, &reasons])
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
