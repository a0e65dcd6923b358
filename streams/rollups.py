"""1-minute rollups per device and per unit (every level), and raw-data retention.

The Apache-2 TimescaleDB build has no continuous aggregates or policy jobs, so the project
keeps its own: writers mark the minutes they touch in ``rollup_dirty`` (in the same
transaction as the rows); any worker picks dirty minutes with ``FOR UPDATE SKIP LOCKED`` and
recomputes them from the raw rows with ``INSERT ... ON CONFLICT DO UPDATE``. Recomputing from
raw makes rollups idempotent and correct under replays, late data and crashes. Sums and counts
saturate at their columns' ranges (``sat_int4``/``sat_int8``/``sat_real``, migration 0005), so
no combination of valid rows can make a minute impossible to roll up.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import asyncpg

from ioc.contract.tables import RAW, ROLLUP_DEVICE_1M, ROLLUP_DIRTY, ROLLUP_UNIT_1M

log = logging.getLogger(__name__)

_WINDOW = "ts >= $1 AND ts < $1 + interval '1 minute'"

DEVICE_SQL: dict[str, tuple[list[str], str]] = {
    "camera": (
        [
            "reports",
            "heartbeats",
            "fps_avg",
            "fps_min",
            "bitrate_kbps_avg",
            "dropped_frames",
            "frozen_samples",
            "black_samples",
            "vehicles",
            "speed_kmh_avg",
            "occupancy_pct_avg",
            "occupancy_pct_max",
            "incidents_opened",
        ],
        """sat_int4(count(*)), sat_int4(count(*) FILTER (WHERE kind = 'camera.heartbeat')),
           sat_real(avg(fps)), min(fps), sat_real(avg(bitrate_kbps)),
           sat_int8(sum(dropped_frames)),
           sat_int4(count(*) FILTER (WHERE frozen)), sat_int4(count(*) FILTER (WHERE black)),
           sat_int8(sum(vehicles)), sat_real(avg(mean_speed_kmh)), sat_real(avg(occupancy_pct)),
           max(occupancy_pct),
           sat_int4(count(*) FILTER (WHERE incident_state = 'open'))""",
    ),
    "telehealth": (
        [
            "reports",
            "heartbeats",
            "waiting_max",
            "sessions_active",
            "sessions_started",
            "sessions_ended",
            "sessions_dropped",
            "quality_samples",
            "rtt_ms_avg",
            "rtt_ms_p95",
            "jitter_ms_avg",
            "jitter_ms_p95",
            "loss_pct_avg",
            "loss_pct_max",
        ],
        """sat_int4(count(*)), sat_int4(count(*) FILTER (WHERE kind = 'telehealth.heartbeat')),
           max(waiting_patients), max(active_sessions),
           sat_int4(count(*) FILTER (WHERE event = 'start')),
           sat_int4(count(*) FILTER (WHERE event = 'end')),
           sat_int4(count(*) FILTER (WHERE event = 'dropped')),
           sat_int4(count(*) FILTER (WHERE kind = 'telehealth.quality')),
           sat_real(avg(rtt_ms)),
           sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY rtt_ms)),
           sat_real(avg(jitter_ms)),
           sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY jitter_ms)),
           sat_real(avg(loss_pct)), max(loss_pct)""",
    ),
    "netnode": (
        [
            "reports",
            "probes",
            "probes_ok",
            "rtt_ms_avg",
            "rtt_ms_p95",
            "loss_pct_avg",
            "loss_pct_max",
            "in_bps_avg",
            "out_bps_avg",
            "util_pct_max",
            "errors",
            "link_changes",
        ],
        """sat_int4(count(*)), sat_int4(count(*) FILTER (WHERE kind = 'netnode.probe')),
           sat_int4(count(*) FILTER (WHERE reachable)), sat_real(avg(rtt_ms)),
           sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY rtt_ms)),
           sat_real(avg(loss_pct)),
           max(loss_pct), avg(in_bps), avg(out_bps),
           sat_real(max(CASE WHEN in_bps < 1e-300 THEN 0
                             ELSE 100.0 * in_bps / nullif(capacity_bps, 0) END)),
           sat_int8(sum(in_errors + out_errors)),
           sat_int4(count(*) FILTER (WHERE kind = 'netnode.link'))""",
    ),
}

UNIT_SQL: dict[str, tuple[list[str], str]] = {
    "camera": (
        [
            "cameras",
            "cameras_reporting",
            "fps_avg",
            "frozen_cameras",
            "vehicles",
            "speed_kmh_avg",
            "occupancy_pct_avg",
            "incidents_opened",
        ],
        """sat_int4(count(*)), sat_int4(count(r.device_id)), sat_real(avg(r.fps_avg)),
           sat_int4(count(*) FILTER (WHERE r.frozen_samples > 0)),
           sat_int8(coalesce(sum(r.vehicles), 0)), sat_real(avg(r.speed_kmh_avg)),
           sat_real(avg(r.occupancy_pct_avg)), sat_int4(coalesce(sum(r.incidents_opened), 0))""",
    ),
    "telehealth": (
        [
            "stations",
            "stations_reporting",
            "sessions_active",
            "sessions_started",
            "sessions_dropped",
            "waiting",
            "rtt_ms_p95",
            "jitter_ms_p95",
            "loss_pct_avg",
        ],
        """sat_int4(count(*)), sat_int4(count(r.device_id)),
           sat_int4(coalesce(sum(r.sessions_active), 0)),
           sat_int4(coalesce(sum(r.sessions_started), 0)),
           sat_int4(coalesce(sum(r.sessions_dropped), 0)),
           sat_int4(coalesce(sum(r.waiting_max), 0)),
           sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY r.rtt_ms_p95)),
           sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY r.jitter_ms_p95)),
           sat_real(avg(r.loss_pct_avg))""",
    ),
    "netnode": (
        [
            "nodes",
            "nodes_reporting",
            "nodes_reachable",
            "rtt_ms_avg",
            "rtt_ms_p95",
            "loss_pct_avg",
            "in_bps",
            "out_bps",
            "errors",
        ],
        """sat_int4(count(*)), sat_int4(count(r.device_id)),
           sat_int4(count(*) FILTER (WHERE r.probes_ok > 0)), sat_real(avg(r.rtt_ms_avg)),
           sat_real(percentile_cont(0.95) WITHIN GROUP (ORDER BY r.rtt_ms_p95)),
           sat_real(avg(r.loss_pct_avg)),
           coalesce(sum(r.in_bps_avg), 0), coalesce(sum(r.out_bps_avg), 0),
           sat_int8(coalesce(sum(r.errors), 0))""",
    ),
}


def device_rollup_sql(feed: str) -> str:
    columns, select = DEVICE_SQL[feed]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    return (
        f"INSERT INTO {ROLLUP_DEVICE_1M[feed]} (bucket, device_id, {', '.join(columns)}) "
        f"SELECT $1::timestamptz, device_id, {select} FROM {RAW[feed]} WHERE {_WINDOW} "
        f"GROUP BY device_id ON CONFLICT (device_id, bucket) DO UPDATE SET {updates}"
    )


def unit_rollup_sql(feed: str) -> str:
    columns, select = UNIT_SQL[feed]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    return (
        f"INSERT INTO {ROLLUP_UNIT_1M[feed]} (bucket, unit_code, level, {', '.join(columns)}) "
        f"SELECT $1::timestamptz, a.ancestor_code, u.level, {select} "
        f"FROM devices d JOIN sites s ON s.id = d.site_id "
        f"JOIN unit_ancestors a ON a.unit_code = s.unit_code "
        f"JOIN admin_units u ON u.code = a.ancestor_code "
        f"LEFT JOIN {ROLLUP_DEVICE_1M[feed]} r ON r.device_id = d.id AND r.bucket = $1 "
        f"WHERE d.device_class = '{feed}' GROUP BY a.ancestor_code, u.level "
        f"ON CONFLICT (unit_code, bucket) DO UPDATE SET {updates}"
    )


_DEVICE = {feed: device_rollup_sql(feed) for feed in RAW}
_UNIT = {feed: unit_rollup_sql(feed) for feed in RAW}


async def recompute_minute(conn: asyncpg.Connection, feed: str, bucket: dt.datetime) -> None:
    await conn.execute(_DEVICE[feed], bucket)
    await conn.execute(_UNIT[feed], bucket)


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
        if dirty:
            await conn.execute(
                f"DELETE FROM {ROLLUP_DIRTY} d USING unnest($1::text[], $2::timestamptz[]) "
                f"AS x(feed, bucket) WHERE d.feed = x.feed AND d.bucket = x.bucket",
                [r["feed"] for r in dirty],
                [r["bucket"] for r in dirty],
            )
    return len(dirty)


async def enforce_retention(pool: asyncpg.Pool, raw_days: int, rollup_days: int) -> str:
    """Drop old chunks: a policy job where the licence has them, drop_chunks otherwise."""
    async with pool.acquire() as conn:
        license_ = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
        tables = [(t, raw_days) for t in RAW.values()] + [
            (t, rollup_days) for t in (*ROLLUP_DEVICE_1M.values(), *ROLLUP_UNIT_1M.values())
        ]
        if license_ == "timescale":
            for table, days in tables:
                await conn.execute(
                    "SELECT add_retention_policy($1::regclass, $2::interval, "
                    "if_not_exists => true)",
                    table,
                    dt.timedelta(days=days),
                )
            return "policy"
        for table, days in tables:
            await conn.execute(
                "SELECT drop_chunks($1::regclass, older_than => $2::interval)",
                table,
                dt.timedelta(days=days),
            )
        return "drop_chunks"
