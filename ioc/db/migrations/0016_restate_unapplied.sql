-- A transition the broker confirmed is not always one the incident agent applied: in CI the
-- agent's group committed past a camera's "down" after a leader was killed, and its outage
-- opened no incident (tests/chaos/test_leader_killed.py); Faust acks, and so commits, a
-- message its stream skips while a rebalance has the flow suspended. The agent records the
-- time of the last transition it applied per device (applied_at, in its own transaction);
-- the leader records when it last published one (published_at) and restates the current
-- state of a device whose last transition is still unapplied a grace period after both, and
-- that matters to incidents (an incident-worthy state, or an open incident rooted at it), at
-- most once per grace period (restated_at): ioc.streams.evaluator, docs/streams.md
-- "Restated when unapplied".
ALTER TABLE device_state
    ADD COLUMN applied_at   timestamptz,
    ADD COLUMN published_at timestamptz,
    ADD COLUMN restated_at  timestamptz;
-- What was decided before this release was applied then (or its loss is beyond repair): a
-- restatement now would reopen incidents operators resolved while their devices stayed down.
UPDATE device_state SET applied_at = since;
