-- The cameras dashboard's "Traffic incidents" table (dashboards/ioc/dashboards/cameras.py)
-- reads the newest 50 camera.incident rows of a unit in the range. Incidents are about one
-- raw camera row in 500-1,000 (ioc.simulators.behaviour), and the only index of raw_camera
-- starts with ts (migration 0004): the query walked the range's rows backwards until it had
-- 50 of the unit's incidents, 3-4 s at every range over a national hour of raw rows
-- (bench/results/history.json). A partial index holds the incidents alone; a write that is
-- not an incident only evaluates its predicate.
CREATE INDEX IF NOT EXISTS raw_camera_incidents_idx
    ON raw_camera (ts DESC) WHERE kind = 'camera.incident';
