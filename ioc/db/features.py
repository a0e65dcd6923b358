"""TimescaleDB features that depend on the licence, applied after the migrations.

The Debian build of the local stack is the Apache-2 edition (no continuous aggregates,
compression or policy jobs): there the hourly/daily rollups are the plain views of migration
0002 and the workers enforce retention with ``drop_chunks``. Under the community licence
(``timescaledb.license = timescale``, as in the official Docker images) this adds continuous
aggregates beside the views and compression on the raw hypertables, and the workers register
retention policies instead of dropping chunks themselves.

Continuous aggregates cannot be created inside a transaction, so this runs statement by
statement, idempotently (``IF NOT EXISTS``), after the migrations have committed.
"""

from __future__ import annotations

import logging

import asyncpg

from ioc.contract import feeds
from ioc.contract.tables import RAW, ROLLUP_UNIT_1M

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
        feed, columns = spec.name, spec.hourly_cagg
        if not columns:
            continue
        view = f"{ROLLUP_UNIT_1M[feed].removesuffix('_1m')}_1h_cagg"
        try:
            await conn.execute(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {view} "
                f"WITH (timescaledb.continuous) AS "
                f"SELECT time_bucket('1 hour', bucket) AS bucket, unit_code, level, {columns} "
                f"FROM {ROLLUP_UNIT_1M[feed]} GROUP BY 1, 2, 3 WITH NO DATA"
            )
            await conn.execute(
                f"SELECT add_continuous_aggregate_policy('{view}', "
                f"start_offset => interval '3 days', end_offset => interval '1 hour', "
                f"schedule_interval => interval '15 minutes', if_not_exists => true)"
            )
            applied.append(view)
        except asyncpg.PostgresError as exc:
            log.warning("continuous aggregate %s not created: %s", view, exc)
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
