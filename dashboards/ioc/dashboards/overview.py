"""IOC overview: the province at a glance."""

from __future__ import annotations

from grafanalib import core as g

from ioc.alerting import rules as r
from ioc.contract import metrics as m
from ioc.contract import portal as portal_contract
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p

DEVICES = m.DEVICES_BY_STATE.series
ONLINE = f'state=~"{r.ONLINE_STATES}"'

UNIT_HEALTH_SQL = """
SELECT u.code, u.name, u.lat, u.lon,
       count(d.id) AS devices,
       count(d.id) FILTER (WHERE ds.state IN ('down', 'unreachable-upstream', 'flapping'))
         AS devices_down,
       round(100.0 * count(d.id) FILTER (WHERE coalesce(ds.state, 'unknown')
         IN ('up', 'degraded')) / greatest(count(d.id), 1), 1) AS health_pct
FROM admin_units u
JOIN unit_ancestors a ON a.ancestor_code = u.code
JOIN sites s ON s.unit_code = a.unit_code
JOIN devices d ON d.site_id = s.id
LEFT JOIN device_state ds ON ds.device_id = d.id
WHERE u.level = (SELECT max(level) FROM admin_units)
GROUP BY u.code, u.name, u.lat, u.lon
ORDER BY health_pct
"""

PORTAL_ONTIME_TODAY_SQL = f"""
SELECT (100.0 * sum(resolved_on_time) / nullif(sum(resolved), 0))::real AS "on time %"
FROM {portal_contract.KPI_VIEWS["day"]}
WHERE level = (SELECT min(level) FROM admin_units)
  AND period_start = (now() AT TIME ZONE '{portal_contract.LOCAL_TZ}')::date
"""
"""Dossiers resolved on time today (Vietnam time) across the province's top units."""

