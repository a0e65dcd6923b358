"""Hourly and daily rollups, rolled from the tier below (docs/history.md).

The Apache-2 TimescaleDB has no continuous aggregates, so, as for the 1-minute rollups
(:mod:`ioc.streams.rollups`), the project keeps its own, with the same bookkeeping: the
1-minute round marks the hour of every minute it recomputed in ``history_dirty`` (in its own
transaction), and the shard leader's history round rolls marked hours from the 1-minute
tables and marked days from the hourly ones, with ``INSERT ... ON CONFLICT DO UPDATE`` per
device and per unit. Rolling a bucket again gives the same rows, so late data (which
re-marks its minute, hence its hour, hence its day) and crashes are handled by rolling again.
An open hour or day is rolled too, at most once per settle period, so the newest bucket of a
coarse tier lags by that period, not by its width.

How each column combines over time is the feed's declaration (``Aggregate.over_time``,
:meth:`~ioc.contract.feeds.FeedSpec.device_over_time`): sums and counts add up, extremes
stay extremes, means are averaged (a day weighs its hours by their minutes), and
percentiles become the largest of the finer values, an upper bound of the true one.

An hour whose 1-minute rows retention may have dropped (late data older than the 1-minute
tier is kept) is first recomputed minute by minute from the raw rows, which are kept at
least as long as a feed accepts late data; an hour or day older than what its source tier
keeps is not rolled again (its rows stay as they were) and is logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

import asyncpg

from ioc.contract import feeds
from ioc.contract.feeds import Aggregate, FeedSpec
from ioc.contract.history import DAY, HOUR, ROLLED, TIER, Retention, Tier
from ioc.contract.tables import HISTORY_DIRTY, ROLLUP_TIERS

log = logging.getLogger(__name__)

REFILL_MARGIN: Final = dt.timedelta(hours=1)
"""An hour this close to the 1-minute tier's horizon is recomputed from raw first: retention
may be dropping its chunk."""

_SATURATE: Final = {"integer": "sat_int4", "bigint": "sat_int8", "real": "sat_real"}


def over_time_sql(aggregate: Aggregate, rule: str, weighted: bool) -> str:
    """SQL combining a column over the finer rows of one bucket by ``rule`` (sum, max, min,
    avg). ``weighted``: the finer rows are themselves rolled, so an average weighs each by
    its ``minutes``. Results saturate at the column's range, as the 1-minute rollups do."""
    c, kind = aggregate.name, aggregate.type
    if rule in ("max", "min"):
        return f"{rule}({c})"
    if rule == "sum":
        value = f"sum({c}::float8)" if kind == "real" else f"sum({c})"
    elif rule == "avg" and weighted:
        value = (
            f"sum({c}::float8 * minutes) / nullif(sum(minutes) FILTER (WHERE {c} IS NOT NULL), 0)"
        )
        if kind in ("integer", "bigint"):
            value = f"({value})::numeric"
    elif rule == "avg":
        value = f"avg({c}::float8)" if kind in ("real", "double precision") else f"avg({c})"
    else:
        raise ValueError(f"column {c}: no over-time rule {rule!r}")
    wrap = _SATURATE.get(kind)
    return f"{wrap}({value})" if wrap else value


def roll_sql(feed: str, tier: Tier, *, unit: bool) -> str:
    """Roll one bucket (``$1``, its start) of ``feed``'s device or unit table of ``tier``
    from the tier it is rolled from; idempotent."""
    if tier.source is None:
        raise ValueError(f"tier {tier.name} is recomputed from raw (ioc.streams.rollups)")
    spec = feeds.spec(feed)
    source = TIER[tier.source]
    weighted = source.source is not None
    rules = spec.unit_over_time() if unit else spec.device_over_time()
    aggregates = spec.unit_rollup if unit else spec.device_rollup
    target = spec.unit_table(tier.name) if unit else spec.device_table(tier.name)
    rows = spec.unit_table(source.name) if unit else spec.device_table(source.name)
    key = "unit_code" if unit else "device_id"
    columns = [a.name for a in aggregates]
    names = [key, *(["level"] if unit else []), "minutes", *columns]
    values = [
        key,
        *(["max(level)"] if unit else []),  # a unit's level is fixed; max keeps one row
        "sum(minutes)::integer" if weighted else "count(*)::integer",
        *(over_time_sql(a, rules[a.name], weighted) for a in aggregates),
    ]
    updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names[1:])
    return (
        f"INSERT INTO {target} (bucket, {', '.join(names)}) "
        f"SELECT $1::timestamptz, {', '.join(values)} FROM {rows} "
        f"WHERE bucket >= $1::timestamptz AND bucket < $1::timestamptz + {tier.interval_sql} "
        f"GROUP BY {key} ON CONFLICT ({key}, bucket) DO UPDATE SET {updates}"
    )


