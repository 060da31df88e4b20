-- list_jobs: GET /jobs, newest first, keyset-paginated on (submitted_at, job_id).
-- Every filter is optional: a NULL parameter leaves its condition out. $5/$6 are the
-- position of the previous page's last row; $7 is the page size plus one (to know if more follow).
SELECT job_id, capability, owner_instance_id, claim_epoch, status, progress, progress_message,
       result, error, submitted_payload, recv_cursor, attempt_count, max_retries, max_duration,
       total_deadline, lease_expires_at, last_heartbeat_at, submitted_at, submitted_by
FROM jobs
WHERE ($1::text[] IS NULL OR status = ANY($1))
  AND ($2::text IS NULL OR owner_instance_id = $2)
  AND ($3::text IS NULL OR capability = $3)
  AND ($4::timestamptz IS NULL OR submitted_at >= $4)
  AND ($5::timestamptz IS NULL OR (submitted_at, job_id) < ($5, $6::uuid))
ORDER BY submitted_at DESC, job_id DESC
LIMIT $7
