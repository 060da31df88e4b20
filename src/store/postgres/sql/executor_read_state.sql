-- executor_read_state: what an executor read (the owner polling its job's events) needs to be
-- authorised and to size the lease it grants: who holds the job under which epoch, and the
-- job's window and caps (max_duration, total_deadline, submitted_at).
SELECT status, owner_instance_id, claim_epoch, max_duration, total_deadline, submitted_at
FROM jobs WHERE job_id = $1
