-- fleet_draining: whether the fleet-wide drain is set.
SELECT draining FROM fleet_state
