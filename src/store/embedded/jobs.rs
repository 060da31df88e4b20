//! Job statements on the embedded file (contract §1.5 T1–T7). Each call runs alone on the store
//! thread, so a guard may be checked by reading the row and then writing it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use mesh_registry_actors::LeaseHeld;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::EmbeddedStore;
use super::{decode, encode, json, micros, now_micros, seconds_micros, time_of, timestamp, uuid};
use crate::domain::jobs::JobState;
use crate::store::{
    CancelOutcome, ClaimAfter, ClaimCall, ClaimOutcome, DeltaOutcome, DeltaUpdate, ExecutorRead,
    JobListQuery, JobStore, NewJob, ReclaimOutcome, ReleaseOutcome, StoreError,
};
use crate::wire::{ClaimedJob, Job, JobStatus, RecvCursor, RejectReason, Timestamp};

/// Lease window of a job (contract §3.1) in microseconds: its `max_duration`, else 300 s.
macro_rules! lease_window {
    () => {
        "(CASE WHEN max_duration > 0 THEN max_duration ELSE 300 END) * 1000000"
    };
}

/// The lease window of a job with this `max_duration`, in microseconds.
fn lease_window(max_duration: Option<i64>) -> i64 {
    match max_duration {
        Some(seconds) if seconds > 0 => seconds * 1_000_000,
        _ => 300 * 1_000_000,
    }
}

/// Submission times strictly increase within the process, so that jobs submitted in the same
/// microsecond still keep their arrival order in the FIFO.
fn submission_time() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now_micros();
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(previous + 1)
}

