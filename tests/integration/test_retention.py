"""Retention runs as the runtime role: old chunks go, recent rows stay, viewers cannot call it.

Before migration 0013 every retention round failed with "must be owner of hypertable" (the
workers own nothing) and the database grew without bound; only the warning said so.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from ioc.config import Settings
from ioc.contract.history import Retention
from ioc.db import connect
from ioc.db.migrate import migrate
from ioc.deploy.local.stack import Stack
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


async def test_grafana_cannot_enforce_retention(namespace: Settings) -> None:
    await migrate(namespace.admin_dsn(), namespace.db_schema)
    conn = await connect(Stack(namespace).timescaledb.connection_info()["grafana_dsn"])
    try:
        await conn.execute(f"SET search_path TO {namespace.db_schema}, public")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT drop_old_chunks('raw_camera', interval '7 days')")
    finally:
        await conn.close()
