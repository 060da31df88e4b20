//! Lease-expiry reclaim and the safety sweep on the embedded file (contract §4 with decisions
//! rows 10, 11, 19).

use std::time::Duration;

use async_trait::async_trait;
use mesh_registry_actors::{LeaseCheck, LeaseHeld, SweepPhase, SweepReport};
use rusqlite::{params, Connection, OptionalExtension, Params, Row};
use uuid::Uuid;

use super::{encode, now_micros, seconds_micros, time_of, uuid, EmbeddedStore};
use crate::domain::jobs::stale_reason;
use crate::store::{LeaseStore, StoreError};

/// T9: a claim whose lease expired goes back to the queue (normalised to `working`), or fails
/// when its retry budget is spent. `?1` is now.
macro_rules! reclaim_expired_lease {
    () => {
        concat!(
            "UPDATE jobs SET ",
            requeue_or_fail!("lease expired: no completion within lease window", "?1")
        )
    };
}

#[async_trait]
impl LeaseStore for EmbeddedStore {
    async fn live_claims(&self) -> Result<Vec<LeaseHeld>, StoreError> {
        self.run(|db| {
            db.prepare_cached(concat!(
                "SELECT job_id, claim_epoch, lease_expires_at FROM jobs \
                 WHERE owner_instance_id IS NOT NULL AND lease_expires_at IS NOT NULL \
                   AND status IN ",
                live!()
            ))?
            .query_map([], |row| Ok(lease_from_row(row)))?
            .map(|row| row?)
            .collect()
        })
        .await
    }

    async fn reclaim_if_expired(
        &self,
        job_id: Uuid,
        claim_epoch: i64,
    ) -> Result<LeaseCheck, StoreError> {
        self.run(move |db| {
            let now = now_micros();
            let id = job_id.to_string();
            let reclaimed: Option<String> = db
                .prepare_cached(concat!(
                    reclaim_expired_lease!(),
                    "WHERE job_id = ?2 AND claim_epoch = ?3 AND lease_expires_at < ?1 \
                       AND status IN ",
                    live!(),
                    " RETURNING status"
                ))?
                .query_row(params![now, id, claim_epoch], |row| row.get(0))
                .optional()?;
            if let Some(status) = reclaimed {
                return Ok(LeaseCheck::Reclaimed {
                    exhausted: status == "failed",
                });
            }
            // Not expired: the row as it is, if it is still a leased live claim.
            let held: Option<(i64, i64)> = db
                .prepare_cached(concat!(
                    "SELECT claim_epoch, lease_expires_at FROM jobs \
                     WHERE job_id = ?1 AND owner_instance_id IS NOT NULL \
                       AND lease_expires_at IS NOT NULL AND status IN ",
                    live!()
                ))?
                .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            Ok(match held {
                Some((claim_epoch, lease)) => LeaseCheck::StillLeased {
                    claim_epoch,
                    lease_expires_at: time_of(lease),
                },
                None => LeaseCheck::NotLeased,
            })
        })
        .await
    }

    async fn sweep(&self, phase: SweepPhase) -> Result<SweepReport, StoreError> {
        self.run(move |db| {
            let now = now_micros();
            let cutoff = |age: Duration| now - seconds_micros(age.as_secs_f64());
            match phase {
                SweepPhase::PurgeAgents { older_than } => count(
                    db,
                    "DELETE FROM agents WHERE status <> 'healthy' AND updated_at < ?1",
                    [cutoff(older_than)],
                ),
                // T8, narrowed: see the PostgreSQL backend's phase for why only untouched
                // pinned jobs are rerouted here.
                SweepPhase::RerouteOrphans => ended(
                    db,
                    concat!(
                        "UPDATE jobs SET ",
                        requeue_or_fail!("orphaned: max retries exceeded", "?1"),
                        "WHERE status IN ",
                        live!(),
                        "  AND owner_instance_id IS NOT NULL AND lease_expires_at IS NULL \
                           AND submitted_at < ?1 - ",
                        "(CASE WHEN max_duration > 0 THEN max_duration ELSE 300 END) * 1000000",
                        "  AND NOT EXISTS (SELECT 1 FROM agents \
                             WHERE agents.agent_id = jobs.owner_instance_id \
                               AND agents.status = 'healthy') \
                         RETURNING job_id"
                    ),
                    [now],
                ),
                SweepPhase::ReclaimExpiredLeases => ended(
                    db,
                    concat!(
                        reclaim_expired_lease!(),
                        "WHERE lease_expires_at < ?1 AND status IN ",
                        live!(),
                        " RETURNING job_id"
                    ),
                    [now],
                ),
                // Guarded on the job still being live (decisions row 10).
                SweepPhase::ExpireDeadlines => ended(
                    db,
                    concat!(
                        "UPDATE jobs SET status = 'failed', error = 'deadline_exceeded', \
                           owner_instance_id = NULL, lease_expires_at = NULL, \
                           last_heartbeat_at = ?1 \
                         WHERE total_deadline < ?1 AND status IN ",
                        live!(),
                        " RETURNING job_id"
                    ),
                    [now],
                ),
                SweepPhase::ExpireStale { timeout } => expire_stale(db, timeout, now),
                SweepPhase::PurgeEvents { older_than } => count(
                    db,
                    "DELETE FROM job_events WHERE job_id IN ( \
                       SELECT job_id FROM jobs \
                       WHERE status IN ('completed', 'failed', 'cancelled') \
                         AND last_heartbeat_at < ?1)",
                    [cutoff(older_than)],
                ),
                SweepPhase::PurgeJobs { older_than } => {
                    let purged: Vec<String> = db
                        .prepare_cached(
                            "DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') \
                               AND last_heartbeat_at < ?1 RETURNING job_id",
                        )?
                        .query_map([cutoff(older_than)], |row| row.get(0))?
                        .collect::<Result<_, _>>()?;
                    let mut events =
                        db.prepare_cached("DELETE FROM job_events WHERE job_id = ?1")?;
                    for job_id in &purged {
                        events.execute([job_id])?;
                    }
                    Ok(SweepReport {
                        count: purged.len() as u64,
                        ..SweepReport::default()
                    })
                }
            }
        })
        .await
    }
}

