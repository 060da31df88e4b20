-- The opt-in fleet-wide drain (decisions row 16): one flag every replica honours, kept across
-- restarts until an operator resumes.
CREATE TABLE fleet_state (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    draining           boolean NOT NULL DEFAULT false,
    draining_changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO fleet_state (singleton) VALUES (true);
