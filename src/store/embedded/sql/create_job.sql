-- create_job: submit (docs/state-machine.md#submit). The row starts live ('working' by the column
-- default), unclaimed (attempt_count and claim_epoch 0) and without a lease; a pinned job (push
-- mode) names its owner already. :submitted_at strictly increases within the process (jobs.rs,
-- submission_time), so jobs submitted in the same microsecond keep their FIFO order. No guard: the
-- id is new (the primary key refuses a duplicate).
INSERT INTO jobs (job_id, capability, submitted_by, submitted_payload, owner_instance_id,
                  max_retries, max_duration, total_deadline, submitted_at)
VALUES (:job_id, :capability, :submitted_by, :submitted_payload, :owner_instance_id,
        :max_retries, :max_duration, :total_deadline, :submitted_at)
