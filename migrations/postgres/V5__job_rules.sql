-- The two job rules that statements must apply row by row inside PostgreSQL, each defined once
-- here. Both are decided in src/domain/jobs.rs; tests/api/rules.rs checks that these functions
-- give the same answers. CREATE OR REPLACE: a `migrate prune` after a downgrade forgets this
-- migration but keeps the functions, and the upgrade that follows applies it again.

-- A claim's lease window: the job's max_duration (seconds) when positive, else the default
-- window the registry passes in (domain::jobs::DEFAULT_LEASE_WINDOW).
CREATE OR REPLACE FUNCTION job_lease_window(max_duration bigint, default_seconds double precision)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT make_interval(secs => CASE WHEN max_duration > 0 THEN max_duration
                                    ELSE default_seconds END)
$$;

-- A delta's recv_cursor merged into the stored one key by key, keeping the larger seq, so a late
-- or reordered delta never moves a cursor back. A delta without a cursor leaves it as it was.
CREATE OR REPLACE FUNCTION merged_recv_cursor(current jsonb, incoming jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN incoming IS NULL THEN current ELSE (
    SELECT jsonb_object_agg(key, seq)
    FROM (SELECT key, max(value::bigint) AS seq
          FROM (SELECT key, value FROM jsonb_each_text(coalesce(current, '{}'::jsonb))
                UNION ALL
                SELECT key, value FROM jsonb_each_text(incoming)) AS both_cursors
          GROUP BY key) AS merged)
  END
$$;
