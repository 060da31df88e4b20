-- agent_tally: how many agents are in each health status (GET /metrics).
SELECT status, count(*) AS agents FROM agents GROUP BY status
