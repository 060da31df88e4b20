//! Job statements: submit, read, list, claim, owner deltas, release, cancel, force reclaim and the
//! executor read's lease extension (contract §1.5 T1–T7).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mesh_registry_actors::LeaseHeld;
use serde_json::value::RawValue;
use tokio_postgres::types::Json;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{column, PgStore};
use crate::domain::jobs::JobState;
use crate::store::{
    CancelOutcome, ClaimAfter, ClaimCall, ClaimOutcome, DeltaOutcome, DeltaUpdate, ExecutorRead,
    JobListQuery, JobStore, NewJob, ReclaimOutcome, ReleaseOutcome, StoreError,
};
use crate::wire::{ClaimedJob, Job, JobStatus, RawJson, RecvCursor, RejectReason, Timestamp};

/// Lease window of a job (contract §3.1): its `max_duration`, else 300 s.
macro_rules! lease_window {
    () => {
        "make_interval(secs => CASE WHEN max_duration > 0 THEN max_duration ELSE 300 END)"
    };
}

#[async_trait]
impl JobStore for PgStore {
    /// T1, grouped: the submissions that arrive together are one multi-row INSERT (one commit).
    async fn create_job(&self, job: NewJob) -> Result<(), StoreError> {
        match &self.batches {
            Some(batches) => batches.submits.call(job).await,
            None => self.create_jobs(vec![job]).await.map(|_| ()),
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
    async fn list_jobs(&self, query: &JobListQuery) -> Result<Vec<Job>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs \
                 WHERE ($1::text[] IS NULL OR status = ANY($1)) \
                   AND ($2::text IS NULL OR owner_instance_id = $2) \
                   AND ($3::text IS NULL OR capability = $3) \
                   AND ($4::timestamptz IS NULL OR submitted_at >= $4) \
                   AND ($5::timestamptz IS NULL OR (submitted_at, job_id) < ($5, $6::uuid)) \
                 ORDER BY submitted_at DESC, job_id DESC \
                 LIMIT $7"
            ))
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
                ],
            )
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// T2, grouped: the FIFO-oldest claimable jobs of the capability, in `(submitted_at,
    /// job_id)` order, locked with SKIP LOCKED so concurrent claimers take different rows instead
    /// of losing races. Rows past their retry budget are not claimable and never block the queue.
    ///
    /// A claimer whose tool for this capability has required dependencies is `Gated`: nothing is
    /// claimed until the caller has checked them and asks again with `gate_checked`.
    async fn claim_next(&self, call: ClaimCall) -> Result<ClaimOutcome, StoreError> {
        match &self.batches {
            Some(batches) => batches.claims.call(call).await,
            None => Ok(self
                .claim_many(vec![call])
                .await?
                .pop()
                .unwrap_or(ClaimOutcome::NoWork)),
        }
    }

    /// T3, grouped: each delta is applied by a guarded UPDATE that re-asserts owner, liveness
    /// and (when the delta carries one) the claim epoch. A rejected delta touches nothing: no
    /// lease extension, no cursor advance.
    async fn apply_delta(&self, delta: DeltaUpdate) -> Result<DeltaOutcome, StoreError> {
        match &self.batches {
            Some(batches) => batches.deltas.call(delta).await,
            None => Ok(self
                .apply_deltas(vec![delta])
                .await?
                .pop()
                .unwrap_or(DeltaOutcome::Rejected(RejectReason::NotFound))),
        }
    }

    /// Status, owner and epoch as they are now: what a miss path needs to name its reason.
    async fn job_state(&self, job_id: Uuid) -> Result<Option<JobState>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(
                "SELECT status, owner_instance_id, claim_epoch FROM jobs WHERE job_id = $1",
            )
            .await?;
        conn.query_opt(&statement, &[&job_id])
            .await?
            .as_ref()
            .map(job_state_from_row)
            .transpose()
    }

    /// T5 with decisions row 8: the owner gives the job back. Within budget it returns to
    /// `working`, unowned and claimable (an `input_required` job too); past its budget it fails.
    async fn release_job(
        &self,
        job_id: Uuid,
        instance_id: &str,
        exhausted_error: &str,
    ) -> Result<ReleaseOutcome, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "UPDATE jobs SET owner_instance_id = NULL, lease_expires_at = NULL, \
                   last_heartbeat_at = now(), \
                   status = CASE WHEN attempt_count > max_retries THEN 'failed' ELSE 'working' END, \
                   error = CASE WHEN attempt_count > max_retries \
                     THEN $3::text ELSE error END \
                 WHERE job_id = $1 AND owner_instance_id = $2 AND status IN ",
                live!(),
                " RETURNING status, attempt_count"
            ))
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
        Ok(match self.job_state(job_id).await? {
            None => ReleaseOutcome::NotFound,
            Some(job) if job.status.is_terminal() => ReleaseOutcome::Terminal,
            Some(_) => ReleaseOutcome::NotOwner,
        })
    }

    /// T6: cancel and append the synthetic `cancelled` event in ONE statement, so the event a
    /// parked producer waits for can never be lost between the two.
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
            .prepare_cached(concat!(
                "WITH cancelled AS ( \
                   UPDATE jobs SET status = 'cancelled', \
                     error = coalesce($2::text, error), \
                     last_heartbeat_at = now(), event_seq = event_seq + 1 \
                   WHERE job_id = $1 AND status IN ",
                live!(),
                "  RETURNING job_id, owner_instance_id, event_seq), \
                 synthetic_event AS ( \
                   INSERT INTO job_events (job_id, seq, type, payload) \
                   SELECT job_id, event_seq, 'cancelled', $3::json \
                   FROM cancelled) \
                 SELECT owner_instance_id, pg_notify('",
                job_events_channel!(),
                "', job_id::text)::text FROM cancelled"
            ))
            .await?;
        if let Some(row) = conn
            .query_opt(
                &statement,
                &[
                    &job_id,
                    &error,
                    &Json(serde_json::json!({ "reason": event_reason })),
                ],
            )
            .await?
        {
            return Ok(CancelOutcome::Cancelled {
                job_id,
                previous_owner: column(&row, "owner_instance_id")?,
            });
        }
        Ok(match self.job_state(job_id).await? {
            None => CancelOutcome::NotFound,
            Some(_) => CancelOutcome::Terminal,
        })
    }

    /// T7 with decisions row 9: force the job back to the queue, leaving epoch and attempts
    /// alone (the next claim mints the new generation). The previous owner is read under the row
    /// lock, so a concurrent claim cannot slip between read and write. A job already past its
    /// retry budget is failed instead of left as an unclaimable queue entry.
    async fn reclaim_job(&self, job_id: Uuid) -> Result<ReclaimOutcome, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "UPDATE jobs SET ",
                requeue_or_fail!("reclaimed: max retries exceeded", "now()"),
                "FROM (SELECT job_id, owner_instance_id FROM jobs WHERE job_id = $1 FOR UPDATE) \
                   AS previous \
                 WHERE jobs.job_id = previous.job_id AND jobs.status IN ",
                live!(),
                " RETURNING jobs.status, previous.owner_instance_id, jobs.claim_epoch"
            ))
            .await?;
        if let Some(row) = conn.query_opt(&statement, &[&job_id]).await? {
            return Ok(ReclaimOutcome::Reclaimed {
                job_id,
                status: job_status(&row)?,
                previous_owner: column(&row, "owner_instance_id")?,
                claim_epoch: column(&row, "claim_epoch")?,
            });
        }
        Ok(match self.job_state(job_id).await? {
            None => ReclaimOutcome::NotFound,
            Some(_) => ReclaimOutcome::Terminal,
        })
    }

    /// T4 and the fencing of executor reads (contract §2.6, §3.3), in one statement: when the
    /// caller owns the live job at that epoch, its lease is extended to `now + window`, capped by
    /// `total_deadline` (or else by the opt-in stale ceiling), and only if that is later than the
    /// current lease. A lost race is silent; the events are served either way.
    async fn authorize_executor_read(
        &self,
        job_id: Uuid,
        instance_id: &str,
        claim_epoch: i64,
        stale_timeout: Option<Duration>,
    ) -> Result<ExecutorRead, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "WITH current AS ( \
                   SELECT job_id, status, owner_instance_id, claim_epoch, \
                     LEAST(now() + ",
                lease_window!(),
                ", CASE WHEN total_deadline IS NOT NULL THEN total_deadline \
                          WHEN $4::float8 > 0 THEN submitted_at + make_interval(secs => \
                            GREATEST($4, coalesce(max_duration, 0))) END) AS capped_lease \
                   FROM jobs WHERE job_id = $1), \
                 extended AS ( \
                   UPDATE jobs SET lease_expires_at = current.capped_lease, last_heartbeat_at = now() \
                   FROM current \
                   WHERE jobs.job_id = current.job_id \
                     AND jobs.owner_instance_id = $2 AND jobs.claim_epoch = $3 \
                     AND jobs.status IN ",
                live!(),
                "    AND (jobs.lease_expires_at IS NULL \
                          OR jobs.lease_expires_at < current.capped_lease) \
                   RETURNING jobs.lease_expires_at) \
                 SELECT status, owner_instance_id, claim_epoch, \
                   (SELECT lease_expires_at FROM extended) AS renewed_lease \
                 FROM current"
            ))
            .await?;
        let stale_seconds = stale_timeout.map_or(0.0, |d| d.as_secs_f64());
        let Some(row) = conn
            .query_opt(
                &statement,
                &[&job_id, &instance_id, &claim_epoch, &stale_seconds],
            )
            .await?
        else {
            return Ok(ExecutorRead::NotFound);
        };
        if job_state_from_row(&row)?.superseded_for(instance_id, claim_epoch) {
            return Ok(ExecutorRead::Superseded);
        }
        let renewed = column::<Option<SystemTime>>(&row, "renewed_lease")?.map(|lease| LeaseHeld {
            job_id,
            claim_epoch,
            lease_expires_at: lease,
        });
        Ok(ExecutorRead::Serve { renewed })
    }
}

