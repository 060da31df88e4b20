-- expire_stale_job: one job stale_candidates.sql picked fails with :reason, unowned and unleased,
-- and takes the seq of its `stale` event from the row's counter (the call appends the event with
-- append_event.sql in the same transaction). Guard: none here; stale_candidates.sql selected the
-- row in the same call, on the same connection, and calls run one at a time, so it is still live
-- and deadline-free.
UPDATE jobs SET status = 'failed',
                error = :reason,
                owner_instance_id = NULL,
                lease_expires_at = NULL,
                last_heartbeat_at = :now,
                event_seq = event_seq + 1
WHERE job_id = :job_id
RETURNING event_seq
