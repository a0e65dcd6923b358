-- Availability, defined once: the SLA report (ioc.services.ops.sla) and the Grafana SLA
-- dashboard both call these functions, so their figures reconcile by construction.

-- Seconds covered by a multirange.
CREATE FUNCTION multirange_seconds(m tstzmultirange) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(sum(extract(epoch FROM upper(r) - lower(r))), 0)::double precision
          FROM unnest(m) r $$;

-- Each device's planned maintenance inside [t0, t1), overlapping occurrences merged (never
-- subtracted twice); an occurrence of a cancelled window ends when it was cancelled.
CREATE FUNCTION device_maintenance(t0 timestamptz, t1 timestamptz)
    RETURNS TABLE (device_id text, m tstzmultirange)
    LANGUAGE sql STABLE
    AS $$
SELECT mdw.device_id,
       range_agg(tstzrange(greatest(mdw.start_ts, t0),
                           greatest(greatest(mdw.start_ts, t0),
                                    least(mdw.end_ts, coalesce(w.cancelled_at, mdw.end_ts),
                                          t1))))
FROM maintenance_device_windows mdw
JOIN maintenance_windows w ON w.id = mdw.window_id
WHERE mdw.start_ts < t1 AND mdw.end_ts > t0
GROUP BY mdw.device_id
$$;

-- The time an SLA object counts inside [t0, t1): its weekly schedule in Vietnam time
-- (`[{"days": [1..7 ISO weekdays], "start": "HH:MM", "end": "HH:MM"|"24:00"}]`, empty =
-- always) minus its excluded downtime (`[{"start": ts, "end": ts, "reason": text}]`).
CREATE FUNCTION sla_counted_time(schedule jsonb, excluded jsonb, t0 timestamptz, t1 timestamptz)
    RETURNS tstzmultirange
    LANGUAGE sql STABLE
    AS $$
SELECT (CASE
          WHEN jsonb_array_length(coalesce(schedule, '[]'::jsonb)) = 0
          THEN tstzmultirange(tstzrange(t0, greatest(t0, t1)))
          ELSE coalesce((
              SELECT range_agg(tstzrange(
                         (d + (r ->> 'start')::time) AT TIME ZONE 'Asia/Ho_Chi_Minh',
                         (d + (r ->> 'end')::time) AT TIME ZONE 'Asia/Ho_Chi_Minh'))
              FROM jsonb_array_elements(schedule) r,
                   generate_series(date_trunc('day', t0 AT TIME ZONE 'Asia/Ho_Chi_Minh')
                                       - interval '1 day',
                                   t1 AT TIME ZONE 'Asia/Ho_Chi_Minh', interval '1 day') d
              WHERE extract(isodow FROM d)::int IN (
                  SELECT jsonb_array_elements_text(r -> 'days')::int)),
              '{}'::tstzmultirange) * tstzmultirange(tstzrange(t0, greatest(t0, t1)))
        END)
       - coalesce((
             SELECT range_agg(tstzrange((x ->> 'start')::timestamptz, (x ->> 'end')::timestamptz))
             FROM jsonb_array_elements(coalesce(excluded, '[]'::jsonb)) x),
         '{}'::tstzmultirange)
$$;

-- Availability per device over [t0, min(t1, now())), restricted to `counted` (NULL = all of
-- it; see sla_counted_time), in seconds:
--   measured_s    time in a known state ('unknown' is not measured), maintenance excluded;
--   unavailable_s measured time down or flapping, and unreachable-upstream only when
--                 upstream_as = 'device' (with 'upstream' it is the upstream node's outage,
--                 counted on the node, and the device's time counts as available);
--   maintenance_s known-state time inside planned maintenance (not measured);
--   upstream_s    measured time unreachable-upstream (whichever way it is counted).
-- Availability % = 100 * (1 - sum(unavailable_s) / sum(measured_s)) over any set of devices.
CREATE FUNCTION device_availability(
    t0 timestamptz, t1 timestamptz, upstream_as text DEFAULT 'upstream',
    counted tstzmultirange DEFAULT NULL)
    RETURNS TABLE (device_id text, measured_s double precision,
                   unavailable_s double precision, maintenance_s double precision,
                   upstream_s double precision)
    LANGUAGE sql STABLE
    AS $$
WITH win AS (
    SELECT tstzmultirange(tstzrange(t0, greatest(t0, least(t1, now()))))
           * coalesce(counted, '{(,)}'::tstzmultirange) AS m
), iv AS (
    SELECT i.device_id, i.state,
           tstzmultirange(tstzrange(i.start_ts, coalesce(i.end_ts, 'infinity'::timestamptz)))
           * win.m AS m
    FROM device_state_intervals i, win
    WHERE i.state <> 'unknown' AND i.start_ts < least(t1, now())
      AND coalesce(i.end_ts, 'infinity'::timestamptz) > t0
), per AS (
    SELECT iv.device_id, iv.state, multirange_seconds(iv.m) AS total_s,
           multirange_seconds(iv.m * coalesce(mw.m, '{}'::tstzmultirange)) AS maint_s
    FROM iv LEFT JOIN device_maintenance(t0, least(t1, now())) mw
        ON mw.device_id = iv.device_id
)
SELECT per.device_id,
       sum(total_s - maint_s),
       coalesce(sum(total_s - maint_s) FILTER (
           WHERE state IN ('down', 'flapping')
              OR (state = 'unreachable-upstream' AND upstream_as = 'device')), 0),
       sum(maint_s),
       coalesce(sum(total_s - maint_s) FILTER (WHERE state = 'unreachable-upstream'), 0)
FROM per
GROUP BY per.device_id
$$;
