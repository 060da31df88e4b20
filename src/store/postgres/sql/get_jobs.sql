-- get_jobs: the jobs with these ids (reads that arrive together share this statement).
SELECT job_id, capability, owner_instance_id, claim_epoch, status, progress, progress_message,
       result, error, submitted_payload, recv_cursor, attempt_count, max_retries, max_duration,
       total_deadline, lease_expires_at, last_heartbeat_at, submitted_at, submitted_by
FROM jobs
WHERE job_id = ANY($1)
