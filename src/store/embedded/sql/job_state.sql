-- job_state: status, owner and epoch as they are now. What a guarded write that matched nothing
-- reads, in the same call, to name the reason (not found, not the owner, superseded, already
-- terminal); calls run one at a time on one connection, so the row read is the row the write
-- missed.
SELECT status, owner_instance_id, claim_epoch FROM jobs WHERE job_id = :job_id
