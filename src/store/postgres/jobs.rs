//! Job statements: submit, read, list, claim, owner deltas, release, cancel, force reclaim and the
//! executor read's lease extension (docs/state-machine.md#transitions).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use mesh_registry_actors::LeaseHeld;
use serde_json::value::RawValue;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::writes::{Write, Written};
use super::{column, PgStore, DEFAULT_LEASE_SECONDS};
use crate::domain::jobs::{poll_lease, JobState, TakenBack};
use crate::store::{
    CancelOutcome, ClaimAfter, ClaimCall, ClaimOutcome, DeltaOutcome, DeltaUpdate, ExecutorRead,
    JobListQuery, JobPage, JobStore, NewJob, ReclaimOutcome, ReleaseOutcome, StoreError,
};
use crate::wire::{ClaimedJob, Job, JobStatus, RawJson, RecvCursor, RejectReason, Timestamp};

/// The statements of the grouped writes (prepared ahead by `writes`).
pub(super) const CREATE_JOBS: &str = include_str!("sql/create_jobs.sql");
pub(super) const CLAIM_JOBS: &str = include_str!("sql/claim_jobs.sql");
pub(super) const APPLY_DELTAS: &str = include_str!("sql/apply_deltas.sql");

#[async_trait]
impl JobStore for PgStore {
    /// Submit (docs/state-machine.md#submit), grouped: the submissions that arrive together are
    /// one multi-row INSERT (one commit).
    async fn create_job(&self, job: NewJob) -> Result<(), StoreError> {
        match &self.batches {
            Some(batches) => batches.writes.call(Write::Submit(job)).await.map(|_| ()),
            None => create_jobs_on(&self.conn().await?, &[job]).await,
        }
    }

    /// Reads one job; reads that arrive together are one statement.
    async fn get_job(&self, job_id: Uuid) -> Result<Option<Job>, StoreError> {
        match &self.batches {
            Some(batches) => batches.reads.call(job_id).await,
            None => Ok(self.get_jobs(vec![job_id]).await?.pop().flatten()),
        }
    }

