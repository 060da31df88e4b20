-- apply_deltas: owner deltas (docs/state-machine.md#update) to distinct jobs, one statement per
-- group-commit wave.
--
-- Guard (the WHERE clause) and why: the caller still owns the job, the job is live, and when
-- the delta carries a claim epoch it is the current one. An owner that was superseded (its
-- lease lapsed and the job was claimed again) cannot overwrite the new claim; an SDK older than
-- claim epochs sends none and is checked on the owner alone. A delta that misses touches
-- nothing (no lease extension, no cursor advance); the caller names the reason from job_state.
--
-- Effects: fields given replace the stored ones (result only on completion, error only on
-- failure); recv_cursor is merged key by key keeping the larger seq; a live result renews the
-- lease by one window ($10: the default window in seconds); a terminal one keeps it as it was.
-- ran_seconds is how long the claim has run (GET /metrics observes it when the job ends); NULL
-- for a pinned job, never claimed, and for a claim made before claimed_at existed.
WITH d AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::float8[],
                       $6::text[], $7::json[], $8::text[], $9::jsonb[]) WITH ORDINALITY
         AS d(job_id, instance_id, claim_epoch, status, progress, progress_message, result,
              error, recv_cursor, ord)
)
UPDATE jobs SET
  status = coalesce(d.status, jobs.status),
  progress = coalesce(d.progress, jobs.progress),
  progress_message = coalesce(d.progress_message, jobs.progress_message),
  result = CASE WHEN d.status = 'completed' AND d.result IS NOT NULL
                THEN d.result ELSE jobs.result END,
  error = CASE WHEN d.status = 'failed' AND d.error IS NOT NULL
               THEN d.error ELSE jobs.error END,
  recv_cursor = merged_recv_cursor(jobs.recv_cursor, d.recv_cursor),
  last_heartbeat_at = now(),
  lease_expires_at = CASE
    WHEN coalesce(d.status, jobs.status) IN ('completed', 'failed', 'cancelled')
    THEN jobs.lease_expires_at
    ELSE now() + job_lease_window(jobs.max_duration, $10) END
FROM d
WHERE jobs.job_id = d.job_id
  AND jobs.owner_instance_id = d.instance_id
  AND (d.claim_epoch IS NULL OR jobs.claim_epoch = d.claim_epoch)
  AND jobs.status IN ('working', 'input_required')
RETURNING d.ord, jobs.status, jobs.claim_epoch, jobs.lease_expires_at,
          extract(epoch FROM now() - jobs.claimed_at)::float8 AS ran_seconds
