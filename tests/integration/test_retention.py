"""Retention runs as the runtime role: old chunks go, recent rows stay, viewers cannot call it.

Before migration 0013 every retention round failed with "must be owner of hypertable" (the
workers own nothing) and the database grew without bound; only the warning said so.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from ioc.config import Settings
from ioc.contract.history import Retention
from ioc.db import connect
from ioc.db.migrate import migrate
from ioc.deploy.local.stack import Stack
from ioc.streams.history import order_closed_chunks
from ioc.streams.leader import lock_key
from ioc.streams.rollups import enforce_retention
from ioc.streams.writer import open_pool


async def test_the_runtime_role_drops_old_chunks_and_keeps_recent_rows(
    namespace: Settings,
) -> None:
    await migrate(namespace.admin_dsn(), namespace.db_schema)
    now = dt.datetime.now(dt.UTC)
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    try:
        async with pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO raw_camera (ts, device_id, seq, kind) "
                "VALUES ($1, 'cam-1', $2, 'camera.heartbeat')",
                [(now - dt.timedelta(days=30), 1), (now - dt.timedelta(minutes=1), 2)],
            )
        how = await enforce_retention(pool, Retention(raw_days=7))
        assert how == "drop_chunks"  # the local stack runs the Apache-2 edition
        async with pool.acquire() as conn:
            assert [r["seq"] for r in await conn.fetch("SELECT seq FROM raw_camera")] == [2]
            with pytest.raises(asyncpg.InvalidParameterValueError, match="at least one day"):
                await conn.fetchval("SELECT drop_old_chunks('raw_camera', interval '1 hour')")
            with pytest.raises(asyncpg.InvalidParameterValueError, match="not a hypertable"):
                await conn.fetchval("SELECT drop_old_chunks('devices', interval '7 days')")
    finally:
        await pool.close()


async def test_grafana_cannot_drop_or_rewrite_chunks(namespace: Settings) -> None:
    """Both functions run as the tables' owner: only the runtime role may call them."""
    await migrate(namespace.admin_dsn(), namespace.db_schema)
    conn = await connect(Stack(namespace).timescaledb.connection_info()["grafana_dsn"])
    try:
        await conn.execute(f"SET search_path TO {namespace.db_schema}, public")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT drop_old_chunks('raw_camera', interval '7 days')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT order_closed_chunk('rollup_camera_1h', '1 day')")
    finally:
        await conn.close()


async def chunk_of(conn: asyncpg.Connection, schema: str, table: str, at: dt.datetime) -> str:
    """The schema-qualified name of the chunk of hypertable ``schema.table`` holding ``at``."""
    chunk: str = await conn.fetchval(
        "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks "
        "WHERE hypertable_schema = $1 AND hypertable_name = $2 "
        "AND range_start <= $3 AND $3 < range_end",
        schema,
        table,
        at,
    )
    return chunk


async def test_closed_tier_chunks_are_rewritten_in_key_order_newest_first(
    namespace: Settings,
) -> None:
    """Migration 0018: the history round writes an hour of every device at once, so a
    device's rows lie one per page; the leader rewrites each closed chunk of a rolled tier in
    key order (device, then bucket), one chunk per table and call, never the open chunk
    (Grafana may not call it: test_grafana_cannot_drop_or_rewrite_chunks)."""
    await migrate(namespace.admin_dsn(), namespace.db_schema)
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    week = dt.timedelta(days=7)  # the hourly tier's chunks, from the epoch (TIER_CHUNK)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    # 30 hours inside each of two closed chunks
    weeks_ago = [
        epoch + (now - dt.timedelta(days=days) - epoch) // week * week + dt.timedelta(days=2)
        for days in (24, 12)
    ]
    hours = [start + dt.timedelta(hours=h) for start in weeks_ago for h in range(30)]
    hours.append(now)  # the open chunk
    devices = [f"cam-{n:02d}" for n in range(20)]
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    lock = lock_key(namespace.db_schema, "*", "order-chunks")

    async def chunk_order(conn: asyncpg.Connection, bucket: dt.datetime) -> list[Any]:
        """The rows of the chunk holding ``bucket``, in the order they lie on disk."""
        chunk = await chunk_of(conn, namespace.db_schema, "rollup_camera_1h", bucket)
        admin = await connect(namespace.admin_dsn())
        try:
            rows = await admin.fetch(f"SELECT device_id, bucket FROM {chunk} ORDER BY ctid")
        finally:
            await admin.close()
        return [tuple(r) for r in rows]

    try:
        async with pool.acquire() as conn:
            await conn.executemany(  # as the history round writes them: hour by hour
                "INSERT INTO rollup_camera_1h (bucket, device_id, minutes, reports, heartbeats) "
                "VALUES ($1, $2, 60, 60, 60)",
                [(hour, device) for hour in hours for device in devices],
            )
            before = await chunk_order(conn, weeks_ago[1])
            assert before != sorted(before)
        first = await order_closed_chunks(pool, lock=lock)
        second = await order_closed_chunks(pool, lock=lock)
        assert len(first) == len(second) == 1, (first, second)  # one chunk per table and call
        assert await order_closed_chunks(pool, lock=lock) == []  # the open chunk stays
        async with pool.acquire() as conn:
            for start in weeks_ago:
                ordered = await chunk_order(conn, start)
                assert ordered == sorted(before if start == weeks_ago[1] else ordered)
                assert len(ordered) == 30 * len(devices)  # nothing lost or doubled
            newest = await chunk_of(conn, namespace.db_schema, "rollup_camera_1h", weeks_ago[1])
            assert first == [newest]  # the newest closed chunk first
            assert await conn.fetchval("SELECT count(*) FROM rollup_camera_1h") == len(hours) * 20
            with pytest.raises(asyncpg.InvalidParameterValueError, match="not a hypertable"):
                await conn.fetchval("SELECT order_closed_chunk('devices', interval '1 day')")
    finally:
        await pool.close()


async def test_ordering_a_chunk_being_read_waits_for_the_next_round(namespace: Settings) -> None:
    """CLUSTER locks the chunk for its whole rewrite; behind a long read it would make every
    later reader queue too. It gives up after 5 s instead and leaves the chunk to the next
    round."""
    await migrate(namespace.admin_dsn(), namespace.db_schema)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=70)  # a closed 30-day chunk
    pool = await open_pool(namespace.database_dsn(), namespace.db_schema, size=2)
    lock = lock_key(namespace.db_schema, "*", "order-chunks")
    reader = await connect(namespace.admin_dsn())
    try:
        async with pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO rollup_netnode_1d (bucket, device_id, minutes, reports, probes, "
                "probes_ok) VALUES ($1, 'nn-1', 1440, 288, 288, 288)",
                old,
            )
        chunk = await chunk_of(reader, namespace.db_schema, "rollup_netnode_1d", old)
        tables = ["rollup_netnode_1d"]
        async with reader.transaction():  # a dashboard's long read of that chunk
            await reader.execute(f"LOCK TABLE {chunk} IN ACCESS SHARE MODE")
            assert await order_closed_chunks(pool, lock=lock, tables=tables) == []
        assert await order_closed_chunks(pool, lock=lock, tables=tables) == [chunk]
    finally:
        await reader.close()
        await pool.close()