fn lease_from_row(row: &Row) -> Result<LeaseHeld, StoreError> {
    Ok(LeaseHeld {
        job_id: uuid(row, "job_id")?,
        claim_epoch: row.get("claim_epoch")?,
        lease_expires_at: time_of(row.get("lease_expires_at")?),
    })
}

/// A phase that ends claims: the ids of the jobs its statement changed.
fn ended(db: &Connection, statement: &str, values: impl Params) -> Result<SweepReport, StoreError> {
    let ids = db
        .prepare_cached(statement)?
        .query_map(values, |row| Ok(uuid(row, "job_id")))?
        .map(|row| row?)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ended_report(ids))
}

fn ended_report(ended: Vec<Uuid>) -> SweepReport {
    SweepReport {
        count: ended.len() as u64,
        ended,
        evented: Vec::new(),
    }
}

/// A retention phase: how many rows it removed.
fn count(db: &Connection, statement: &str, values: impl Params) -> Result<SweepReport, StoreError> {
    let count = db.prepare_cached(statement)?.execute(values)?;
    Ok(SweepReport {
        count: count as u64,
        ..SweepReport::default()
    })
}

/// T11: live jobs without a deadline older than `max(S, max_duration)` fail, each with one
/// `stale` event, in the same call.
fn expire_stale(db: &Connection, timeout: Duration, now: i64) -> Result<SweepReport, StoreError> {
    let timeout_micros = seconds_micros(timeout.as_secs_f64());
    let candidates: Vec<(String, Option<i64>)> = db
        .prepare_cached(concat!(
            "SELECT job_id, max_duration FROM jobs \
             WHERE total_deadline IS NULL AND status IN ",
            live!(),
            "  AND submitted_at < ?1 - ?2 \
               AND submitted_at <= ?1 - max(?2, coalesce(max_duration, 0) * 1000000)"
        ))?
        .query_map(params![now, timeout_micros], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut staled = Vec::with_capacity(candidates.len());
    for (job_id, max_duration) in candidates {
        let max_duration = Duration::from_secs(max_duration.unwrap_or(0).max(0) as u64);
        let reason = stale_reason(timeout, max_duration);
        let seq: i64 = db
            .prepare_cached(
                "UPDATE jobs SET status = 'failed', error = ?2, owner_instance_id = NULL, \
                   lease_expires_at = NULL, last_heartbeat_at = ?3, event_seq = event_seq + 1 \
                 WHERE job_id = ?1 RETURNING event_seq",
            )?
            .query_row(params![job_id, reason, now], |row| row.get(0))?;
        let id = uuid::Uuid::parse_str(&job_id)
            .map_err(|e| StoreError::Corrupt(format!("job_id {job_id:?}: {e}")))?;
        let payload = encode(&serde_json::json!({ "reason": "stale", "detail": reason }))?;
        super::events::append(db, id, seq, "stale", Some(&payload), None, now)?;
        staled.push(id);
    }
    Ok(SweepReport {
        count: staled.len() as u64,
        ended: staled.clone(),
        evented: staled,
    })
}
