-- claim_next: claim (docs/state-machine.md#claim): the FIFO-oldest claimable job of the capability,
-- in (submitted_at, job_id) order, goes to the caller.
--
-- Guard (the subquery) and why: claimable = working, unowned, retry budget not spent
-- (`attempt_count <= max_retries`; the same predicate as the partial index jobs_claimable_idx). A
-- spent job is never claimable, so it never blocks the queue behind it. The pick and the write are
-- one statement on the store's single connection: no other claim can take the same row in between.
--
-- The claim mints a new generation: attempt_count + 1, claim_epoch + 1 (fencing the previous
-- owner), and a lease of one window, job_lease_window (domain::jobs::lease_window, registered on
-- the connection), evaluated for the row picked. It stamps claimed_at and answers how long the
-- job waited claimable, in microseconds (for GET /metrics): since it was requeued, or since its
-- submission for a first claim (RETURNING sees the claimed row: attempt_count 1 is a first
-- claim); NULL for a row requeued before requeued_at existed.
UPDATE jobs SET owner_instance_id = :instance_id,
                attempt_count = attempt_count + 1,
                claim_epoch = claim_epoch + 1,
                lease_expires_at = :now + job_lease_window(max_duration),
                last_heartbeat_at = :now,
                claimed_at = :now
WHERE job_id = (
  SELECT job_id FROM jobs
  WHERE capability = :capability AND status = 'working'
    AND owner_instance_id IS NULL AND attempt_count <= max_retries
  ORDER BY submitted_at, job_id
  LIMIT 1
)
RETURNING job_id, submitted_payload, attempt_count, claim_epoch, lease_expires_at,
          max_duration, recv_cursor,
          :now - coalesce(requeued_at, CASE WHEN attempt_count = 1 THEN submitted_at END)
            AS waited_micros