    /// Newest first, `(submitted_at, job_id)` descending; at most `query.limit` rows.
    async fn list_jobs(&self, query: &JobListQuery, max_bytes: i64) -> Result<JobPage, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/list_jobs.sql"))
            .await?;
        let rows = conn
            .query(
                &statement,
                &[
                    &query.statuses,
                    &query.owner_instance_id,
                    &query.capability,
                    &query.submitted_since.map(|t| t.0),
                    &query.after.map(|(t, _)| t.0),
                    &query.after.map(|(_, id)| id),
                    &query.limit,
                    &max_bytes,
                ],
            )
            .await?;
        let page_rows = match rows.first() {
            Some(row) => column::<i64>(row, "page_rows")?,
            None => 0,
        };
        Ok(JobPage {
            cut: (rows.len() as i64) < page_rows,
            jobs: rows.iter().map(job_from_row).collect::<Result<_, _>>()?,
        })
    }

    /// Claim (docs/state-machine.md#claim), grouped: the FIFO-oldest claimable jobs of the
    /// capability, in `(submitted_at, job_id)` order, locked with SKIP LOCKED so concurrent
    /// claimers take different rows instead of losing races. Rows past their retry budget are not
    /// claimable and never block the queue.
    ///
    /// A claimer whose tool for this capability has required dependencies is `Gated`: nothing is
    /// claimed until the caller has checked them and asks again with `gate_checked`.
    async fn claim_next(&self, call: ClaimCall) -> Result<ClaimOutcome, StoreError> {
        match &self.batches {
            Some(batches) => match batches.writes.call(Write::Claim(call)).await? {
                Written::Claim(outcome) => Ok(outcome),
                _ => Err(StoreError::Batch("a claim answered as another kind".into())),
            },
            None => Ok(claim_many_on(&self.conn().await?, &[call])
                .await?
                .pop()
                .unwrap_or(ClaimOutcome::NoWork)),
        }
    }

    /// Update (docs/state-machine.md#update), grouped: each delta is applied by a guarded UPDATE
    /// that re-asserts owner, liveness and (when the delta carries one) the claim epoch. A
    /// rejected delta touches nothing: no lease extension, no cursor advance.
    async fn apply_delta(&self, delta: DeltaUpdate) -> Result<DeltaOutcome, StoreError> {
        match &self.batches {
            Some(batches) => match batches.writes.call(Write::Delta(delta)).await? {
                Written::Delta(outcome) => Ok(outcome),
                _ => Err(StoreError::Batch("a delta answered as another kind".into())),
            },
            None => {
                let deltas = std::slice::from_ref(&delta);
                Ok(apply_waves(&self.conn().await?, &waves(deltas), deltas)
                    .await?
                    .pop()
                    .unwrap_or(DeltaOutcome::Rejected(RejectReason::NotFound)))
            }
        }
    }

    /// Status, owner and epoch as they are now: what a miss path needs to name its reason.
    async fn job_state(&self, job_id: Uuid) -> Result<Option<JobState>, StoreError> {
        job_state_on(&self.conn().await?, job_id).await
    }

    /// Release (docs/state-machine.md#release): the owner gives the job back. Within budget it
    /// returns to `working`, unowned and claimable (an `input_required` job too:
    /// docs/contract.md#diff-release-input-required); past its budget it fails.
    async fn release_job(
        &self,
        job_id: Uuid,
        instance_id: &str,
        exhausted_error: &str,
    ) -> Result<ReleaseOutcome, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/release_job.sql"))
            .await?;
        if let Some(row) = conn
            .query_opt(&statement, &[&job_id, &instance_id, &exhausted_error])
            .await?
        {
            return Ok(ReleaseOutcome::Released {
                job_id,
                status: job_status(&row)?,
                attempt_count: column(&row, "attempt_count")?,
            });
        }
        Ok(match job_state_on(&conn, job_id).await? {
            None => ReleaseOutcome::NotFound,
            Some(job) if job.status.is_terminal() => ReleaseOutcome::Terminal,
            Some(_) => ReleaseOutcome::NotOwner,
        })
    }

    /// Cancel (docs/state-machine.md#cancel) and append the synthetic `cancelled` event in ONE
    /// statement, so the event a parked producer waits for can never be lost between the two.
    /// `error_reason` is the trimmed reason (empty = leave `error` alone); `event_reason` is the
    /// caller's reason as sent, for the event payload.
    async fn cancel_job(
        &self,
        job_id: Uuid,
        error: Option<&str>,
        event_reason: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/cancel_job.sql"))
            .await?;
        if let Some(row) = conn
            .query_opt(
                &statement,
                &[
                    &job_id,
                    &error,
                    &Json(serde_json::json!({ "reason": event_reason })),
                    &self.channels.job_events,
                ],
            )
            .await?
        {
            return Ok(CancelOutcome::Cancelled {
                job_id,
                previous_owner: column(&row, "owner_instance_id")?,
                ran: elapsed(&row, "ran_seconds")?,
            });
        }
        Ok(match job_state_on(&conn, job_id).await? {
            None => CancelOutcome::NotFound,
            Some(_) => CancelOutcome::Terminal,
        })
    }

    /// Force reclaim (docs/state-machine.md#force-reclaim): the job goes back to the queue,
    /// leaving epoch and attempts alone (the next claim mints the new generation). The previous
    /// owner is read under the row lock, so a concurrent claim cannot slip between read and
    /// write. A job already past its retry budget is failed instead of left as an unclaimable
    /// queue entry (docs/contract.md#diff-reclaim-over-budget).
    async fn reclaim_job(&self, job_id: Uuid) -> Result<ReclaimOutcome, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/reclaim_job.sql"))
            .await?;
        let exhausted_error = TakenBack::Reclaimed.exhausted_error();
        if let Some(row) = conn
            .query_opt(&statement, &[&job_id, &exhausted_error])
            .await?
        {
            return Ok(ReclaimOutcome::Reclaimed {
                job_id,
                status: job_status(&row)?,
                previous_owner: column(&row, "owner_instance_id")?,
                claim_epoch: column(&row, "claim_epoch")?,
            });
        }
        Ok(match job_state_on(&conn, job_id).await? {
            None => ReclaimOutcome::NotFound,
            Some(_) => ReclaimOutcome::Terminal,
        })
    }

    /// Renew-on-read (docs/state-machine.md#renew-on-read) and the fencing of executor reads:
    /// when the caller owns the live job at that epoch, its lease is extended as the domain's
    /// `poll_lease` says, but only if that is later than the current lease. A lost race is
    /// silent; the events are served either way.
    async fn authorize_executor_read(
        &self,
        job_id: Uuid,
        instance_id: &str,
        claim_epoch: i64,
        stale_timeout: Option<Duration>,
    ) -> Result<ExecutorRead, StoreError> {
        let conn = self.conn().await?;
        let state = conn
            .prepare_cached(include_str!("sql/executor_read_state.sql"))
            .await?;
        let Some(row) = conn.query_opt(&state, &[&job_id]).await? else {
            return Ok(ExecutorRead::NotFound);
        };
        if job_state_from_row(&row)?.superseded_for(instance_id, claim_epoch) {
            return Ok(ExecutorRead::Superseded);
        }
        let lease = poll_lease(
            column(&row, "max_duration")?,
            column(&row, "total_deadline")?,
            column(&row, "submitted_at")?,
            stale_timeout,
        );
        let renew = conn
            .prepare_cached(include_str!("sql/renew_lease_on_read.sql"))
            .await?;
        let renewed = conn
            .query_opt(
                &renew,
                &[
                    &job_id,
                    &instance_id,
                    &claim_epoch,
                    &lease.window.as_secs_f64(),
                    &lease.cap,
                ],
            )
            .await?
            .map(|row| column::<SystemTime>(&row, "lease_expires_at"))
            .transpose()?
            .map(|lease_expires_at| LeaseHeld {
                job_id,
                claim_epoch,
                lease_expires_at,
            });
        Ok(ExecutorRead::Serve { renewed })
    }
}

