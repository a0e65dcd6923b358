"""Network: reachability, latency and loss, throughput, worst nodes, isolated sites."""

from __future__ import annotations

from grafanalib import core as g

from ioc.contract import metrics as m
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    return p.dashboard(
        "network",
        "Network",
        templates=[*p.unit_variables(), p.device_variable("netnode")],
        description=("The specialised data network of Party and State agencies."),
        panels=[
            p.stat(
                "Nodes reachable (province)",
                p.prom(
                    f'sum({m.DEVICES_BY_STATE.series}{{device_class="netnode",'
                    f'state=~"up|degraded"}})'
                ),
                "short",
                None,
                (p.QUARTER, 5),
            ),
            p.stat(
                "Devices cut off (isolated sites)",
                p.prom(f"sum({m.SITE_ISOLATED.series}) or vector(0)"),
                "short",
                p.thresholds((None, p.GREEN), (1, p.RED)),
                (p.QUARTER, 5),
            ),
            p.table(
                "Isolated sites now",
                p.prom(f"max by (node_id, site, unit) ({m.SITE_ISOLATED.series})", instant=True),
                (p.HALF, 5),
            ),
            p.timeseries(
                "Reachable nodes in unit",
                [
                    p.unit_series(
                        "netnode",
                        """min(nodes_reachable) AS reachable, max(nodes) AS nodes""",
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Latency and loss to the core in unit",
                [
                    p.unit_series(
                        "netnode",
                        '''avg(rtt_ms_avg) AS "RTT avg ms", max(rtt_ms_p95) AS "RTT p95 ms",
                        avg(loss_pct_avg) AS "loss %"''',
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Throughput in unit",
                [
                    p.unit_series(
                        "netnode",
                        '''avg(in_bps) AS "in", avg(out_bps) AS "out"''',
                    )
                ],
                "bps",
                (p.HALF, 8),
            ),
            p.table(
                "Worst nodes (loss, latency, link changes)",
                p.sql(
                    f"""
            SELECT r.device_id AS node, round(avg(r.loss_pct_avg)::numeric, 2) AS "loss %",
                   round(max(r.rtt_ms_p95)::numeric, 1) AS "RTT p95 ms",
                   sum(r.probes) - sum(r.probes_ok) AS failed_probes,
                   sum(r.link_changes) AS link_changes,
                   round(max(r.util_pct_max)::numeric, 1) AS "max util %"
            FROM {p.unit_device_rows("netnode")} r
            GROUP BY r.device_id
            ORDER BY failed_probes DESC, "loss %" DESC NULLS LAST LIMIT 10""",
                    "table",
                ),
                (p.HALF, 8),
            ),
            p.table(
                "Site isolation incidents",
                p.sql(
                    """
            SELECT opened_at AS opened, status, root_device AS node, site_id AS site,
                   coalesce(array_length(affected, 1), 0) AS cut_off, resolved_at AS resolved
            FROM incidents WHERE kind = 'site-isolated'
              AND (status <> 'resolved' OR $__timeFilter(opened_at))
            ORDER BY opened_at DESC LIMIT 50""",
                    "table",
                ),
                (p.FULL, 7),
            ),
            p.device_state_timeline(),
        ],
    )
