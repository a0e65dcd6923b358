"""Pipeline health: throughput, lag, freshness, dead letters, DB write latency, workers."""

from __future__ import annotations

import attr
from grafanalib import core as g

from ioc.alerting import rules as r
from ioc.contract import metrics as m
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    return p.dashboard(
        "pipeline",
        "Pipeline health",
        description=("The IOC's own health: is data flowing, fresh and complete?"),
        panels=[
            p.stat(
                "Workers up",
                p.prom(f"count({m.WORKER_UP.series} == 1)"),
                "short",
                p.thresholds((None, p.RED), (1, p.GREEN)),
                (p.SIXTH, 4),
            ),
            p.stat(
                "Freshness (worst feed)",
                p.prom(f"max({m.EVENT_FRESHNESS.series})"),
                "s",
                p.thresholds(
                    (None, p.GREEN), (th.freshness_warn_s, p.AMBER), (th.freshness_bad_s, p.RED)
                ),
                (p.SIXTH, 4),
                decimals=1,
            ),
            p.stat(
                "Consumer lag",
                p.prom(f"sum({m.CONSUMER_LAG.series})"),
                "short",
                p.thresholds(
                    (None, p.GREEN),
                    (th.consumer_lag_max_messages, p.AMBER),
                    (th.consumer_lag_bad_messages, p.RED),
                ),
                (p.SIXTH, 4),
            ),
            p.stat(
                "Dead letters (last hour)",
                p.prom(f"sum(increase({m.DLQ_MESSAGES.series}[1h])) or vector(0)"),
                "short",
                p.thresholds((None, p.GREEN), (1, p.AMBER)),
                (p.SIXTH, 4),
                decimals=0,
            ),
            p.stat(
                "DB write errors (last hour)",
                p.prom(f"sum(increase({m.DB_WRITE_ERRORS.series}[1h])) or vector(0)"),
                "short",
                p.thresholds((None, p.GREEN), (1, p.RED)),
                (p.SIXTH, 4),
                decimals=0,
            ),
            p.stat(
                "Simulated records/s",
                p.prom(f"sum(rate({m.SIM_SENT.series}[1m])) or vector(0)"),
                "short",
                None,
                (p.SIXTH, 4),
            ),
            p.timeseries(
                "Throughput by feed (consumed, written)",
                [
                    p.prom(
                        f"sum by (feed) (rate({m.EVENTS_CONSUMED.series}[$__rate_interval]))",
                        "consumed {{feed}}",
                    ),
                    p.prom(
                        f"sum by (feed) (rate({m.EVENTS_WRITTEN.series}[$__rate_interval]))",
                        "written {{feed}}",
                        ref="B",
                    ),
                ],
                "ops",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Consumer lag by feed",
                [p.prom(f"sum by (feed) ({m.CONSUMER_LAG.series})", "{{feed}}")],
                "short",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Event-time freshness by feed",
                [p.prom(f"max by (feed) ({m.EVENT_FRESHNESS.series})", "{{feed}}")],
                "s",
                (p.HALF, 8),
            ),
            p.timeseries(
                "Dead letters by reason",
                [
                    p.prom(
                        f"sum by (feed, reason) (rate({m.DLQ_MESSAGES.series}[$__rate_interval]))",
                        "{{feed}} {{reason}}",
                    )
                ],
                "ops",
                (p.HALF, 8),
                stacking=True,
            ),
            attr.evolve(
                p.timeseries(
                    "DB write latency per batch",
                    [
                        p.prom(
                            r.db_write_quantile(q),
                            f"{r.quantile_name(q)} {{{{feed}}}}",
                            ref=ref,
                        )
                        for q, ref in (
                            (th.db_write_quantile, "A"),
                            (th.db_write_median_quantile, "B"),
                        )
                    ],
                    "s",
                    (p.HALF, 8),
                    description=f"Batch write time per feed ({r.db_write_buckets(th)}). "
                    f"{r.quantile_name(th.db_write_quantile)} above "
                    f"{r.num(th.db_write_max_s)} s for "
                    f"{th.alerts['DatabaseWritesSlow'].for_s} s: DatabaseWritesSlow "
                    "(docs/runbooks/database-writes-slow.md).",
                ),
                thresholds=p.thresholds((None, p.GREEN), (th.db_write_max_s, p.RED)),
                thresholdsStyleMode="line",
            ),
            p.timeseries(
                "Batch size (mean)",
                [
                    p.prom(
                        f"sum by (feed) (rate({m.BATCH_SIZE.series}_sum[$__rate_interval])) / "
                        f"sum by (feed) (rate({m.BATCH_SIZE.series}_count[$__rate_interval]))",
                        "{{feed}}",
                    )
                ],
                "short",
                (p.HALF, 8),
            ),
            attr.evolve(
                p.timeseries(
                    "Stalled partitions",
                    [
                        p.prom(
                            f"max by (feed, partition) ({m.PARTITION_STALLED.series})",
                            "{{feed}} p{{partition}}",
                        )
                    ],
                    "s",
                    (p.HALF, 8),
                    description="Seconds each feed partition has had lag without progress "
                    f"(0: none). Above {th.partition_stalled_s} s for "
                    f"{th.alerts['PartitionStalled'].for_s} s: PartitionStalled "
                    "(docs/runbooks/partition-stalled.md).",
                ),
                thresholds=p.thresholds((None, p.GREEN), (th.partition_stalled_s, p.RED)),
                thresholdsStyleMode="line",
            ),
        ],
    )
