"""A feed's tables, generated from its declaration (:class:`~ioc.contract.feeds.FeedSpec`).

The built-in feeds' tables come from the versioned migrations (0002, 0004, 0005; their hourly
and daily tiers from 0014), which predate the declarations; a unit test checks that
:func:`feed_ddl` of those declarations matches them. A feed declared later needs no migration
file: :func:`ensure_feed_tables` creates its raw hypertable, its device and unit rollups in
every tier (1 minute, 1 hour, 1 day: docs/history.md), idempotently, every time the schema is
migrated (``ioc bootstrap``), after the migrations (it uses their ``sat_*`` functions and
topology tables), and widens the check on ``devices.device_class`` (migration 0001) to the
feed's device class.

What it does not do is change a feed's tables once they exist: a new column for an existing
feed (a new message field, a new rollup aggregate) still needs a migration (``ALTER TABLE``).
"""

from __future__ import annotations

import re

import asyncpg

from ioc.contract import feeds
from ioc.contract.feeds import FeedSpec
from ioc.contract.history import DAY, HOUR, MINUTE, ROLLED
from ioc.contract.raw import column_types

DEVICE_CLASS_CHECK = "devices_device_class_check"
RAW_CHUNK = "6 hours"
ROLLUP_CHUNK = "1 day"
"""The 1-minute tier's chunks: about as long as it is kept (2 days), so retention drops it a
day at a time (migration 0014 moves the built-in feeds' tables to it; they had 7 days)."""
TIER_CHUNK = {HOUR.name: "7 days", DAY.name: "30 days"}
"""Chunks of the hourly and daily tiers (kept 90 and 400 days by default)."""


def _table(name: str, columns: list[str], key: str) -> str:
    body = ",\n    ".join([*columns, f"PRIMARY KEY ({key})"])
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    {body}\n)"


def _hypertable(name: str, column: str, chunk: str, default_indexes: bool = True) -> str:
    return (
        f"SELECT create_hypertable('{name}', '{column}', "
        f"chunk_time_interval => interval '{chunk}', "
        f"create_default_indexes => {str(default_indexes).lower()}, if_not_exists => true)"
    )


def raw_table_columns(spec: FeedSpec) -> list[str]:
    """Column definitions of the feed's raw table (``name type [NOT NULL ...]``)."""
    columns = [
        "ts timestamptz NOT NULL",
        "device_id text NOT NULL",
        "seq bigint NOT NULL",
        "kind text NOT NULL",
    ]
    columns += [f"{name} {sql}" for name, sql in column_types(spec.messages).items()]
    columns.append("ingested_at timestamptz NOT NULL DEFAULT now()")
    return columns


def device_rollup_columns(spec: FeedSpec) -> list[str]:
    return [
        "bucket timestamptz NOT NULL",
        "device_id text NOT NULL",
        *[f"{a.name} {a.type}{' NOT NULL' if a.not_null else ''}" for a in spec.device_rollup],
    ]


def unit_rollup_columns(spec: FeedSpec) -> list[str]:
    return [
        "bucket timestamptz NOT NULL",
        "unit_code text NOT NULL",
        "level smallint NOT NULL",
        *[f"{a.name} {a.type}{' NOT NULL' if a.not_null else ''}" for a in spec.unit_rollup],
    ]


MINUTES_COLUMN = "minutes integer NOT NULL"
"""Hourly and daily tiers: how many 1-minute rows the bucket was rolled from (its coverage,
and the weight of its averages in the next tier)."""


def tier_columns(spec: FeedSpec, tier: str, unit: bool) -> list[str]:
    """Columns of a rolled tier's device or unit table: the 1-minute table's, with
    ``minutes`` after the key (docs/history.md)."""
    columns = unit_rollup_columns(spec) if unit else device_rollup_columns(spec)
    key = 3 if unit else 2
    return [*columns[:key], MINUTES_COLUMN, *columns[key:]]


def tier_ddl(spec: FeedSpec) -> list[str]:
    """The statements that create the feed's hourly and daily device and unit tables."""
    statements: list[str] = []
    for tier in ROLLED:
        device, unit = spec.device_table(tier.name), spec.unit_table(tier.name)
        statements += [
            _table(device, tier_columns(spec, tier.name, unit=False), "device_id, bucket"),
            _hypertable(device, "bucket", TIER_CHUNK[tier.name]),
            _table(unit, tier_columns(spec, tier.name, unit=True), "unit_code, bucket"),
            _hypertable(unit, "bucket", TIER_CHUNK[tier.name]),
        ]
    return statements