/// One INSERT for every job given. `submitted_at` is taken per row, in the order given, so
/// submissions that share a statement keep their arrival order.
pub(super) async fn create_jobs_on(
    conn: &impl GenericClient,
    jobs: &[NewJob],
) -> Result<(), StoreError> {
    let statement = conn.prepare_cached(CREATE_JOBS).await?;
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let capabilities: Vec<&str> = jobs.iter().map(|j| j.capability.as_str()).collect();
    let submitters: Vec<&str> = jobs.iter().map(|j| j.submitted_by.as_str()).collect();
    let payloads: Vec<Json<&RawValue>> = jobs.iter().map(|j| Json(&*j.submitted_payload)).collect();
    let owners: Vec<Option<&str>> = jobs
        .iter()
        .map(|j| j.owner_instance_id.as_deref())
        .collect();
    let retries: Vec<i64> = jobs.iter().map(|j| j.max_retries).collect();
    let durations: Vec<Option<i64>> = jobs.iter().map(|j| j.max_duration).collect();
    let deadlines: Vec<Option<SystemTime>> =
        jobs.iter().map(|j| j.total_deadline.map(|t| t.0)).collect();
    conn.execute(
        &statement,
        &[
            &ids,
            &capabilities,
            &submitters,
            &payloads,
            &owners,
            &retries,
            &durations,
            &deadlines,
        ],
    )
    .await?;
    Ok(())
}

impl PgStore {
    /// The jobs asked for, in the order asked (`None` for an id that names no job).
    pub(super) async fn get_jobs(&self, ids: Vec<Uuid>) -> Result<Vec<Option<Job>>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(include_str!("sql/get_jobs.sql"))
            .await?;
        let mut found = HashMap::new();
        for row in conn.query(&statement, &[&ids]).await? {
            let job = job_from_row(&row)?;
            found.insert(job.id, job);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }
}

/// One statement for every claim call: each capability's oldest claimable jobs are handed
/// to its claimers in the order they called. Outcomes in the given order.
pub(super) async fn claim_many_on(
    conn: &impl GenericClient,
    calls: &[ClaimCall],
) -> Result<Vec<ClaimOutcome>, StoreError> {
    let statement = conn.prepare_cached(CLAIM_JOBS).await?;
    let capabilities: Vec<&str> = calls.iter().map(|c| c.capability.as_str()).collect();
    let instances: Vec<&str> = calls.iter().map(|c| c.instance_id.as_str()).collect();
    let checked: Vec<bool> = calls.iter().map(|c| c.gate_checked).collect();
    let rows = conn
        .query(
            &statement,
            &[&capabilities, &instances, &checked, &DEFAULT_LEASE_SECONDS],
        )
        .await?;
    let mut outcomes: Vec<ClaimOutcome> = calls.iter().map(|_| ClaimOutcome::NoWork).collect();
    for row in &rows {
        let slot = column::<i64>(row, "caller")? as usize - 1;
        outcomes[slot] = match column::<Option<Uuid>>(row, "job_id")? {
            Some(id) => ClaimOutcome::Claimed {
                job: ClaimedJob {
                    id,
                    submitted_payload: column::<Json<RawJson>>(row, "submitted_payload")?.0,
                    attempt_count: column(row, "attempt_count")?,
                    claim_epoch: column(row, "claim_epoch")?,
                    lease_expires_at: timestamp(row, "lease_expires_at")?,
                    max_duration: column(row, "max_duration")?,
                    recv_cursor: recv_cursor(row)?,
                },
                waited: elapsed(row, "waited_seconds")?,
            },
            None if column(row, "gated")? => ClaimOutcome::Gated,
            None => ClaimOutcome::NoWork,
        };
    }
    Ok(outcomes)
}

