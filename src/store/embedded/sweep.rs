//! Lease-expiry reclaim and the safety sweep on the embedded file (docs/state-machine.md#sweep).

use std::time::Duration;

use async_trait::async_trait;
use mesh_registry_actors::{LeaseCheck, LeaseHeld, SweepPhase, SweepReport};
use rusqlite::{named_params, Connection, OptionalExtension, Params, Row};
use uuid::Uuid;

use super::{duration_micros, encode, now_micros, time_of, uuid, EmbeddedStore};
use crate::domain::jobs::{stale_reason, TakenBack};
use crate::domain::registry_events;
use crate::store::{LeaseStore, StoreError};

#[async_trait]
impl LeaseStore for EmbeddedStore {
    async fn live_claims(&self) -> Result<Vec<LeaseHeld>, StoreError> {
        self.run(|db| {
            db.prepare_cached(include_str!("sql/live_claims.sql"))?
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
        self.run(move |db| reclaim_if_expired(db, job_id, claim_epoch))
            .await
    }

    async fn sweep(&self, phase: SweepPhase) -> Result<SweepReport, StoreError> {
        self.run(move |db| sweep(db, phase)).await
    }
}

/// Lease expiry of one watched claim; when it missed (renewed, re-claimed or ended), the claim
/// as it is now, read in the same call, so the timer re-arms or retires.
fn reclaim_if_expired(
    db: &Connection,
    job_id: Uuid,
    claim_epoch: i64,
) -> Result<LeaseCheck, StoreError> {
    let id = job_id.to_string();
    let reclaimed: Option<String> = db
        .prepare_cached(include_str!("sql/reclaim_expired_lease.sql"))?
        .query_row(
            named_params! {
                ":job_id": id,
                ":claim_epoch": claim_epoch,
                ":exhausted_error": TakenBack::LeaseExpired.exhausted_error(),
                ":now": now_micros(),
            },
            |row| row.get(0),
        )
        .optional()?;
    if let Some(status) = reclaimed {
        return Ok(LeaseCheck::Reclaimed {
            exhausted: status == "failed",
        });
    }
    let held: Option<(i64, i64)> = db
        .prepare_cached(include_str!("sql/live_claim_lease.sql"))?
        .query_row(named_params! {":job_id": id}, |row| {
            Ok((row.get("claim_epoch")?, row.get("lease_expires_at")?))
        })
        .optional()?;
    Ok(match held {
        Some((claim_epoch, lease)) => LeaseCheck::StillLeased {
            claim_epoch,
            lease_expires_at: time_of(lease),
        },
        None => LeaseCheck::NotLeased,
    })
}

/// One phase of the safety sweep (docs/state-machine.md#sweep).
fn sweep(db: &Connection, phase: SweepPhase) -> Result<SweepReport, StoreError> {
    let now = now_micros();
    let cutoff = |age: Duration| now - duration_micros(age);
    match phase {
        SweepPhase::PurgeAgents { older_than } => count(
            db,
            include_str!("sql/purge_departed_agents.sql"),
            named_params! {":cutoff": cutoff(older_than)},
        ),
        SweepPhase::RerouteOrphans => ended(
            db,
            include_str!("sql/reroute_untaken_pinned_jobs.sql"),
            named_params! {
                ":exhausted_error": TakenBack::Orphaned.exhausted_error(),
                ":now": now,
            },
        ),
        SweepPhase::ReclaimExpiredLeases => ended(
            db,
            include_str!("sql/reclaim_expired_leases.sql"),
            named_params! {
                ":exhausted_error": TakenBack::LeaseExpired.exhausted_error(),
                ":now": now,
            },
        ),
        SweepPhase::ExpireDeadlines => ended(
            db,
            include_str!("sql/expire_deadlines.sql"),
            named_params! {":now": now},
        ),
        SweepPhase::ExpireStale { timeout } => expire_stale(db, timeout, now),
        SweepPhase::PurgeEvents { older_than } => {
            let jobs = count(
                db,
                include_str!("sql/purge_finished_job_events.sql"),
                named_params! {":cutoff": cutoff(older_than)},
            )?;
            let registry = count(
                db,
                include_str!("sql/purge_mesh_events.sql"),
                named_params! {
                    ":cutoff": cutoff(older_than),
                    ":kept": registry_events::MAX_KEPT,
                },
            )?;
            Ok(SweepReport {
                count: jobs.count + registry.count,
                ..SweepReport::default()
            })
        }
        SweepPhase::PurgeJobs { older_than } => purge_jobs(db, cutoff(older_than)),
    }
}

/// The row retention: terminal jobs that ended before the cutoff, then their events.
fn purge_jobs(db: &Connection, cutoff: i64) -> Result<SweepReport, StoreError> {
    let purged: Vec<String> = db
        .prepare_cached(include_str!("sql/purge_finished_jobs.sql"))?
        .query_map(named_params! {":cutoff": cutoff}, |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut events = db.prepare_cached(include_str!("sql/delete_job_events.sql"))?;
    for job_id in &purged {
        events.execute(named_params! {":job_id": job_id})?;
    }
    Ok(SweepReport {
        count: purged.len() as u64,
        ..SweepReport::default()
    })
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

/// The stale phase (docs/state-machine.md#stale-expiry): live jobs without a deadline older
/// than the stale ceiling fail with the domain's reason, each with one `stale` event, in the
/// same call.
fn expire_stale(db: &Connection, timeout: Duration, now: i64) -> Result<SweepReport, StoreError> {
    let candidates: Vec<(String, Option<i64>)> = db
        .prepare_cached(include_str!("sql/stale_candidates.sql"))?
        .query_map(
            named_params! {":now": now, ":timeout": duration_micros(timeout)},
            |row| Ok((row.get("job_id")?, row.get("max_duration")?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut staled = Vec::with_capacity(candidates.len());
    for (job_id, max_duration) in candidates {
        let max_duration = Duration::from_secs(max_duration.unwrap_or(0).max(0) as u64);
        let reason = stale_reason(timeout, max_duration);
        let seq: i64 = db
            .prepare_cached(include_str!("sql/expire_stale_job.sql"))?
            .query_row(
                named_params! {":job_id": job_id, ":reason": reason, ":now": now},
                |row| row.get(0),
            )?;
        let id = Uuid::parse_str(&job_id)
            .map_err(|e| StoreError::Corrupt(format!("job_id {job_id:?}: {e}")))?;
        let payload = encode(&serde_json::json!({ "reason": "stale", "detail": reason }))?;
        let event = super::events::Appended::by_registry("stale", &payload);
        super::events::append(db, id, seq, &event, now)?;
        staled.push(id);
    }
    Ok(SweepReport {
        count: staled.len() as u64,
        ended: staled.clone(),
        evented: staled,
    })
}
