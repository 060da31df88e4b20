-- job_state: status, owner and epoch as they are now, to name the reason a guarded write
-- matched nothing (not found, not the owner, superseded, already terminal).
SELECT status, owner_instance_id, claim_epoch FROM jobs WHERE job_id = $1
