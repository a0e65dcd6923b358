"""Pipeline health: throughput, lag, freshness, dead letters, DB write latency, workers."""

from __future__ import annotations

import attr
from grafanalib import core as g

from ioc.contract import metrics as m
from ioc.dashboards import panels as p


def build() -> g.Dashboard:
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
                (0, 0, 4, 4),
            ),
            p.stat(
                "Freshness (worst feed)",
                p.prom(f"max({m.EVENT_FRESHNESS.series})"),
                "s",
                p.thresholds((None, p.GREEN), (10, p.AMBER), (60, p.RED)),
                (4, 0, 4, 4),
                decimals=1,
            ),
            p.stat(
                "Consumer lag",
                p.prom(f"sum({m.CONSUMER_LAG.series})"),
                "short",
                p.thresholds((None, p.GREEN), (10000, p.AMBER), (100000, p.RED)),
                (8, 0, 4, 4),
            ),
            p.stat(
                "Dead letters (last hour)",
                p.prom(f"sum(increase({m.DLQ_MESSAGES.series}[1h])) or vector(0)"),
                "short",
                p.thresholds((None, p.GREEN), (1, p.AMBER)),
                (12, 0, 4, 4),
                decimals=0,
            ),
            p.stat(
                "DB write errors (last hour)",
                p.prom(f"sum(increase({m.DB_WRITE_ERRORS.series}[1h])) or vector(0)"),
                "short",
                p.thresholds((None, p.GREEN), (1, p.RED)),
                (16, 0, 4, 4),
                decimals=0,
            ),
            p.stat(
                "Simulated records/s",
                p.prom(f"sum(rate({m.SIM_SENT.series}[1m])) or vector(0)"),
                "short",
                None,
                (20, 0, 4, 4),
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
                (0, 4, 12, 8),
            ),
            p.timeseries(
                "Consumer lag by feed",
                [p.prom(f"sum by (feed) ({m.CONSUMER_LAG.series})", "{{feed}}")],
                "short",
                (12, 4, 12, 8),
            ),
            p.timeseries(
                "Event-time freshness by feed",
                [p.prom(f"max by (feed) ({m.EVENT_FRESHNESS.series})", "{{feed}}")],
                "s",
                (0, 12, 12, 8),
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
                (12, 12, 12, 8),
                stacking=True,
            ),
            p.timeseries(
                "DB write latency per batch",
                [
                    p.prom(
                        f"histogram_quantile(0.99, sum by (le, feed) "
                        f"(rate({m.DB_WRITE_SECONDS.bucket_series}[$__rate_interval])))",
                        "p99 {{feed}}",
                    ),
                    p.prom(
                        f"histogram_quantile(0.5, sum by (le, feed) "
                        f"(rate({m.DB_WRITE_SECONDS.bucket_series}[$__rate_interval])))",
                        "p50 {{feed}}",
                        ref="B",
                    ),
                ],
                "s",
                (0, 20, 12, 8),
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
                (12, 20, 12, 8),
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
                    (0, 28, 12, 8),
                    description="Seconds each feed partition has had lag without progress "
                    "(0: none). Above 60 s for 30 s: PartitionStalled "
                    "(docs/runbooks/partition-stalled.md).",
                ),
                thresholds=p.thresholds((None, p.GREEN), (60, p.RED)),
                thresholdsStyleMode="line",
            ),
        ],
    )
