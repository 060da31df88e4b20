-- append_event: one event of a job's log, at the seq the call took from the job row's counter
-- (take_event_seq.sql, cancel_job.sql, expire_stale_job.sql) in the same transaction. No guard: the
-- counter handed this seq out once, so it is gap-free and never taken twice.
INSERT INTO job_events (job_id, seq, type, payload, trace_context, posted_by, created_at)
VALUES (:job_id, :seq, :type, :payload, :trace_context, :posted_by, :created_at)
