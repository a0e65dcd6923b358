"""Public-service portal: dossiers and payments per unit, on-time %, overdue backlog,
online-submission %, payment success %, the Decision 766 index groups, and LGSP's lateness.

The KPIs by day, month and quarter come from the views over ``portal_kpi_daily``
(:mod:`ioc.contract.portal`), which the workers recompute from the raw events whenever a day
gets new (late) events; the per-minute panels from the unit 1-minute rollup. Days are Vietnam
time.
"""

from __future__ import annotations

from grafanalib import core as g

from ioc.contract import metrics as m
from ioc.contract import portal as c
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p

PERIOD_VARIABLE = "period"
OVERLAPS = "bucket < $__timeTo() AND bucket_end > $__timeFrom()"
"""A KPI period overlapping the dashboard's time range (a day starts before "last hour")."""
PERIODS = ("day", "month", "quarter")


def period_variable() -> g.Template:
    """The KPI period: the view of days, months or quarters (``portal_kpi_1d|1mo|1q``)."""
    return g.Template(
        name=PERIOD_VARIABLE,
        label="Period",
        type="custom",
        query=",".join(c.KPI_VIEWS[period] for period in PERIODS),
        default=c.KPI_VIEWS["day"],
        includeAll=False,
        multi=False,
    )


def kpi(columns: str, fmt: str = "time_series", where: str = "") -> p.SqlTarget:
    """The chosen unit's KPIs per period (the view the period variable names)."""
    return p.sql(
        f"SELECT bucket AS time, {columns} FROM ${PERIOD_VARIABLE} "
        f"WHERE unit_code = '$unit' AND {OVERLAPS} {where} ORDER BY 1",
        fmt,
    )


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    ontime_steps = p.thresholds(
        (None, p.RED),
        (100 * th.portal_ontime_min, p.AMBER),
        (100 * th.portal_ontime_target, p.GREEN),
    )
    pay_steps = p.thresholds((None, p.RED), (100 * th.portal_payment_success_min, p.GREEN))
    today = f"{c.KPI_VIEWS['day']} WHERE unit_code = '$unit' AND period_start = " + (
        f"(now() AT TIME ZONE '{c.LOCAL_TZ}')::date"
    )
    dashboard = p.dashboard(
        "portal",
        "Public-service portal",
        templates=[*p.unit_variables(), period_variable(), p.device_variable(Feed.PORTAL)],
        description="One-stop dossiers and online payments per receiving unit, as LGSP "
        "delivers them (late and in batches); KPIs by Vietnam-time day, month and quarter.",
        refresh="1m",
        panels=[
            p.stat(
                "On time today (unit)",
                p.sql(f"SELECT ontime_pct FROM {today}", "table"),
                "percent",
                ontime_steps,
                (p.SIXTH, 4),
                decimals=1,
            ),
            p.stat(
                "Overdue backlog (unit)",
                p.sql(f"SELECT overdue_backlog FROM {today}", "table"),
                "short",
                p.thresholds((None, p.GREEN), (1, p.AMBER)),
                (p.SIXTH, 4),
                decimals=0,
            ),
            p.stat(
                "Submitted online today (unit)",
                p.sql(f"SELECT online_pct FROM {today}", "table"),
                "percent",
                None,
                (p.SIXTH, 4),
                decimals=1,
            ),
            p.stat(
                "Payments succeeded today (unit)",
                p.sql(f"SELECT payment_success_pct FROM {today}", "table"),
                "percent",
                pay_steps,
                (p.SIXTH, 4),
                decimals=1,
            ),
            p.stat(
                "Desks silent (province)",
                p.prom(
                    f'sum({m.DEVICES_BY_STATE.series}{{device_class="{Feed.PORTAL}",'
                    f'state!~"up|degraded"}}) or vector(0)'
                ),
                "short",
                p.thresholds((None, p.GREEN), (1, p.AMBER)),
                (p.SIXTH, 4),
                decimals=0,
            ),
            p.stat(
                "Units below on-time target",
                p.prom(
                    f"count({m.PORTAL_ONTIME_RATIO.series} < {th.portal_ontime_min}) or vector(0)"
                ),
                "short",
                p.thresholds((None, p.GREEN), (1, p.AMBER)),
                (p.SIXTH, 4),
                decimals=0,
            ),
            p.timeseries(
                "Dossiers per period in unit",
                [
                    kpi(
                        'received, resolved, resolved_on_time AS "resolved on time", '
                        'overdue AS "went overdue", returned'
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            p.timeseries(
                "On time, online, payments succeeded per period in unit (%)",
                [
                    kpi(
                        'ontime_pct AS "on time %", online_pct AS "online %", '
                        'payment_success_pct AS "payments ok %"'
                    )
                ],
                "percent",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Overdue backlog at period end in unit",
                [kpi('overdue_backlog AS "overdue backlog"')],
                "short",
                (p.HALF, 7),
            ),
            p.timeseries(
                "Decision 766 index groups per period in unit (points)",
                [
                    kpi(
                        f'progress_points AS "progress & results (of {c.PROGRESS_POINTS_MAX})", '
                        f'online_points AS "online provision (of {c.ONLINE_POINTS_MAX})"'
                    )
                ],
                "short",
                (p.HALF, 7),
                description="Decision 766/QD-TTg groups computable from this data: progress "
                f"and results = {c.PROGRESS_POINTS_MAX} x share resolved on time; online "
                f"service provision = {c.ONLINE_POINTS_MAX // 2} x share submitted online + "
                f"{c.ONLINE_POINTS_MAX // 2} x share of online payments that succeed.",
            ),
            p.timeseries(
                "Events per minute in unit (event time)",
                [
                    p.unit_series(
                        Feed.PORTAL,
                        "sum(received) AS received, sum(resolved) AS resolved, "
                        'sum(pay_attempted) AS "payments tried", '
                        'sum(pay_failed) AS "payments failed"',
                    )
                ],
                "short",
                (p.HALF, 7),
            ),
            p.timeseries(
                "Arrival lag: how late events land (ingested - event time)",
                [
                    p.sql(
                        "SELECT time_bucket('$__interval', r.ingested_at) AS time, "
                        'max(extract(epoch FROM r.ingested_at - r.ts)) AS "max lag s", '
                        'avg(extract(epoch FROM r.ingested_at - r.ts)) AS "avg lag s" '
                        f"FROM raw_{Feed.PORTAL} r "
                        f"WHERE $__timeFilter(r.ingested_at) AND {p.in_unit('r.device_id')} "
                        "GROUP BY 1 ORDER BY 1"
                    )
                ],
                "s",
                (p.HALF, 7),
                description="LGSP delivers in batches: minutes late is normal, hours after an "
                "outage. Late events still count on the day they happened.",
            ),
            p.table(
                "Units by on-time % (chosen period)",
                p.sql(
                    f"""
            SELECT k.unit_code AS unit, u.name, k.received, k.resolved,
                   round(k.ontime_pct::numeric, 1) AS "on time %", k.overdue_backlog AS backlog,
                   round(k.online_pct::numeric, 1) AS "online %",
                   round(k.payment_success_pct::numeric, 1) AS "payments ok %",
                   round(k.progress_points::numeric, 1) AS "766 progress",
                   round(k.online_points::numeric, 1) AS "766 online"
            FROM ${PERIOD_VARIABLE} k JOIN admin_units u ON u.code = k.unit_code
            JOIN unit_ancestors a ON a.unit_code = k.unit_code AND a.ancestor_code = '$unit'
            WHERE k.bucket = (SELECT max(bucket) FROM ${PERIOD_VARIABLE}
                              WHERE {OVERLAPS})
            ORDER BY "on time %" ASC NULLS LAST, backlog DESC LIMIT 20""",
                    "table",
                ),
                (p.HALF, 8),
            ),
            p.table(
                "Payment failures by reason (time range)",
                p.sql(
                    f"""
            SELECT coalesce(r.gateway, '-') AS gateway, coalesce(r.reason, '-') AS reason,
                   count(*) AS failures
            FROM raw_{Feed.PORTAL} r
            WHERE $__timeFilter(r.ts) AND r.kind = 'portal.payment'
              AND r.payment_event = 'failed' AND {p.in_unit("r.device_id")}
            GROUP BY 1, 2 ORDER BY failures DESC LIMIT 10""",
                    "table",
                ),
                (p.HALF, 8),
            ),
            p.device_state_timeline(),
        ],
    )
    dashboard.time = g.Time("now-7d", "now")  # KPIs are per day: a week by default
    return dashboard
