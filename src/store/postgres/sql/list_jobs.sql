-- list_jobs: GET /jobs, newest first, keyset-paginated on (submitted_at, job_id).
-- Every filter is optional: a NULL parameter leaves its condition out. $5/$6 are the
-- position of the previous page's last row; $7 is the page size plus one (to know if more follow).
-- The page also stops once the rows before one weigh $8 bytes or more (payload, result, error,
-- message: what can be big), so a page of big jobs cannot take the registry's memory; only the
-- rows kept are read whole. page_rows says how many rows the page would have had.
WITH page AS (
  SELECT job_id, submitted_at,
         octet_length(submitted_payload::text) + coalesce(octet_length(result::text), 0)
           + coalesce(octet_length(error), 0) + coalesce(octet_length(progress_message), 0)
           AS bytes
  FROM jobs
  WHERE ($1::text[] IS NULL OR status = ANY($1))
    AND ($2::text IS NULL OR owner_instance_id = $2)
    AND ($3::text IS NULL OR capability = $3)
    AND ($4::timestamptz IS NULL OR submitted_at >= $4)
    AND ($5::timestamptz IS NULL OR (submitted_at, job_id) < ($5, $6::uuid))
  ORDER BY submitted_at DESC, job_id DESC
  LIMIT $7
), kept AS (
  SELECT job_id, sum(bytes) OVER (ORDER BY submitted_at DESC, job_id DESC) - bytes AS before
  FROM page
)
SELECT jobs.job_id, capability, owner_instance_id, claim_epoch, status, progress,
       progress_message, result, error, submitted_payload, recv_cursor, attempt_count,
       max_retries, max_duration, total_deadline, lease_expires_at, last_heartbeat_at,
       jobs.submitted_at, submitted_by, (SELECT count(*) FROM page) AS page_rows
FROM kept JOIN jobs ON jobs.job_id = kept.job_id
WHERE kept.before < $8
ORDER BY jobs.submitted_at DESC, jobs.job_id DESC
