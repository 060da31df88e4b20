-- When a job was last claimed, and when it last went back to the queue: what the claim-wait and
-- run-time histograms of GET /metrics measure from. The statements that claim and requeue set
-- them as they change the row (no statement or index of their own). Rows from before this
-- migration have neither, and are left out of the histograms rather than measured from a guess.

-- Set by every claim; kept after the job ends (its run time is measured against it).
ALTER TABLE jobs ADD COLUMN claimed_at timestamptz;
-- Set whenever a claimed or pinned job loses its owner (released, reclaimed, its lease lapsed,
-- rerouted as an orphan); the next claim waited since then.
ALTER TABLE jobs ADD COLUMN requeued_at timestamptz;
