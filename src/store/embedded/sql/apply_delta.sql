-- apply_delta: an owner's delta (docs/state-machine.md#update). Fields given replace the stored
-- ones (the caller passes result only with `completed`, error only with `failed`); :recv_cursor,
-- when the delta carries one, is the stored cursor merged with it
-- (domain::jobs::merge_recv_cursor). A live result renews the lease by one window
-- (job_lease_window, domain::jobs::lease_window); a terminal one keeps the lease as it was (nothing
-- watches a finished job's lease). ran_micros is how long the claim has run (GET /metrics
-- observes it when the job ends); NULL for a pinned job, never claimed, and for a claim made
-- before claimed_at existed.
--
-- Guard: none in this statement, on purpose. The call checked it just before, on the row
-- delta_target.sql read (owner, the epoch when the delta carries one, liveness:
-- domain::jobs::JobState::delta_rejection), on the same connection inside the same transaction;
-- calls run one at a time, so nothing can change the row between that read and this write. A
-- rejected delta never reaches this statement: no lease extension, no cursor advance.
UPDATE jobs SET status = :status,
                progress = coalesce(:progress, progress),
                progress_message = coalesce(:progress_message, progress_message),
                result = coalesce(:result, result),
                error = coalesce(:error, error),
                recv_cursor = coalesce(:recv_cursor, recv_cursor),
                last_heartbeat_at = :now,
                lease_expires_at = CASE WHEN :status IN ('working', 'input_required')
                                        THEN :now + job_lease_window(max_duration)
                                        ELSE lease_expires_at END
WHERE job_id = :job_id
RETURNING status, claim_epoch, lease_expires_at, :now - claimed_at AS ran_micros
