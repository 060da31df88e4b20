-- Jobs and their event logs: every field of contract §1.1 and §1.2, plus what our guarded
-- statements need (the per-job event counter `event_seq`, the partial claim index).

CREATE TABLE jobs (
    job_id            uuid PRIMARY KEY,
    capability        text NOT NULL,
    owner_instance_id text,
    claim_epoch       bigint NOT NULL DEFAULT 0,
    status            text NOT NULL DEFAULT 'working'
                      CHECK (status IN ('working', 'input_required', 'completed', 'failed', 'cancelled')),
    progress          double precision,
    progress_message  text,
    result            json,
    error             text,
    submitted_payload json NOT NULL,
    recv_cursor       jsonb,
    attempt_count     bigint NOT NULL DEFAULT 0,
    max_retries       bigint NOT NULL DEFAULT 1,
    max_duration      bigint,
    total_deadline    timestamptz,
    lease_expires_at  timestamptz,
    last_heartbeat_at timestamptz,
    submitted_at      timestamptz NOT NULL DEFAULT now(),
    submitted_by      text,
    -- Last event seq handed out for this job: bumped in the same statement that inserts the
    -- event, so concurrent posters queue on the row lock instead of retrying.
    event_seq         bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 80); -- room on each page for HOT updates of progress deltas

-- claim_next: FIFO-oldest claimable job of a capability; over-budget rows never enter it.
CREATE INDEX jobs_claimable_idx ON jobs (capability, submitted_at, job_id)
    WHERE status = 'working' AND owner_instance_id IS NULL AND attempt_count <= max_retries;

-- list_jobs: newest first, keyset-paginated on (submitted_at, job_id).
CREATE INDEX jobs_submitted_idx ON jobs (submitted_at, job_id);

-- Live claims by owner: drain counts, orphan and lease reclaim.
CREATE INDEX jobs_live_owner_idx ON jobs (owner_instance_id)
    WHERE owner_instance_id IS NOT NULL AND status IN ('working', 'input_required');

CREATE TABLE job_events (
    job_id        uuid NOT NULL,
    seq           bigint NOT NULL,
    type          text NOT NULL,
    payload       json,
    trace_context json,
    posted_by     text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);