impl PgStore {
    /// One INSERT for every job given. `submitted_at` is taken per row, in the order given, so
    /// submissions that share a statement keep their arrival order.
    pub(super) async fn create_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<()>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(
                "INSERT INTO jobs (job_id, capability, submitted_by, submitted_payload, \
                   owner_instance_id, max_retries, max_duration, total_deadline, submitted_at) \
                 SELECT job_id, capability, submitted_by, submitted_payload, owner_instance_id, \
                   max_retries, max_duration, total_deadline, clock_timestamp() \
                 FROM unnest($1::uuid[], $2::text[], $3::text[], $4::json[], $5::text[], \
                   $6::bigint[], $7::bigint[], $8::timestamptz[]) WITH ORDINALITY \
                   AS j(job_id, capability, submitted_by, submitted_payload, owner_instance_id, \
                        max_retries, max_duration, total_deadline, arrival) \
                 ORDER BY arrival",
            )
            .await?;
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
        let capabilities: Vec<&str> = jobs.iter().map(|j| j.capability.as_str()).collect();
        let submitters: Vec<&str> = jobs.iter().map(|j| j.submitted_by.as_str()).collect();
        let payloads: Vec<Json<&RawValue>> =
            jobs.iter().map(|j| Json(&*j.submitted_payload)).collect();
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
        Ok(vec![(); jobs.len()])
    }

    /// The jobs asked for, in the order asked (`None` for an id that names no job).
    pub(super) async fn get_jobs(&self, ids: Vec<Uuid>) -> Result<Vec<Option<Job>>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE job_id = ANY($1)"
            ))
            .await?;
        let mut found = HashMap::new();
        for row in conn.query(&statement, &[&ids]).await? {
            let job = job_from_row(&row)?;
            found.insert(job.id, job);
        }
        Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
    }

    /// One statement for every claim call: each capability's oldest claimable jobs are handed
    /// to its claimers in the order they called. Outcomes in the given order.
    pub(super) async fn claim_many(
        &self,
        calls: Vec<ClaimCall>,
    ) -> Result<Vec<ClaimOutcome>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "WITH claimers AS ( \
                   SELECT w.capability, w.instance_id, w.ord, \
                     (NOT w.gate_checked AND EXISTS ( \
                       SELECT 1 FROM agent_tools t \
                       WHERE t.agent_id = w.instance_id AND t.capability = w.capability \
                         AND t.has_required_dependencies)) AS gated \
                   FROM unnest($1::text[], $2::text[], $3::bool[]) WITH ORDINALITY \
                     AS w(capability, instance_id, gate_checked, ord)), \
                 eligible AS ( \
                   SELECT capability, instance_id, ord, \
                     row_number() OVER (PARTITION BY capability ORDER BY ord) AS slot \
                   FROM claimers WHERE NOT gated), \
                 demand AS ( \
                   SELECT capability, count(*) AS wanted FROM eligible GROUP BY capability), \
                 candidates AS ( \
                   SELECT picked.job_id, demand.capability, row_number() OVER ( \
                     PARTITION BY demand.capability ORDER BY picked.submitted_at, picked.job_id \
                   ) AS slot \
                   FROM demand CROSS JOIN LATERAL ( \
                     SELECT job_id, submitted_at FROM jobs \
                     WHERE capability = demand.capability AND status = 'working' \
                       AND owner_instance_id IS NULL AND attempt_count <= max_retries \
                     ORDER BY submitted_at, job_id \
                     LIMIT demand.wanted \
                     FOR UPDATE SKIP LOCKED) AS picked), \
                 claimed AS ( \
                   UPDATE jobs SET owner_instance_id = eligible.instance_id, \
                     attempt_count = attempt_count + 1, \
                     claim_epoch = claim_epoch + 1, \
                     lease_expires_at = now() + ",
                lease_window!(),
                ", last_heartbeat_at = now() \
                   FROM candidates JOIN eligible \
                     ON eligible.capability = candidates.capability \
                     AND eligible.slot = candidates.slot \
                   WHERE jobs.job_id = candidates.job_id \
                   RETURNING eligible.ord, jobs.job_id, submitted_payload, attempt_count, \
                     claim_epoch, lease_expires_at, max_duration, recv_cursor) \
                 SELECT claimers.ord AS caller, claimers.gated, claimed.* \
                 FROM claimers LEFT JOIN claimed ON claimed.ord = claimers.ord"
            ))
            .await?;
        let capabilities: Vec<&str> = calls.iter().map(|c| c.capability.as_str()).collect();
        let instances: Vec<&str> = calls.iter().map(|c| c.instance_id.as_str()).collect();
        let checked: Vec<bool> = calls.iter().map(|c| c.gate_checked).collect();
        let rows = conn
            .query(&statement, &[&capabilities, &instances, &checked])
            .await?;
        let mut outcomes: Vec<ClaimOutcome> = calls.iter().map(|_| ClaimOutcome::NoWork).collect();
        for row in &rows {
            let slot = column::<i64>(row, "caller")? as usize - 1;
            outcomes[slot] = match column::<Option<Uuid>>(row, "job_id")? {
                Some(id) => ClaimOutcome::Claimed(ClaimedJob {
                    id,
                    submitted_payload: column::<Json<RawJson>>(row, "submitted_payload")?.0,
                    attempt_count: column(row, "attempt_count")?,
                    claim_epoch: column(row, "claim_epoch")?,
                    lease_expires_at: timestamp(row, "lease_expires_at")?,
                    max_duration: column(row, "max_duration")?,
                    recv_cursor: recv_cursor(row)?,
                }),
                None if column(row, "gated")? => ClaimOutcome::Gated,
                None => ClaimOutcome::NoWork,
            };
        }
        Ok(outcomes)
    }

    /// Applies deltas in as few statements as their jobs allow: one per "wave" of distinct jobs
    /// (two deltas to one job go in order, in successive waves). Outcomes in the given order.
    pub(super) async fn apply_deltas(
        &self,
        deltas: Vec<DeltaUpdate>,
    ) -> Result<Vec<DeltaOutcome>, StoreError> {
        let mut outcomes: Vec<Option<DeltaOutcome>> = vec![None; deltas.len()];
        let mut remaining: Vec<usize> = (0..deltas.len()).collect();
        while !remaining.is_empty() {
            let mut jobs_in_wave = HashSet::new();
            let (wave, later): (Vec<usize>, Vec<usize>) = remaining
                .into_iter()
                .partition(|&i| jobs_in_wave.insert(deltas[i].job_id));
            remaining = later;
            let applied = self.apply_wave(&wave, &deltas).await?;
            for (&i, outcome) in wave.iter().zip(applied) {
                outcomes[i] = Some(match outcome {
                    Some(after) => DeltaOutcome::Accepted(after),
                    None => {
                        let delta = &deltas[i];
                        let reason = self
                            .job_state(delta.job_id)
                            .await?
                            .map_or(Some(RejectReason::NotFound), |job| {
                                job.delta_rejection(&delta.instance_id, delta.claim_epoch)
                            });
                        // The guard failed yet the row now looks acceptable: it changed under us;
                        // the reference answers not_owner in that case.
                        DeltaOutcome::Rejected(reason.unwrap_or(RejectReason::NotOwner))
                    }
                });
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(DeltaOutcome::Rejected(RejectReason::NotFound)))
            .collect())
    }

    /// One statement for deltas to distinct jobs; `None` where the guard did not hold.
    async fn apply_wave(
        &self,
        wave: &[usize],
        deltas: &[DeltaUpdate],
    ) -> Result<Vec<Option<ClaimAfter>>, StoreError> {
        let conn = self.conn().await?;
        let statement = conn
            .prepare_cached(concat!(
                "WITH d AS ( \
                   SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], \
                     $5::float8[], $6::text[], $7::json[], $8::text[], $9::jsonb[]) \
                   WITH ORDINALITY AS d(job_id, instance_id, claim_epoch, status, progress, \
                     progress_message, result, error, recv_cursor, ord)) \
                 UPDATE jobs SET \
                   status = coalesce(d.status, jobs.status), \
                   progress = coalesce(d.progress, jobs.progress), \
                   progress_message = coalesce(d.progress_message, jobs.progress_message), \
                   result = CASE WHEN d.status = 'completed' AND d.result IS NOT NULL \
                     THEN d.result ELSE jobs.result END, \
                   error = CASE WHEN d.status = 'failed' AND d.error IS NOT NULL \
                     THEN d.error ELSE jobs.error END, \
                   recv_cursor = CASE WHEN d.recv_cursor IS NULL THEN jobs.recv_cursor ELSE ( \
                     SELECT jsonb_object_agg(key, seq) FROM ( \
                       SELECT key, max(value::bigint) AS seq FROM ( \
                         SELECT key, value \
                         FROM jsonb_each_text(coalesce(jobs.recv_cursor, '{}'::jsonb)) \
                         UNION ALL SELECT key, value FROM jsonb_each_text(d.recv_cursor) \
                       ) AS both_cursors GROUP BY key \
                     ) AS merged) END, \
                   last_heartbeat_at = now(), \
                   lease_expires_at = CASE \
                     WHEN coalesce(d.status, jobs.status) IN ('completed', 'failed', 'cancelled') \
                     THEN jobs.lease_expires_at ELSE now() + ",
                lease_window!(),
                " END \
                 FROM d \
                 WHERE jobs.job_id = d.job_id AND jobs.owner_instance_id = d.instance_id \
                   AND (d.claim_epoch IS NULL OR jobs.claim_epoch = d.claim_epoch) \
                   AND jobs.status IN ",
                live!(),
                " RETURNING d.ord, jobs.status, jobs.claim_epoch, jobs.lease_expires_at"
            ))
            .await?;
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
                    &ids, &instances, &epochs, &statuses, &progress, &messages, &results, &errors,
                    &cursors,
                ],
            )
            .await?;
        let mut applied: Vec<Option<ClaimAfter>> = vec![None; wave.len()];
        for row in &rows {
            let slot = column::<i64>(row, "ord")? as usize - 1;
            let job_id = ids[slot];
            applied[slot] = Some(
                match (
                    job_status(row)?.is_terminal(),
                    timestamp(row, "lease_expires_at")?,
                ) {
                    (false, Some(lease)) => ClaimAfter::Held(LeaseHeld {
                        job_id,
                        claim_epoch: column(row, "claim_epoch")?,
                        lease_expires_at: lease.0,
                    }),
                    _ => ClaimAfter::Ended(job_id),
                },
            );
        }
        Ok(applied)
    }
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
