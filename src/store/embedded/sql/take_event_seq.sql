-- take_event_seq: the next seq of a live job's event log, from the job row's counter: gap-free and
-- never contended (calls run one at a time). The call appends the event (append_event.sql) in the
-- same transaction. Guard and why: the job is live; a finished job's log is closed to producers. On
-- a miss the call reads job_state.sql to tell "not found" from "already terminal".
UPDATE jobs SET event_seq = event_seq + 1
WHERE job_id = :job_id AND status IN ('working', 'input_required')
RETURNING event_seq
