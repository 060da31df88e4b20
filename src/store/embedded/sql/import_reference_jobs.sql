-- import_reference_jobs: the Go registry's jobs we do not hold yet, from its SQLite file
-- (attached as `reference`). Mapping, column by column:
--
--   reference.jobs (ent)              -> jobs (ours)
--   job_id text (a UUID)              -> job_id, lowercase as we store uuids
--   capability, owner_instance_id, status, claim_epoch, progress, progress_message, error,
--   attempt_count, max_retries, max_duration, submitted_by
--                                     -> the same: an owner, its epoch and its lease mean the
--                                        same here, so a claim carried over (--force) is
--                                        fenced and reclaimed by our rules
--   result, recv_cursor json (blob)   -> TEXT
--   submitted_payload json (nullable) -> TEXT ({} when the reference has none)
--   total_deadline, lease_expires_at, last_heartbeat_at, submitted_at datetime (text)
--                                     -> microseconds since the epoch (reference_time)
--   (none)                            -> event_seq: the job's highest event seq, so the next
--                                        event posted here follows the imported ones
INSERT INTO main.jobs (job_id, capability, owner_instance_id, claim_epoch, status, progress,
                       progress_message, result, error, submitted_payload, recv_cursor,
                       attempt_count, max_retries, max_duration, total_deadline,
                       lease_expires_at, last_heartbeat_at, submitted_at, submitted_by,
                       event_seq)
SELECT lower(r.job_id), r.capability, r.owner_instance_id, r.claim_epoch, r.status, r.progress,
       r.progress_message, CAST(r.result AS TEXT), r.error,
       COALESCE(CAST(r.submitted_payload AS TEXT), '{}'), CAST(r.recv_cursor AS TEXT),
       r.attempt_count, r.max_retries, r.max_duration, reference_time(r.total_deadline),
       reference_time(r.lease_expires_at), reference_time(r.last_heartbeat_at),
       reference_time(r.submitted_at), r.submitted_by,
       COALESCE((SELECT max(e.seq) FROM reference.job_events e WHERE e.job_id = r.job_id), 0)
FROM reference.jobs r
WHERE lower(r.job_id) NOT IN (SELECT job_id FROM main.jobs)
ORDER BY r.submitted_at, r.job_id
