-- list_jobs: GET /jobs, newest first, keyset-paginated on (submitted_at, job_id). Every filter is
-- optional: a NULL parameter leaves its condition out. :statuses is a JSON array of status names;
-- :after_time/:after_id are the previous page's last row; :limit is the page size the caller asks
-- for.
SELECT job_id, capability, owner_instance_id, claim_epoch, status, progress, progress_message,
       result, error, submitted_payload, recv_cursor, attempt_count, max_retries, max_duration,
       total_deadline, lease_expires_at, last_heartbeat_at, submitted_at, submitted_by
FROM jobs
WHERE (:statuses IS NULL
       OR EXISTS (SELECT 1 FROM json_each(:statuses) WHERE value = jobs.status))
  AND (:owner_instance_id IS NULL OR owner_instance_id = :owner_instance_id)
  AND (:capability IS NULL OR capability = :capability)
  AND (:submitted_since IS NULL OR submitted_at >= :submitted_since)
  AND (:after_time IS NULL OR (submitted_at, job_id) < (:after_time, :after_id))
ORDER BY submitted_at DESC, job_id DESC
LIMIT :limit
