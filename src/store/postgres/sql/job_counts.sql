-- job_counts: how many jobs each (status, capability) holds, for the dashboard. Bounded: a
-- mesh with more groups than this shows the first ones (by capability) and says so.
SELECT status, capability, count(*) AS jobs FROM jobs
GROUP BY status, capability
ORDER BY capability, status
LIMIT $1
