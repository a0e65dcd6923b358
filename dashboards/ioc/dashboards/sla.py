"""Availability / SLA: uptime per unit and device class from the state intervals, with
maintenance excluded.

Every figure comes from the SQL function ``device_availability`` (migration 0008), the one
definition the SLA report of the operations service uses too, so the dashboard and a report
over the same range and unit agree. Choosing an SLA object applies its schedule, excluded
downtime, scope and way of counting unreachable-upstream time, as the report does.
"""

from __future__ import annotations

from grafanalib import core as g

from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p

SLA_VARIABLE_SQL = """
SELECT 0 AS __value, 'none: always, unreachable-upstream counted on the node' AS __text
UNION ALL (SELECT id, name FROM sla_objects ORDER BY id)
"""

# Each device's seconds over the chosen range, as the SLA report counts them; only the chosen
# unit's devices are computed (device_availability's under_unit), so the panels below read m
# without filtering it by unit again: that filter was a semi-join the planner, expecting one
# row from m, ran once per device (1,089 times, 0.7-1 s, for a province's viewer). The SLA
# object's columns reach the function through a lateral join, not as sub-selects: with a
# sub-select among its arguments PostgreSQL does not inline the function, and runs it with a
# plan made without the period or the unit (seconds instead of tenths at national scale).
# MATERIALIZED: computed once; inlined, the planner (which expects one device from the SLA
# scope's anti-join) put it inside a nested loop and ran it once per device (over 10 s).
MEASURED = """
WITH sla AS (
  SELECT upstream_as, schedule, excluded, scope_kind, scope FROM sla_objects WHERE id = $sla
), m AS MATERIALIZED (
  SELECT a.device_id, a.measured_s, a.unavailable_s, a.maintenance_s, a.upstream_s
  FROM (SELECT 1) one
  LEFT JOIN sla chosen ON true
  CROSS JOIN LATERAL device_availability(
         $__timeFrom(), $__timeTo(), coalesce(chosen.upstream_as, 'upstream'),
         CASE WHEN chosen.scope_kind IS NOT NULL
              THEN sla_counted_time(chosen.schedule, chosen.excluded, $__timeFrom(),
                                    $__timeTo()) END,
         '$unit') a
  JOIN devices dm ON dm.id = a.device_id
  WHERE NOT EXISTS (
    SELECT 1 FROM sla
    WHERE (scope_kind = 'domain' AND device_domain(dm.device_class) <> scope)
       OR (scope_kind = 'device_class' AND dm.device_class <> scope))
)
"""
AVAILABILITY = "100.0 * (1 - sum(m.unavailable_s) / nullif(sum(m.measured_s), 0))"


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    return p.dashboard(
        "sla",
        "Availability / SLA",
        templates=[
            *p.unit_variables(),
            p.sql_variable("sla", "SLA object", SLA_VARIABLE_SQL),
        ],
        refresh="1m",
        description=(
            "Availability per unit and device class over the chosen range, from device state "
            "intervals, planned maintenance excluded: the same SQL function as the operations "
            "service's SLA report (`ioc report sla`)."
        ),
        panels=[
            p.stat(
                "Availability of the unit (all its devices)",
                p.sql(
                    MEASURED
                    + f"""
            SELECT round(({AVAILABILITY})::numeric, 4) AS "availability %"
            FROM m""",
                    "table",
                ),
                "percent",
                p.thresholds(
                    (None, p.RED),
                    (th.availability_warn_pct, p.AMBER),
                    (th.availability_target_pct, p.GREEN),
                ),
                (p.QUARTER, 4),
                decimals=3,
            ),
            p.stat(
                "Unavailable device-minutes",
                p.sql(
                    MEASURED
                    + """
            SELECT round((coalesce(sum(m.unavailable_s), 0) / 60.0)::numeric, 1) AS "minutes"
            FROM m""",
                    "table",
                ),
                "short",
                None,
                (p.QUARTER, 4),
            ),
            p.stat(
                "Maintenance device-minutes (excluded)",
                p.sql(
                    MEASURED
                    + """
            SELECT round((coalesce(sum(m.maintenance_s), 0) / 60.0)::numeric, 1) AS "minutes"
            FROM m""",
                    "table",
                ),
                "short",
                None,
                (p.QUARTER, 4),
            ),
            p.stat(
                "Devices measured",
                p.sql(
                    MEASURED
                    + """
            SELECT count(*) AS devices FROM m""",
                    "table",
                ),
                "short",
                None,
                (p.QUARTER, 4),
            ),
            p.table(
                "Availability by unit and device class (the unit and the units directly below)",
                p.sql(
                    MEASURED
                    + f"""
            SELECT u.name AS unit, u.level_name AS level, d.device_class AS class,
                   count(DISTINCT d.id) AS devices,
                   round(({AVAILABILITY})::numeric, 3) AS "availability %",
                   round((sum(m.unavailable_s) / 60.0)::numeric, 1) AS "unavailable min",
                   round((sum(m.upstream_s) / 60.0)::numeric, 1) AS "unreachable-upstream min",
                   round((sum(m.maintenance_s) / 60.0)::numeric, 1) AS "maintenance min"
            FROM m
            JOIN devices d ON d.id = m.device_id
            JOIN sites s ON s.id = d.site_id
            JOIN unit_ancestors a ON a.unit_code = s.unit_code
            JOIN admin_units u ON u.code = a.ancestor_code
            WHERE u.code = '$unit' OR u.parent_code = '$unit'
            GROUP BY u.code, u.name, u.level, u.level_name, d.device_class
            ORDER BY u.level, "availability %" ASC""",
                    "table",
                ),
                (p.FULL, 12),
            ),
            p.table(
                "Least available devices",
                p.sql(
                    MEASURED
                    + f"""
            SELECT m.device_id AS device, d.device_class AS class, s.name AS site,
                   round(({AVAILABILITY})::numeric, 3) AS "availability %",
                   round((sum(m.unavailable_s) / 60.0)::numeric, 1) AS "unavailable min"
            FROM m JOIN devices d ON d.id = m.device_id
            JOIN sites s ON s.id = d.site_id
            GROUP BY m.device_id, d.device_class, s.name
            ORDER BY "availability %" ASC, "unavailable min" DESC, device LIMIT 20""",
                    "table",
                ),
                (p.HALF, 10),
            ),
            p.table(
                "Maintenance windows in range",
                p.sql(
                    """
            SELECT o.start_ts AS start, o.end_ts AS "end", w.scope_kind AS "scope kind",
                   w.scope, coalesce(w.note, '') AS note, w.cancelled_at AS cancelled
            FROM maintenance_occurrences o JOIN maintenance_windows w ON w.id = o.window_id
            WHERE o.start_ts < $__timeTo() AND o.end_ts > $__timeFrom()
            ORDER BY o.start_ts""",
                    "table",
                ),
                (p.HALF, 10),
            ),
        ],
    )
