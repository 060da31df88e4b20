-- merged_recv_cursor (V5) again, the same rule written in PL/pgSQL. PostgreSQL cannot inline a
-- SQL function whose body has a subquery, so each statement that called it (every owner delta)
-- parsed and planned that body anew: a fifth of PostgreSQL's CPU in the job cycle. A PL/pgSQL
-- function keeps its plan for the session, and a delta without a cursor runs no query at all.
-- CREATE OR REPLACE keeps the signature and the answers (tests/api/rules.rs), so a binary that
-- knows only V5 gets the same results from it.
CREATE OR REPLACE FUNCTION merged_recv_cursor(current jsonb, incoming jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
  IF incoming IS NULL THEN
    RETURN current;
  END IF;
  RETURN (SELECT jsonb_object_agg(key, seq)
          FROM (SELECT key, max(value::bigint) AS seq
                FROM (SELECT key, value FROM jsonb_each_text(coalesce(current, '{}'::jsonb))
                      UNION ALL
                      SELECT key, value FROM jsonb_each_text(incoming)) AS both_cursors
                GROUP BY key) AS merged);
END
$$;
