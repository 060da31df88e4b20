-- The embedded (SQLite) schema of jobs and their event logs: the same tables and columns as
-- PostgreSQL's V1, in SQLite's types. Uuids are lowercase hyphenated TEXT, timestamps INTEGER
-- microseconds since the Unix epoch (UTC), JSON is TEXT, booleans INTEGER 0/1. STRICT tables
-- refuse a value of the wrong type instead of storing it.

CREATE TABLE jobs (
    job_id            TEXT PRIMARY KEY,
    capability        TEXT NOT NULL,
    owner_instance_id TEXT,
    claim_epoch       INTEGER NOT NULL DEFAULT 0,
    status            TEXT NOT NULL DEFAULT 'working'
                      CHECK (status IN ('working', 'input_required', 'completed', 'failed', 'cancelled')),
    progress          REAL,
    progress_message  TEXT,
    result            TEXT,
    error             TEXT,
    submitted_payload TEXT NOT NULL,
    recv_cursor       TEXT,
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    max_retries       INTEGER NOT NULL DEFAULT 1,
    max_duration      INTEGER,
    total_deadline    INTEGER,
    lease_expires_at  INTEGER,
    last_heartbeat_at INTEGER,
    submitted_at      INTEGER NOT NULL,
    submitted_by      TEXT,
    -- Last event seq handed out for this job.
    event_seq         INTEGER NOT NULL DEFAULT 0
) STRICT;

-- claim_next: FIFO-oldest claimable job of a capability; over-budget rows never enter it.
CREATE INDEX jobs_claimable_idx ON jobs (capability, submitted_at, job_id)
    WHERE status = 'working' AND owner_instance_id IS NULL AND attempt_count <= max_retries;

-- list_jobs: newest first, keyset-paginated on (submitted_at, job_id).
CREATE INDEX jobs_submitted_idx ON jobs (submitted_at, job_id);

-- Live claims by owner: drain counts, orphan and lease reclaim.
CREATE INDEX jobs_live_owner_idx ON jobs (owner_instance_id)
    WHERE owner_instance_id IS NOT NULL AND status IN ('working', 'input_required');

CREATE TABLE job_events (
    job_id        TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    type          TEXT NOT NULL,
    payload       TEXT,
    trace_context TEXT,
    posted_by     TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) STRICT;
