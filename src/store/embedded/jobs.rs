//! Job statements on the embedded file (docs/state-machine.md). Each call runs alone on the
//! store thread, so a guard may be checked by reading the row and then writing it; each
//! statement (`sql/*.sql`) says where it relies on that.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mesh_registry_actors::LeaseHeld;
use rusqlite::{named_params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::EmbeddedStore;
use super::{decode, elapsed, encode, json, micros, now_micros, time_of, timestamp, uuid};
use crate::domain::jobs::{merge_recv_cursor, poll_lease, JobState, TakenBack};
use crate::store::model::job_weight;
use crate::store::JobPage;
use crate::store::{
    CancelOutcome, ClaimAfter, ClaimCall, ClaimOutcome, DeltaOutcome, DeltaUpdate, ExecutorRead,
    JobListQuery, JobStore, NewJob, ReclaimOutcome, ReleaseOutcome, StoreError,
};
use crate::wire::{ClaimedJob, Job, JobStatus, RecvCursor, RejectReason, Timestamp};

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
            db.prepare_cached(include_str!("sql/create_job.sql"))?
                .execute(named_params! {
                    ":job_id": job.id.to_string(),
                    ":capability": job.capability,
                    ":submitted_by": job.submitted_by,
                    ":submitted_payload": job.submitted_payload.get(),
                    ":owner_instance_id": job.owner_instance_id,
                    ":max_retries": job.max_retries,
                    ":max_duration": job.max_duration,
                    ":total_deadline": job.total_deadline.map(|t| micros(t.0)),
                    ":submitted_at": submission_time(),
                })?;
            Ok(())
        })
        .await
    }

    async fn get_job(&self, job_id: Uuid) -> Result<Option<Job>, StoreError> {
        self.run(move |db| {
            db.prepare_cached(include_str!("sql/get_job.sql"))?
                .query_row(named_params! {":job_id": job_id.to_string()}, |row| {
                    Ok(job_from_row(row))
                })
                .optional()?
                .transpose()
        })
        .await
    }

    async fn list_jobs(&self, query: &JobListQuery, max_bytes: i64) -> Result<JobPage, StoreError> {
        let statuses = query.statuses.as_ref().map(encode).transpose()?;
        let owner = query.owner_instance_id.clone();
        let capability = query.capability.clone();
        let since = query.submitted_since.map(|t| micros(t.0));
        let (after_time, after_id) = query
            .after
            .map(|(t, id)| (micros(t.0), id.to_string()))
            .unzip();
        let limit = query.limit;
        self.run(move |db| {
            let mut statement = db.prepare_cached(include_str!("sql/list_jobs.sql"))?;
            let rows = statement.query_map(
                named_params! {
                    ":statuses": statuses,
                    ":owner_instance_id": owner,
                    ":capability": capability,
                    ":submitted_since": since,
                    ":after_time": after_time,
                    ":after_id": after_id,
                    ":limit": limit,
                },
                |row| Ok(job_from_row(row)),
            )?;
            // Rows are read one at a time: the page stops reading at the budget.
            let mut jobs = Vec::new();
            let mut weight = 0;
            for row in rows {
                if weight >= max_bytes {
                    return Ok(JobPage { jobs, cut: true });
                }
                let job = row??;
                weight += job_weight(&job);
                jobs.push(job);
            }
            Ok(JobPage { jobs, cut: false })
        })
        .await
    }

    async fn claim_next(&self, call: ClaimCall) -> Result<ClaimOutcome, StoreError> {
        self.run(move |db| claim_next(db, call)).await
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
                .prepare_cached(include_str!("sql/release_job.sql"))?
                .query_row(
                    named_params! {
                        ":job_id": job_id.to_string(),
                        ":instance_id": instance_id,
                        ":exhausted_error": exhausted_error,
                        ":now": now_micros(),
                    },
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
                .prepare_cached(include_str!("sql/cancel_job.sql"))?
                .query_row(
                    named_params! {":job_id": job_id.to_string(), ":error": error, ":now": now},
                    |row| {
                        Ok((
                            row.get::<_, Option<String>>("owner_instance_id")?,
                            row.get::<_, i64>("event_seq")?,
                            elapsed(row.get("ran_micros")?),
                        ))
                    },
                )
                .optional()?;
            let Some((previous_owner, seq, ran)) = cancelled else {
                return Ok(match job_state(db, job_id)? {
                    None => CancelOutcome::NotFound,
                    Some(_) => CancelOutcome::Terminal,
                });
            };
            // The synthetic event commits with the cancellation or not at all.
            let event = super::events::Appended::by_registry("cancelled", &payload);
            super::events::append(db, job_id, seq, &event, now)?;
            Ok(CancelOutcome::Cancelled {
                job_id,
                previous_owner,
                ran,
            })
        })
        .await
    }

    async fn reclaim_job(&self, job_id: Uuid) -> Result<ReclaimOutcome, StoreError> {
        self.run(move |db| reclaim_job(db, job_id)).await
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
            authorize_executor_read(db, job_id, &instance_id, claim_epoch, stale_timeout)
        })
        .await
    }
}

