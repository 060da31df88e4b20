-- delete_job_events: every event of one job whose row purge_finished_jobs.sql deleted.
DELETE FROM job_events WHERE job_id = :job_id
