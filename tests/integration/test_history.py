"""The hourly and daily tiers against a real database (docs/history.md): the minutes roll into
their hour and the hours into their day with every event counted once; a late event changes
its minute, hour and day and nothing else; an hour whose minutes retention already dropped
is recomputed from raw first, never replaced by what is left."""

from __future__ import annotations

import datetime as dt
import json

import asyncpg

from ioc.bootstrap import bootstrap
from ioc.config import Settings
from ioc.contract.history import DAY, HOUR, Retention
from ioc.contract.tables import HISTORY_DIRTY, ROLLUP_DIRTY
from ioc.contract.topology import load_scenario
from ioc.dashboards.build import GENERATED
from ioc.dashboards.grafana_sql import expand_sql, grafana_interval_ms
from ioc.db import connect
from ioc.db.migrate import migrate
from ioc.deploy.local.stack import Stack
from ioc.streams.history import roll_due
from ioc.streams.leader import lock_key
from ioc.streams.rollups import enforce_retention, recompute_dirty
from ioc.streams.writer import open_pool

SCENARIO = "yen-bai-2022"


async def _land(conn: asyncpg.Connection, device: str, at: list[dt.datetime], seq0: int) -> None:
    """Raw camera heartbeats at ``at`` and their minutes marked, as the writer does."""
    await conn.executemany(
        "INSERT INTO raw_camera (ts, device_id, seq, kind, vehicles) "
        "VALUES ($1, $2, $3, 'camera.heartbeat', 2)",
        [(ts, device, seq0 + i) for i, ts in enumerate(at)],
    )
    await conn.execute(
        f"INSERT INTO {ROLLUP_DIRTY} (feed, bucket) "
        f"SELECT 'camera', date_trunc('minute', unnest($1::timestamptz[])) ON CONFLICT DO NOTHING",
        at,
    )


async def _settle(pool: asyncpg.Pool, schema: str, retention: Retention) -> int:
    """Every dirty minute recomputed, then every history mark rolled (no settling; a day
    marked by its hours in one round is rolled by the next, as on the shard leader)."""
    while await recompute_dirty(pool, limit=500):
        pass
    total = 0
    while rolled := await roll_due(
        pool,
        retention,
        lock=lock_key(schema, "*", "history"),
        hour_settle_s=0,
        day_settle_s=0,
        budget_s=60,
    ):
        total += rolled
    return total


async def _sums(conn: asyncpg.Connection, table: str, device: str) -> dict[dt.datetime, int]:
    rows = await conn.fetch(
        f"SELECT bucket, reports::int AS n FROM {table} WHERE device_id = $1", device
    )
    return {r["bucket"]: r["n"] for r in rows}


