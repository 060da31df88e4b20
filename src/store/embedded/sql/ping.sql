-- ping: the cheapest statement that proves the store thread and its connection answer.
SELECT 1
