"""Security operations: SOC alerts by severity, category and unit, sites under attack, the
attacks against link quality, security incidents; source addresses aggregated only.

Every SQL panel runs as the read-only role, which cannot select the address columns of
``raw_soc`` (``FeedSpec.private_columns``): where alerts come from is shown by the view
``soc_sources_1h`` (/24 networks and counts of distinct addresses).
"""

from __future__ import annotations

from grafanalib import core as g

from ioc.contract import metrics as m
from ioc.contract import soc
from ioc.contract import tables as t
from ioc.contract.feeds import Feed
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p

SEVERITY_COLUMNS = ", ".join(f"sum({sev}) AS {sev}" for sev in soc.SEVERITIES)
CATEGORY_COLUMNS = ", ".join(f"sum({cat}) AS {cat}" for cat in soc.CATEGORIES[:6])


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    raw = t.RAW[Feed.SOC]
    in_unit = "unit_code = '$unit' AND $__timeFilter(bucket)"
    unit_whole = p.rollup_rows(Feed.SOC, in_unit, unit=True, series=False)
    unit_series = p.rollup_rows(Feed.SOC, in_unit, unit=True, series=True)
    links_series = p.rollup_rows(Feed.NETNODE, in_unit, unit=True, series=True)
    unit_and_children = p.rollup_rows(
        Feed.SOC,
        "$__timeFilter(bucket) AND unit_code IN "
        "(SELECT code FROM admin_units WHERE code = '$unit' OR parent_code = '$unit')",
        unit=True,
        series=False,
    )
    critical_now = (
        f'count({m.DEVICE_DEGRADED.series}{{device_class="soc",reason=~"critical-.*"}}) '
        "or vector(0)"
    )
    return p.dashboard(
        "soc",
        "Security operations",
        templates=[*p.unit_variables(), p.device_variable(Feed.SOC)],
        description=(
            "High-level alerts of the provincial SOC (Wazuh, Suricata) on the sites they "
            "concern. The SOC is the system of record; addresses are shown aggregated only."
        ),
        panels=[
            p.stat(
                "Sites with a critical alert now",
                p.prom(critical_now),
                "short",
                p.thresholds((None, p.GREEN), (1, p.RED)),
                (p.QUARTER, 5),
                decimals=0,
            ),
            p.stat(
                "Sites attacked while their link is degraded",
                p.prom(
                    'count(ALERTS{alertname="SecurityAttackOnDegradedLink",alertstate="firing"}) '
                    "or vector(0)"
                ),
                "short",
                p.thresholds((None, p.GREEN), (1, p.RED)),
                (p.QUARTER, 5),
                decimals=0,
            ),
            p.stat(
                "SOC sensors reporting (province)",
                p.prom(
                    f'sum({m.DEVICES_BY_STATE.series}{{device_class="soc",state=~"up|degraded"}})'
                ),
                "short",
                None,
                (p.QUARTER, 5),
            ),
            p.stat(
                "Alerts in the time range (unit)",
                p.sql(
                    f"""SELECT coalesce(sum(alerts), 0) AS alerts FROM {unit_whole} r""",
                    "table",
                ),
                "short",
                None,
                (p.QUARTER, 5),
            ),
            p.timeseries(
                "Alerts by severity in unit",
                [p.unit_series(Feed.SOC, SEVERITY_COLUMNS)],
                "short",
                (p.HALF, 8),
                stacking=True,
            ),
            p.timeseries(
                "Alerts by category in unit",
                [p.unit_series(Feed.SOC, f"{CATEGORY_COLUMNS}, sum(other_alerts) AS other")],
                "short",
                (p.HALF, 8),
                stacking=True,
            ),
            p.table(
                "Alerts by unit (the chosen unit and the units under it)",
                p.sql(
                    f"""
            SELECT u.name AS unit, u.level_name AS level, sum(r.alerts) AS alerts,
                   sum(r.critical) AS critical, sum(r.high) AS high, sum(r.medium) AS medium,
                   sum(r.low) AS low, sum(r.brute_force) AS brute_force, sum(r.scan) AS scan,
                   sum(r.ddos) AS ddos, max(r.sensors) AS sensors
            FROM {unit_and_children} r JOIN admin_units u ON u.code = r.unit_code
            GROUP BY u.level, u.code, u.name, u.level_name
            ORDER BY critical DESC NULLS LAST, alerts DESC, u.level, u.code""",
                    "table",
                ),
                (p.HALF, 8),
            ),
            p.table(
                "Source networks (aggregated: /24, /48)",
                p.sql(
                    f"""
            SELECT s.src_network AS network, sum(s.alerts) AS alerts,
                   max(s.addresses) AS "addresses (max per hour)",
                   string_agg(DISTINCT s.category, ', ') AS categories,
                   count(DISTINCT s.device_id) AS sites
            FROM {soc.SOURCES_VIEW} s
            WHERE s.bucket > $__timeFrom()::timestamptz - interval '1 hour'
              AND s.bucket <= $__timeTo() AND s.src_network IS NOT NULL
              AND {p.in_unit("s.device_id")}
            GROUP BY s.src_network ORDER BY alerts DESC LIMIT 20""",
                    "table",
                ),
                (p.HALF, 8),
                description="Raw addresses stay in the SOC: the IOC shows networks and counts.",
            ),
            p.timeseries(
                "Attacks and link quality in unit",
                [
                    p.sql(
                        f"SELECT time_bucket('$__interval', bucket) AS time, "
                        f'sum(ddos) AS "DDoS alerts", sum(scan) AS "scan alerts" '
                        f"FROM {unit_series} r GROUP BY 1 ORDER BY 1"
                    ),
                    p.sql(
                        f"SELECT time_bucket('$__interval', bucket) AS time, "
                        f'max(loss_pct_avg) AS "link loss %" '
                        f"FROM {links_series} r GROUP BY 1 ORDER BY 1",
                        ref="B",
                    ),
                ],
                "short",
                (p.HALF, 8),
                description="DDoS and scan alerts beside the loss of the unit's links: an "
                "attack that saturates a link shows in both.",
            ),
            p.table(
                "Security incidents (and correlated link incidents)",
                p.sql(
                    f"""
            SELECT opened_at AS opened, status, kind, severity, root_device AS root,
                   site_id AS site, title,
                   coalesce(jsonb_array_length(details->'correlated'), 0) AS correlated,
                   resolved_at AS resolved
            FROM {t.INCIDENTS}
            WHERE (kind = '{t.INCIDENT_SECURITY}' OR details ? 'correlated')
              AND (status <> 'resolved' OR $__timeFilter(opened_at))
            ORDER BY opened_at DESC LIMIT 50""",
                    "table",
                ),
                (p.HALF, 8),
            ),
            p.table(
                "Latest alerts (no addresses)",
                p.sql(
                    f"""
            SELECT r.ts AS time, st.name AS site, r.source, r.severity, r.category,
                   r.rule_id AS rule, r.level, r.signature, r.mitre, r.agent
            FROM {raw} r JOIN devices d ON d.id = r.device_id
            JOIN sites st ON st.id = d.site_id
            WHERE r.kind = 'soc.alert' AND $__timeFilter(r.ts) AND {p.in_unit("r.device_id")}
            ORDER BY r.ts DESC LIMIT 100""",
                    "table",
                ),
                (p.FULL, 9),
            ),
            p.device_state_timeline(),
        ],
    )