async def test_minutes_roll_into_hours_and_days_and_a_late_event_into_its_own(
    namespace: Settings,
) -> None:
    await bootstrap(namespace, SCENARIO)
    camera = sorted(d.id for d in load_scenario(SCENARIO).devices_of("camera"))[0]
    retention = Retention()
    hour0 = HOUR.bucket_of(dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    # 3 events a minute for 90 minutes: one whole hour and half of the next
    at = [hour0 + dt.timedelta(minutes=m, seconds=s) for m in range(90) for s in (5, 25, 45)]
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    try:
        async with pool.acquire() as conn:
            await _land(conn, camera, at, 1)
        rolled = await _settle(pool, namespace.db_schema, retention)
        assert rolled >= 3  # two hours and their day (one feed here)
        async with pool.acquire() as conn:
            hours = await _sums(conn, "rollup_camera_1h", camera)
            assert hours == {hour0: 180, hour0 + HOUR.width: 90}
            minutes = await conn.fetch(
                "SELECT bucket, minutes FROM rollup_camera_1h WHERE device_id = $1 ORDER BY 1",
                camera,
            )
            assert [r["minutes"] for r in minutes] == [60, 30]  # the coverage
            days = await _sums(conn, "rollup_camera_1d", camera)
            assert sum(days.values()) == 270
            assert set(days) == {DAY.bucket_of(hour0), DAY.bucket_of(hour0 + HOUR.width)}
            vehicles = await conn.fetchval(
                "SELECT sum(vehicles) FROM unit_rollup_camera_1h WHERE level = 0"
            )
            assert vehicles == 2 * 270  # the unit tier, at the province, counts them too
            assert await conn.fetchval(f"SELECT count(*) FROM {HISTORY_DIRTY}") == 0

            # a late event in the first hour: its hour and its day change, nothing else
            before_unit = await conn.fetch(
                "SELECT unit_code, bucket, vehicles FROM unit_rollup_camera_1h "
                "WHERE bucket <> $1 ORDER BY 1, 2",
                hour0,
            )
            await _land(conn, camera, [hour0 + dt.timedelta(minutes=7, seconds=50)], 10_000)
        await _settle(pool, namespace.db_schema, retention)
        async with pool.acquire() as conn:
            assert await _sums(conn, "rollup_camera_1h", camera) == {
                hour0: 181,
                hour0 + HOUR.width: 90,
            }
            assert sum((await _sums(conn, "rollup_camera_1d", camera)).values()) == 271
            after_unit = await conn.fetch(
                "SELECT unit_code, bucket, vehicles FROM unit_rollup_camera_1h "
                "WHERE bucket <> $1 ORDER BY 1, 2",
                hour0,
            )
            assert after_unit == before_unit
            assert await conn.fetchval(f"SELECT count(*) FROM {HISTORY_DIRTY}") == 0
            # the minutes go (2 days kept); the panels read the hours and days
            await conn.execute("DELETE FROM rollup_camera_1m")
    finally:
        await pool.close()
    await _a_panel_reads_the_tier_its_range_chooses(namespace, camera)


async def _a_panel_reads_the_tier_its_range_chooses(namespace: Settings, camera: str) -> None:
    """The cameras dashboard's "worst cameras" table as Grafana runs it: over 7 days it reads
    the hourly tier, over 30 days the daily one; both still count the rolled reports."""
    dash = json.loads((GENERATED / "ioc-cameras.json").read_text())
    (panel,) = [p for p in dash["panels"] if p["title"].startswith("Worst cameras")]
    sql = panel["targets"][0]["rawSql"]
    assert "rollup_tier(" in sql
    province = load_scenario(SCENARIO).top_units()[0]
    conn = await connect(Stack(namespace).timescaledb.connection_info()["grafana_dsn"])
    try:
        await conn.execute(f"SET search_path TO {namespace.db_schema}, public")
        now = dt.datetime.now(dt.UTC)
        for days, tier in ((7, "1h"), (30, "1d")):
            t0 = now - dt.timedelta(days=days)
            assert await conn.fetchval("SELECT rollup_tier($1, $2)", t0, now) == tier
            step = grafana_interval_ms(t0, now)
            rows = await conn.fetch(expand_sql(sql, t0, now, {"unit": province}, step))
            assert [r["camera"] for r in rows] == [camera], (days, rows)
    finally:
        await conn.close()


async def test_an_hour_whose_minutes_were_dropped_is_recomputed_from_raw(
    namespace: Settings,
) -> None:
    await bootstrap(namespace, SCENARIO)
    camera = sorted(d.id for d in load_scenario(SCENARIO).devices_of("camera"))[1]
    # minutes kept 2 days, raw 7: an hour 3 days old has raw rows but no minutes
    retention = Retention(raw_days=7, minute_days=2)
    hour0 = HOUR.bucket_of(dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    at = [hour0 + dt.timedelta(minutes=m, seconds=10) for m in range(60)]
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    try:
        async with pool.acquire() as conn:
            await _land(conn, camera, at, 1)
        await _settle(pool, namespace.db_schema, retention)
        async with pool.acquire() as conn:
            assert await _sums(conn, "rollup_camera_1h", camera) == {hour0: 60}
            # retention drops the hour's minutes, then one late event arrives in it
            await conn.execute(
                "DELETE FROM rollup_camera_1m WHERE device_id = $1 AND bucket >= $2 "
                "AND bucket < $2 + interval '1 hour'",
                camera,
                hour0,
            )
            await _land(conn, camera, [hour0 + dt.timedelta(minutes=30, seconds=40)], 1_000)
        await _settle(pool, namespace.db_schema, retention)
        async with pool.acquire() as conn:
            # the whole hour again (61), not the one late minute's 2
            assert await _sums(conn, "rollup_camera_1h", camera) == {hour0: 61}
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM rollup_camera_1m WHERE device_id = $1 AND bucket >= $2 "
                    "AND bucket < $2 + interval '1 hour'",
                    camera,
                    hour0,
                )
                == 60
            )  # its minutes recomputed from raw on the way
    finally:
        await pool.close()


async def test_an_upgrade_rolls_the_stored_minutes_before_retention_drops_them(
    namespace: Settings,
) -> None:
    """A deployment upgrading to the tiers holds weeks of 1-minute rows and no hourly ones:
    the migration marks every hour they span, retention keeps the minutes until those hours
    are rolled, and panels keep reading the minutes meanwhile."""
    schema = namespace.db_schema
    await migrate(namespace.admin_dsn(), schema, upto=13)  # the release before the tiers
    old = HOUR.bucket_of(dt.datetime.now(dt.UTC) - dt.timedelta(days=20))
    admin = await connect(namespace.admin_dsn())
    try:
        await admin.execute(f"SET search_path TO {schema}, public")
        await admin.executemany(
            "INSERT INTO rollup_camera_1m (bucket, device_id, reports, heartbeats) "
            "VALUES ($1, 'cam-old', 3, 3)",
            [(old + dt.timedelta(minutes=m),) for m in range(0, 120, 10)],
        )
    finally:
        await admin.close()
    await bootstrap(namespace, SCENARIO)  # migrations 0014 on, as an upgrade runs them
    pool = await open_pool(namespace.database_dsn(), schema, size=2)
    try:
        async with pool.acquire() as conn:
            marked = await conn.fetch(
                f"SELECT bucket FROM {HISTORY_DIRTY} WHERE feed = 'camera' AND tier = '1h'"
            )
            assert {r["bucket"] for r in marked} == {old, old + HOUR.width}
            kept = await conn.fetchval("SELECT kept FROM rollup_tiers WHERE tier = '1m'")
            assert kept >= dt.timedelta(days=21)  # the panels read the minutes back to them
        await enforce_retention(pool, Retention())  # 2 days, but two hours wait for the minutes
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM rollup_camera_1m") == 12
        await _settle(pool, schema, Retention())
        async with pool.acquire() as conn:
            assert await _sums(conn, "rollup_camera_1h", "cam-old") == {
                old: 18,
                old + HOUR.width: 18,
            }
            assert sum((await _sums(conn, "rollup_camera_1d", "cam-old")).values()) == 36
        await enforce_retention(pool, Retention())  # nothing waits: now the 2 days apply
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM rollup_camera_1m") == 0
            kept = await conn.fetchval("SELECT kept FROM rollup_tiers WHERE tier = '1m'")
            assert kept == dt.timedelta(days=2)
    finally:
        await pool.close()