#[async_trait]
impl JobStore for EmbeddedStore {
    async fn create_job(&self, job: NewJob) -> Result<(), StoreError> {
        self.run(move |db| {
            db.prepare_cached(
                "INSERT INTO jobs (job_id, capability, submitted_by, submitted_payload, \
                   owner_instance_id, max_retries, max_duration, total_deadline, submitted_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                job.id.to_string(),
                job.capability,
                job.submitted_by,
                job.submitted_payload.get(),
                job.owner_instance_id,
                job.max_retries,
                job.max_duration,
                job.total_deadline.map(|t| micros(t.0)),
                submission_time(),
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_job(&self, job_id: Uuid) -> Result<Option<Job>, StoreError> {
        self.run(move |db| {
            db.prepare_cached(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE job_id = ?1"
            ))?
            .query_row([job_id.to_string()], |row| Ok(job_from_row(row)))
            .optional()?
            .transpose()
        })
        .await
    }

    async fn list_jobs(&self, query: &JobListQuery) -> Result<Vec<Job>, StoreError> {
        let statuses = query.statuses.as_ref().map(encode).transpose()?;
        let owner = query.owner_instance_id.clone();
        let capability = query.capability.clone();
        let since = query.submitted_since.map(|t| micros(t.0));
        let after = query.after.map(|(t, id)| (micros(t.0), id.to_string()));
        let limit = query.limit;
        self.run(move |db| {
            let mut statement = db.prepare_cached(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs \
                 WHERE (?1 IS NULL OR status IN (SELECT value FROM json_each(?1))) \
                   AND (?2 IS NULL OR owner_instance_id = ?2) \
                   AND (?3 IS NULL OR capability = ?3) \
                   AND (?4 IS NULL OR submitted_at >= ?4) \
                   AND (?5 IS NULL OR (submitted_at, job_id) < (?5, ?6)) \
                 ORDER BY submitted_at DESC, job_id DESC \
                 LIMIT ?7"
            ))?;
            let (after_time, after_id) = after.unzip();
            let rows = statement.query_map(
                params![statuses, owner, capability, since, after_time, after_id, limit],
                |row| Ok(job_from_row(row)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn claim_next(&self, call: ClaimCall) -> Result<ClaimOutcome, StoreError> {
        self.run(move |db| {
            if !call.gate_checked {
                let gated: bool = db
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM agent_tools \
                         WHERE agent_id = ?1 AND capability = ?2 AND has_required_dependencies)",
                    )?
                    .query_row(params![call.instance_id, call.capability], |row| row.get(0))?;
                if gated {
                    return Ok(ClaimOutcome::Gated);
                }
            }
            let now = now_micros();
            let claimed = db
                .prepare_cached(concat!(
                    "UPDATE jobs SET owner_instance_id = ?2, \
                       attempt_count = attempt_count + 1, claim_epoch = claim_epoch + 1, \
                       lease_expires_at = ?3 + ",
                    lease_window!(),
                    ", last_heartbeat_at = ?3 \
                     WHERE job_id = ( \
                       SELECT job_id FROM jobs \
                       WHERE capability = ?1 AND status = 'working' \
                         AND owner_instance_id IS NULL AND attempt_count <= max_retries \
                       ORDER BY submitted_at, job_id LIMIT 1) \
                     RETURNING job_id, submitted_payload, attempt_count, claim_epoch, \
                       lease_expires_at, max_duration, recv_cursor"
                ))?
                .query_row(params![call.capability, call.instance_id, now], |row| {
                    Ok(claimed_from_row(row))
                })
                .optional()?
                .transpose()?;
            Ok(claimed.map_or(ClaimOutcome::NoWork, ClaimOutcome::Claimed))
        })
        .await
    }

    async fn apply_delta(&self, delta: DeltaUpdate) -> Result<DeltaOutcome, StoreError> {
        self.run(move |db| apply_delta(db, delta)).await
    }

    async fn job_state(&self, job_id: Uuid) -> Result<Option<JobState>, StoreError> {
        self.run(move |db| job_state(db, job_id)).await
    }

    async fn release_job(
        &self,
        job_id: Uuid,
        instance_id: &str,
        exhausted_error: &str,
    ) -> Result<ReleaseOutcome, StoreError> {
        let (instance_id, exhausted_error) = (instance_id.to_owned(), exhausted_error.to_owned());
        self.run(move |db| {
            let released = db
                .prepare_cached(concat!(
                    "UPDATE jobs SET owner_instance_id = NULL, lease_expires_at = NULL, \
                       last_heartbeat_at = ?4, \
                       status = CASE WHEN attempt_count > max_retries \
                         THEN 'failed' ELSE 'working' END, \
                       error = CASE WHEN attempt_count > max_retries \
                         THEN ?3 ELSE error END \
                     WHERE job_id = ?1 AND owner_instance_id = ?2 AND status IN ",
                    live!(),
                    " RETURNING status, attempt_count"
                ))?
                .query_row(
                    params![
                        job_id.to_string(),
                        instance_id,
                        exhausted_error,
                        now_micros()
                    ],
                    |row| Ok((job_status(row), row.get::<_, i64>("attempt_count")?)),
                )
                .optional()?;
            if let Some((status, attempt_count)) = released {
                return Ok(ReleaseOutcome::Released {
                    job_id,
                    status: status?,
                    attempt_count,
                });
            }
            Ok(match job_state(db, job_id)? {
                None => ReleaseOutcome::NotFound,
                Some(job) if job.status.is_terminal() => ReleaseOutcome::Terminal,
                Some(_) => ReleaseOutcome::NotOwner,
            })
        })
        .await
    }

    async fn cancel_job(
        &self,
        job_id: Uuid,
        error: Option<&str>,
        event_reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let error = error.map(str::to_owned);
        let payload = encode(&serde_json::json!({ "reason": event_reason }))?;
        self.run(move |db| {
            let now = now_micros();
            let cancelled = db
                .prepare_cached(concat!(
                    "UPDATE jobs SET status = 'cancelled', \
                       error = coalesce(?2, error), \
                       last_heartbeat_at = ?3, event_seq = event_seq + 1 \
                     WHERE job_id = ?1 AND status IN ",
                    live!(),
                    " RETURNING owner_instance_id, event_seq"
                ))?
                .query_row(params![job_id.to_string(), error, now], |row| {
                    Ok((
                        row.get::<_, Option<String>>("owner_instance_id")?,
                        row.get::<_, i64>("event_seq")?,
                    ))
                })
                .optional()?;
            let Some((previous_owner, seq)) = cancelled else {
                return Ok(match job_state(db, job_id)? {
                    None => CancelOutcome::NotFound,
                    Some(_) => CancelOutcome::Terminal,
                });
            };
            // The synthetic event commits with the cancellation or not at all.
            super::events::append(db, job_id, seq, "cancelled", Some(&payload), None, now)?;
            Ok(CancelOutcome::Cancelled {
                job_id,
                previous_owner,
            })
        })
        .await
    }

    async fn reclaim_job(&self, job_id: Uuid) -> Result<ReclaimOutcome, StoreError> {
        self.run(move |db| {
            let id = job_id.to_string();
            let previous_owner: Option<Option<String>> = db
                .prepare_cached(concat!(
                    "SELECT owner_instance_id FROM jobs WHERE job_id = ?1 AND status IN ",
                    live!()
                ))?
                .query_row([&id], |row| row.get(0))
                .optional()?;
            let Some(previous_owner) = previous_owner else {
                return Ok(match job_state(db, job_id)? {
                    None => ReclaimOutcome::NotFound,
                    Some(_) => ReclaimOutcome::Terminal,
                });
            };
            let (status, claim_epoch) = db
                .prepare_cached(concat!(
                    "UPDATE jobs SET ",
                    requeue_or_fail!("reclaimed: max retries exceeded", "?2"),
                    "WHERE job_id = ?1 RETURNING status, claim_epoch"
                ))?
                .query_row(params![id, now_micros()], |row| {
                    Ok((job_status(row), row.get::<_, i64>("claim_epoch")?))
                })?;
            Ok(ReclaimOutcome::Reclaimed {
                job_id,
                status: status?,
                previous_owner,
                claim_epoch,
            })
        })
        .await
    }

    async fn authorize_executor_read(
        &self,
        job_id: Uuid,
        instance_id: &str,
        claim_epoch: i64,
        stale_timeout: Option<Duration>,
    ) -> Result<ExecutorRead, StoreError> {
        let instance_id = instance_id.to_owned();
        self.run(move |db| {
            let id = job_id.to_string();
            let current = db
                .prepare_cached(
                    "SELECT status, owner_instance_id, claim_epoch, lease_expires_at, \
                       total_deadline, submitted_at, max_duration \
                     FROM jobs WHERE job_id = ?1",
                )?
                .query_row([&id], |row| {
                    Ok((
                        job_state_from_row(row),
                        row.get::<_, Option<i64>>("lease_expires_at")?,
                        row.get::<_, Option<i64>>("total_deadline")?,
                        row.get::<_, i64>("submitted_at")?,
                        row.get::<_, Option<i64>>("max_duration")?,
                    ))
                })
                .optional()?;
            let Some((job, lease, total_deadline, submitted_at, max_duration)) = current else {
                return Ok(ExecutorRead::NotFound);
            };
            let job = job?;
            if job.superseded_for(&instance_id, claim_epoch) {
                return Ok(ExecutorRead::Superseded);
            }
            let now = now_micros();
            let stale = stale_timeout.map_or(0.0, |d| d.as_secs_f64());
            let ceiling = match total_deadline {
                Some(deadline) => Some(deadline),
                None if stale > 0.0 => {
                    Some(submitted_at + seconds_micros(stale.max(max_duration.unwrap_or(0) as f64)))
                }
                None => None,
            };
            let window_end = now + lease_window(max_duration);
            let capped = ceiling.map_or(window_end, |ceiling| window_end.min(ceiling));
            let extend = !job.status.is_terminal() && lease.is_none_or(|lease| lease < capped);
            if !extend {
                return Ok(ExecutorRead::Serve { renewed: None });
            }
            db.prepare_cached(
                "UPDATE jobs SET lease_expires_at = ?2, last_heartbeat_at = ?3 WHERE job_id = ?1",
            )?
            .execute(params![id, capped, now])?;
            Ok(ExecutorRead::Serve {
                renewed: Some(LeaseHeld {
                    job_id,
                    claim_epoch,
                    lease_expires_at: time_of(capped),
                }),
            })
        })
        .await
    }
}

/// T3 on one job: the guard (owner, epoch when given, liveness), then the update.
fn apply_delta(db: &Connection, delta: DeltaUpdate) -> Result<DeltaOutcome, StoreError> {
    let id = delta.job_id.to_string();
    let current = db
        .prepare_cached(
            "SELECT status, owner_instance_id, claim_epoch, recv_cursor, max_duration, \
               lease_expires_at FROM jobs WHERE job_id = ?1",
        )?
        .query_row([&id], |row| {
            Ok((
                job_state_from_row(row),
                row.get::<_, Option<String>>("recv_cursor")?,
                row.get::<_, Option<i64>>("max_duration")?,
                row.get::<_, Option<i64>>("lease_expires_at")?,
            ))
        })
        .optional()?;
    let Some((job, cursor, max_duration, lease)) = current else {
        return Ok(DeltaOutcome::Rejected(RejectReason::NotFound));
    };
    let job = job?;
    if let Some(reason) = job.delta_rejection(&delta.instance_id, delta.claim_epoch) {
        return Ok(DeltaOutcome::Rejected(reason));
    }
    let status = delta.status.unwrap_or(job.status);
    let now = now_micros();
    let lease = if status.is_terminal() {
        lease
    } else {
        Some(now + lease_window(max_duration))
    };
    let cursor = match delta.recv_cursor {
        None => cursor,
        Some(advance) => {
            let mut merged: RecvCursor = match cursor {
                Some(stored) => decode(&stored, "recv_cursor")?,
                None => RecvCursor::new(),
            };
            for (key, seq) in advance {
                let entry = merged.entry(key).or_insert(seq);
                *entry = (*entry).max(seq);
            }
            Some(encode(&merged)?)
        }
    };
    let result = delta
        .result
        .filter(|_| delta.status == Some(JobStatus::Completed));
    let error = delta
        .error
        .filter(|_| delta.status == Some(JobStatus::Failed));
    db.prepare_cached(
        "UPDATE jobs SET status = ?2, progress = coalesce(?3, progress), \
           progress_message = coalesce(?4, progress_message), \
           result = coalesce(?5, result), error = coalesce(?6, error), recv_cursor = ?7, \
           last_heartbeat_at = ?8, lease_expires_at = ?9 \
         WHERE job_id = ?1",
    )?
    .execute(params![
        id,
        status.as_str(),
        delta.progress,
        delta.progress_message,
        result.as_ref().map(|r| r.get()),
        error,
        cursor,
        now,
        lease,
    ])?;
    Ok(DeltaOutcome::Accepted(match lease {
        Some(lease) if !status.is_terminal() => ClaimAfter::Held(LeaseHeld {
            job_id: delta.job_id,
            claim_epoch: job.claim_epoch,
            lease_expires_at: time_of(lease),
        }),
        _ => ClaimAfter::Ended(delta.job_id),
    }))
}

/// Status, owner and epoch as they are now: what a miss path needs to name its reason.
pub(super) fn job_state(db: &Connection, job_id: Uuid) -> Result<Option<JobState>, StoreError> {
    db.prepare_cached("SELECT status, owner_instance_id, claim_epoch FROM jobs WHERE job_id = ?1")?
        .query_row([job_id.to_string()], |row| Ok(job_state_from_row(row)))
        .optional()?
        .transpose()
}

fn job_state_from_row(row: &Row) -> Result<JobState, StoreError> {
    Ok(JobState {
        status: job_status(row)?,
        owner_instance_id: row.get("owner_instance_id")?,
        claim_epoch: row.get("claim_epoch")?,
    })
}

fn job_status(row: &Row) -> Result<JobStatus, StoreError> {
    let raw: String = row.get("status")?;
    JobStatus::parse(&raw).ok_or_else(|| StoreError::Corrupt(format!("job status {raw:?}")))
}

fn claimed_from_row(row: &Row) -> Result<ClaimedJob, StoreError> {
    Ok(ClaimedJob {
        id: uuid(row, "job_id")?,
        submitted_payload: submitted_payload(row)?,
        attempt_count: row.get("attempt_count")?,
        claim_epoch: row.get("claim_epoch")?,
        lease_expires_at: timestamp(row, "lease_expires_at")?,
        max_duration: row.get("max_duration")?,
        recv_cursor: recv_cursor(row)?,
    })
}

fn job_from_row(row: &Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: uuid(row, "job_id")?,
        capability: row.get("capability")?,
        owner_instance_id: row.get("owner_instance_id")?,
        claim_epoch: row.get("claim_epoch")?,
        status: job_status(row)?,
        progress: row.get("progress")?,
        progress_message: row.get("progress_message")?,
        result: json(row, "result")?,
        error: row.get("error")?,
        submitted_payload: submitted_payload(row)?,
        recv_cursor: recv_cursor(row)?,
        attempt_count: row.get("attempt_count")?,
        max_retries: row.get("max_retries")?,
        max_duration: row.get("max_duration")?,
        total_deadline: timestamp(row, "total_deadline")?,
        lease_expires_at: timestamp(row, "lease_expires_at")?,
        last_heartbeat_at: timestamp(row, "last_heartbeat_at")?,
        submitted_at: Timestamp(time_of(row.get("submitted_at")?)),
        submitted_by: row
            .get::<_, Option<String>>("submitted_by")?
            .unwrap_or_default(),
    })
}

fn submitted_payload(row: &Row) -> Result<crate::wire::RawJson, StoreError> {
    json(row, "submitted_payload")?
        .ok_or_else(|| StoreError::Corrupt("job without a submitted_payload".into()))
}

/// An empty stored cursor reads as `null`, like a cursor never written.
fn recv_cursor(row: &Row) -> Result<Option<RecvCursor>, StoreError> {
    Ok(row
        .get::<_, Option<String>>("recv_cursor")?
        .map(|text| decode::<RecvCursor>(&text, "recv_cursor"))
        .transpose()?
        .filter(|cursor| !cursor.is_empty()))
}
