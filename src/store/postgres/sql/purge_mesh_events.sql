-- purge_mesh_events: retention of the registry's log: events older than $1 seconds, and every
-- event beyond the newest $2 whatever its age (a flood of registrations cannot outgrow it).
DELETE FROM mesh_events
WHERE recorded_at < now() - make_interval(secs => $1)
   OR event_id <= (SELECT event_id FROM mesh_events ORDER BY event_id DESC OFFSET $2 LIMIT 1)
