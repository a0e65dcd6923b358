-- A transition the broker confirmed is not always one the incident agent applied: in CI the
-- agent's group committed past a camera's "down" after a leader was killed, and its outage
-- opened no incident (tests/chaos/test_leader_killed.py); Faust acks, and so commits, a
-- message its stream skips while a rebalance has the flow suspended. The agent records the
-- time of the last transition it applied per device (applied_at, in its own transaction);
-- the shard leader restates the current state of a device whose last transition it has not
-- applied within a grace period and that matters to incidents (an incident-worthy state, or
-- an open incident rooted at it), at most once per grace period (restated_at):
-- ioc.streams.evaluator, docs/streams.md "Restated when unapplied".
ALTER TABLE device_state
    ADD COLUMN applied_at  timestamptz,
    ADD COLUMN restated_at timestamptz;
