-- The SLA report and the SLA dashboard over a national deployment (issue 18 item 5: a monthly
-- report over 100,000 devices in under 5 s; it took 64 s for one province of 11,340).
-- device_availability (0008) keeps its figures; what changes is how it gets them:
--   * the counted window is computed once (MATERIALIZED): inlined, an SLA object's
--     sla_counted_time(...) argument was re-evaluated for every interval, in every aggregate;
--   * an interval's seconds are computed once per interval (the OFFSET 0 subquery) and, when
--     the counted window is one range (no schedule: the dashboard's default and most
--     reports), from plain ranges, without building a multirange per interval;
--     maintenance is intersected only for devices that have some;
--   * under_unit (new, optional) restricts it to the devices under a unit, so a province's
--     report no longer computes every province's devices and drops them afterwards, and
--     the unit's devices are joined to their intervals by index.
-- The old signature is dropped: every caller passes 2-4 arguments or names under_unit, which
-- the new one accepts. EXECUTE is granted again by the migration runner (ioc.db.migrate).
DROP FUNCTION device_availability(timestamptz, timestamptz, text, tstzmultirange);

CREATE FUNCTION device_availability(
    t0 timestamptz, t1 timestamptz, upstream_as text DEFAULT 'upstream',
    counted tstzmultirange DEFAULT NULL, under_unit text DEFAULT NULL)
    RETURNS TABLE (device_id text, measured_s double precision,
                   unavailable_s double precision, maintenance_s double precision,
                   upstream_s double precision)
    LANGUAGE sql STABLE
    AS $$
WITH win AS MATERIALIZED (
    SELECT w.m, range_merge(w.m) AS span, w.m = tstzmultirange(range_merge(w.m)) AS single
    FROM (SELECT tstzmultirange(tstzrange(t0, greatest(t0, least(t1, now()))))
                 * coalesce(counted, '{(,)}'::tstzmultirange) AS m) w
), iv AS (
    -- every device's intervals, or (under_unit) those of the devices under a unit: two
    -- branches, so that with a unit the planner can join its devices to their intervals
    -- (an OR would leave it a filter over every interval)
    SELECT i.device_id, i.state,
           tstzrange(i.start_ts, coalesce(i.end_ts, 'infinity'::timestamptz)) AS r
    FROM device_state_intervals i
    WHERE under_unit IS NULL
      AND i.state <> 'unknown' AND i.start_ts < least(t1, now())
      AND coalesce(i.end_ts, 'infinity'::timestamptz) > t0
    UNION ALL
    SELECT i.device_id, i.state,
           tstzrange(i.start_ts, coalesce(i.end_ts, 'infinity'::timestamptz)) AS r
    FROM device_state_intervals i
    WHERE under_unit IS NOT NULL
      AND i.device_id IN (
               SELECT d.id FROM devices d
               JOIN sites s ON s.id = d.site_id
               JOIN unit_ancestors ua ON ua.unit_code = s.unit_code
               WHERE ua.ancestor_code = under_unit)
      AND i.state <> 'unknown' AND i.start_ts < least(t1, now())
      AND coalesce(i.end_ts, 'infinity'::timestamptz) > t0
), per AS (
    SELECT iv.device_id, iv.state, s.total_s - s.maint_s AS counted_s, s.maint_s
    FROM iv CROSS JOIN win
    LEFT JOIN device_maintenance(t0, least(t1, now())) mw ON mw.device_id = iv.device_id,
    LATERAL (
        SELECT CASE WHEN win.single
                    THEN coalesce(date_part('epoch', upper(iv.r * win.span)
                                                     - lower(iv.r * win.span)), 0)
                    ELSE multirange_seconds(tstzmultirange(iv.r) * win.m) END AS total_s,
               CASE WHEN mw.m IS NULL THEN 0::double precision
                    ELSE multirange_seconds(tstzmultirange(iv.r) * win.m * mw.m) END AS maint_s
        OFFSET 0) s
)
SELECT per.device_id,
       sum(counted_s),
       coalesce(sum(counted_s) FILTER (
           WHERE state IN ('down', 'flapping')
              OR (state = 'unreachable-upstream' AND upstream_as = 'device')), 0),
       sum(maint_s),
       coalesce(sum(counted_s) FILTER (WHERE state = 'unreachable-upstream'), 0)
FROM per
GROUP BY per.device_id
$$;