def feed_ddl(spec: FeedSpec) -> list[str]:
    """The statements that create the feed's tables if they do not exist."""
    raw, device, unit = spec.raw_table, spec.device_rollup_table, spec.unit_rollup_table
    statements = [
        # A key starting with ts and no default (ts DESC) index: one B-tree per row serves
        # every (time-filtered) query and rejects replays (migration 0004).
        _table(raw, raw_table_columns(spec), "ts, device_id, seq"),
        _hypertable(raw, "ts", RAW_CHUNK, default_indexes=False),
        _table(device, device_rollup_columns(spec), "device_id, bucket"),
        _hypertable(device, "bucket", ROLLUP_CHUNK),
        _table(unit, unit_rollup_columns(spec), "unit_code, bucket"),
        _hypertable(unit, "bucket", ROLLUP_CHUNK),
        *tier_ddl(spec),
    ]
    statements.extend(spec.extra_ddl)
    return statements


def feed_tables(spec: FeedSpec) -> list[str]:
    """Every table :func:`feed_ddl` creates: raw, then device and unit per tier."""
    return [
        spec.raw_table,
        *(spec.device_table(t.name) for t in (MINUTE, *ROLLED)),
        *(spec.unit_table(t.name) for t in (MINUTE, *ROLLED)),
    ]


def generated_feeds() -> list[FeedSpec]:
    """The registered feeds whose tables no migration creates."""
    return [f for f in feeds.specs() if not f.tables_from_migrations]


async def allow_device_classes(conn: asyncpg.Connection) -> list[str]:
    """Widen the check on ``devices.device_class`` (migration 0001 lists the built-in classes)
    to every registered feed's class; never narrows it. Returns the classes added."""
    current = await conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'devices'::regclass AND conname = $1",
        DEVICE_CLASS_CHECK,
    )
    allowed = re.findall(r"'([^']*)'", current or "")
    added = [c for c in feeds.device_classes() if c not in allowed]
    if current is not None and added:
        listed = ", ".join(f"'{c}'" for c in (*allowed, *added))
        await conn.execute(
            f"ALTER TABLE devices DROP CONSTRAINT {DEVICE_CLASS_CHECK}, "
            f"ADD CONSTRAINT {DEVICE_CLASS_CHECK} CHECK (device_class IN ({listed}))"
        )
    return added


async def ensure_feed_tables(conn: asyncpg.Connection) -> list[str]:
    """Create the tables of every registered feed that has no migration and let the topology
    hold its devices (idempotent, in one transaction; ``conn`` has the schema on its search
    path). Returns the feeds' names."""
    done: list[str] = []
    async with conn.transaction():
        for spec in generated_feeds():
            for statement in feed_ddl(spec):
                await conn.execute(statement)
            done.append(spec.name)
        await allow_device_classes(conn)
    return done


async def missing_feed_tables(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Raw and rollup tables (every tier) of registered feeds that the schema lacks."""
    wanted = [table for spec in feeds.specs() for table in feed_tables(spec)]
    present = await conn.fetch(
        "SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass($2 || '.' || t) IS NULL",
        wanted,
        schema,
    )
    return [r["t"] for r in present]


def public_columns() -> dict[str, list[str]]:
    """Raw table with ``private_columns`` -> its other columns, in order (what read-only
    roles may select)."""
    return {
        spec.raw_table: [
            c.split(" ", 1)[0]
            for c in raw_table_columns(spec)
            if c.split(" ", 1)[0] not in spec.private_columns
        ]
        for spec in feeds.specs()
        if spec.private_columns
    }


async def restrict_private_columns(conn: asyncpg.Connection, schema: str, role: str) -> list[str]:
    """Take the read-only ``role``'s SELECT on every raw table with ``private_columns`` back
    to its other columns (run after the schema-wide grants, which give it every table).
    Returns the tables restricted."""
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        return []
    done: list[str] = []
    for raw_table, public in public_columns().items():
        table = f"{schema}.{raw_table}"
        if await conn.fetchval("SELECT to_regclass($1)", table) is None:
            continue
        await conn.execute(f"REVOKE SELECT ON {table} FROM {role}")
        await conn.execute(f"GRANT SELECT ({', '.join(public)}) ON {table} TO {role}")
        done.append(raw_table)
    return done
