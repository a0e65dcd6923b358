"""Feeds: one row per registered feed, every panel generated from its declaration.

Nothing here names a feed: the rows come from the feed registry (:mod:`ioc.contract.feeds`),
so a feed registered with ``ioc.contract.feeds.register`` or ``IOC_EXTRA_FEEDS`` gets its row
when the dashboards are built in that process. Per feed:

* events per second consumed and written (``ioc_events_consumed/written{feed=...}``),
* its devices by state (``ioc_devices{device_class=...}``, the gauge ``FeedDeviceDown`` and
  the hand-written down alerts fire from),
* devices reporting and silent in the chosen unit, from the unit rollup's ``count(*)`` and
  ``count(r.device_id)`` columns (:meth:`~ioc.contract.feeds.FeedSpec.fleet_columns`),
* one time series per other numeric column of its unit rollup (``unit_rollup_<feed>_1m``
  and its coarser tiers).
"""

from __future__ import annotations

from typing import Any

from grafanalib import core as g

from ioc.contract import feeds as registry
from ioc.contract import metrics as m
from ioc.contract.tables import ROLLUP_UNIT_1M
from ioc.contract.thresholds import THRESHOLDS, Thresholds
from ioc.dashboards import panels as p

NUMERIC_TYPES = {"smallint", "integer", "bigint", "real", "double precision", "numeric"}


def interval_aggregate(column: str) -> str:
    """How a column's 1-minute values combine into one point of the panel's interval."""
    if column.endswith(("_max", "_p95", "_p99")):
        return "max"
    if column.endswith("_min"):
        return "min"
    return "avg"


def column_unit(column: str) -> str:
    """A Grafana unit guessed from the column's name (``_pct``, ``_ms``, ``bps``)."""
    if "_pct" in column:
        return "percent"
    if column.endswith("_ms") or "_ms_" in column:
        return "ms"
    if column.endswith("bps") or "_bps_" in column:
        return "bps"
    return "short"


def feed_panels(spec: registry.FeedSpec) -> list[Any]:
    """The row of one feed, from its declaration only."""
    table = ROLLUP_UNIT_1M[spec.name]
    feed = f'{{feed="{spec.name}"}}'
    out: list[Any] = [
        p.row(f"{spec.title} (feed {spec.name}, device class {spec.cls})"),
        p.timeseries(
            f"{spec.title}: events/s",
            [
                p.prom(f"sum(rate({m.EVENTS_WRITTEN.series}{feed}[$__rate_interval]))", "written"),
                p.prom(
                    f"sum(rate({m.EVENTS_CONSUMED.series}{feed}[$__rate_interval]))",
                    "consumed",
                    ref="B",
                ),
            ],
            "ops",
            (p.THIRD, 7),
        ),
        p.timeseries(
            f"{spec.title}: devices by state (province)",
            [
                p.prom(
                    f'sum by (state) ({m.DEVICES_BY_STATE.series}{{device_class="{spec.cls}"}})',
                    "{{state}}",
                )
            ],
            "short",
            (p.THIRD, 7),
            stacking=True,
        ),
    ]
    fleet = spec.fleet_columns()
    if fleet is not None:
        devices, reporting = fleet
        out.append(
            p.timeseries(
                f"{spec.title}: devices reporting / silent in unit",
                [
                    p.unit_series(
                        spec.name,
                        f"avg({reporting}) AS reporting, avg({devices} - {reporting}) AS silent",
                    )
                ],
                "short",
                (p.THIRD, 7),
                stacking=True,
                description=f"From {table}: {devices} (every device of the class in the unit) "
                f"and {reporting} (those with a report in the minute).",
            )
        )
    for aggregate in spec.unit_rollup:
        if aggregate.type not in NUMERIC_TYPES or (fleet and aggregate.name in fleet):
            continue
        how = interval_aggregate(aggregate.name)
        out.append(
            p.timeseries(
                f"{spec.title}: {aggregate.name} in unit",
                [p.unit_series(spec.name, f"{how}({aggregate.name}) AS {aggregate.name}")],
                column_unit(aggregate.name),
                (p.QUARTER, 7),
                description=f"{table}.{aggregate.name} = {aggregate.expr} over the unit's "
                f"devices per minute; {how} over the panel's interval.",
            )
        )
    return out


def build(th: Thresholds = THRESHOLDS) -> g.Dashboard:
    return p.dashboard(
        "feeds",
        "Feeds",
        templates=[*p.unit_variables()],
        description="Every registered feed, generated from its declaration (FeedSpec): "
        "throughput, devices by state, devices reporting and its unit rollup.",
        panels=[panel for spec in registry.specs() for panel in feed_panels(spec)],
    )
