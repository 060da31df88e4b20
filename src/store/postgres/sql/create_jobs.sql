-- create_jobs: submit (docs/state-machine.md#submit), one row per job given, in one statement
-- (group commit). submitted_at is clock_timestamp() taken row by row in arrival order, so
-- submissions that share a statement keep their FIFO order for claims.
INSERT INTO jobs (job_id, capability, submitted_by, submitted_payload, owner_instance_id,
                  max_retries, max_duration, total_deadline, submitted_at)
SELECT job_id, capability, submitted_by, submitted_payload, owner_instance_id,
       max_retries, max_duration, total_deadline, clock_timestamp()
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::json[], $5::text[],
            $6::bigint[], $7::bigint[], $8::timestamptz[]) WITH ORDINALITY
     AS j(job_id, capability, submitted_by, submitted_payload, owner_instance_id,
          max_retries, max_duration, total_deadline, arrival)
ORDER BY arrival
