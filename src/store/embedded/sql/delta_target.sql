-- delta_target: what decides whether an owner's delta (docs/state-machine.md#update) applies, and
-- the cursor it merges into: status, owner and epoch (domain::jobs::JobState::delta_rejection) and
-- recv_cursor (domain::jobs::merge_recv_cursor). apply_delta.sql writes right after, in the same
-- call.
SELECT status, owner_instance_id, claim_epoch, recv_cursor FROM jobs WHERE job_id = :job_id
