-- purge_mesh_events: retention of the registry's log: events recorded before :cutoff, and every
-- event beyond the newest :kept whatever its age (a flood of registrations cannot outgrow it).
DELETE FROM mesh_events
WHERE recorded_at < :cutoff
   OR event_id <= (SELECT event_id FROM mesh_events ORDER BY event_id DESC LIMIT 1 OFFSET :kept)
