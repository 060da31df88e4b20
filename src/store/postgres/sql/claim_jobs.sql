-- claim_jobs: claims (docs/state-machine.md#claim) for every caller of a group-commit batch in
-- one statement. Each capability's FIFO-oldest claimable rows, in (submitted_at, job_id) order,
-- go to its callers in the order they called.
--
-- Guards and why:
-- * claimable = working, unowned, retry budget not spent (`attempt_count <= max_retries`; the
--   same predicate as the partial index jobs_claimable_idx). A spent job is never claimable, so
--   it can never block the queue behind it.
-- * FOR UPDATE SKIP LOCKED: concurrent claimers (other statements, other replicas) take
--   different rows instead of losing races; a claim returns work whenever work exists.
-- * A caller whose tool for this capability has required dependencies is `gated` (claims
--   nothing) unless it says it checked them ($3): the gate needs the mesh, which is not in SQL.
-- The claim mints a new generation: attempt_count + 1, claim_epoch + 1, and a lease of one
-- window ($4: the default window in seconds, for jobs without max_duration). It stamps
-- claimed_at and answers how long the job waited claimable (for GET /metrics): since it was
-- requeued, or since its submission for a first claim (RETURNING sees the claimed row:
-- attempt_count 1 is a first claim); NULL for a row requeued before requeued_at existed.
WITH claimers AS (
  SELECT w.capability, w.instance_id, w.ord,
         (NOT w.gate_checked AND EXISTS (
            SELECT 1 FROM agent_tools t
            WHERE t.agent_id = w.instance_id AND t.capability = w.capability
              AND t.has_required_dependencies)) AS gated
  FROM unnest($1::text[], $2::text[], $3::bool[]) WITH ORDINALITY
       AS w(capability, instance_id, gate_checked, ord)
), eligible AS (
  SELECT capability, instance_id, ord,
         row_number() OVER (PARTITION BY capability ORDER BY ord) AS slot
  FROM claimers WHERE NOT gated
), demand AS (
  SELECT capability, count(*) AS wanted FROM eligible GROUP BY capability
), candidates AS (
  SELECT picked.job_id, demand.capability,
         row_number() OVER (PARTITION BY demand.capability
                            ORDER BY picked.submitted_at, picked.job_id) AS slot
  FROM demand CROSS JOIN LATERAL (
    SELECT job_id, submitted_at FROM jobs
    WHERE capability = demand.capability AND status = 'working'
      AND owner_instance_id IS NULL AND attempt_count <= max_retries
    ORDER BY submitted_at, job_id
    LIMIT demand.wanted
    FOR UPDATE SKIP LOCKED
  ) AS picked
), claimed AS (
  UPDATE jobs SET owner_instance_id = eligible.instance_id,
                  attempt_count = attempt_count + 1,
                  claim_epoch = claim_epoch + 1,
                  lease_expires_at = now() + job_lease_window(max_duration, $4),
                  last_heartbeat_at = now(),
                  claimed_at = now()
  FROM candidates
  JOIN eligible ON eligible.capability = candidates.capability
               AND eligible.slot = candidates.slot
  WHERE jobs.job_id = candidates.job_id
  RETURNING eligible.ord, jobs.job_id, submitted_payload, attempt_count, claim_epoch,
            lease_expires_at, max_duration, recv_cursor,
            extract(epoch FROM now() - coalesce(requeued_at, CASE WHEN attempt_count = 1
                                                              THEN submitted_at END))::float8
              AS waited_seconds
)
SELECT claimers.ord AS caller, claimers.gated, claimed.*
FROM claimers LEFT JOIN claimed ON claimed.ord = claimers.ord
