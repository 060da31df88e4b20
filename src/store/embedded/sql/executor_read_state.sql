-- executor_read_state: what an executor read (the owner polling its job's events) needs to be
-- authorised (status, owner, epoch: domain::jobs::JobState::superseded_for) and to size the lease
-- it grants (max_duration, total_deadline, submitted_at: domain::jobs::poll_lease).
SELECT status, owner_instance_id, claim_epoch, max_duration, total_deadline, submitted_at
FROM jobs WHERE job_id = :job_id