/// The deltas split into waves of distinct jobs, each delta after the earlier ones to its job.
pub(super) fn waves(deltas: &[DeltaUpdate]) -> Vec<Vec<usize>> {
    let mut waves = Vec::new();
    let mut remaining: Vec<usize> = (0..deltas.len()).collect();
    while !remaining.is_empty() {
        let mut jobs_in_wave = HashSet::new();
        let (wave, later): (Vec<usize>, Vec<usize>) = remaining
            .into_iter()
            .partition(|&i| jobs_in_wave.insert(deltas[i].job_id));
        waves.push(wave);
        remaining = later;
    }
    waves
}

/// Applies the waves in order on one connection (or transaction); a delta whose guard did not
/// hold is named from the job as it is now, read on the same connection.
pub(super) async fn apply_waves(
    conn: &impl GenericClient,
    waves: &[Vec<usize>],
    deltas: &[DeltaUpdate],
) -> Result<Vec<DeltaOutcome>, StoreError> {
    let mut outcomes = vec![DeltaOutcome::Rejected(RejectReason::NotFound); deltas.len()];
    for wave in waves {
        let applied = apply_wave(conn, wave, deltas).await?;
        for (&i, outcome) in wave.iter().zip(applied) {
            outcomes[i] = match outcome {
                Some(after) => DeltaOutcome::Accepted(after),
                None => {
                    let delta = &deltas[i];
                    let reason = job_state_on(conn, delta.job_id)
                        .await?
                        .map_or(Some(RejectReason::NotFound), |job| {
                            job.delta_rejection(&delta.instance_id, delta.claim_epoch)
                        });
                    // The guard failed yet the row now looks acceptable: it changed under us;
                    // the reference answers not_owner in that case.
                    DeltaOutcome::Rejected(reason.unwrap_or(RejectReason::NotOwner))
                }
            };
        }
    }
    Ok(outcomes)
}

/// One statement for deltas to distinct jobs; `None` where the guard did not hold.
async fn apply_wave(
    conn: &impl GenericClient,
    wave: &[usize],
    deltas: &[DeltaUpdate],
) -> Result<Vec<Option<ClaimAfter>>, StoreError> {
    let statement = conn.prepare_cached(APPLY_DELTAS).await?;
    let pick = |i: &usize| &deltas[*i];
    let ids: Vec<Uuid> = wave.iter().map(|i| pick(i).job_id).collect();
    let instances: Vec<&str> = wave.iter().map(|i| pick(i).instance_id.as_str()).collect();
    let epochs: Vec<Option<i64>> = wave.iter().map(|i| pick(i).claim_epoch).collect();
    let statuses: Vec<Option<&str>> = wave
        .iter()
        .map(|i| pick(i).status.map(JobStatus::as_str))
        .collect();
    let progress: Vec<Option<f64>> = wave.iter().map(|i| pick(i).progress).collect();
    let messages: Vec<Option<&str>> = wave
        .iter()
        .map(|i| pick(i).progress_message.as_deref())
        .collect();
    let results: Vec<Option<Json<&RawValue>>> = wave
        .iter()
        .map(|i| pick(i).result.as_deref().map(Json))
        .collect();
    let errors: Vec<Option<&str>> = wave.iter().map(|i| pick(i).error.as_deref()).collect();
    let cursors: Vec<Option<Json<&RecvCursor>>> = wave
        .iter()
        .map(|i| pick(i).recv_cursor.as_ref().map(Json))
        .collect();
    let rows = conn
        .query(
            &statement,
            &[
                &ids,
                &instances,
                &epochs,
                &statuses,
                &progress,
                &messages,
                &results,
                &errors,
                &cursors,
                &DEFAULT_LEASE_SECONDS,
            ],
        )
        .await?;
    let mut applied: Vec<Option<ClaimAfter>> = vec![None; wave.len()];
    for row in &rows {
        let slot = column::<i64>(row, "ord")? as usize - 1;
        applied[slot] = Some(claim_after(ids[slot], row)?);
    }
    Ok(applied)
}