INCIDENTS_SQL = """
SELECT i.id, i.opened_at AS "opened", i.severity, i.kind, i.status, i.title,
       coalesce(array_length(i.affected, 1), 0) AS affected, i.root_device, i.unit_code,
       i.resolved_at AS "resolved"
FROM incidents i
WHERE i.status <> 'resolved' OR $__timeFilter(i.opened_at)
ORDER BY (i.status = 'resolved'), i.opened_at DESC
LIMIT 100
"""


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    return p.dashboard(
        "overview",
        "IOC overview",
        templates=[p.console_variable()],
        description=(
            "The province at a glance: unit health map, headline figures, incidents, alerts."
        ),
        panels=[
            p.geomap(
                "Units by health (share of devices up)",
                p.sql(UNIT_HEALTH_SQL, "table"),
                colour_field="health_pct",
                size_field="devices_down",
                steps=p.thresholds(
                    (None, p.RED),
                    (round(th.camera_online_ratio_min * 100, 6), p.AMBER),
                    (round(th.online_ratio_target * 100, 6), p.GREEN),
                ),
                dims=(p.HALF, 16),
                links=[p.link("network", "Network")],
            ),
            p.stat(
                "Cameras online",
                p.prom(f'{r.ONLINE_RATIO}{{device_class="camera"}}'),
                "percentunit",
                p.thresholds(
                    (None, p.RED),
                    (th.camera_online_ratio_min, p.AMBER),
                    (th.online_ratio_target, p.GREEN),
                ),
                (p.SIXTH, 4),
                [p.link("cameras", "Cameras")],
                decimals=1,
            ),
            p.stat(
                "Telehealth stations up",
                p.prom(f'sum({DEVICES}{{device_class="telehealth",{ONLINE}}})'),
                "short",
                None,
                (p.SIXTH, 4),
                [p.link("telehealth", "Telehealth")],
            ),
            p.stat(
                "Sessions now",
                p.prom(f"sum({m.TELEHEALTH_SESSIONS.series})"),
                "short",
                None,
                (p.SIXTH, 4),
                [p.link("telehealth", "Telehealth")],
            ),
            p.stat(
                "Network sites reachable",
                p.prom(f'{r.ONLINE_RATIO}{{device_class="netnode"}}'),
                "percentunit",
                p.thresholds(
                    (None, p.RED),
                    (th.network_reachable_low, p.AMBER),
                    (th.network_reachable_target, p.GREEN),
                ),
                (p.SIXTH, 4),
                [p.link("network", "Network")],
                decimals=1,
            ),
            p.stat(
                "Open incidents: critical",
                p.prom(f'sum({m.OPEN_INCIDENTS.series}{{severity="critical"}})'),
                "short",
                p.thresholds((None, p.GREEN), (1, p.RED)),
                (p.SIXTH, 4),
            ),
            p.stat(
                "Open incidents: warning",
                p.prom(f'sum({m.OPEN_INCIDENTS.series}{{severity="warning"}})'),
                "short",
                p.thresholds((None, p.GREEN), (1, p.AMBER)),
                (p.SIXTH, 4),
            ),
            p.stat(
                "Meeting points not joined",
                p.prom(
                    f"sum(max without ({r.PROC}) "
                    f'({m.VCONF_MEETING_POINTS.series}{{state="not_joined"}})) or vector(0)'
                ),
                "short",
                p.thresholds((None, p.GREEN), (1, p.AMBER)),
                (p.SIXTH, 4),
                [p.link("vconf", "Video conference")],
                decimals=0,
            ),
            p.stat(
                "Bridge ports in use",
                p.prom(
                    f"max(max without ({r.PROC}) ({m.VCONF_BRIDGE_PORTS_USED.series} / "
                    f"{m.VCONF_BRIDGE_PORTS_LICENSED.series}))"
                ),
                "percentunit",
                p.thresholds((None, p.GREEN), (th.vconf_ports_use_max, p.RED)),
                (p.SIXTH, 4),
                [p.link("vconf", "Video conference")],
                decimals=0,
            ),
            p.stat(
                "Dossiers on time today",
                p.sql(PORTAL_ONTIME_TODAY_SQL, "table"),
                "percent",
                p.thresholds(
                    (None, p.RED),
                    (100 * th.portal_ontime_min, p.AMBER),
                    (100 * th.portal_ontime_target, p.GREEN),
                ),
                (p.SIXTH, 4),
                [p.link("portal", "Public-service portal")],
                decimals=1,
            ),
            p.stat(
                "Portal desks silent",
                p.prom(
                    f'sum({DEVICES}{{device_class="portal",state!~"{r.ONLINE_STATES}"}}) '
                    "or vector(0)"
                ),
                "short",
                p.thresholds((None, p.GREEN), (1, p.AMBER)),
                (p.SIXTH, 4),
                [p.link("portal", "Public-service portal")],
                decimals=0,
            ),
            p.stat(
                "Sites with a critical security alert",
                p.prom(
                    f"count(max without ({r.PROC}) ({m.DEVICE_DEGRADED.series}"
                    '{device_class="soc",reason=~"critical-.*"})) or vector(0)'
                ),
                "short",
                p.thresholds((None, p.GREEN), (1, p.RED)),
                (p.SIXTH, 4),
                [p.link("soc", "Security operations")],
                decimals=0,
            ),
            p.stat(
                "Attacks on degraded links",
                p.prom(
                    'count(ALERTS{alertname="SecurityAttackOnDegradedLink",'
                    'alertstate="firing"}) or vector(0)'
                ),
                "short",
                p.thresholds((None, p.GREEN), (1, p.RED)),
                (p.SIXTH, 4),
                [p.link("soc", "Security operations")],
                decimals=0,
            ),
            p.table(
                "Active alerts",
                p.prom(
                    'sum by (alertname, severity, unit, site) (ALERTS{alertstate="firing"})',
                    instant=True,
                ),
                (p.FULL, 8),
            ),
            p.table(
                "Incidents (open first)",
                p.sql(INCIDENTS_SQL, "table"),
                (p.FULL, 10),
                field_links={"id": p.console_incident_link()},
                links=[
                    p.link("network", "Network"),
                    p.link("cameras", "Cameras"),
                    p.link("telehealth", "Telehealth"),
                    p.link("vconf", "Video conference"),
                    p.link("portal", "Public-service portal"),
                    p.link("soc", "Security operations"),
                ],
            ),
        ],
    )