/// A claim (docs/state-machine.md#claim): the claim gate (unless the caller already checked
/// it), then the claim.
fn claim_next(db: &Connection, call: ClaimCall) -> Result<ClaimOutcome, StoreError> {
    if !call.gate_checked {
        let gated: bool = db
            .prepare_cached(include_str!("sql/claimer_is_gated.sql"))?
            .query_row(
                named_params! {":instance_id": call.instance_id, ":capability": call.capability},
                |row| row.get(0),
            )?;
        if gated {
            return Ok(ClaimOutcome::Gated);
        }
    }
    let claimed = db
        .prepare_cached(include_str!("sql/claim_next.sql"))?
        .query_row(
            named_params! {
                ":capability": call.capability,
                ":instance_id": call.instance_id,
                ":now": now_micros(),
            },
            |row| Ok(claimed_from_row(row)),
        )
        .optional()?
        .transpose()?;
    Ok(claimed.unwrap_or(ClaimOutcome::NoWork))
}

/// An owner's delta (docs/state-machine.md#update): the guard (the domain's `delta_rejection`
/// on the row as it is), then the update with the merged cursor; nothing can come between the
/// two (one call at a time).
fn apply_delta(db: &Connection, delta: DeltaUpdate) -> Result<DeltaOutcome, StoreError> {
    let id = delta.job_id.to_string();
    let current = db
        .prepare_cached(include_str!("sql/delta_target.sql"))?
        .query_row(named_params! {":job_id": id}, |row| {
            Ok((job_state_from_row(row), recv_cursor(row)))
        })
        .optional()?;
    let Some((job, cursor)) = current else {
        return Ok(DeltaOutcome::Rejected(RejectReason::NotFound));
    };
    let job = job?;
    if let Some(reason) = job.delta_rejection(&delta.instance_id, delta.claim_epoch) {
        return Ok(DeltaOutcome::Rejected(reason));
    }
    let cursor = match &delta.recv_cursor {
        None => None,
        Some(advance) => Some(encode(&merge_recv_cursor(cursor?, advance))?),
    };
    let result = delta
        .result
        .filter(|_| delta.status == Some(JobStatus::Completed));
    let error = delta
        .error
        .filter(|_| delta.status == Some(JobStatus::Failed));
    let (status, lease, ran) = db
        .prepare_cached(include_str!("sql/apply_delta.sql"))?
        .query_row(
            named_params! {
                ":job_id": id,
                ":status": delta.status.unwrap_or(job.status).as_str(),
                ":progress": delta.progress,
                ":progress_message": delta.progress_message,
                ":result": result.as_ref().map(|r| r.get()),
                ":error": error,
                ":recv_cursor": cursor,
                ":now": now_micros(),
            },
            |row| {
                Ok((
                    job_status(row),
                    row.get::<_, Option<i64>>("lease_expires_at")?,
                    elapsed(row.get("ran_micros")?),
                ))
            },
        )?;
    Ok(DeltaOutcome::Accepted(match lease {
        Some(lease) if !status?.is_terminal() => ClaimAfter::Held(LeaseHeld {
            job_id: delta.job_id,
            claim_epoch: job.claim_epoch,
            lease_expires_at: time_of(lease),
        }),
        _ => ClaimAfter::Ended {
            job_id: delta.job_id,
            ran,
        },
    }))
}

