-- list_events: a page of a job's events with seq > $2 (of the types $3, when given), ascending,
-- at most $4, stopping once the events before one weigh $5 bytes or more (payload and trace
-- context) so a page of big events cannot take the registry's memory; the reader continues from
-- the last seq it got. Whether the job exists comes from the same statement: no row at all means
-- no such job; one row of NULLs means the job exists but has no matching event.
SELECT e.seq, e.type, e.payload, e.trace_context, e.posted_by, e.created_at
FROM jobs
LEFT JOIN LATERAL (
  SELECT seq, type, payload, trace_context, posted_by, created_at
  FROM (
    SELECT seq, type, payload, trace_context, posted_by, created_at,
           sum(bytes) OVER (ORDER BY seq) - bytes AS before
    FROM (
      SELECT seq, type, payload, trace_context, posted_by, created_at,
             coalesce(octet_length(payload::text), 0)
               + coalesce(octet_length(trace_context::text), 0) AS bytes
      FROM job_events
      WHERE job_events.job_id = jobs.job_id AND seq > $2
        AND ($3::text[] IS NULL OR type = ANY($3))
      ORDER BY seq
      LIMIT $4
    ) AS candidates
  ) AS sized
  WHERE before < $5
) AS e ON true
WHERE jobs.job_id = $1
ORDER BY e.seq
