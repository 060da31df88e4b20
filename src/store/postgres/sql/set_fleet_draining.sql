-- set_fleet_draining: the fleet-wide drain flag, stored so that every replica honours it and
-- it survives restarts. Only a change is stamped and announced on channel $2 (every replica
-- also re-reads the flag every second).
WITH changed AS (
  UPDATE fleet_state SET draining = $1, draining_changed_at = now()
  WHERE draining IS DISTINCT FROM $1
  RETURNING draining
)
SELECT pg_notify($2, draining::text)::text FROM changed
