-- list_events: a page of a job's events with seq > :after, ascending, at most :limit. :types is a
-- JSON array of the wanted event types, or NULL for every type.
SELECT seq, type, payload, trace_context, posted_by, created_at
FROM job_events
WHERE job_id = :job_id AND seq > :after
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
ORDER BY seq
LIMIT :limit
