"""Availability / SLA report: uptime per unit and device class from the state intervals,
with maintenance windows excluded."""

from __future__ import annotations

from grafanalib import core as g

from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p

# Seconds of each state interval inside the chosen range, minus planned maintenance
# (device-level windows, or windows on the device's unit or any unit above it).
INTERVALS = """
WITH win AS (
  SELECT $__timeFrom()::timestamptz AS t0, least($__timeTo()::timestamptz, now()) AS t1
), iv AS (
  SELECT i.device_id, i.state, greatest(i.start_ts, w.t0) AS s,
         least(coalesce(i.end_ts, w.t1), w.t1) AS e
  FROM device_state_intervals i, win w
  WHERE i.start_ts < w.t1 AND coalesce(i.end_ts, w.t1) > w.t0 AND i.state <> 'unknown'
), measured AS (
  SELECT iv.device_id, iv.state,
         greatest(extract(epoch FROM iv.e - iv.s) - coalesce(mt.secs, 0), 0) AS secs
  FROM iv
  LEFT JOIN LATERAL (
    SELECT sum(extract(epoch FROM least(iv.e, mw.end_ts) - greatest(iv.s, mw.start_ts)))
           AS secs
    FROM maintenance_windows mw
    WHERE mw.start_ts < iv.e AND mw.end_ts > iv.s
      AND (mw.device_id = iv.device_id OR mw.unit_code IN (
        SELECT a.ancestor_code FROM devices d2 JOIN sites s2 ON s2.id = d2.site_id
        JOIN unit_ancestors a ON a.unit_code = s2.unit_code WHERE d2.id = iv.device_id))
  ) mt ON true
)
"""
UNAVAILABLE = "('down', 'flapping', 'unreachable-upstream')"


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    return p.dashboard(
        "sla",
        "Availability / SLA",
        templates=[p.unit_variable()],
        refresh="1m",
        description=(
            "Uptime per unit and device class over the chosen range, from device state "
            "intervals; planned maintenance windows are excluded."
        ),
        panels=[
            p.table(
                "Uptime by unit and device class (the unit and the units directly below)",
                p.sql(
                    INTERVALS
                    + f"""
            SELECT u.name AS unit, u.level_name AS level, d.device_class AS class,
                   count(DISTINCT d.id) AS devices,
                   round((100.0 * (1 - coalesce(sum(m.secs) FILTER (
                       WHERE m.state IN {UNAVAILABLE}), 0) / nullif(sum(m.secs), 0)))::numeric,
                       3) AS "uptime %",
                   round((coalesce(sum(m.secs) FILTER (WHERE m.state IN {UNAVAILABLE}), 0)
                       / 60.0)::numeric, 1) AS "unavailable min",
                   round((coalesce(sum(m.secs) FILTER (WHERE m.state = 'unreachable-upstream'),
                       0) / 60.0)::numeric, 1) AS "of which upstream min"
            FROM measured m
            JOIN devices d ON d.id = m.device_id
            JOIN sites s ON s.id = d.site_id
            JOIN unit_ancestors a ON a.unit_code = s.unit_code
            JOIN admin_units u ON u.code = a.ancestor_code
            WHERE u.code = '$unit' OR u.parent_code = '$unit'
            GROUP BY u.code, u.name, u.level, u.level_name, d.device_class
            ORDER BY u.level, "uptime %" ASC""",
                    "table",
                ),
                (p.FULL, 12),
            ),
            p.table(
                "Least available devices",
                p.sql(
                    INTERVALS
                    + f"""
            SELECT m.device_id AS device, d.device_class AS class, s.name AS site,
                   round((100.0 * (1 - coalesce(sum(m.secs) FILTER (
                       WHERE m.state IN {UNAVAILABLE}), 0) / nullif(sum(m.secs), 0)))::numeric,
                       3) AS "uptime %"
            FROM measured m JOIN devices d ON d.id = m.device_id
            JOIN sites s ON s.id = d.site_id
            WHERE {p.in_unit()}
            GROUP BY m.device_id, d.device_class, s.name
            ORDER BY "uptime %" ASC LIMIT 20""",
                    "table",
                ),
                (p.HALF, 10),
            ),
            p.table(
                "Maintenance windows in range",
                p.sql(
                    """
            SELECT start_ts AS start, end_ts AS "end", coalesce(device_id, unit_code) AS scope,
                   note
            FROM maintenance_windows
            WHERE start_ts < $__timeTo() AND end_ts > $__timeFrom()
            ORDER BY start_ts""",
                    "table",
                ),
                (p.HALF, 10),
            ),
        ],
    )
