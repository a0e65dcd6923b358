"""The rollup tiers behind the dashboards and reports: 1 minute, 1 hour, 1 day (docs/history.md).

A feed's 1-minute rollups are recomputed from its raw rows (:mod:`ioc.streams.rollups`); its
hourly rollups are rolled from the 1-minute ones and its daily rollups from the hourly ones
(:mod:`ioc.streams.history`), per device and per unit, with the columns of the feed's
declaration. Each tier is kept for its own retention. This module owns what readers and
writers share: the tiers, how a timestamp falls into a tier's bucket (days are Vietnam days),
and which tier a query over a time range reads (:func:`choose_tier`, mirrored in SQL by
:data:`TIER_FUNCTION_SQL` for Grafana).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

DAY_ORIGIN: Final = dt.datetime(2000, 1, 3, tzinfo=dt.timezone(dt.timedelta(hours=7)))
"""Midnight in Vietnam (UTC+7, no daylight saving time): where every daily bucket starts.
A fixed offset rather than the zone name, so the SQL ``time_bucket`` with an origin stays
immutable; it equals the zone ``Asia/Ho_Chi_Minh`` (``topology.UNIT_DATES_TZ``) all year."""


@dataclass(frozen=True)
class Tier:
    """One tier of rollups: its suffix in table names, its bucket width and the tier it is
    rolled from (None: the 1-minute tier, recomputed from the raw rows)."""

    name: str
    width: dt.timedelta
    source: str | None

    @property
    def interval_sql(self) -> str:
        """SQL: the bucket width as an interval literal (``interval '1 hour'``)."""
        return f"interval '{_sql_interval(self.width)}'"

    def bucket_sql(self, column: str) -> str:
        """SQL: the start of the bucket of this tier that holds ``column`` (a timestamptz)."""
        if self.width >= dt.timedelta(days=1):
            origin = DAY_ORIGIN.isoformat(sep=" ")
            return f"time_bucket({self.interval_sql}, {column}, TIMESTAMPTZ '{origin}')"
        return f"time_bucket({self.interval_sql}, {column})"

    def bucket_of(self, at: dt.datetime) -> dt.datetime:
        """The start of the bucket holding ``at`` (an aware datetime), in UTC, as
        :meth:`bucket_sql` computes it."""
        origin = (
            DAY_ORIGIN
            if self.width >= dt.timedelta(days=1)
            else dt.datetime(2000, 1, 3, tzinfo=dt.UTC)
        )
        steps = (at - origin) // self.width
        return (origin + steps * self.width).astimezone(dt.UTC)


def _sql_interval(width: dt.timedelta) -> str:
    seconds = int(width.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}{'s' if seconds // size != 1 else ''}"
    return f"{seconds} seconds"


MINUTE: Final = Tier("1m", dt.timedelta(minutes=1), None)
HOUR: Final = Tier("1h", dt.timedelta(hours=1), "1m")
DAY: Final = Tier("1d", dt.timedelta(days=1), "1h")
TIERS: Final = (MINUTE, HOUR, DAY)
"""Finest first."""
ROLLED: Final = (HOUR, DAY)
"""The tiers rolled from another tier (by the shard leader's history timer)."""
TIER: Final = {t.name: t for t in TIERS}

# Retention of each tier, in days, unless the deployment sets its own (ioc.config.Settings:
# IOC_RAW_RETENTION_DAYS, IOC_ROLLUP_1M_RETENTION_DAYS, IOC_ROLLUP_1H_RETENTION_DAYS,
# IOC_ROLLUP_1D_RETENTION_DAYS). The dashboards read the hourly and daily tiers beyond the
# 1-minute tier's 2 days (docs/history.md section 4).
RAW_DAYS: Final = 7
MINUTE_DAYS: Final = 2
HOUR_DAYS: Final = 90
DAY_DAYS: Final = 400
"""A year's SLA report and a quarter to spare (the portal keeps its raw rows as long)."""

MAX_POINTS: Final = 1500
"""A query never reads a tier that gives one series more buckets than this over its range
(about a wide panel's pixels: Grafana's default max data points)."""
REACH_SLACK: Final = dt.timedelta(hours=1)
"""A tier kept N days still counts as reaching a range of N days: a dashboard's "last 90
days" starts a moment before the database's ``now()`` minus 90 days, and retention keeps
whole chunks, at least that much."""
TABLE_BUCKETS: Final = 24
"""A query without a step (a table or stat over the whole range) reads the coarsest tier that
still cuts its range into this many buckets: the partial buckets at its two ends are then at
most a twelfth of it."""


def choose_tier(
    kept: Mapping[str, dt.timedelta | None],
    t0: dt.datetime,
    t1: dt.datetime,
    now: dt.datetime,
    step: dt.timedelta | None = None,
) -> str:
    """The tier a query over [t0, t1) reads: among the tiers whose retention (``kept``,
    tier -> how long it is kept; None or absent: for ever) still reaches back to ``t0``,
    the coarsest whose buckets are no wider than the wanted step, else the finest of them.

    The wanted step is the panel's (``$__interval``) or, without one, a
    :data:`TABLE_BUCKETS`-th of the range, and never less than :data:`MAX_POINTS`-th of it.
    When no tier reaches ``t0`` the longest-kept one is read (the best there is).
    :data:`TIER_FUNCTION_SQL` is the same rule in SQL; a unit test holds them together."""
    span = max(t1 - t0, dt.timedelta(0))
    wanted = max(step if step is not None else span / TABLE_BUCKETS, span / MAX_POINTS)

    def reaches(tier: Tier) -> bool:
        keep = kept.get(tier.name)
        return keep is None or t0 >= now - keep - REACH_SLACK

    holding = [t for t in TIERS if reaches(t)]
    if not holding:
        longest = max(TIERS, key=lambda t: kept.get(t.name) or dt.timedelta.max)
        holding = [longest]
    fitting = [t for t in holding if t.width <= wanted]
    if fitting:
        return max(fitting, key=lambda t: t.width).name
    return min(holding, key=lambda t: t.width).name


TIER_FUNCTION_SQL: Final = f"""CREATE OR REPLACE FUNCTION rollup_tier(
    t0 timestamptz, t1 timestamptz, step interval DEFAULT NULL) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path FROM CURRENT
    AS $$
WITH span AS (
    SELECT greatest(t1 - t0, interval '0') AS s
), wanted AS (
    SELECT greatest(coalesce(step, s / {TABLE_BUCKETS}), s / {MAX_POINTS}) AS w FROM span
), holding AS (
    SELECT tier, width FROM rollup_tiers
    WHERE kept IS NULL OR t0 >= now() - kept - interval '{_sql_interval(REACH_SLACK)}'
), pool AS (
    SELECT tier, width FROM holding
    UNION ALL
    (SELECT tier, width FROM rollup_tiers WHERE NOT EXISTS (SELECT FROM holding)
     ORDER BY kept DESC NULLS FIRST LIMIT 1)
)
SELECT tier FROM pool, wanted
ORDER BY width <= w DESC, CASE WHEN width <= w THEN width END DESC NULLS LAST, width
LIMIT 1
$$"""
"""``rollup_tier(t0, t1, step)``: :func:`choose_tier` in SQL, over the table ``rollup_tiers``
(the retention the workers last enforced). SECURITY DEFINER: a province's viewer may not read
``rollup_tiers`` itself (it names no province). Created by migration 0014, verbatim."""


PANEL_STEP: Final = "make_interval(secs => $__interval_ms / 1000.0)"
"""SQL: a Grafana time series panel's step (``$__interval_ms`` rather than ``$__interval``,
whose unit letters PostgreSQL need not read alike)."""


def tiered_sql(
    tables: Mapping[str, str],
    select: str,
    where: str,
    *,
    t0: str = "$__timeFrom()",
    t1: str = "$__timeTo()",
    step: str | None = PANEL_STEP,
) -> str:
    """A FROM item for a Grafana panel: the rows of whichever tier ``rollup_tier`` picks for
    the panel's range, from ``tables`` (tier -> table, same columns), as ``select`` with
    ``where`` (which should hold ``$__timeFilter(bucket)``). Every branch but one has a
    condition without columns, so PostgreSQL skips it at run time (a one-time filter) and
    only the chosen tier's chunks are read. ``step`` None: a table or stat over the whole
    range (:data:`TABLE_BUCKETS`). The step is Grafana's ``$__interval_ms`` rather than
    ``$__interval``, whose unit letters PostgreSQL need not read alike."""
    how = "NULL" if step is None else step
    branches = [
        f"SELECT {select} FROM {table} "
        f"WHERE rollup_tier({t0}::timestamptz, {t1}::timestamptz, {how}) = '{tier}' "
        f"AND ({where})"
        for tier, table in tables.items()
    ]
    return "(" + " UNION ALL ".join(branches) + ")"


@dataclass(frozen=True)
class Retention:
    """How long each tier is kept, in days (``raw``: a feed's raw rows, unless the feed
    declares its own ``raw_retention_days``). A coarser tier is never kept shorter than a finer
    one: history would have a hole between them. The environment sets them
    (``IOC_RAW_RETENTION_DAYS``, ``IOC_ROLLUP_1M_RETENTION_DAYS``,
    ``IOC_ROLLUP_1H_RETENTION_DAYS``, ``IOC_ROLLUP_1D_RETENTION_DAYS``: ioc.config)."""

    raw_days: int = RAW_DAYS
    minute_days: int = MINUTE_DAYS
    hour_days: int = HOUR_DAYS
    day_days: int = DAY_DAYS

    def __post_init__(self) -> None:
        if self.raw_days < 1 or not 1 <= self.minute_days <= self.hour_days <= self.day_days:
            raise ValueError(
                f"retention must be at least 1 day and grow with the tier: 1m "
                f"{self.minute_days} d <= 1h {self.hour_days} d <= 1d {self.day_days} d "
                f"(raw {self.raw_days} d)"
            )

    def tier_days(self) -> dict[str, int]:
        """Tier name -> days kept."""
        return {MINUTE.name: self.minute_days, HOUR.name: self.hour_days, DAY.name: self.day_days}

    def raw_days_of(self, declared: int | None) -> int:
        """Days a feed's raw rows are kept: its own ``raw_retention_days``, else the default."""
        return declared or self.raw_days

    def kept(self, tier: str) -> dt.timedelta:
        return dt.timedelta(days=self.tier_days()[tier])
