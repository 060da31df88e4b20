-- import_reference_events: the events of the Go registry's jobs we do not hold yet, from its
-- SQLite file (attached as `reference`). Run before import_reference_jobs.sql, in the same
-- transaction, so "not held yet" still names exactly the jobs this run copies. Mapping:
--
--   reference.job_events (ent)        -> job_events (ours)
--   id (ent's surrogate key)          -> not copied: (job_id, seq) is our key
--   job_id text                       -> job_id, lowercase as we store uuids
--   seq, type, posted_by              -> the same
--   payload, trace_context json (blob)-> TEXT
--   created_at datetime (text)        -> microseconds since the epoch (reference_time)
INSERT INTO main.job_events (job_id, seq, type, payload, trace_context, posted_by, created_at)
SELECT lower(e.job_id), e.seq, e.type, CAST(e.payload AS TEXT), CAST(e.trace_context AS TEXT),
       e.posted_by, reference_time(e.created_at)
FROM reference.job_events e
JOIN reference.jobs r ON r.job_id = e.job_id
WHERE lower(r.job_id) NOT IN (SELECT job_id FROM main.jobs)
ORDER BY e.job_id, e.seq
