-- job_counts: how many jobs each (status, capability) holds, for the dashboard; bounded.
SELECT status, capability, count(*) FROM jobs
GROUP BY status, capability
ORDER BY capability, status
LIMIT ?1
