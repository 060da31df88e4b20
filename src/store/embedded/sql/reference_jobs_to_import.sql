-- reference_jobs_to_import: the Go registry's jobs (in its attached SQLite file) that we do not
-- hold yet, counted by status; what import_reference_jobs.sql is about to copy.
SELECT r.status, count(*) AS n
FROM reference.jobs r
WHERE lower(r.job_id) NOT IN (SELECT job_id FROM main.jobs)
GROUP BY r.status
ORDER BY r.status
