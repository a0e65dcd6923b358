-- A node's cut can come and go between two evaluation rounds (an 8 s cut, probes every 5 s,
-- a round every 5 s): the newest probe alone does not show it. The newest failed and the
-- newest successful probe do (GREATEST merges, so replays and batch order do not matter), and
-- the state machine counts such unseen cuts towards flapping (ioc.streams.state).
ALTER TABLE device_last_seen
    ADD COLUMN probe_ok_ts   timestamptz,
    ADD COLUMN probe_fail_ts timestamptz;
