"""1-minute rollups per device and per unit (every level), and retention of every tier.

The Apache-2 TimescaleDB build has no continuous aggregates or policy jobs, so the project
keeps its own: writers mark the minutes they touch in ``rollup_dirty`` (in the same
transaction as the rows); any worker picks dirty minutes with ``FOR UPDATE SKIP LOCKED`` and
recomputes them from the raw rows with ``INSERT ... ON CONFLICT DO UPDATE``. Recomputing from
raw makes rollups idempotent and correct under replays, late data and crashes. Sums and counts
saturate at their columns' ranges (``sat_int4``/``sat_int8``/``sat_real``, migration 0005), so
no combination of valid rows can make a minute impossible to roll up. What each rollup
computes is the feed's declaration (``FeedSpec.device_rollup``/``unit_rollup``). Each round
marks the hours of the minutes it recomputed for the hourly and daily tiers
(:mod:`ioc.streams.history`, docs/history.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from typing import Any

import asyncpg

from ioc.contract import feeds
from ioc.contract.history import HOUR, Retention
from ioc.contract.tables import (
    HISTORY_DIRTY,
    RAW,
    ROLLUP_DEVICE_1M,
    ROLLUP_DIRTY,
    ROLLUP_TIERS,
    ROLLUP_UNIT_1M,
)
from ioc.streams import history

log = logging.getLogger(__name__)

_WINDOW = "ts >= $1 AND ts < $1 + interval '1 minute'"


def device_rollup_sql(feed: str) -> str:
    """Recompute one device-minute rollup of ``feed`` (``FeedSpec.device_rollup``)."""
    spec = feeds.spec(feed)
    columns = [a.name for a in spec.device_rollup]
    select = ", ".join(a.expr for a in spec.device_rollup)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    return (
        f"INSERT INTO {ROLLUP_DEVICE_1M[feed]} (bucket, device_id, {', '.join(columns)}) "
        f"SELECT $1::timestamptz, device_id, {select} FROM {RAW[feed]} WHERE {_WINDOW} "
        f"GROUP BY device_id ON CONFLICT (device_id, bucket) DO UPDATE SET {updates}"
    )


def unit_rollup_sql(feed: str) -> str:
    """Recompute one unit-minute rollup of ``feed``, every level (``FeedSpec.unit_rollup``)."""
    spec = feeds.spec(feed)
    columns = [a.name for a in spec.unit_rollup]
    select = ", ".join(a.expr for a in spec.unit_rollup)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    return (
        f"INSERT INTO {ROLLUP_UNIT_1M[feed]} (bucket, unit_code, level, {', '.join(columns)}) "
        f"SELECT $1::timestamptz, a.ancestor_code, u.level, {select} "
        f"FROM devices d JOIN sites s ON s.id = d.site_id "
        f"JOIN unit_ancestors a ON a.unit_code = s.unit_code "
        f"JOIN admin_units u ON u.code = a.ancestor_code "
        f"LEFT JOIN {ROLLUP_DEVICE_1M[feed]} r ON r.device_id = d.id AND r.bucket = $1 "
        f"WHERE d.device_class = '{spec.cls}' GROUP BY a.ancestor_code, u.level "
        f"ON CONFLICT (unit_code, bucket) DO UPDATE SET {updates}"
    )


_SQL: dict[str, tuple[str, str]] = {}
"""Per feed: its device and unit rollup statements, made at its first dirty minute."""


async def recompute_minute(conn: asyncpg.Connection, feed: str, bucket: dt.datetime) -> None:
    sql = _SQL.get(feed)
    if sql is None:
        sql = _SQL[feed] = (device_rollup_sql(feed), unit_rollup_sql(feed))
    await conn.execute(sql[0], bucket)
    await conn.execute(sql[1], bucket)


async def recompute_dirty(
    pool: asyncpg.Pool, limit: int = 30, observe: Any = None, settle_s: float = 0.0
) -> int:
    """Recompute up to ``limit`` dirty minutes; returns how many were done.

    ``settle_s``: leave a minute until it was first marked dirty that long ago. A minute that
    is still filling is then recomputed once per ``settle_s`` rather than after every batch:
    recomputing reads the whole minute back, so without it the rollups' reads grow with the
    ingest rate times the number of batches per minute (docs/performance.md).
    """
    async with pool.acquire() as conn, conn.transaction():
        dirty = await conn.fetch(
            f"SELECT feed, bucket FROM {ROLLUP_DIRTY} "
            f"WHERE marked_at <= now() - make_interval(secs => $2) ORDER BY bucket LIMIT $1 "
            f"FOR UPDATE SKIP LOCKED",
            limit,
            settle_s,
        )
        for row in dirty:
            started = time.perf_counter()
            await recompute_minute(conn, row["feed"], row["bucket"])
            if observe is not None:
                observe(row["feed"], time.perf_counter() - started)
        touched: dict[str, list[dt.datetime]] = {}
        for row in dirty:
            touched.setdefault(row["feed"], []).append(row["bucket"])
        for feed, buckets in touched.items():
            hook = feeds.spec(feed).after_rollup if feed in feeds.names() else ""
            if hook:
                await conn.execute(hook, buckets)
        if dirty:
            await conn.execute(
                f"DELETE FROM {ROLLUP_DIRTY} d USING unnest($1::text[], $2::timestamptz[]) "
                f"AS x(feed, bucket) WHERE d.feed = x.feed AND d.bucket = x.bucket",
                [r["feed"] for r in dirty],
                [r["bucket"] for r in dirty],
            )
            # last, so the hours' marks are held only for the commit: another worker's round
            # marking the same hour waits that long, not for this whole round
            await history.mark(conn, HOUR, [r["feed"] for r in dirty], [r["bucket"] for r in dirty])
    return len(dirty)


def retention_days(kept: Retention) -> list[tuple[str, int]]:
    """(table, days) for every raw and rollup table: a feed's raw rows are kept for its
    ``FeedSpec.raw_retention_days`` where it declares one, ``kept.raw_days`` otherwise; each
    rollup tier, per device and per unit, for its own days."""
    declared = {f.name: f.raw_retention_days for f in feeds.specs()}
    raw = [(t, kept.raw_days_of(declared.get(feed))) for feed, t in RAW.items()]
    return raw + [
        (table, days)
        for tier, days in kept.tier_days().items()
        for spec in feeds.specs()
        for table in (spec.device_table(tier), spec.unit_table(tier))
    ]


async def enforce_retention(pool: asyncpg.Pool, retention: Retention) -> str:
    """Drop old chunks of the raw tables and every rollup tier: a policy job where the licence
    has them, drop_chunks otherwise. Then record each tier's retention in ``rollup_tiers``,
    where ``rollup_tier()`` (the panels) and the history round read it.

    Through ``drop_old_chunks`` (migration 0013), which runs as the tables' owner: the
    runtime role owns nothing, and both need the owner."""
    how = ""
    async with pool.acquire() as conn:
        # the 1-minute tier stays while an hour older than its days waits to be rolled from
        # it (an upgrade's backlog, migration 0014): dropped first, that hour would be lost
        waiting = await conn.fetchval(
            f"SELECT min(bucket) FROM {HISTORY_DIRTY} WHERE tier = '{HOUR.name}'"
        )
        minute_days = retention.minute_days
        if waiting is not None:
            age = dt.datetime.now(dt.UTC) - waiting
            minute_days = max(minute_days, min(age.days + 2, retention.hour_days))
        kept = dataclasses.replace(retention, minute_days=minute_days)
        for table, days in retention_days(kept):
            how = await conn.fetchval(
                "SELECT drop_old_chunks($1::regclass, $2::interval)",
                table,
                dt.timedelta(days=days),
            )
        await conn.executemany(
            f"UPDATE {ROLLUP_TIERS} SET kept = $2, updated_at = now() "
            f"WHERE tier = $1 AND kept IS DISTINCT FROM $2",
            [(tier, dt.timedelta(days=days)) for tier, days in kept.tier_days().items()],
        )
    return how