def mark_sql(tier: Tier) -> str:
    """Mark the ``tier`` buckets holding the instants ``$2`` of the feeds ``$1`` (parallel
    arrays) for rolling. A bucket marked already gets a new version, waiting for a round
    that is deleting its mark to commit: the round then leaves the new mark in place. In key
    order, so concurrent markers cannot deadlock."""
    return (
        f"INSERT INTO {HISTORY_DIRTY} (feed, tier, bucket) "
        f"SELECT DISTINCT x.feed, '{tier.name}', {tier.bucket_sql('x.at')} "
        f"FROM unnest($1::text[], $2::timestamptz[]) AS x (feed, at) ORDER BY 1, 3 "
        f"ON CONFLICT (feed, tier, bucket) DO UPDATE SET version = {HISTORY_DIRTY}.version + 1"
    )


DUE_SQL: Final = (
    f"SELECT feed, tier, bucket, version FROM {HISTORY_DIRTY} "
    f"WHERE marked_at <= now() - make_interval(secs => "
    f"CASE tier WHEN '{HOUR.name}' THEN $1::float8 ELSE $2::float8 END) "
    f"ORDER BY tier = '{DAY.name}', bucket, feed LIMIT $3"
)
"""Marks settled long enough: hours before days (a day rolled in the same round then sees
its hours), oldest first."""

DONE_SQL: Final = (
    f"DELETE FROM {HISTORY_DIRTY} WHERE feed = $1 AND tier = $2 AND bucket = $3 AND version = $4"
)
"""The mark as it was rolled; marked again meanwhile (another version), it stays..."""

AGAIN_SQL: Final = (
    f"UPDATE {HISTORY_DIRTY} SET marked_at = now() WHERE feed = $1 AND tier = $2 AND bucket = $3"
)
"""...and settles again from this roll: a bucket that keeps changing (the open hour) is
rolled once per settle period, not at every round."""


async def mark(
    conn: asyncpg.Connection, tier: Tier, feed_names: Sequence[str], at: Sequence[dt.datetime]
) -> None:
    """Mark the ``tier`` buckets of these (feed, instant) pairs for rolling."""
    if feed_names:
        await conn.execute(mark_sql(tier), list(feed_names), list(at))


_SQL: dict[tuple[str, str], tuple[str, str]] = {}
"""(feed, tier) -> its device and unit roll statements, made at first use."""


def _statements(feed: str, tier: Tier) -> tuple[str, str]:
    sql = _SQL.get((feed, tier.name))
    if sql is None:
        sql = _SQL[(feed, tier.name)] = (
            roll_sql(feed, tier, unit=False),
            roll_sql(feed, tier, unit=True),
        )
    return sql


def plan(
    spec: FeedSpec,
    tier: Tier,
    bucket: dt.datetime,
    now: dt.datetime,
    retention: Retention,
    source_kept: dt.timedelta | None = None,
) -> str:
    """What rolling this bucket takes: ``roll``; ``refill`` (recompute its minutes from raw,
    then roll: the 1-minute tier may no longer hold them all); ``skip`` (its source is gone:
    rolling would replace a whole bucket with part of it). ``source_kept``: how far back the
    source tier is kept now (``rollup_tiers``, which the retention round writes: longer than
    the setting while an upgrade's hours wait), else the setting."""
    source = tier.source
    assert source is not None
    margin = REFILL_MARGIN if tier is HOUR else dt.timedelta(0)
    kept = source_kept if source_kept is not None else retention.kept(source)
    if bucket >= now - kept + margin:
        return "roll"
    raw_kept = dt.timedelta(days=retention.raw_days_of(spec.raw_retention_days))
    if tier is HOUR and bucket >= now - raw_kept:
        return "refill"
    return "skip"


