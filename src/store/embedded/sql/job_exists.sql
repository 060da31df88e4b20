-- job_exists: whether the job exists, so that an empty page of events is told from an unknown job
-- (read in the same call as list_events.sql).
SELECT 1 FROM jobs WHERE job_id = :job_id
