"""TimescaleDB features that depend on the licence, applied after the migrations.

The Debian build of the local stack is the Apache-2 edition (no continuous aggregates,
compression or policy jobs). Under the community licence (``timescaledb.license =
timescale``, as in the official Docker images) this adds compression on the raw hypertables,
and the workers register retention policies for the raw tables instead of dropping chunks
themselves.

The hourly and daily rollups are the project's own tables on both licences (migration 0014,
docs/history.md): the hourly continuous aggregates this used to add beside the old views
(``unit_rollup_<feed>_1h_cagg``) are dropped, since a refresh over a window whose 1-minute
rows retention has dropped would empty them. Statement by statement, after the migrations
have committed (no DDL on continuous aggregates inside a transaction).
"""

from __future__ import annotations

import logging

import asyncpg

from ioc.contract import feeds
from ioc.contract.history import HOUR
from ioc.contract.tables import RAW

log = logging.getLogger(__name__)


async def licence(conn: asyncpg.Connection) -> str | None:
    value: str | None = await conn.fetchval("SELECT current_setting('timescaledb.license', true)")
    return value


async def apply_licensed_features(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Returns what was applied (empty on the Apache-2 edition)."""
    if await licence(conn) != "timescale":
        return []
    applied: list[str] = []
    await conn.execute(f"SET search_path TO {schema}, public")
    for spec in feeds.specs():
        view = f"{spec.unit_table(HOUR.name)}_cagg"  # what earlier releases created
        try:
            await conn.execute(f"DROP MATERIALIZED VIEW IF EXISTS {view}")
        except asyncpg.PostgresError as exc:
            log.warning("continuous aggregate %s not dropped: %s", view, exc)
    for table in RAW.values():
        try:
            await conn.execute(
                f"ALTER TABLE {table} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = 'device_id')"
            )
            await conn.execute(
                f"SELECT add_compression_policy('{table}', interval '1 day', if_not_exists => true)"
            )
            applied.append(f"compression:{table}")
        except asyncpg.PostgresError as exc:
            log.warning("compression on %s not enabled: %s", table, exc)
    return applied