async def roll_bucket(
    conn: asyncpg.Connection,
    feed: str,
    tier: Tier,
    bucket: dt.datetime,
    retention: Retention,
    now: dt.datetime,
    source_kept: dt.timedelta | None = None,
) -> str:
    """Roll one bucket of a feed's device and unit tables, inside the caller's transaction;
    mark its day when it is an hour. Returns what :func:`plan` decided."""
    spec = feeds.spec(feed)
    how = plan(spec, tier, bucket, now, retention, source_kept)
    if how == "skip":
        log.warning(
            "history: %s %s %s is older than its source tier is kept; left as it was",
            feed,
            tier.name,
            bucket.isoformat(),
        )
        return how
    if how == "refill":
        from ioc.streams.rollups import recompute_minute  # rollups marks hours through here

        for minute in range(int(tier.width.total_seconds()) // 60):
            await recompute_minute(conn, feed, bucket + dt.timedelta(minutes=minute))
    device_sql, unit_sql = _statements(feed, tier)
    await conn.execute(device_sql, bucket)
    await conn.execute(unit_sql, bucket)
    if tier is HOUR:
        await mark(conn, DAY, [feed], [bucket])
    return how


async def roll_due(
    pool: asyncpg.Pool,
    retention: Retention,
    *,
    lock: int,
    hour_settle_s: float,
    day_settle_s: float,
    budget_s: float,
    batch: int = 100,
    observe: Callable[[str, str, float], None] | None = None,
) -> int:
    """Roll settled marks, one bucket per transaction, for up to ``budget_s`` (the rest at
    the next round); returns how many were rolled. Run by the shard leader; ``lock``: a
    transaction-level advisory lock key per schema, so the leaders of several shards that
    share a database never roll at once (their upserts of the same rows could deadlock)."""
    rolled = 0
    deadline = time.monotonic() + budget_s
    async with pool.acquire() as conn:
        while time.monotonic() < deadline:
            due = await conn.fetch(DUE_SQL, hour_settle_s, day_settle_s, batch)
            if not due:
                break
            for row in due:
                if time.monotonic() >= deadline:
                    break
                feed, tier, bucket = row["feed"], TIER[row["tier"]], row["bucket"]
                started = time.perf_counter()
                async with conn.transaction():
                    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock):
                        return rolled  # another shard's leader is rolling: its turn
                    if feed in feeds.names():
                        now, source_kept = await conn.fetchrow(
                            f"SELECT now(), (SELECT kept FROM {ROLLUP_TIERS} WHERE tier = $1)",
                            tier.source,
                        )
                        await roll_bucket(conn, feed, tier, bucket, retention, now, source_kept)
                    key = (row["feed"], row["tier"], bucket)
                    if await conn.execute(DONE_SQL, *key, row["version"]) == "DELETE 0":
                        await conn.execute(AGAIN_SQL, *key)
                rolled += 1
                if observe is not None:
                    observe(feed, tier.name, time.perf_counter() - started)
            if len(due) < batch:
                break
    return rolled


ORDER_SETTLED: Final = dt.timedelta(days=1)
"""A rolled tier's chunk is put in key order once it ended this long ago: its buckets were
rolled, and late data that re-rolls one of them afterwards adds a few rows out of order."""


def ordered_tables() -> list[str]:
    """The tables whose closed chunks :func:`order_closed_chunks` puts in key order: every
    feed's hourly and daily device and unit tables."""
    return [
        table
        for tier in ROLLED
        for spec in feeds.specs()
        for table in (spec.device_table(tier.name), spec.unit_table(tier.name))
    ]


async def order_closed_chunks(
    pool: asyncpg.Pool,
    *,
    lock: int,
    settled: dt.timedelta = ORDER_SETTLED,
    tables: Sequence[str] | None = None,
) -> list[str]:
    """Rewrite at most one closed chunk of each rolled-tier table in the order of its key
    (``order_closed_chunk``, migration 0018: a device's rows of the chunk on adjacent pages,
    not one page per bucket), newest first; returns the chunks rewritten. Run by the shard
    leader after retention; ``lock``: a transaction-level advisory lock per schema, so two
    shards' leaders never rewrite the same chunk twice. ``tables``: only these (default
    :func:`ordered_tables`)."""
    done: list[str] = []
    async with pool.acquire() as conn:
        for table in ordered_tables() if tables is None else tables:
            started = time.perf_counter()
            try:
                async with conn.transaction():
                    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock):
                        return done  # another shard's leader is ordering: its turn
                    chunk = await conn.fetchval(
                        "SELECT order_closed_chunk($1::regclass, $2::interval)", table, settled
                    )
            except asyncpg.LockNotAvailableError:
                log.info("history: %s is being read; its chunk is ordered next round", table)
                continue
            if chunk not in (None, "policy"):
                log.info("history: %s in key order in %.1f s", chunk, time.perf_counter() - started)
                done.append(chunk)
    return done
