"""Telehealth: stations, sessions, media quality, waiting patients, worst stations."""

from __future__ import annotations

from grafanalib import core as g

from ioc.contract import metrics as m
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    return p.dashboard(
        "telehealth",
        "Telehealth",
        templates=[*p.unit_variables(), p.device_variable("telehealth")],
        description=("Remote consultation from hospitals and commune health stations."),
        panels=[
            p.stat(
                "Sessions in progress (province)",
                p.prom(f"sum({m.TELEHEALTH_SESSIONS.series})"),
                "short",
                None,
                (p.QUARTER, 5),
            ),
            p.stat(
                "Stations up (province)",
                p.prom(
                    f'sum({m.DEVICES_BY_STATE.series}{{device_class="telehealth",'
                    f'state=~"up|degraded"}})'
                ),
                "short",
                None,
                (p.QUARTER, 5),
            ),
            p.stat(
                "Sessions dropped (last hour, province)",
                p.prom(f"sum(increase({m.TELEHEALTH_SESSIONS_DROPPED.series}[1h])) or vector(0)"),
                "short",
                p.thresholds(
                    (None, p.GREEN),
                    (th.sessions_dropped_max, p.AMBER),
                    (th.sessions_dropped_hour_bad, p.RED),
                ),
                (p.QUARTER, 5),
                decimals=0,
            ),
            p.timeseries(
                "Sessions started / dropped in unit",
                [
                    p.unit_series(
                        "telehealth",
                        """sum(sessions_started) AS started, sum(sessions_dropped) AS dropped,
                        max(sessions_active) AS active""",
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Media quality in unit (p95 over stations)",
                [
                    p.unit_series(
                        "telehealth",
                        '''max(rtt_ms_p95) AS "RTT p95 ms", max(jitter_ms_p95) AS "jitter p95 ms",
                        avg(loss_pct_avg) AS "loss %"''',
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Patients waiting in unit",
                [
                    p.unit_series(
                        "telehealth",
                        """max(waiting) AS waiting""",
                    )
                ],
                "short",
                (p.HALF, 7),
            ),
            p.table(
                "Worst stations (packet loss, jitter, drops)",
                p.sql(
                    f"""
            SELECT r.device_id AS station, round(avg(r.loss_pct_avg)::numeric, 2) AS "loss %",
                   round(max(r.jitter_ms_p95)::numeric, 1) AS "jitter p95 ms",
                   sum(r.sessions_dropped) AS dropped, sum(r.sessions_started) AS started
            FROM {p.unit_device_rows("telehealth")} r
            GROUP BY r.device_id ORDER BY "loss %" DESC NULLS LAST, dropped DESC LIMIT 10""",
                    "table",
                ),
                (p.HALF, 7),
            ),
            p.device_state_timeline(),
        ],
    )