/// What an accepted delta left of the claim: a live job holds its (renewed) lease, a finished
/// one has nothing left to watch.
fn claim_after(job_id: Uuid, row: &Row) -> Result<ClaimAfter, StoreError> {
    let lease = timestamp(row, "lease_expires_at")?;
    Ok(match (job_status(row)?.is_terminal(), lease) {
        (false, Some(lease)) => ClaimAfter::Held(LeaseHeld {
            job_id,
            claim_epoch: column(row, "claim_epoch")?,
            lease_expires_at: lease.0,
        }),
        _ => ClaimAfter::Ended {
            job_id,
            ran: elapsed(row, "ran_seconds")?,
        },
    })
}

/// A time span the statement measured, in seconds. Its two ends may come from different
/// transactions' clocks (`now()` is when a transaction began), so a span a little below zero
/// is zero.
fn elapsed(row: &Row, name: &str) -> Result<Option<Duration>, StoreError> {
    Ok(column::<Option<f64>>(row, name)?
        .and_then(|seconds| Duration::try_from_secs_f64(seconds.max(0.0)).ok()))
}

/// Status, owner and epoch as they are now, read on the connection the caller holds: a miss
/// path never waits for a second pooled connection while holding one (a burst of requests for
/// unknown jobs could otherwise exhaust the pool).
pub(super) async fn job_state_on(
    conn: &impl GenericClient,
    job_id: Uuid,
) -> Result<Option<JobState>, StoreError> {
    let statement = conn
        .prepare_cached(include_str!("sql/job_state.sql"))
        .await?;
    conn.query_opt(&statement, &[&job_id])
        .await?
        .as_ref()
        .map(job_state_from_row)
        .transpose()
}

fn job_state_from_row(row: &Row) -> Result<JobState, StoreError> {
    Ok(JobState {
        status: job_status(row)?,
        owner_instance_id: column(row, "owner_instance_id")?,
        claim_epoch: column(row, "claim_epoch")?,
    })
}

fn job_from_row(row: &Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: column(row, "job_id")?,
        capability: column(row, "capability")?,
        owner_instance_id: column(row, "owner_instance_id")?,
        claim_epoch: column(row, "claim_epoch")?,
        status: job_status(row)?,
        progress: column(row, "progress")?,
        progress_message: column(row, "progress_message")?,
        result: column::<Option<Json<RawJson>>>(row, "result")?.map(|j| j.0),
        error: column(row, "error")?,
        submitted_payload: column::<Json<RawJson>>(row, "submitted_payload")?.0,
        recv_cursor: recv_cursor(row)?,
        attempt_count: column(row, "attempt_count")?,
        max_retries: column(row, "max_retries")?,
        max_duration: column(row, "max_duration")?,
        total_deadline: timestamp(row, "total_deadline")?,
        lease_expires_at: timestamp(row, "lease_expires_at")?,
        last_heartbeat_at: timestamp(row, "last_heartbeat_at")?,
        submitted_at: Timestamp(column(row, "submitted_at")?),
        submitted_by: column::<Option<String>>(row, "submitted_by")?.unwrap_or_default(),
    })
}

fn job_status(row: &Row) -> Result<JobStatus, StoreError> {
    let raw: &str = column(row, "status")?;
    JobStatus::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("job status {raw:?}")))
}

fn timestamp(row: &Row, name: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(column::<Option<SystemTime>>(row, name)?.map(Timestamp))
}

/// An empty stored cursor reads as `null`, like a cursor never written.
fn recv_cursor(row: &Row) -> Result<Option<RecvCursor>, StoreError> {
    Ok(column::<Option<Json<RecvCursor>>>(row, "recv_cursor")?
        .map(|j| j.0)
        .filter(|cursor| !cursor.is_empty()))
}