/// A force reclaim (docs/state-machine.md#force-reclaim): the previous owner as it is now (what
/// the answer names), then the reclaim; nothing can come between the two (one call at a time).
fn reclaim_job(db: &Connection, job_id: Uuid) -> Result<ReclaimOutcome, StoreError> {
    let previous_owner = match job_state(db, job_id)? {
        None => return Ok(ReclaimOutcome::NotFound),
        Some(job) if job.status.is_terminal() => return Ok(ReclaimOutcome::Terminal),
        Some(job) => job.owner_instance_id,
    };
    let (status, claim_epoch) = db
        .prepare_cached(include_str!("sql/reclaim_job.sql"))?
        .query_row(
            named_params! {
                ":job_id": job_id.to_string(),
                ":exhausted_error": TakenBack::Reclaimed.exhausted_error(),
                ":now": now_micros(),
            },
            |row| Ok((job_status(row), row.get::<_, i64>("claim_epoch")?)),
        )?;
    Ok(ReclaimOutcome::Reclaimed {
        job_id,
        status: status?,
        previous_owner,
        claim_epoch,
    })
}

/// An executor read (docs/state-machine.md#renew-on-read) and its fencing: a caller that no
/// longer holds the live job at this epoch is superseded; one that does gets its lease moved to
/// the domain's poll lease, when that is later than the one it has.
fn authorize_executor_read(
    db: &Connection,
    job_id: Uuid,
    instance_id: &str,
    claim_epoch: i64,
    stale_timeout: Option<Duration>,
) -> Result<ExecutorRead, StoreError> {
    let id = job_id.to_string();
    let current = db
        .prepare_cached(include_str!("sql/executor_read_state.sql"))?
        .query_row(named_params! {":job_id": id}, |row| {
            Ok((
                job_state_from_row(row),
                row.get::<_, Option<i64>>("max_duration")?,
                row.get::<_, Option<i64>>("total_deadline")?,
                row.get::<_, i64>("submitted_at")?,
            ))
        })
        .optional()?;
    let Some((job, max_duration, total_deadline, submitted_at)) = current else {
        return Ok(ExecutorRead::NotFound);
    };
    if job?.superseded_for(instance_id, claim_epoch) {
        return Ok(ExecutorRead::Superseded);
    }
    let now = SystemTime::now();
    let lease = poll_lease(
        max_duration,
        total_deadline.map(time_of),
        time_of(submitted_at),
        stale_timeout,
    )
    .at(now);
    let renewed: Option<i64> = db
        .prepare_cached(include_str!("sql/renew_lease_on_read.sql"))?
        .query_row(
            named_params! {
                ":job_id": id,
                ":lease_expires_at": micros(lease),
                ":now": micros(now),
            },
            |row| row.get(0),
        )
        .optional()?;
    Ok(ExecutorRead::Serve {
        renewed: renewed.map(|lease| LeaseHeld {
            job_id,
            claim_epoch,
            lease_expires_at: time_of(lease),
        }),
    })
}

/// Status, owner and epoch as they are now: what a miss path needs to name its reason.
pub(super) fn job_state(db: &Connection, job_id: Uuid) -> Result<Option<JobState>, StoreError> {
    db.prepare_cached(include_str!("sql/job_state.sql"))?
        .query_row(named_params! {":job_id": job_id.to_string()}, |row| {
            Ok(job_state_from_row(row))
        })
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

fn claimed_from_row(row: &Row) -> Result<ClaimOutcome, StoreError> {
    Ok(ClaimOutcome::Claimed {
        job: ClaimedJob {
            id: uuid(row, "job_id")?,
            submitted_payload: submitted_payload(row)?,
            attempt_count: row.get("attempt_count")?,
            claim_epoch: row.get("claim_epoch")?,
            lease_expires_at: timestamp(row, "lease_expires_at")?,
            max_duration: row.get("max_duration")?,
            recv_cursor: recv_cursor(row)?,
        },
        waited: elapsed(row.get("waited_micros")?),
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
