-- import_reference: copy the Go registry's jobs and their events (its ent tables in schema
-- public, as v3.7 creates them) into ours, in one statement. The mapping, column by column:
--
--   public.jobs (ent)                 -> jobs (ours)
--   job_id varchar (a UUID)           -> job_id uuid
--   capability, owner_instance_id, progress_message, error, submitted_by
--                                     -> the same columns, as text
--   status varchar (same five values) -> status
--   claim_epoch, attempt_count, max_retries, max_duration, progress, recv_cursor,
--   total_deadline, lease_expires_at, last_heartbeat_at, submitted_at
--                                     -> the same columns, unchanged: an owner, its epoch and
--                                        its lease mean the same here, so a claim carried over
--                                        (--force) is fenced and reclaimed by our rules
--   result jsonb                      -> result json
--   submitted_payload jsonb (nullable)-> submitted_payload json ({} when the reference has none)
--   (none)                            -> event_seq: the job's highest event seq, so the next
--                                        event posted here follows the imported ones
--
--   public.job_events (ent)           -> job_events (ours)
--   id (ent's surrogate key)          -> not copied: (job_id, seq) is our key
--   job_id varchar, seq, type, posted_by, created_at
--                                     -> the same columns (job_id as uuid), seq kept
--   payload jsonb, trace_context jsonb-> payload json, trace_context json
--
-- Agents are not copied: they re-register when their heartbeat gets a 410.
-- Idempotent: a job id we already hold is skipped, and only the events of the jobs this run
-- inserts are copied, so a second run imports nothing twice. Only SELECTs touch public.*.
WITH imported AS (
  INSERT INTO jobs (job_id, capability, owner_instance_id, claim_epoch, status, progress,
                    progress_message, result, error, submitted_payload, recv_cursor,
                    attempt_count, max_retries, max_duration, total_deadline, lease_expires_at,
                    last_heartbeat_at, submitted_at, submitted_by, event_seq)
  SELECT r.job_id::uuid, r.capability, r.owner_instance_id, r.claim_epoch, r.status, r.progress,
         r.progress_message, r.result::json, r.error,
         COALESCE(r.submitted_payload, '{}'::jsonb)::json, r.recv_cursor,
         r.attempt_count, r.max_retries, r.max_duration, r.total_deadline, r.lease_expires_at,
         r.last_heartbeat_at, r.submitted_at, r.submitted_by,
         COALESCE((SELECT max(e.seq) FROM public.job_events e WHERE e.job_id = r.job_id), 0)
  FROM public.jobs r
  ORDER BY r.submitted_at, r.job_id
  ON CONFLICT (job_id) DO NOTHING
  RETURNING job_id, status
), imported_events AS (
  INSERT INTO job_events (job_id, seq, type, payload, trace_context, posted_by, created_at)
  SELECT e.job_id::uuid, e.seq, e.type, e.payload::json, e.trace_context::json, e.posted_by,
         e.created_at
  FROM public.job_events e
  JOIN imported i ON i.job_id = e.job_id::uuid
  RETURNING job_id
)
SELECT (SELECT count(*) FROM public.jobs) AS reference_jobs,
       (SELECT count(*) FROM imported_events) AS events,
       COALESCE((SELECT json_object_agg(status, n ORDER BY status)::text
                 FROM (SELECT status, count(*) AS n FROM imported GROUP BY status) s),
                '{}') AS jobs_by_status
