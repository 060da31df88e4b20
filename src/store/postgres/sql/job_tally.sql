-- job_tally: how many jobs are in each state, per capability (GET /metrics). A job nobody owns
-- while it is working is waiting in the queue, so it counts as 'queued'. A full count: the
-- caller caches it (docs/configuration.md#metrics), never runs it per request.
SELECT CASE WHEN status = 'working' AND owner_instance_id IS NULL THEN 'queued' ELSE status END
         AS state,
       capability,
       count(*) AS jobs
FROM jobs
GROUP BY 1, 2
